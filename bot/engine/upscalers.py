"""The first half of an upscale: making the image bigger, before the engine's image-to-image pass.

`ENGINE__UPSCALER` chooses how:
- unset: Lanczos resampling (no model, always available);
- a model file (.pth, .pt, .safetensors, .ckpt): a Real-ESRGAN-class super-resolution network loaded with
  `spandrel`, which auto-detects the architecture. spandrel is optional and imported only here;
- anything else: a diffusers directory or hub id of `StableDiffusionUpscalePipeline` (the x4 upscaler) or
  `StableDiffusionLatentUpscalePipeline` (the x2 latent upscaler).

Each is applied as many times as needed to reach the target, then the result is resized to it exactly.
The upscaler is loaded by `Engine.load`, so a bad setting is reported at start-up, not on the first job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from bot.errors import SettingsError

MODEL_FILE_SUFFIXES = {".pth", ".pt", ".safetensors", ".ckpt"}
DIFFUSERS_UPSCALERS = {"StableDiffusionUpscalePipeline": 4, "StableDiffusionLatentUpscalePipeline": 2}
UPSCALER_STEPS = 20  #: denoising steps of a diffusers upscaler pass


class Upscaler(Protocol):
    name: str

    def __call__(self, image: Image.Image, size: tuple[int, int], *, prompt: str, seed: int) -> Image.Image:
        """`image` enlarged to exactly `size`."""
        ...


class ResampleUpscaler:
    """Lanczos resampling: sharp edges, no invented detail (the image-to-image pass adds that)."""

    name = "lanczos"

    def __call__(self, image: Image.Image, size: tuple[int, int], *, prompt: str, seed: int) -> Image.Image:
        return image.resize(size, Image.Resampling.LANCZOS)


class SpandrelUpscaler:
    """A super-resolution network file (ESRGAN, Real-ESRGAN, SwinIR, HAT...) run through spandrel."""

    def __init__(self, path: Path, device: str, dtype: torch.dtype) -> None:
        try:
            import spandrel
        except ImportError:
            raise SettingsError(
                f"ENGINE__UPSCALER={path} is a model file, which needs the optional `spandrel` package: "
                "pip install spandrel (or unset ENGINE__UPSCALER to resample instead)."
            ) from None
        if not path.is_file():
            raise SettingsError(f"ENGINE__UPSCALER={path}: no such file.")
        model = spandrel.ModelLoader().load_from_file(str(path))
        if not isinstance(model, spandrel.ImageModelDescriptor) or model.scale < 2:
            raise SettingsError(f"ENGINE__UPSCALER={path} is not a single-image super-resolution model.")
        supported = (dtype == torch.float16 and getattr(model, "supports_half", False)) or (
            dtype == torch.bfloat16 and getattr(model, "supports_bfloat16", False)
        )
        self.dtype = dtype if supported else torch.float32
        self.model = model.to(device).to(self.dtype).eval()
        self.device = device
        self.name = path.name

    def __call__(self, image: Image.Image, size: tuple[int, int], *, prompt: str, seed: int) -> Image.Image:
        while image.width < size[0] or image.height < size[1]:
            array = np.asarray(image, dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device, self.dtype)
            with torch.inference_mode():
                output = self.model(tensor).clamp(0, 1)
            pixels = (output[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
            image = Image.fromarray(pixels)
        return image.resize(size, Image.Resampling.LANCZOS)


class DiffusersUpscaler:
    """Stability's x4 upscaler or the x2 latent upscaler, prompted with the image's own prompt."""

    def __init__(self, pipe: Any, spec: str) -> None:
        self.pipe = pipe
        self.factor = DIFFUSERS_UPSCALERS[type(pipe).__name__]
        self.name = spec

    def __call__(self, image: Image.Image, size: tuple[int, int], *, prompt: str, seed: int) -> Image.Image:
        while image.width < size[0] or image.height < size[1]:
            generator = torch.Generator().manual_seed(seed)
            extra = {"guidance_scale": 0.0} if self.factor == 2 else {}
            image = self.pipe(
                prompt=prompt, image=image, num_inference_steps=UPSCALER_STEPS, generator=generator, **extra
            ).images[0]
        return image.resize(size, Image.Resampling.LANCZOS)


def load_upscaler(spec: str | None, device: str, dtype: torch.dtype) -> Upscaler:
    """The upscaler `ENGINE__UPSCALER` names (see the module docstring), or a `SettingsError` saying why."""
    if not spec:
        return ResampleUpscaler()
    path = Path(spec).expanduser()
    if path.suffix.lower() in MODEL_FILE_SUFFIXES:
        return SpandrelUpscaler(path, device, dtype)
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(spec, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"ENGINE__UPSCALER={spec!r} could not be loaded: {exc}") from None
    if type(pipe).__name__ not in DIFFUSERS_UPSCALERS:
        raise SettingsError(
            f"ENGINE__UPSCALER={spec!r} is a {type(pipe).__name__}; use one of "
            f"{', '.join(DIFFUSERS_UPSCALERS)} or a super-resolution model file."
        )
    pipe.to(device)
    pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return DiffusersUpscaler(pipe, spec)
