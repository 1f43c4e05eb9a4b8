"""Vary and upscale: image-to-image from a stored image, sharing the text-to-image weights."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from bot.engine import upscalers
from bot.engine.engine import Engine
from bot.engine.types import JobKind
from bot.engine.upscalers import load_upscaler
from bot.errors import InvalidImage, SettingsError
from bot.followups import UPSCALE_STRENGTH, VARY_STRENGTH
from bot.settings import EngineSettings
from tests.bot.engine.helpers import make_request, max_difference, pixels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, sd_engine: Engine) -> Path:
    """A 64 px image made by the tiny model, saved as a PNG the way the queue stores results."""
    path = tmp_path_factory.mktemp("sources") / "source.png"
    sd_engine.run([make_request(sd_engine, seed=5, images=1, steps=3)])[0].images[0].save(path)
    return path


def test_vary_makes_four_variations_of_the_source(sd_engine: Engine, source: Path) -> None:
    """Four new images of the source's size, recorded as variations of it."""
    request = make_request(
        sd_engine, kind=JobKind.VARY, strength=VARY_STRENGTH["subtle"], init_image=str(source)
    )
    result = sd_engine.run([request])[0]
    assert [image.size for image in result.images] == [(64, 64)] * 4 and result.grid.size == (128, 128)
    recipe = result.recipes[0]
    assert (recipe.kind, recipe.strength, recipe.parent) == (
        JobKind.VARY,
        VARY_STRENGTH["subtle"],
        str(source),
    )
    assert len({pixels(image).tobytes() for image in result.images}) == 4


