"""The engine over tiny random-weight pipelines: sizes, seeds, batching, previews, cancelling, errors."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bot.engine.engine import Engine, Progress
from bot.engine.prompt import parse_prompt
from bot.engine.types import JobKind
from bot.errors import GenerationCancelled, InvalidRequest, OutOfMemory
from tests.bot.engine.helpers import make_request, max_difference, pixels

pytestmark = pytest.mark.slow


def test_tiny_models_are_recognised_from_their_configs(
    sd_engine: Engine, sdxl_engine: Engine, fewstep_engine: Engine
) -> None:
    """SD-1.x-, SDXL- and LCM-shaped pipelines load via the Auto pipelines with their families' defaults."""
    profile = sd_engine.profile
    assert (profile.family, profile.few_step, profile.native_size) == ("sd1", False, 64)
    assert (sdxl_engine.profile.family, sdxl_engine.profile.few_step) == ("sdxl", False)
    assert (fewstep_engine.profile.few_step, fewstep_engine.profile.default_guidance) == (True, 0.0)
    assert fewstep_engine.profile.default_steps <= 4 and fewstep_engine.profile.sampler == "LCMScheduler"
    assert sd_engine.img2img.unet is sd_engine.pipe.unet  # image-to-image shares the weights
    assert (sd_engine.device, sd_engine.dtype) == ("cpu", "float32")


@pytest.mark.parametrize("size", [(64, 64), (128, 64), (64, 128)])
def test_imagine_makes_four_images_and_a_grid_of_the_asked_size(
    sd_engine: Engine, size: tuple[int, int]
) -> None:
    """Four full-size images with seeds seed…seed+3, plus a 2×2 grid of them."""
    width, height = size
    result = sd_engine.run([make_request(sd_engine, seed=100, width=width, height=height)])[0]
    assert [image.size for image in result.images] == [size] * 4
    assert result.grid.size == (2 * width, 2 * height)
    assert [recipe.seed for recipe in result.recipes] == [100, 101, 102, 103]
    recipe = result.recipes[0]
    assert (recipe.width, recipe.height, recipe.steps) == (width, height, 2)
    assert recipe.model == sd_engine.profile.name
    assert (recipe.sampler, recipe.kind, recipe.strength) == ("DDIMScheduler", JobKind.IMAGINE, None)
    assert len({pixels(image).tobytes() for image in result.images}) == 4  # four different images


def test_aspect_flags_reach_the_pixels(fewstep_engine: Engine) -> None:
    """A parsed prompt with --ar becomes images of that bucket's size."""
    parsed = parse_prompt("a ship --ar 2:1 --seed 5 --steps 1", fewstep_engine.profile)
    request = parsed.to_request().replace(images=1, width=128, height=64)
    assert fewstep_engine.run([request])[0].images[0].size == (128, 64)


def test_seeds_wrap_at_two_to_the_32(fewstep_engine: Engine) -> None:
    """The last seed of the range is followed by 0, so every image keeps a valid seed."""
    result = fewstep_engine.run([make_request(fewstep_engine, seed=4294967294, steps=1)])[0]
    assert [recipe.seed for recipe in result.recipes] == [4294967294, 4294967295, 0, 1]


def test_same_request_same_pixels_different_seed_different_pixels(sdxl_engine: Engine) -> None:
    """Running a request twice gives identical images; another seed gives other images."""
    first = sdxl_engine.run([make_request(sdxl_engine, seed=7, images=2)])[0]
    again = sdxl_engine.run([make_request(sdxl_engine, seed=7, images=2)])[0]
    other = sdxl_engine.run([make_request(sdxl_engine, seed=8, images=2)])[0]
    assert max_difference(first.images, again.images) == 0
    assert max_difference(first.images[:1], other.images[:1]) > 0


@pytest.mark.parametrize("engine_name", ["sd_engine", "sdxl_engine"])
def test_a_batch_gives_each_request_exactly_its_solo_images(
    engine_name: str, request: pytest.FixtureRequest
) -> None:
    """Requests with different prompts, negatives, chaos and prompt lengths batch without changing a pixel."""
    engine: Engine = request.getfixturevalue(engine_name)
    long_prompt = "a very detailed castle on a hill at dusk with many towers " * 10  # two encoder windows
    requests = [
        make_request(engine, "a castle at dusk", seed=11, images=2),
        make_request(engine, long_prompt, seed=22, images=1, negative_prompt="fog, people"),
        make_request(engine, "a cat, watercolor", seed=33, images=2, chaos=60),
    ]
    batched = engine.run(requests)
    assert [len(result.images) for result in batched] == [2, 1, 2]
    for request_, result in zip(requests, batched, strict=True):
        alone = engine.run([request_])[0]
        assert max_difference(result.images, alone.images) == 0
        assert result.recipes == alone.recipes


