"""Progress previews straight from the latents, without the VAE.

A 4-channel SD latent is close enough to a linear function of colour that a fixed 4×3 matrix (plus a bias)
gives a recognisable, blurry thumbnail at latent resolution (1/8 of the image side). The factors are the
ones ComfyUI publishes in `comfy/latent_formats.py`, fitted per VAE: SD 1.x and 2.x share one VAE, SDXL has
its own. The cost is one tiny matrix product on the device and a few kilobytes copied to the host, which
is what makes a preview every couple of steps affordable (the engine times it; see `Engine.run`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image

_SD_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
_SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
#: (latent → RGB factors, RGB bias) per family; rows are latent channels, columns R, G, B.
LATENT_RGB: dict[str, tuple[list[list[float]], list[float]]] = {
    "sd1": (_SD_FACTORS, [0.0, 0.0, 0.0]),
    "sd2": (_SD_FACTORS, [0.0, 0.0, 0.0]),
    "sdxl": (_SDXL_FACTORS, [0.1084, -0.0175, -0.0011]),
}
#: Previews are subsampled so no side exceeds this (a 2048 px upscale still previews at ≤128 px).
MAX_PREVIEW_SIDE = 128


class LatentPreviewer:
    """Turns a batch of latents into one small RGB image per latent."""

    def __init__(self, family: str, device: torch.device | str) -> None:
        factors, bias = LATENT_RGB[family]
        self.weight = torch.tensor(factors, dtype=torch.float32, device=device)
        self.bias = torch.tensor(bias, dtype=torch.float32, device=device)

    def __call__(self, latents: torch.Tensor, scheduler: Any = None) -> list[Image.Image]:
        x = latents.to(torch.float32)
        sigma = _current_sigma(scheduler)
        if sigma:  # Euler-family latents carry noise of std σ on top of the image: bring them to unit scale
            x = x / math.sqrt(sigma * sigma + 1.0)
        stride = max(1, math.ceil(max(x.shape[-2:]) / MAX_PREVIEW_SIDE))
        x = x[..., ::stride, ::stride]
        rgb = torch.einsum("nchw,cr->nhwr", x, self.weight) + self.bias
        pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        return [Image.fromarray(array) for array in pixels]


def _current_sigma(scheduler: Any) -> float:
    """σ of the latents the scheduler just produced, for variance-exploding (Euler-family) schedulers only.

    Those start from noise scaled by `init_noise_sigma` > 1; DDIM, DPM-Solver and LCM keep unit variance.
    """
    if scheduler is None or float(getattr(scheduler, "init_noise_sigma", 1.0)) <= 1.0:
        return 0.0
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is None or index is None or index >= len(sigmas):
        return 0.0
    return float(sigmas[index])