def silence_unet(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the UNet predict no noise at all: what is left in an image-to-image result is exactly the
    noise its strength added to the source (random weights would otherwise swamp it)."""
    monkeypatch.setattr(
        engine.pipe.unet, "forward", lambda sample, *args, **kwargs: (torch.zeros_like(sample),)
    )


def moved(images: dict[str, Image.Image], baseline: str) -> dict[str, float]:
    """Mean pixel distance of each image from the baseline (the tiny VAE's own rendering of the source)."""
    reference = pixels(images[baseline])
    return {name: float(np.abs(pixels(image) - reference).mean()) for name, image in images.items()}


def test_strong_variations_move_further_than_subtle_ones(
    sd_engine: Engine, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subtle (0.35) stays closer to the source than strong (0.7)."""
    silence_unet(sd_engine, monkeypatch)
    strengths = {"none": 0.01, "subtle": VARY_STRENGTH["subtle"], "strong": VARY_STRENGTH["strong"]}
    images = {
        name: sd_engine.run(
            [make_request(sd_engine, kind=JobKind.VARY, strength=value, init_image=str(source), images=1)]
        )[0].images[0]
        for name, value in strengths.items()
    }
    distances = moved(images, "none")
    assert 0 < distances["subtle"] < distances["strong"]


def test_varied_batches_match_solo_runs(sdxl_engine: Engine, source: Path, tmp_path: Path) -> None:
    """Two members' variations of different images, batched, equal each one run alone."""
    other = tmp_path / "other.png"
    Image.open(source).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    requests = [
        make_request(
            sdxl_engine, "a castle", seed=3, kind=JobKind.VARY, strength=0.7, init_image=str(source)
        ),
        make_request(
            sdxl_engine, "a ship", seed=4, kind=JobKind.VARY, strength=0.7, init_image=str(other), images=2
        ),
    ]
    batched = sdxl_engine.run(requests)
    for request, result in zip(requests, batched, strict=True):
        assert max_difference(result.images, sdxl_engine.run([request])[0].images) == 0


def test_few_step_models_still_take_their_steps_at_low_strength(fewstep_engine: Engine, source: Path) -> None:
    """A 2-step variation at strength 0.35 runs 2 denoising steps, not int(2 × 0.35) = 0."""
    updates: list[Any] = []
    request = make_request(
        fewstep_engine, kind=JobKind.VARY, strength=0.35, init_image=str(source), steps=2, images=1
    )
    fewstep_engine.run([request], on_progress=updates.append)
    assert [(update.step, update.total) for update in updates] == [(1, 2), (2, 2)]


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_enlarges_with_a_tiled_vae(
    sd_engine: Engine, source: Path, scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2× and 4× upscales have the right size, decode in VAE tiles, and record how they were made."""
    tiled: list[tuple[int, ...]] = []
    vae = sd_engine.pipe.vae
    original = vae.tiled_decode
    monkeypatch.setattr(
        vae, "tiled_decode", lambda z, **kw: tiled.append(tuple(z.shape)) or original(z, **kw)
    )
    side = 64 * scale
    request = make_request(
        sd_engine,
        kind=JobKind.UPSCALE,
        strength=UPSCALE_STRENGTH["subtle"],
        init_image=str(source),
        scale=scale,
        upscale_mode="subtle",
        width=side,
        height=side,
        images=1,
        steps=1,
    )
    result = sd_engine.run([request])[0]
    assert result.images[0].size == (side, side) and result.grid is None
    assert tiled, "a large decode should go through the tiled VAE path"
    recipe = result.recipes[0]
    assert (recipe.scale, recipe.upscale_mode, recipe.strength) == (
        scale,
        "subtle",
        UPSCALE_STRENGTH["subtle"],
    )
    assert recipe.parent == str(source)


def test_creative_upscales_invent_more_than_subtle_ones(
    fewstep_engine: Engine, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creative pass moves further from the resampled source than the subtle one."""
    silence_unet(fewstep_engine, monkeypatch)
    strengths = {"none": 0.05, **UPSCALE_STRENGTH}
    images = {}
    for name, value in strengths.items():
        request = make_request(
            fewstep_engine,
            kind=JobKind.UPSCALE,
            strength=value,
            init_image=str(source),
            scale=2,
            upscale_mode="subtle" if name == "none" else name,
            width=128,
            height=128,
            images=1,
            steps=1,
        )
        images[name] = fewstep_engine.run([request])[0].images[0]
    distances = moved(images, "none")
    assert 0 < distances["subtle"] < distances["creative"]


def test_normal_images_are_not_tiled(sd_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Grid images, whatever their aspect ratio, decode in one piece (no tile seams)."""
    monkeypatch.setattr(sd_engine.pipe.vae, "tiled_decode", lambda *a, **k: pytest.fail("tiled a grid image"))
    sd_engine.run([make_request(sd_engine, width=128, height=64, images=1)])


@pytest.mark.parametrize(
    ("content", "says"), [(b"GIF89a broken", "not an image I can read"), (None, "no longer available")]
)
def test_unusable_sources_are_refused(
    sd_engine: Engine, tmp_path: Path, content: bytes | None, says: str
) -> None:
    """A source that is not an image, or was deleted, gets an InvalidImage."""
    path = tmp_path / "source.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidImage, match=says):
        sd_engine.run([make_request(sd_engine, kind=JobKind.VARY, strength=0.35, init_image=str(path))])


def test_model_file_upscalers_need_spandrel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pointing ENGINE__UPSCALER at a .pth file without spandrel installed says how to fix it."""
    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if not installed, whatever the machine has
    with pytest.raises(SettingsError, match=r"needs the optional `spandrel` package: pip install spandrel"):
        load_upscaler(str(tmp_path / "4x-UltraSharp.pth"), "cpu", torch.float32)


def test_a_text_to_image_model_is_not_an_upscaler(tiny_sd_path: Path) -> None:
    """A diffusers directory that is not an upscaling pipeline is refused at start-up with the choices."""
    with pytest.raises(
        SettingsError, match="is a StableDiffusionPipeline; use one of StableDiffusionUpscalePipeline"
    ):
        load_upscaler(str(tiny_sd_path), "cpu", torch.float32)


def test_a_configured_diffusers_upscaler_is_used(
    tiny_sd_path: Path,
    tiny_upscaler_path: Path,
    sd_engine: Engine,
    source: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ENGINE__UPSCALER set to an x4 upscaler directory, upscales go through it before the light pass."""
    monkeypatch.setattr(upscalers, "UPSCALER_STEPS", 2)  # keep the tiny upscaler quick
    settings = EngineSettings(upscaler=str(tiny_upscaler_path), max_output_side=256)
    engine = Engine.load(str(tiny_sd_path), device="cpu", dtype="float32", settings=settings)
    assert engine.upscaler.name == str(tiny_upscaler_path)
    request = make_request(
        engine,
        kind=JobKind.UPSCALE,
        strength=UPSCALE_STRENGTH["subtle"],
        init_image=str(source),
        scale=2,
        upscale_mode="subtle",
        width=128,
        height=128,
        images=1,
        steps=1,
    )
    with_upscaler = engine.run([request])[0].images[0]
    resampled = sd_engine.run([request])[0].images[0]
    assert with_upscaler.size == (128, 128)
    assert max_difference([with_upscaler], [resampled]) > 0