def test_an_image_alone_equals_the_same_image_in_its_grid(sd_engine: Engine) -> None:
    """Image 3 of a grid, re-made on its own from its seed, is pixel-identical."""
    grid = sd_engine.run([make_request(sd_engine, seed=40)])[0]
    alone = sd_engine.run([make_request(sd_engine, seed=42, images=1)])[0]
    assert max_difference(grid.images[2:3], alone.images) == 0


def test_batches_must_share_a_batch_key(sd_engine: Engine) -> None:
    """Requests of different sizes cannot share one pass."""
    with pytest.raises(InvalidRequest, match="request 2 differs from request 1 in width"):
        sd_engine.run([make_request(sd_engine), make_request(sd_engine, width=128)])


def test_chaos_changes_the_images_reproducibly(fewstep_engine: Engine) -> None:
    """--chaos moves the images away from the chaos-free ones, the same way every time."""
    plain = fewstep_engine.run([make_request(fewstep_engine, seed=3, images=2)])[0]
    wild = fewstep_engine.run([make_request(fewstep_engine, seed=3, images=2, chaos=100)])[0]
    again = fewstep_engine.run([make_request(fewstep_engine, seed=3, images=2, chaos=100)])[0]
    assert max_difference(plain.images, wild.images) > 0
    assert max_difference(wild.images, again.images) == 0
    assert wild.recipes[0].chaos == 100


def test_long_prompts_are_encoded_whole(sd_engine: Engine) -> None:
    """A prompt over 75 tokens is read in several encoder windows; its end still changes the image."""
    base = "a castle " * 50  # 100 tokens: two windows
    assert len(sd_engine.pipe.tokenizer(base, add_special_tokens=False).input_ids) == 100
    encoded = sd_engine._encoder.encode(base, "", guidance=True)
    assert encoded.positive.shape[1] == 2 * 77 and encoded.negative.shape == encoded.positive.shape
    first = sd_engine.run([make_request(sd_engine, base + "in red", images=1)])[0]
    second = sd_engine.run([make_request(sd_engine, base + "in blue", images=1)])[0]
    assert max_difference(first.images, second.images) > 0
    assert first.warnings == []


def test_tokens_beyond_the_last_window_are_reported(fewstep_engine: Engine) -> None:
    """Past three windows (225 tokens) the rest is dropped, and the result says how much and what."""
    request = make_request(fewstep_engine, "a cat " * 120 + "zebra", images=1, steps=1)
    result = fewstep_engine.run([request])[0]
    assert len(result.warnings) == 1
    assert "the model reads 225, so the last" in result.warnings[0] and "zebra" in result.warnings[0]


def test_a_negative_prompt_without_guidance_is_flagged(fewstep_engine: Engine) -> None:
    """At guidance 0 (a Turbo model's default) --no cannot act, and the result says so rather than hide it."""
    result = fewstep_engine.run([make_request(fewstep_engine, negative_prompt="fog", steps=1)])[0]
    assert len(result.warnings) == 1 and "(--no) had no effect" in result.warnings[0]
    guided = make_request(fewstep_engine, negative_prompt="fog", steps=1, guidance=1.5)
    assert fewstep_engine.run([guided])[0].warnings == []


def test_one_window_encoding_matches_diffusers(sd_engine: Engine, sdxl_engine: Engine) -> None:
    """For a normal prompt the embeddings are exactly the ones the diffusers pipeline computes itself."""
    ours = sd_engine._encoder.encode("a castle at dusk", "fog", guidance=True)
    theirs = sd_engine.pipe.encode_prompt("a castle at dusk", "cpu", 1, True, negative_prompt="fog")
    assert torch.equal(ours.positive, theirs[0]) and torch.equal(ours.negative, theirs[1])
    ours_xl = sdxl_engine._encoder.encode("a castle at dusk", "", guidance=True)
    theirs_xl = sdxl_engine.pipe.encode_prompt(
        "a castle at dusk", device="cpu", do_classifier_free_guidance=True
    )
    for mine, reference in zip(
        (ours_xl.positive, ours_xl.negative, ours_xl.pooled, ours_xl.negative_pooled), theirs_xl, strict=True
    ):
        assert torch.equal(mine, reference)


def test_progress_reports_every_step_with_previews(sd_engine: Engine) -> None:
    """Every step is reported; preview steps carry one small image per request (a 2×2 grid for four)."""
    updates: list[Progress] = []
    requests = [make_request(sd_engine, seed=1, steps=3), make_request(sd_engine, seed=9, steps=3, images=1)]
    sd_engine.run(requests, on_progress=updates.append)
    assert [(update.step, update.total) for update in updates] == [(1, 3), (2, 3), (3, 3)]
    with_previews = [update for update in updates if update.previews is not None]
    assert [update.step for update in with_previews] == [1, 2]  # preview_every=1; the last step is the image
    latent_side = 64 // sd_engine.pipe.vae_scale_factor
    for update in with_previews:
        assert [preview.size for preview in update.previews] == [(2 * latent_side,) * 2, (latent_side,) * 2]
        assert all(preview.mode == "RGB" for preview in update.previews)


