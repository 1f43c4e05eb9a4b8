"""Learning a model's family, native size and step range from the configs real models ship with."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engine.profile import detect_profile, vae_scale_factor

CLIP = ["transformers", "CLIPTextModel"]
CLIP_PROJECTION = ["transformers", "CLIPTextModelWithProjection"]
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.18215}
SDXL_VAE = {"block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.13025, "force_upcast": True}


def configs(
    *,
    sample_size: int | None,
    cross: int,
    scheduler: str,
    xl: bool = False,
    prediction: str = "epsilon",
    name_or_path: str = "",
    time_cond: int | None = None,
) -> dict[str, Any]:
    """The parts of model_index.json and the unet/vae/scheduler configs that the rules read."""
    model_index: dict[str, Any] = {"text_encoder": CLIP, "_name_or_path": name_or_path}
    unet: dict[str, Any] = {"cross_attention_dim": cross, "time_cond_proj_dim": time_cond}
    if sample_size is not None:
        unet["sample_size"] = sample_size
    if xl:
        model_index["text_encoder_2"] = CLIP_PROJECTION
        unet["addition_embed_type"] = "text_time"
    return {
        "model_index": model_index,
        "unet": unet,
        "vae": SDXL_VAE if xl else SD_VAE,
        "scheduler": {"_class_name": scheduler, "prediction_type": prediction},
    }


# name, configs, (family, native size, few-step, default steps, default guidance)
MODELS = [
    ("runwayml/stable-diffusion-v1-5", configs(sample_size=64, cross=768, scheduler="PNDMScheduler"),
     ("sd1", 512, False, 30, 7.5)),
    ("stabilityai/stable-diffusion-2-1", configs(sample_size=96, cross=1024, scheduler="DDIMScheduler",
     prediction="v_prediction"), ("sd2", 768, False, 30, 7.5)),
    ("stabilityai/stable-diffusion-2-1-base", configs(sample_size=64, cross=1024, scheduler="PNDMScheduler"),
     ("sd2", 512, False, 30, 7.5)),
    ("/models/sd21-v-old-config", configs(sample_size=None, cross=1024, scheduler="DDIMScheduler",
     prediction="v_prediction"), ("sd2", 768, False, 30, 7.5)),
    ("stabilityai/stable-diffusion-xl-base-1.0", configs(sample_size=128, cross=2048,
     scheduler="EulerDiscreteScheduler", xl=True), ("sdxl", 1024, False, 30, 5.0)),
    ("stabilityai/sd-turbo", configs(sample_size=96, cross=1024, scheduler="EulerDiscreteScheduler"),
     ("sd2", 512, True, 4, 0.0)),
    ("stabilityai/sdxl-turbo", configs(sample_size=128, cross=2048, xl=True,
     scheduler="EulerAncestralDiscreteScheduler"), ("sdxl", 512, True, 4, 0.0)),
    ("/srv/models/house-model", configs(sample_size=96, cross=1024, scheduler="EulerDiscreteScheduler",
     name_or_path="stabilityai/sd-turbo"), ("sd2", 512, True, 4, 0.0)),
    ("/srv/models/dreamshaper", configs(sample_size=96, cross=768, scheduler="LCMScheduler", time_cond=256),
     ("sd1", 768, True, 4, 0.0)),
    ("latent-consistency/lcm-sdxl", configs(sample_size=128, cross=2048, scheduler="LCMScheduler", xl=True),
     ("sdxl", 1024, True, 4, 0.0)),
    ("/srv/models/sdxl-with-lcm-unet", configs(sample_size=128, cross=2048, xl=True, time_cond=256,
     scheduler="EulerDiscreteScheduler"), ("sdxl", 1024, True, 4, 0.0)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "config", "expected"), MODELS, ids=[m[0] for m in MODELS])
def test_real_model_configs_give_the_right_profile(
    name: str, config: dict[str, Any], expected: tuple[str, int, bool, int, float]
) -> None:
    """SD 1.x, 2.x, SDXL and their Turbo/LCM versions are told apart from their configs (and names)."""
    profile = detect_profile(name, **config, tokenizer_max_length=77)
    family, native, few_step, steps, guidance = expected
    assert (profile.family, profile.native_size, profile.few_step) == (family, native, few_step)
    assert (profile.default_steps, profile.default_guidance) == (steps, guidance)
    assert profile.min_steps <= profile.default_steps <= profile.max_steps
    assert profile.sampler == config["scheduler"]["_class_name"]
    assert profile.name == name and profile.max_prompt_tokens == 77


def test_few_step_models_allow_one_to_eight_steps() -> None:
    """Turbo/LCM models accept 1–8 steps; standard ones 10–100."""
    turbo = detect_profile("stabilityai/sd-turbo", **MODELS[5][1])
    standard = detect_profile("runwayml/stable-diffusion-v1-5", **MODELS[0][1])
    assert (turbo.min_steps, turbo.max_steps) == (1, 8)
    assert (standard.min_steps, standard.max_steps) == (10, 100)


def test_an_absurd_tokenizer_length_falls_back_to_the_clip_window() -> None:
    """Some tokenizers record a huge sentinel model_max_length; the profile keeps CLIP's 77."""
    assert detect_profile("m", **MODELS[0][1], tokenizer_max_length=1_000_000_000).max_prompt_tokens == 77


def test_vae_scale_factor_counts_downsampling_blocks() -> None:
    """Four VAE blocks (every SD VAE) make one latent cell cover 8×8 pixels."""
    assert vae_scale_factor(SD_VAE) == 8
    assert vae_scale_factor({"block_out_channels": [32, 64]}) == 2
