"""The Midjourney-style prompt language: what members type and what they get back."""

from __future__ import annotations

import pytest

from bot.engine.prompt import (
    ASPECT_CHOICES,
    MAX_SEED,
    guidance_for,
    parse_prompt,
    prompt_token_limit,
    size_for_aspect,
    token_lower_bound,
)
from bot.engine.types import JobKind, ModelProfile
from bot.errors import InvalidPrompt

SD15 = ModelProfile(
    name="sd15", family="sd1", native_size=512, default_steps=30, min_steps=10, max_steps=100,
    default_guidance=7.5, few_step=False,
)  # fmt: skip
SDXL = ModelProfile(
    name="sdxl", family="sdxl", native_size=1024, default_steps=30, min_steps=10, max_steps=100,
    default_guidance=5.0, few_step=False,
)  # fmt: skip
TURBO = ModelProfile(
    name="sd-turbo", family="sd2", native_size=512, default_steps=4, min_steps=1, max_steps=8,
    default_guidance=0.0, few_step=True,
)  # fmt: skip


def test_the_issue_example_parses_every_flag() -> None:
    """The example from the issue gives the description, negatives, size, seed, chaos, stylize and steps."""
    parsed = parse_prompt(
        "a castle at dusk --ar 16:9 --seed 42 --no fog, people --chaos 30 --stylize 250 --steps 6 --q 1",
        TURBO,
    )
    assert parsed.prompt == "a castle at dusk"
    assert parsed.negative_prompt == "fog, people"
    assert (parsed.width, parsed.height, parsed.aspect) == (704, 384, "16:9")
    assert (parsed.seed, parsed.chaos, parsed.stylize, parsed.steps, parsed.quality) == (42, 30, 250, 6, 1.0)
    assert parsed.relax is False


def test_defaults_come_from_the_model_profile() -> None:
    """A bare prompt is square at the native size with the model's default steps and guidance."""
    for profile in (SD15, SDXL, TURBO):
        parsed = parse_prompt("a red apple", profile)
        assert (parsed.width, parsed.height) == (profile.native_size, profile.native_size)
        assert (parsed.steps, parsed.guidance) == (profile.default_steps, profile.default_guidance)
        assert parsed.seed is None and parsed.negative_prompt == ""


@pytest.mark.parametrize(
    ("aspect", "native", "size"),
    [
        ("1:1", 512, (512, 512)),
        ("16:9", 512, (704, 384)),
        ("9:16", 512, (384, 704)),
        ("3:2", 512, (640, 448)),
        ("1:4", 512, (256, 1024)),
        ("4:1", 1024, (2048, 512)),
        ("16:9", 1024, (1344, 768)),
        ("2:3", 768, (640, 960)),
    ],
)
def test_aspect_ratios_map_to_native_pixel_buckets(aspect: str, native: int, size: tuple[int, int]) -> None:
    """--ar picks sides that are multiples of 64 with about the model's native pixel count."""
    width, height = size_for_aspect(aspect, native)
    assert (width, height) == size
    assert width % 64 == 0 and height % 64 == 0
    assert abs(width * height / native**2 - 1) < 0.2


