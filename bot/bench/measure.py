"""What the benchmark measures besides wall time: counted FLOPs, the machine's matmul rate, memory, pixels.

- FLOPs come from PyTorch's own counter (`torch.utils.flop_counter.FlopCounterMode`) on one real
  one-image, one-step pipeline call at the benchmark's shape, split into UNet, VAE and text encoder.
  On the CPU, scaled-dot-product attention runs as `_scaled_dot_product_flash_attention_for_cpu`, which
  the counter has no formula for, so it gets the counter's own SDPA formula (else attention is free).
- The peak is measured, not looked up: the best of a few 4096² matmuls in the dtype the models run in,
  in this process, at the start and the end of the run (the best of both counts: other work on a shared
  machine slows the matmul too, and a low peak would flatter the fractions).
- Memory is what a side needs: its weights (the bytes of its models' parameters and buffers) plus the
  peak growth while its jobs run (working memory), sampled from the process RSS every 20 ms on the CPU,
  from CUDA's allocator on a GPU. (RSS growth during loading is no measure of weights: freed pages of
  an earlier load are reused.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bot.engine.prepack import packed_weights


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


_cpu_sdpa_flops._get_raw = True  # type: ignore[attr-defined]  # takes tensors, as the counter's own do
_CUSTOM_FLOPS: dict[Any, Any] = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops


@dataclass(frozen=True)
class JobFlops:
    """Counted FLOPs of one job's parts."""

    unet_per_image_step: int  #: one denoising step of one image (both guidance halves)
    vae_per_image: int  #: decoding one image
    text_per_job: int  #: encoding the prompt (and the negative prompt under guidance)

    def job(self, images: int, steps: int) -> int:
        return self.unet_per_image_step * images * steps + self.vae_per_image * images + self.text_per_job


def count_job_flops(run_one_step_one_image: Callable[[], Any]) -> JobFlops:
    """FLOPs per model of a one-image, one-step pipeline call, split by the top-level module that ran.

    Text encoders are the modules named *Text*, the UNet the one named *UNet*; everything else (the VAE's
    decoder and its post-quant convolution) counts as decoding.
    """
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        run_one_step_one_image()
    totals = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    top = {name: flops for name, flops in totals.items() if "." not in name and name != "Global"}
    unet = sum(flops for name, flops in top.items() if "UNet" in name)
    text = sum(flops for name, flops in top.items() if "Text" in name)
    return JobFlops(unet, int(counter.get_total_flops()) - unet - text, text)


def matmul_rate(dtype: torch.dtype, device: str, *, size: int = 4096, repeats: int = 5) -> float:
    """Dense matmul FLOP/s: the best of `repeats` size² × size² products after one warm-up."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            _synchronize(device)
            started = time.perf_counter()
            a @ b
            _synchronize(device)
            if attempt:  # the first product pays for one-time setup
                best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory while the block runs: process RSS sampled on the CPU, the allocator's peak on CUDA.

    `growth` is the peak minus what was in use when the block began: the block's own working memory.
    """

    def __init__(self, device: str, interval_s: float = 0.02) -> None:
        self.device = device
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = memory_in_use(self.device)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, _rss())


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of every parameter, buffer and packed weight of a pipeline's models: its weights in memory."""
    modules = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers(), *packed_weights(m))]
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_in_use(device: str) -> int:
    """Bytes in use now: CUDA's allocated memory, or this process's RSS."""
    if device.startswith("cuda"):
        return int(torch.cuda.memory_allocated(device))
    return _rss()


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def max_pixel_difference(ours: list[Image.Image], theirs: list[Image.Image]) -> int:
    """The largest absolute difference of any channel of any pixel (0–255) between paired images."""
    if len(ours) != len(theirs):
        raise ValueError(f"cannot compare {len(ours)} images with {len(theirs)}")
    worst = 0
    for a, b in zip(ours, theirs, strict=True):
        pa = np.asarray(a.convert("RGB"), dtype=np.int16)
        pb = np.asarray(b.convert("RGB"), dtype=np.int16)
        if pa.shape != pb.shape:
            raise ValueError(f"image sizes differ: {a.size} vs {b.size}")
        worst = max(worst, int(np.abs(pa - pb).max()))
    return worst
