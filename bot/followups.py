"""Requests that start from an earlier result or an upload: V1–V4, 🔄, Vary, Upscale, /vary, /upscale.

Torch-free and Discord-free, so the buttons, the reactions and the slash commands build exactly the
same request for the same action. Each new request gets a fresh random seed (recorded in the job), keeps
the parent's prompt and model settings, and says which image it starts from; the queue fills in the
image path from the parent job.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from bot.engine.types import GenerationRequest, JobKind, ModelProfile, round_to_multiple
from bot.errors import InvalidRequest
from bot.settings import EngineSettings

#: img2img strength of a variation: subtle keeps the composition, strong keeps only its broad strokes.
VARY_STRENGTH = {"subtle": 0.35, "strong": 0.7}
#: img2img strength of the pass after resampling: subtle keeps detail, creative invents new detail.
UPSCALE_STRENGTH = {"subtle": 0.3, "creative": 0.55}
SEED_LIMIT = 2**32 - 4  #: so that seed + 3 still fits the 32-bit range


def new_seed() -> int:
    return secrets.randbelow(SEED_LIMIT)


def reroll(parent: Any) -> GenerationRequest:
    """🔄: the same request again with new seeds (a new grid, whatever the parent was)."""
    request: GenerationRequest = parent.request
    return request.replace(seed=new_seed(), model="")


def variation(
    parent: Any, index: int, strength: Literal["subtle", "strong"], prompt: str | None = None
) -> GenerationRequest:
    """V1–V4 / Vary (Subtle|Strong): four new images from image `index` of `parent`."""
    _check_index(parent, index)
    source: GenerationRequest = parent.request
    return GenerationRequest(
        kind=JobKind.VARY,
        prompt=prompt if prompt is not None else source.prompt,
        negative_prompt=source.negative_prompt,
        width=source.width // max(1, source.scale) if source.kind is JobKind.UPSCALE else source.width,
        height=source.height // max(1, source.scale) if source.kind is JobKind.UPSCALE else source.height,
        steps=source.steps,
        guidance=source.guidance,
        seed=new_seed(),
        chaos=source.chaos,
        images=4,
        strength=VARY_STRENGTH[strength],
        relax=source.relax,
    )


def upscale(
    parent: Any, index: int, mode: Literal["subtle", "creative"], scale: int = 2
) -> GenerationRequest:
    """Upscale (Subtle|Creative): image `index` of `parent`, `scale` times larger."""
    _check_index(parent, index)
    source: GenerationRequest = parent.request
    return GenerationRequest(
        kind=JobKind.UPSCALE,
        prompt=source.prompt,
        negative_prompt=source.negative_prompt,
        width=source.width * scale,
        height=source.height * scale,
        steps=source.steps,
        guidance=source.guidance,
        seed=new_seed(),
        images=1,
        strength=UPSCALE_STRENGTH[mode],
        scale=scale,
        upscale_mode=mode,
        relax=source.relax,
    )


def vary_upload(
    path: str,
    width: int,
    height: int,
    profile: ModelProfile,
    strength: Literal["subtle", "strong"],
    parsed: Any | None = None,
) -> GenerationRequest:
    """/vary: four variations of an uploaded image, at the model's native size in the image's aspect."""
    out_w, out_h = native_size_like(width, height, profile)
    base = parsed.to_request(kind=JobKind.VARY) if parsed is not None else None
    return GenerationRequest(
        kind=JobKind.VARY,
        prompt=base.prompt if base else "",
        negative_prompt=base.negative_prompt if base else "",
        width=out_w,
        height=out_h,
        steps=base.steps if base else profile.default_steps,
        guidance=base.guidance if base else profile.default_guidance,
        seed=base.seed if base else new_seed(),
        chaos=base.chaos if base else 0,
        images=4,
        strength=VARY_STRENGTH[strength],
        init_image=path,
        relax=base.relax if base else False,
    )


def upscale_upload(
    path: str,
    width: int,
    height: int,
    profile: ModelProfile,
    scale: int,
    mode: Literal["subtle", "creative"],
    engine: EngineSettings,
    prompt: str = "",
) -> GenerationRequest:
    """/upscale: an uploaded image `scale` times larger (refused past `max_output_side`)."""
    out_w, out_h = width * scale, height * scale
    if max(out_w, out_h) > engine.max_output_side:
        raise InvalidRequest(
            f"A {scale}× upscale of a {width}×{height} image would be {out_w}×{out_h}; "
            "the largest side allowed "
            f"is {engine.max_output_side}. Try scale 2 or a smaller image."
        )
    return GenerationRequest(
        kind=JobKind.UPSCALE,
        prompt=prompt,
        width=out_w,
        height=out_h,
        steps=profile.default_steps,
        guidance=profile.default_guidance,
        seed=new_seed(),
        images=1,
        strength=UPSCALE_STRENGTH[mode],
        init_image=path,
        scale=scale,
        upscale_mode=mode,
    )


def native_size_like(width: int, height: int, profile: ModelProfile) -> tuple[int, int]:
    """The size with the model's native pixel count and the image's aspect (clamped to 1:4…4:1)."""
    ratio = min(4.0, max(0.25, width / height))
    area = profile.native_size**2
    out_w = round_to_multiple((area * ratio) ** 0.5)
    out_h = round_to_multiple((area / ratio) ** 0.5)
    return out_w, out_h


def _check_index(parent: Any, index: int) -> None:
    if not 1 <= index <= len(parent.result_paths):
        raise InvalidRequest(
            f"Job {parent.id} has {len(parent.result_paths)} image(s); there is no image {index}."
        )
