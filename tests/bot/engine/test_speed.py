"""Speed levers (ENGINE__CHANNELS_LAST, ENGINE__PREPACK_WEIGHTS, ENGINE__COMPILE) change how fast
images come, not which images.

The production path on a CPU with native bfloat16 is bf16 + channels-last + packed UNet weights, so
batch = solo is checked in that configuration too (the session engines in conftest.py run float32, with
packed weights, the default).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bot.engine.engine import Engine
from bot.engine.prepack import PackedConv2d, PackedLinear, can_prepack
from bot.settings import EngineSettings
from tests.bot.engine.helpers import make_request, max_difference

needs_bf16 = pytest.mark.skipif(
    not can_prepack(torch.bfloat16, "cpu"), reason="this CPU has no native bfloat16 in oneDNN"
)


def _conv_weights(engine: Engine) -> list[torch.Tensor]:
    modules = [*engine.pipe.unet.modules(), *engine.pipe.vae.modules()]
    return [m.weight for m in modules if isinstance(m, torch.nn.Conv2d)]


def _layers(model: torch.nn.Module, *kinds: type) -> int:
    return sum(isinstance(module, kinds) for module in model.modules())


@pytest.fixture(scope="module")
def bf16_engine(tiny_sd_path: Path) -> Engine:
    torch.set_num_threads(1)
    return Engine.load(str(tiny_sd_path), device="cpu", dtype="bfloat16", settings=EngineSettings())


def _load_bf16(tiny_sd_path: Path, **settings: bool) -> Engine:
    return Engine.load(str(tiny_sd_path), device="cpu", dtype="bfloat16", settings=EngineSettings(**settings))


def test_channels_last_is_on_by_default_and_can_be_turned_off(tiny_sd_path: Path) -> None:
    """By default every UNet and VAE convolution is laid out channels-last; the setting turns it off."""
    default = _load_bf16(tiny_sd_path, prepack_weights=False)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(default))
    plain = _load_bf16(tiny_sd_path, prepack_weights=False, channels_last=False)
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(plain))
    request = make_request(plain, seed=5, steps=3)
    # Same recipe, other layout: the same picture up to bfloat16 rounding, never a different one.
    assert max_difference(plain.run([request])[0].images, default.run([request])[0].images) <= 16


@needs_bf16
def test_packed_unet_weights_are_on_by_default_and_keep_the_pictures(
    tiny_sd_path: Path, bf16_engine: Engine
) -> None:
    """On a CPU every UNet convolution and linear layer is packed for oneDNN once, at load; the setting
    turns it off; the pictures are the same up to bfloat16 rounding, and the plain weights are dropped
    (the packed UNet holds no more parameter memory than its biases and norms)."""
    unet = bf16_engine.pipe.unet
    assert _layers(unet, torch.nn.Conv2d, torch.nn.Linear) == 0
    assert _layers(unet, PackedConv2d) > 0 and _layers(unet, PackedLinear) > 0

    plain = _load_bf16(tiny_sd_path, prepack_weights=False)
    assert _layers(plain.pipe.unet, PackedConv2d, PackedLinear) == 0
    unpacked_bytes = sum(p.numel() * p.element_size() for p in plain.pipe.unet.parameters())
    packed_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    assert packed_bytes < unpacked_bytes / 10

    for seed in (5, 6):
        request = make_request(plain, seed=seed, steps=3)
        assert max_difference(plain.run([request])[0].images, bf16_engine.run([request])[0].images) <= 16

    # The packed layout does not depend on the shapes seen first: after a long (two-window) prompt,
    # a recipe still makes exactly the pixels it made before.
    request = make_request(bf16_engine, seed=9, steps=2)
    before = bf16_engine.run([request])[0].images
    bf16_engine.run([make_request(bf16_engine, " ".join(["a red lantern"] * 40), seed=9, steps=2)])
    assert max_difference(bf16_engine.run([request])[0].images, before) == 0


def test_packing_is_not_applied_where_onednn_cannot_run_it() -> None:
    """Packing is a CPU (oneDNN) lever: never on a GPU, never in float16."""
    assert not can_prepack(torch.float16, "cpu")
    assert not can_prepack(torch.float32, "cuda")
    assert not can_prepack(torch.bfloat16, "cuda:1")


def test_bf16_channels_last_batches_are_bit_identical_to_solo_runs(bf16_engine: Engine) -> None:
    """In the CPU's default configuration, a request batched with others gives exactly its solo images."""
    requests = [
        make_request(bf16_engine, "a castle at dusk", seed=11),
        make_request(bf16_engine, "a cat, watercolor", seed=22, images=2, chaos=40),
        make_request(bf16_engine, "a ship", seed=33, negative_prompt="fog"),
    ]
    batched = bf16_engine.run(requests)
    for request, result in zip(requests, batched, strict=True):
        assert max_difference(result.images, bf16_engine.run([request])[0].images) == 0


def test_timings_separate_progress_reporting_from_denoising(bf16_engine: Engine) -> None:
    """The caller's progress callback is timed on its own, not counted as denoising."""
    import time

    def slow_progress(update: object) -> None:
        time.sleep(0.05)

    result = bf16_engine.run([make_request(bf16_engine, steps=3)], on_progress=slow_progress)[0]
    assert result.timings["progress"] >= 3 * 0.05
    assert set(result.timings) >= {"encode", "denoise", "previews", "progress", "decode"}


@pytest.mark.slow
def test_compiled_unet_makes_the_same_pictures(tiny_sd_path: Path, tmp_path: Path) -> None:
    """ENGINE__COMPILE: the compiled UNet runs inside the fixed-size batching and keeps the pictures
    (float32, so only kernel-order rounding can differ); compiled kernels land in the cache directory."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    cache = tmp_path / "compile-cache"
    try:
        compiled = Engine.load(
            str(tiny_sd_path),
            device="cpu",
            dtype="float32",
            settings=EngineSettings(compile=True, compile_cache_dir=cache),
        )
        eager = Engine.load(str(tiny_sd_path), device="cpu", dtype="float32", settings=EngineSettings())
        request = make_request(eager, seed=7, steps=2)
        assert "forward" in vars(compiled.pipe.unet)  # the instance's own (compiled) forward
        # Inductor's weight freezing packs the weights itself: nothing is packed beforehand.
        assert _layers(compiled.pipe.unet, PackedConv2d, PackedLinear) == 0
        assert max_difference(compiled.run([request])[0].images, eager.run([request])[0].images) <= 2
        batched = compiled.run([request, make_request(eager, seed=8, steps=2)])
        assert max_difference(batched[0].images, compiled.run([request])[0].images) == 0
        assert any(cache.iterdir())
    finally:
        if previous is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
