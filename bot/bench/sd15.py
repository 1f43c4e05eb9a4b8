"""Stable Diffusion 1.5's architecture with random weights, built offline for the benchmark.

The configs below are the published ones of runwayml/stable-diffusion-v1-5 (unet/, vae/, text_encoder/,
scheduler/ config.json), so every layer has the real model's shape and the compute cost is the real
model's: the same FLOPs per step, the same memory traffic. Only the weights are random and the tokenizer's
vocabulary is small (`bot.bench.tokenizer`, trained in memory; the token-embedding table keeps the real
49,408 rows, so the text encoder's size and cost are the real ones). Nothing is downloaded.

`ensure_sd15(directory)` writes the pipeline once with `save_pretrained` (weights in bfloat16, 2 GB,
upcast exactly on a float32 load) and reuses it on later runs; everything loads it back through
`from_pretrained`, the path a real model takes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
#: openai/clip-vit-large-patch14's text tower, as SD 1.5's text_encoder/config.json has it.
TEXT_CONFIG: dict[str, Any] = {
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
#: Bump when the builder changes, so an old cached directory is rebuilt rather than trusted.
BUILD_VERSION = 1
_MARKER = "atelier-bench.json"


def ensure_sd15(directory: Path) -> Path:
    """The SD-1.5-architecture pipeline in `directory`, built there first if it is missing or stale."""
    directory = Path(directory)
    marker = directory / _MARKER
    wanted = {"architecture": "runwayml/stable-diffusion-v1-5", "build": BUILD_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return directory
    log.info("Building the SD-1.5 architecture with random weights in %s (once)", directory)
    build_sd15(directory)
    marker.write_text(json.dumps(wanted))
    return directory


def build_sd15(directory: Path) -> Path:
    """Write an SD-1.5-shaped `StableDiffusionPipeline` with random weights (seeded) to `directory`."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bot.bench.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer()
    text_config = CLIPTextConfig(
        **TEXT_CONFIG,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    pipe = StableDiffusionPipeline(
        unet=UNet2DConditionModel(**UNET_CONFIG),
        vae=AutoencoderKL(**VAE_CONFIG),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        scheduler=PNDMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.bfloat16)
    pipe.save_pretrained(directory)
    return directory
