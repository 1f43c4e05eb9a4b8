"""A PNG's recipe makes the same image again: the metadata is complete, and the engine is reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bot.engine.engine import Engine
from bot.engine.png import encode_png, read_recipe
from bot.engine.recipes import replay_request
from bot.engine.types import JobKind
from tests.bot.engine.helpers import make_request, max_difference

pytestmark = pytest.mark.slow


def save(tmp_path: Path, name: str, image: Image.Image, recipe) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(encode_png(image, recipe))
    return path


def replay(engine: Engine, path: Path) -> Image.Image:
    """Read the recipe back from the file alone and run it."""
    return engine.run([replay_request(read_recipe(path))])[0].images[0]


@pytest.mark.parametrize("engine_name", ["sd_engine", "sdxl_engine"])
def test_every_image_of_a_grid_replays_from_its_png(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each of the four PNGs, re-run from the recipe read out of it, gives back its exact pixels."""
    engine: Engine = request.getfixturevalue(engine_name)
    result = engine.run(
        [make_request(engine, "a lighthouse, oil painting", seed=77, negative_prompt="text")]
    )[0]
    for number, (image, recipe) in enumerate(zip(result.images, result.recipes, strict=True), start=1):
        path = save(tmp_path, f"{number}.png", image, recipe)
        with Image.open(path) as stored:
            assert max_difference([replay(engine, path)], [stored]) == 0


def test_variations_and_upscales_replay_from_their_pngs(fewstep_engine: Engine, tmp_path: Path) -> None:
    """A variation, and an upscale of that variation, each re-made from its own PNG, match exactly."""
    first = fewstep_engine.run([make_request(fewstep_engine, seed=5, images=1, chaos=40)])[0]
    parent = save(tmp_path, "parent.png", first.images[0], first.recipes[0])

    vary = make_request(fewstep_engine, seed=9, kind=JobKind.VARY, strength=0.7, init_image=str(parent))
    varied = fewstep_engine.run([vary])[0]
    child = save(tmp_path, "child.png", varied.images[3], varied.recipes[3])
    assert max_difference([replay(fewstep_engine, child)], [Image.open(child)]) == 0

    upscale = make_request(
        fewstep_engine,
        seed=9,
        kind=JobKind.UPSCALE,
        strength=0.55,
        init_image=str(child),
        scale=2,
        upscale_mode="creative",
        width=128,
        height=128,
        images=1,
    )
    upscaled = fewstep_engine.run([upscale])[0]
    big = save(tmp_path, "big.png", upscaled.images[0], upscaled.recipes[0])
    assert (read_recipe(big).scale, read_recipe(big).parent) == (2, str(child))
    assert max_difference([replay(fewstep_engine, big)], [Image.open(big)]) == 0
