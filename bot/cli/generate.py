"""`python -m bot generate "PROMPT --flags" --out DIR`: the engine alone, without Discord.

Writes grid.png and 1.png … 4.png (each with its recipe) and prints how long each stage took, so an
operator can check a GPU, a model or a dtype before starting the bot. Settings come from the environment
and `.env` like the bot's, with --model / --device / --dtype as overrides.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from bot.settings import load_settings


def generate_command(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, key) for key in ("model", "device", "dtype") if getattr(args, key, None)}
    settings = load_settings(**overrides)
    device = settings.devices[0]

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from bot.engine.engine import Engine, Progress
    from bot.engine.png import encode_png
    from bot.engine.prompt import parse_prompt

    diffusers_logging.disable_progress_bar()  # one progress bar (ours) is enough
    transformers_logging.disable_progress_bar()

    clock = time.perf_counter()
    engine = Engine.load(settings.model, device=device, dtype=settings.dtype, settings=settings.engine)
    load_seconds = time.perf_counter() - clock
    profile = engine.profile
    parsed = parse_prompt(args.prompt, profile)
    request = parsed.to_request().replace(model=profile.name)
    kind = "few-step" if profile.few_step else "standard"
    print(f"model    {profile.name} ({profile.family}, {profile.native_size} px, {kind}, {profile.sampler})")
    print(f"device   {engine.device}, {engine.dtype}")
    print(
        f"request  {request.width}×{request.height}, {request.steps} steps, guidance {request.guidance}, "
        f"seed {request.seed}"
    )

    with tqdm(total=request.steps, unit="step", desc="denoise", leave=False) as bar:

        def progress(update: Progress) -> None:
            bar.total = update.total
            bar.update(update.step - bar.n)

        result = engine.run([request], on_progress=progress)[0]

    clock = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if result.grid is not None:
        written.append(out / "grid.png")
        written[-1].write_bytes(encode_png(result.grid, result.recipes[0]))
    for number, (image, recipe) in enumerate(zip(result.images, result.recipes, strict=True), start=1):
        written.append(out / f"{number}.png")
        written[-1].write_bytes(encode_png(image, recipe))
    save_seconds = time.perf_counter() - clock

    timings = result.timings
    steps = max(1, request.steps)
    stages = [
        ("load", load_seconds, ""),
        ("encode", timings.get("encode", 0.0), "prompt embeddings"),
        ("denoise", timings.get("denoise", 0.0), f"{timings.get('denoise', 0.0) / steps:.3f} s/step"),
        (
            "previews",
            timings.get("previews", 0.0),
            _share(timings.get("previews", 0.0), timings.get("denoise")),
        ),
        ("decode", timings.get("decode", 0.0), f"{len(result.images)} images"),
        ("save", save_seconds, f"{len(written)} PNGs"),
    ]
    for name, seconds, note in stages:
        print(f"{name:<8} {seconds:8.3f} s  {note}".rstrip())
    for warning in result.warnings:
        print(f"warning  {warning}")
    print(f"wrote    {', '.join(str(path) for path in written)}")
    return 0


def _share(part: float, whole: float | None) -> str:
    return f"{100 * part / whole:.3f}% of denoise" if whole else ""