def test_every_picker_choice_is_accepted() -> None:
    """Each ratio offered in the Discord picker parses, and orientation follows the ratio."""
    for aspect in ASPECT_CHOICES:
        parsed = parse_prompt(f"a ship --ar {aspect}", SDXL)
        w, h = (int(x) for x in aspect.split(":"))
        assert (parsed.width > parsed.height) == (w > h)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat --relax", {"relax": True}),
        ("a cat --s 0", {"stylize": 0}),
        ("a cat --c 100", {"chaos": 100}),
        ("a cat --aspect 32:18", {"aspect": "16:9"}),
        ("a cat --ar=2:3", {"aspect": "2:3"}),
        ("a cat —ar 2:3 —seed 5", {"aspect": "2:3", "seed": 5}),
        ("a cat --seed 4294967295", {"seed": MAX_SEED}),
        ("a cat --seed 0", {"seed": 0}),
        ("a cat --no fog --no people", {"negative_prompt": "fog, people"}),
        ("a cat --q 2", {"steps": 60, "quality": 2.0}),
        ("a cat --q .25", {"steps": 10}),
        ("a cat --steps 12 --q 2", {"steps": 12}),
        ("sci-fi city, 1990 – 2000", {"prompt": "sci-fi city, 1990 – 2000"}),
        ("  lots   of\nspace  ", {"prompt": "lots of space"}),
    ],
)
def test_flag_variants(text: str, expected: dict[str, object]) -> None:
    """Aliases, --name=value, phone em-dashes, repeated --no, quality and steps resolve as documented."""
    parsed = parse_prompt(text, SD15)
    for field, value in expected.items():
        assert getattr(parsed, field) == value, field


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "The prompt is empty"),
        ("--ar 3:2", "The prompt is empty"),
        ("a cat --foo 3", "Unknown flag `--foo`. Flags: --ar, --seed"),
        ("a cat --", "A lone `--` is not a flag"),
        ("a cat --seed", "`--seed` needs a value: a whole number from 0 to 4294967295"),
        ("a cat --seed -1", "`--seed` must be a whole number from 0 to 4294967295 (got `-1`)"),
        ("a cat --seed 4294967296", "from 0 to 4294967295 (got `4294967296`)"),
        ("a cat --seed 1.5", "`--seed` must be a whole number"),
        ("a cat --seed 42 on a mat", "`--seed` takes one value, but got `42 on a mat`"),
        ("a cat --seed 1 --seed 2", "`--seed` is given twice"),
        ("a cat --ar 16x9", "`--ar` must look like W:H with whole numbers, e.g. 16:9 (got `16x9`)"),
        ("a cat --ar 0:1", "`--ar` must look like W:H"),
        ("a cat --ar 5:1", "`--ar 5:1` is too wide: the ratio must be between 1:4 and 4:1"),
        ("a cat --ar 1:5", "`--ar 1:5` is too tall: the ratio must be between 1:4 and 4:1"),
        ("a cat --chaos 101", "`--chaos` must be a whole number from 0 to 100 (got `101`)"),
        ("a cat --s 1001", "`--stylize` must be a whole number from 0 to 1000 (got `1001`)"),
        ("a cat --steps 5", "`--steps` must be a whole number from 10 to 100 for this model (got `5`)"),
        ("a cat --steps 101", "from 10 to 100 for this model (got `101`)"),
        ("a cat --q 3", "`--q` must be one of 0.25, 0.5, 1 or 2 (got `3`)"),
        ("a cat --relax now", "`--relax` takes no value (got `now`)"),
        ("a cat --no", "`--no` needs a value"),
        ("word " * 226, "The prompt is too long: at least 226 tokens, and the model reads at most 225"),
        ("a cat --no " + "word " * 300, "The negative prompt (--no) is too long"),
    ],
)
def test_bad_prompts_are_refused_with_a_precise_message(text: str, says: str) -> None:
    """Each mistake gets a message naming the flag and what it accepts."""
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt(text, SD15)
    assert says in str(caught.value)


def test_few_step_models_have_their_own_step_range() -> None:
    """A Turbo model takes 1–8 steps; 20 is refused with the allowed range."""
    assert parse_prompt("a cat --steps 1", TURBO).steps == 1
    with pytest.raises(InvalidPrompt, match="from 1 to 8 for this model"):
        parse_prompt("a cat --steps 20", TURBO)


def test_stylize_raises_guidance_monotonically() -> None:
    """More --stylize never means less guidance; 100 is the model default."""
    for profile in (SD15, SDXL, TURBO):
        values = [guidance_for(s, profile) for s in (0, 50, 100, 250, 500, 1000)]
        assert values == sorted(values)
        assert guidance_for(100, profile) == profile.default_guidance
    assert guidance_for(0, SD15) == 1.0 and guidance_for(1000, SD15) == 15.0
    assert guidance_for(100, TURBO) == 0.0 and guidance_for(1000, TURBO) == 2.0
    assert guidance_for(150, TURBO) > 1.0  # above the default a few-step model really gets guidance


def test_to_request_records_a_seed() -> None:
    """A prompt without --seed still yields a request with a concrete seed, so the image can be remade."""
    parsed = parse_prompt("a lighthouse --ar 3:2 --no text --chaos 10 --relax", SD15)
    request = parsed.to_request()
    assert 0 <= request.seed <= MAX_SEED
    assert request.kind is JobKind.IMAGINE and request.images == 4
    assert (request.width, request.height, request.negative_prompt) == (parsed.width, parsed.height, "text")
    assert (request.chaos, request.relax) == (10, True)
    assert parse_prompt("a lighthouse --seed 9", SD15).to_request().seed == 9
    assert parse_prompt("a lighthouse --seed 9", SD15).to_request(seed=3).seed == 3
    assert parsed.to_request(JobKind.VARY).kind is JobKind.VARY


def test_length_check_counts_a_lower_bound_of_tokens() -> None:
    """The length check counts words, digits and punctuation runs, each at least one CLIP token."""
    assert token_lower_bound("a castle, at dusk!!") == 6
    assert token_lower_bound("1990") == 4
    assert token_lower_bound("the cat's toy") == 4  # CLIP splits off "'s" as one piece
    assert prompt_token_limit(SD15) == 225
    assert parse_prompt("word " * 225, SD15).prompt.count("word") == 225
