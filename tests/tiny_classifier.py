"""A tiny random-weight image classifier (ViT) for the image-check tests, saved like a real model.

Its labels are `normal` and `nsfw`. The body's weights are random; the head's weights are zeroed and its
bias set, so the `nsfw` score is a known constant whatever the picture: `build_tiny_classifier(path,
nsfw_score=0.9)` flags every image at the default threshold 0.5, `nsfw_score=0.1` flags none. That makes
both paths of the image check testable without a real NSFW model (none can be downloaded here).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor


def build_tiny_classifier(path: Path, *, nsfw_score: float) -> Path:
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=2,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        # softmax([0, b]) gives nsfw = 1 / (1 + e^-b)
        model.classifier.bias.copy_(torch.tensor([0.0, math.log(nsfw_score / (1 - nsfw_score))]))
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def build_tiny_sd_safety_checker(path: Path, *, flags: bool) -> Path:
    """A tiny `StableDiffusionSafetyChecker` (the kind SD 1.x ships) whose concept thresholds are set so
    that it flags every image (`flags=True`) or none: cosine similarities lie in [-1, 1], so a threshold
    of -2 is always exceeded and one of 2 never is."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2,
                     "num_hidden_layers": 2, "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2,
                       "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0 if flags else 2.0)
        checker.special_care_embeds_weights.fill_(2.0)
    checker.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path
