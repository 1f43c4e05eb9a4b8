"""Tiny random-weight diffusers pipelines, built offline for tests.

The components follow diffusers' own `get_dummy_components()` (UNet with block_out_channels (32, 64), a
two-block AutoencoderKL, a five-layer 32-wide CLIP text encoder), but nothing comes from the hub: the CLIP
tokenizer's BPE vocabulary is trained at build time (`bot.bench.tokenizer`). Each builder writes a
normal diffusers directory with `save_pretrained`, so tests load it through the same `from_pretrained` path
a real model takes. Native size is 64 px (UNet sample_size 32 × VAE scale factor 2), so tests can use
64 px images.

Other helpers' tests import `build_tiny_sd(path)` and `build_tiny_sdxl(path)`; the session fixtures
`tiny_sd_path`, `tiny_sdxl_path` and `tiny_fewstep_path` in tests/conftest.py call them once per session.
`build_tiny_x4_upscaler(path)` makes a tiny diffusers x4 upscaler for the ENGINE__UPSCALER tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from bot.bench.tokenizer import WINDOW, build_clip_tokenizer


def _text_config(vocab_size: int, tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=vocab_size,
        max_position_embeddings=WINDOW,
        hidden_act="gelu",
        projection_dim=32,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def build_tiny_sd(path: Path, *, few_step: bool = False) -> Path:
    """An SD-1.x-shaped pipeline; `few_step=True` gives it an LCMScheduler (a Turbo/LCM-class marker)."""
    torch.manual_seed(0)
    path = Path(path)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    schedule = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    if few_step:
        scheduler = LCMScheduler(**schedule, timestep_spacing="trailing")
    else:
        scheduler = DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False)
    tokenizer = build_clip_tokenizer()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer), tokenizer))
    pipe = StableDiffusionPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_sdxl(path: Path) -> Path:
    """An SDXL-shaped pipeline: two text encoders, `text_time` added conditioning, Euler scheduler."""
    torch.manual_seed(0)
    path = Path(path)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids × 8 + 32 pooled text features
        cross_attention_dim=64,  # two 32-wide text encoders, concatenated
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    tokenizer = build_clip_tokenizer()
    config = _text_config(len(tokenizer), tokenizer)
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=_vae(),
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_x4_upscaler(path: Path) -> Path:
    """A `StableDiffusionUpscalePipeline` shaped like stabilityai/stable-diffusion-x4-upscaler (its VAE has
    three blocks, so it decodes 4× the input size), for testing `ENGINE__UPSCALER` with a diffusers dir."""
    torch.manual_seed(0)
    path = Path(path)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=7,  # 4 latent channels + the 3-channel low-resolution image
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        scaling_factor=0.08333,  # the x4 upscaler's own latent scale
    )
    tokenizer = build_clip_tokenizer()
    pipe = StableDiffusionUpscalePipeline(
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(len(tokenizer), tokenizer)),
        tokenizer=tokenizer,
        max_noise_level=350,
    )
    pipe.save_pretrained(path)
    return path
