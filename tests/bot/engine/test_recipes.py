"""Follow-up requests from one image: re-run it, vary it, upscale it."""

from __future__ import annotations

import pytest

from bot.engine.prompt import parse_prompt
from bot.engine.recipes import UPSCALE_STRENGTH, VARY_STRENGTH, replay_request, upscale_request, vary_request
from bot.engine.types import JobKind, ModelProfile, Recipe

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
TURBO = ModelProfile(
    name="stabilityai/sd-turbo", family="sd2", native_size=512, default_steps=4, min_steps=1, max_steps=8,
    default_guidance=0.0, few_step=True,
)  # fmt: skip


def test_replay_makes_one_image_from_its_recipe() -> None:
    """Re-running a recipe asks for exactly that image: its own seed, size, steps, chaos and model."""
    request = replay_request(SOURCE)
    assert request.images == 1 and request.seed == 44 and request.kind is JobKind.IMAGINE
    assert (request.width, request.height, request.steps, request.chaos) == (704, 384, 4, 20)
    assert (request.prompt, request.negative_prompt) == ("a castle at dusk", "fog")
    assert request.model == SOURCE.model


@pytest.mark.parametrize("mode", ["subtle", "strong"])
def test_vary_keeps_the_prompt_and_size(mode: str) -> None:
    """V1–V4 make four images of the same size from the chosen image, subtle (0.35) or strong (0.7)."""
    request = vary_request(SOURCE, "/data/7/2.png", mode=mode, seed=5)  # type: ignore[arg-type]
    assert request.kind is JobKind.VARY and request.images == 4 and request.seed == 5
    assert request.strength == VARY_STRENGTH[mode] and request.init_image == "/data/7/2.png"
    assert (request.prompt, request.width, request.height) == (SOURCE.prompt, 704, 384)


def test_vary_with_a_new_prompt() -> None:
    """A remix prompt replaces the text, negatives and seed, but the size stays the source's."""
    parsed = parse_prompt("a castle at dawn --no people --seed 3 --ar 1:1", TURBO)
    request = vary_request(SOURCE, "/data/7/2.png", mode="strong", prompt=parsed)
    assert (request.prompt, request.negative_prompt, request.seed) == ("a castle at dawn", "people", 3)
    assert (request.width, request.height) == (704, 384)


@pytest.mark.parametrize(("scale", "mode"), [(2, "subtle"), (4, "creative")])
def test_upscale_multiplies_the_size(scale: int, mode: str) -> None:
    """U1–U4 upscales ask for the source size × 2 or × 4, one image, at the mode's strength."""
    request = upscale_request(SOURCE, "/data/7/1.png", scale=scale, mode=mode)  # type: ignore[arg-type]
    assert (request.width, request.height) == (704 * scale, 384 * scale)
    assert request.images == 1 and request.scale == scale and request.upscale_mode == mode
    assert request.strength == UPSCALE_STRENGTH[mode] and request.seed == SOURCE.seed


def test_upscale_and_vary_refuse_unknown_options() -> None:
    """Programming mistakes (a 3× upscale, a 'wild' variation) fail loudly."""
    with pytest.raises(ValueError, match="upscale factor"):
        upscale_request(SOURCE, "x.png", scale=3)
    with pytest.raises(ValueError, match="vary mode"):
        vary_request(SOURCE, "x.png", mode="wild")  # type: ignore[arg-type]
