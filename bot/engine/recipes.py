"""Requests that start from an existing image: replay, vary, upscale. Torch-free.

A grid's buttons (V1–V4, U1–U4) and a re-run from a downloaded PNG all start from one image's `Recipe`
(from `GenerationResult.recipes` or `bot.engine.png.read_recipe`) and the path of that image.
"""

from __future__ import annotations

from typing import Literal

from bot.engine.prompt import ParsedPrompt, random_seed
from bot.engine.types import GenerationRequest, JobKind, Recipe

VaryMode = Literal["subtle", "strong"]
UpscaleMode = Literal["subtle", "creative"]

#: img2img strength of a variation: how far it may move away from its source.
VARY_STRENGTH: dict[str, float] = {"subtle": 0.35, "strong": 0.7}
#: img2img strength of the pass after resampling: subtle keeps detail, creative invents new detail.
UPSCALE_STRENGTH: dict[str, float] = {"subtle": 0.2, "creative": 0.45}
UPSCALE_FACTORS = (2, 4)


def replay_request(recipe: Recipe) -> GenerationRequest:
    """The one-image request that makes `recipe`'s image again (same device and dtype: same pixels).

    Vary and upscale recipes need their parent image still at `recipe.parent`.
    """
    return GenerationRequest(
        kind=recipe.kind,
        prompt=recipe.prompt,
        negative_prompt=recipe.negative_prompt,
        width=recipe.width,
        height=recipe.height,
        steps=recipe.steps,
        guidance=recipe.guidance,
        seed=recipe.seed,
        images=1,
        chaos=recipe.chaos,
        strength=recipe.strength,
        init_image=recipe.parent,
        scale=recipe.scale,
        upscale_mode=recipe.upscale_mode,  # type: ignore[arg-type]
        model=recipe.model,
    )


def vary_request(
    source: Recipe,
    image_path: str,
    *,
    mode: VaryMode = "subtle",
    prompt: ParsedPrompt | None = None,
    seed: int | None = None,
) -> GenerationRequest:
    """Four variations of the image at `image_path`, with its prompt or a new one (`prompt`)."""
    if mode not in VARY_STRENGTH:
        raise ValueError(f"vary mode must be one of {sorted(VARY_STRENGTH)}, not {mode!r}")
    text, negative = source.prompt, source.negative_prompt
    steps, guidance, chaos = source.steps, source.guidance, source.chaos
    if prompt is not None:
        text, negative = prompt.prompt, prompt.negative_prompt
        steps, guidance, chaos = prompt.steps, prompt.guidance, prompt.chaos
        seed = prompt.seed if seed is None else seed
    return GenerationRequest(
        kind=JobKind.VARY,
        prompt=text,
        negative_prompt=negative,
        width=source.width,
        height=source.height,
        steps=steps,
        guidance=guidance,
        seed=random_seed() if seed is None else seed,
        images=4,
        chaos=chaos,
        strength=VARY_STRENGTH[mode],
        init_image=image_path,
        model=source.model,
    )


def upscale_request(
    source: Recipe,
    image_path: str,
    *,
    scale: int = 2,
    mode: UpscaleMode = "subtle",
    seed: int | None = None,
) -> GenerationRequest:
    """One image `scale` times larger than the image at `image_path` (the engine caps the size)."""
    if scale not in UPSCALE_FACTORS:
        raise ValueError(f"upscale factor must be one of {UPSCALE_FACTORS}, not {scale!r}")
    if mode not in UPSCALE_STRENGTH:
        raise ValueError(f"upscale mode must be one of {sorted(UPSCALE_STRENGTH)}, not {mode!r}")
    return GenerationRequest(
        kind=JobKind.UPSCALE,
        prompt=source.prompt,
        negative_prompt=source.negative_prompt,
        width=source.width * scale,
        height=source.height * scale,
        steps=source.steps,
        guidance=source.guidance,
        seed=source.seed if seed is None else seed,
        images=1,
        strength=UPSCALE_STRENGTH[mode],
        init_image=image_path,
        scale=scale,
        upscale_mode=mode,
        model=source.model,
    )
