"""Re-running an image from its recipe."""

from __future__ import annotations

from bot.engine.recipes import replay_request
from bot.engine.types import JobKind, Recipe

SOURCE = Recipe(
    prompt="a castle at dusk",
    negative_prompt="fog",
    seed=44,
    steps=4,
    guidance=0.0,
    width=704,
    height=384,
    sampler="EulerDiscreteScheduler",
    model="stabilityai/sd-turbo",
    chaos=20,
)


def test_replay_makes_one_image_from_its_recipe() -> None:
    """Re-running a recipe asks for exactly that image: its own seed, size, steps, chaos and model."""
    request = replay_request(SOURCE)
    assert request.images == 1 and request.seed == 44 and request.kind is JobKind.IMAGINE
    assert (request.width, request.height, request.steps, request.chaos) == (704, 384, 4, 20)
    assert (request.prompt, request.negative_prompt) == ("a castle at dusk", "fog")
    assert request.model == SOURCE.model and request.init_image is None


def test_replay_of_an_upscale_names_its_parent() -> None:
    """An upscale's recipe replays as an upscale of the same parent, factor and mode."""
    upscale = Recipe.from_dict(
        {**SOURCE.to_dict(), "kind": "upscale", "strength": 0.3, "parent": "/d/1.png", "scale": 4,
         "upscale_mode": "creative", "width": 2816, "height": 1536}
    )  # fmt: skip
    request = replay_request(upscale)
    assert (request.kind, request.init_image, request.scale, request.upscale_mode) == (
        JobKind.UPSCALE, "/d/1.png", 4, "creative",
    )  # fmt: skip
    assert (request.width, request.height, request.strength) == (2816, 1536, 0.3)
