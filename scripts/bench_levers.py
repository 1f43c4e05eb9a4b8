"""Measure each engine lever on its own: the UNet step and the VAE decode of the SD-1.5 architecture.

    python scripts/bench_levers.py                 # dtype bf16 (CPU) or fp16 (GPU), 256 px, best of 3
    python scripts/bench_levers.py --compile       # also torch.compile with weight freezing (minutes)
    python scripts/bench_levers.py --size 512 --repeats 5

Variants are timed interleaved (A, B, C, A, B, C, ...) and the best time of each is kept, so a burst of
load from other processes on a shared machine hits all variants alike and inflates none of the minima.
Rows: one UNet call of 8 rows (a 4-image job under classifier-free guidance: what Atelier's fixed
groups run) in the default layout, in channels-last, with packed weights (CPU), and compiled; 16 rows at
once against two 8-row calls (what bit-exact batching gives up); VAE decode of 1 image (Atelier decodes
per image) and of 4 (what the pipeline does), in both layouts; a 4-image progress preview through the
latent colour map and through a TAESD-architecture tiny decoder (`AutoencoderTiny`'s default config,
random weights: TAESD's cost, not its pictures). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bench.sd15 import ensure_sd15
from bot.engine.prepack import can_prepack, prepack_weights
from bot.engine.preview import LatentPreviewer, TinyDecoderPreviewer


def best_times(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for function in variants.values():  # warm-up: one-time kernel setup is not what is measured
        function()
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for name, function in variants.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="add the compiled UNet (minutes to compile)")
    parser.add_argument("--cache", type=Path, default=Path("data/bench-model/sd15"))
    args = parser.parse_args()

    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

    dtype = torch.bfloat16 if args.device == "cpu" else torch.float16
    model = ensure_sd15(args.cache)
    side = args.size // 8
    latents = torch.randn(16, 4, side, side, dtype=dtype, device=args.device)
    text = torch.randn(16, 77, 768, dtype=dtype, device=args.device)
    step = torch.tensor(500, device=args.device)

    def unet_call(unet: torch.nn.Module, rows: slice) -> Callable[[], object]:
        return unet_call_fn(unet, rows)

    def unet_call_fn(forward: Callable[..., object], rows: slice) -> Callable[[], object]:
        return lambda: forward(latents[rows], step, text[rows])

    with torch.inference_mode():
        plain = UNet2DConditionModel.from_pretrained(model / "unet", dtype=dtype).to(args.device).eval()
        nhwc = UNet2DConditionModel.from_pretrained(model / "unet", dtype=dtype).to(args.device).eval()
        nhwc.to(memory_format=torch.channels_last)
        eight, second, all16 = slice(0, 8), slice(8, 16), slice(0, 16)
        two_calls = (unet_call(nhwc, eight), unet_call(nhwc, second))
        variants: dict[str, Callable[[], object]] = {
            "unet 8 rows, default layout": unet_call(plain, eight),
            "unet 8 rows, channels-last": unet_call(nhwc, eight),
            "unet 16 rows in one call, channels-last": unet_call(nhwc, all16),
            "unet 16 rows as 2 × 8, channels-last": lambda: [call() for call in two_calls],
        }
        if can_prepack(dtype, args.device):
            packed = UNet2DConditionModel.from_pretrained(model / "unet", dtype=dtype).eval()
            packed.to(memory_format=torch.channels_last)
            prepack_weights(packed)
            variants["unet 8 rows, channels-last + packed weights"] = unet_call(packed, eight)
        if args.compile:
            compiled = torch.compile(nhwc.forward, dynamic=False, options={"freezing": True})
            started = time.perf_counter()
            compiled(latents[eight], step, text[eight])
            print(f"compile (8 rows): {time.perf_counter() - started:.1f} s", flush=True)
            variants["unet 8 rows, channels-last + compile"] = unet_call_fn(compiled, eight)
        results = best_times(variants, args.repeats)

        vae = AutoencoderKL.from_pretrained(model / "vae", dtype=dtype).to(args.device).eval()
        vae_nhwc = AutoencoderKL.from_pretrained(model / "vae", dtype=dtype).to(args.device).eval()
        vae_nhwc.to(memory_format=torch.channels_last)
        results |= best_times(
            {
                "vae 1 image, default layout": lambda: vae.decode(latents[:1]),
                "vae 1 image, channels-last": lambda: vae_nhwc.decode(latents[:1]),
                "vae 4 images in one call, default layout": lambda: vae.decode(latents[:4]),
                "vae 4 images in one call, channels-last": lambda: vae_nhwc.decode(latents[:4]),
            },
            args.repeats,
        )
        taesd = AutoencoderTiny().to(args.device, dtype).to(memory_format=torch.channels_last).eval()
        previewers = {
            "preview of 4 images, latent colour map": LatentPreviewer("sd1", args.device),
            "preview of 4 images, TAESD-sized decoder": TinyDecoderPreviewer(taesd, vae_scale_factor=8),
        }
        results |= best_times(
            {name: lambda p=previewer: p(latents[:4]) for name, previewer in previewers.items()}, args.repeats
        )
    print(f"{args.size} px, {dtype}, {torch.get_num_threads()} threads, best of {args.repeats}:")
    for name, seconds in results.items():
        print(f"  {name:<45} {seconds:8.3f} s")


if __name__ == "__main__":
    main()
