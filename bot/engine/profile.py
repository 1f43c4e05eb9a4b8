"""What kind of model this is, learned from its configs. Torch-free: plain dicts in, a ModelProfile out.

The engine passes the loaded pipeline's component configs; tests pass the configs of real models
(SD 1.5, SD 2.1, SDXL, SD-Turbo, SDXL-Turbo, LCM), so the rules are checked against what ships on the hub,
not only against the tiny test pipelines.

Rules, in order:
- family: SDXL when the pipeline has a second text encoder or the UNet's added conditioning is
  `text_time`; SD 2.x when the UNet cross-attends to 1024-wide (OpenCLIP-H) text features; else SD 1.x.
- few-step (Turbo / LCM / Lightning class): the scheduler is LCMScheduler or TCDScheduler, the UNet has a
  guidance embedding (`time_cond_proj_dim`, LCM-distilled), or the name or recorded `_name_or_path` says
  turbo, lcm or lightning. Few-step models get 1–8 steps, default 4, guidance 0.
- native size: Turbo (adversarial distillation) models are trained at 512 px whatever their UNet config
  says; otherwise UNet `sample_size` × the VAE's scale factor (SD 1.5: 64×8 = 512, SD 2.1-v: 96×8 = 768,
  SDXL: 128×8 = 1024), falling back to 1024 (SDXL), 768 (SD 2 v-prediction) or 512.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.engine.types import Family, ModelProfile

FEW_STEP_SCHEDULERS = {"LCMScheduler", "TCDScheduler"}
_FEW_STEP_NAME = re.compile(r"turbo|lcm|lightning", re.IGNORECASE)
_TURBO_NAME = re.compile(r"turbo", re.IGNORECASE)
_OPENCLIP_H_WIDTH = 1024
_DEFAULT_GUIDANCE: dict[Family, float] = {"sd1": 7.5, "sd2": 7.5, "sdxl": 5.0}
_WINDOW = 77


def detect_profile(
    name: str,
    *,
    model_index: Mapping[str, Any],
    unet: Mapping[str, Any],
    vae: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    tokenizer_max_length: int | None = None,
) -> ModelProfile:
    """The profile of a pipeline from its model_index.json and its unet / vae / scheduler configs."""
    family = _family(model_index, unet)
    hints = " ".join(str(part) for part in (name, model_index.get("_name_or_path", "")))
    sampler = str(scheduler.get("_class_name") or "default")
    few_step = (
        sampler in FEW_STEP_SCHEDULERS
        or unet.get("time_cond_proj_dim") is not None
        or bool(_FEW_STEP_NAME.search(hints))
    )
    native = 512 if _TURBO_NAME.search(hints) else _native_size(family, unet, vae, scheduler)
    window = tokenizer_max_length if tokenizer_max_length and 8 <= tokenizer_max_length <= 1024 else _WINDOW
    if few_step:
        steps, low, high, guidance = 4, 1, 8, 0.0
    else:
        steps, low, high, guidance = 30, 10, 100, _DEFAULT_GUIDANCE[family]
    return ModelProfile(
        name=name,
        family=family,
        native_size=native,
        default_steps=steps,
        min_steps=low,
        max_steps=high,
        default_guidance=guidance,
        few_step=few_step,
        max_prompt_tokens=window,
        sampler=sampler,
    )


def vae_scale_factor(vae: Mapping[str, Any]) -> int:
    """How many pixels one latent cell covers per side: 2^(VAE blocks − 1), 8 for every SD VAE."""
    blocks = vae.get("block_out_channels") or [0, 0, 0, 0]
    return int(2 ** (len(blocks) - 1))


def _family(model_index: Mapping[str, Any], unet: Mapping[str, Any]) -> Family:
    second_encoder = model_index.get("text_encoder_2")
    has_second = isinstance(second_encoder, list | tuple) and any(part for part in second_encoder)
    if has_second or unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    if unet.get("cross_attention_dim") == _OPENCLIP_H_WIDTH:
        return "sd2"
    return "sd1"


def _native_size(
    family: Family, unet: Mapping[str, Any], vae: Mapping[str, Any], scheduler: Mapping[str, Any]
) -> int:
    sample_size = unet.get("sample_size")
    if isinstance(sample_size, int) and sample_size > 0:
        return sample_size * vae_scale_factor(vae)
    if family == "sdxl":
        return 1024
    if family == "sd2" and scheduler.get("prediction_type") == "v_prediction":
        return 768
    return 512
