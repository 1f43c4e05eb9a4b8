"""Speed levers applied once at load time, each behind an `EngineSettings` switch (see README, Performance).

- `channels_last` (default on, CPU and CUDA): convolution weights and activations in NHWC order, which
  oneDNN (CPU) and cuDNN (tensor cores) run without reordering. Measured with scripts/bench_levers.py on
  a 2-core AVX-512/AMX CPU in bfloat16 at 256 px: an SD-1.5 UNet call 1.15× faster, a one-image VAE
  decode 2.5× faster.
  Pictures stay within bfloat16 rounding of the default layout; batch = solo still holds bit for bit.
- `prepack_weights` (default on, CPUs only): the UNet's convolution and linear weights laid out for oneDNN
  once at load (`bot.engine.prepack`): 1.07–1.28× faster UNet calls in bf16 here, no compiling. Skipped
  when `compile` is on, whose weight freezing packs them itself.
- `compile` (opt-in): `torch.compile` of the UNet's forward with inductor's weight freezing (weights become
  constants, so convolutions are pre-packed and fused). Compiling takes minutes per UNet input shape (image
  size, and prompt windows), on the first job that needs it; kernels are cached in `compile_cache_dir`,
  which makes later starts quicker (there: 100–115 s cold, 24 s warm, then UNet calls 1.1× faster).
  Worth it for a long-running bot with few sizes, not for a one-off run.
  The compiled forward is installed on the instance, so `bot.engine.batching` wraps it like the eager one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from bot.engine.prepack import can_prepack, prepack_weights
from bot.settings import EngineSettings

log = logging.getLogger(__name__)


def apply_speedups(pipe: Any, settings: EngineSettings, device: str) -> None:
    """Apply the levers `settings` turns on to a loaded text-to-image pipeline, in place."""
    if settings.channels_last and (device == "cpu" or device.startswith("cuda")):
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if settings.compile:
        compile_unet(pipe.unet, settings)
    elif settings.prepack_weights and can_prepack(pipe.unet.dtype, device):
        prepack_weights(pipe.unet)


def compile_unet(unet: torch.nn.Module, settings: EngineSettings) -> None:
    """Replace `unet.forward` by its compiled version (compiled lazily, on the first call per shape)."""
    if settings.compile_cache_dir is not None:
        # Inductor reads its cache location from the environment, for the whole process.
        settings.compile_cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(settings.compile_cache_dir.resolve())
    unet.forward = torch.compile(  # type: ignore[method-assign]
        unet.forward, dynamic=False, options={"freezing": True}
    )
    log.info("The UNet will be compiled on its first step at each size (minutes; cached afterwards)")