def test_previews_follow_preview_every(sdxl_engine: Engine) -> None:
    """With the default preview_every=2, previews come on even steps only."""
    updates: list[Progress] = []
    sdxl_engine.run([make_request(sdxl_engine, steps=5, images=1)], on_progress=updates.append)
    assert [update.step for update in updates if update.previews] == [2, 4]


def test_cancel_stops_between_steps(sd_engine: Engine) -> None:
    """When should_stop turns true the run stops after the current step and reports GenerationCancelled."""
    updates: list[Progress] = []
    with pytest.raises(GenerationCancelled):
        sd_engine.run(
            [make_request(sd_engine, steps=6)], on_progress=updates.append, should_stop=lambda: bool(updates)
        )
    assert [update.step for update in updates] == [1]


def test_cancel_before_start(sd_engine: Engine) -> None:
    """A job cancelled while waiting never starts denoising."""
    updates: list[Progress] = []
    with pytest.raises(GenerationCancelled):
        sd_engine.run([make_request(sd_engine)], on_progress=updates.append, should_stop=lambda: True)
    assert updates == []


def test_out_of_memory_is_reported_and_the_engine_survives(
    fewstep_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CUDA out-of-memory becomes OutOfMemory with advice; the next job runs normally."""

    def exhausted(latents: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    request = make_request(fewstep_engine, steps=1, images=1)
    monkeypatch.setattr(fewstep_engine, "_decode", exhausted)
    with pytest.raises(OutOfMemory, match="ran out of memory making 1 image"):
        fewstep_engine.run([request])
    monkeypatch.undo()
    assert len(fewstep_engine.run([request])[0].images) == 1


def test_images_withheld_by_the_models_safety_checker_are_reported(
    fewstep_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a model ships a safety checker (SD 1.5 does) and it flags image 2, that image is black and the
    result says so; the others are untouched."""
    calls = iter([False, True, False, False])

    def checker(pixels: torch.Tensor, device: Any, dtype: Any) -> tuple[torch.Tensor, list[bool]]:
        flagged = next(calls)
        return (torch.zeros_like(pixels) if flagged else pixels), [flagged]

    request = make_request(fewstep_engine, steps=1)
    plain = fewstep_engine.run([request])[0]
    monkeypatch.setattr(fewstep_engine.pipe, "safety_checker", SimpleNamespace(dtype=torch.float32))
    monkeypatch.setattr(fewstep_engine.pipe, "run_safety_checker", checker)
    checked = fewstep_engine.run([request])[0]
    assert checked.warnings == ["Image 2 was blacked out by the model's safety checker."]
    assert pixels(checked.images[1]).max() == 0
    assert max_difference(checked.images[::2], plain.images[::2]) == 0


async def test_arun_keeps_the_event_loop_free(fewstep_engine: Engine) -> None:
    """While a job runs in its thread, the event loop keeps serving other coroutines."""
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(heartbeat())
    results = await fewstep_engine.arun([make_request(fewstep_engine, steps=2)])
    done.set()
    await beat
    assert len(results[0].images) == 4 and ticks > 1


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"kind": JobKind.SELECT}, "select jobs need no generation"),
        ({"model": "someone/else"}, "is for the model someone/else, but this engine runs"),
        ({"width": 100}, "multiples of 8 from 64 to 256 px (asked: 100×64)"),
        ({"height": 512}, "multiples of 8 from 64 to 256 px"),
        ({"steps": 0}, "Steps must be from 1 to 200"),
        ({"guidance": -1.0}, "Guidance must be from 0 to 50"),
        ({"seed": 2**32}, "Seeds run from 0 to 4294967295"),
        ({"chaos": 101}, "Chaos runs from 0 to 100"),
        ({"images": 17}, "A batch holds 1 to 16 images (asked: 17)"),
        ({"kind": JobKind.VARY, "init_image": "x.png"}, "vary needs a strength above 0 and at most 1"),
        ({"kind": JobKind.VARY, "strength": 0.35}, "vary needs a source image"),
        (
            {
                "kind": JobKind.UPSCALE,
                "strength": 0.2,
                "init_image": "x.png",
                "scale": 3,
                "upscale_mode": "subtle",
            },
            "Upscales are 2× or 4× (asked: 3×)",
        ),
        (
            {
                "kind": JobKind.UPSCALE,
                "strength": 0.2,
                "init_image": "x.png",
                "scale": 2,
                "upscale_mode": "wild",
            },
            "Upscale mode is subtle or creative",
        ),
        (
            {"kind": JobKind.UPSCALE, "strength": 0.2, "init_image": "x.png", "scale": 4, "width": 512},
            "from 64 to 256 px",
        ),
    ],
)
def test_bad_requests_are_refused_before_any_work(
    sd_engine: Engine, changes: dict[str, Any], says: str
) -> None:
    """Each impossible request gets an InvalidRequest naming the limit, before anything is computed."""
    with pytest.raises(InvalidRequest) as caught:
        sd_engine.run([make_request(sd_engine, **changes)])
    assert says in str(caught.value)
