"""The baselines: what a typical bot does with the same jobs, one plain diffusers call per job.

Each job is `pipe(prompt, num_images_per_prompt=4, ...)` with the job's own prompt, negative prompt,
steps, guidance, size and seeds, one job after another. Baseline 1 runs in float32, what the library's
defaults give for SD 1.5's float32 weights; baseline 2 passes `dtype=` (bfloat16 on the CPU, float16 on a
GPU), what a careful engineer would write. Image i of a job gets its own generator seeded `seed + i`,
exactly as Atelier seeds it, so the pictures are comparable pixel for pixel; that costs the pipeline
nothing.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from bot.bench.measure import JobFlops, PeakMemory, count_job_flops, pipeline_bytes
from bot.engine.prompt import MAX_SEED
from bot.engine.types import GenerationRequest

log = logging.getLogger(__name__)


@dataclass
class SideResult:
    """One side of the comparison: how long N jobs took (best round) and what they made."""

    name: str
    dtype: str
    seconds: float  #: wall time of the N jobs in the fastest round, after one untimed warm-up job
    images: list[Image.Image]  #: job 1's images first, in order
    memory: int  #: bytes the side added to the process: its weights plus its peak working memory
    load_seconds: float = 0.0
    rounds: list[float] = field(default_factory=list)  #: every round's wall time
    cpu_seconds: float = 0.0  #: CPU time of the whole process (all threads) in its cheapest round

    @property
    def images_per_s(self) -> float:
        return len(self.images) / self.seconds


def load_pipeline(model: str, device: str, dtype: torch.dtype | None) -> Any:
    """The pipeline as a plain diffusers user loads it: library defaults, or with `dtype=`."""
    from diffusers import AutoPipelineForText2Image

    kwargs = {"dtype": dtype} if dtype is not None else {}
    pipe = AutoPipelineForText2Image.from_pretrained(model, **kwargs)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, request: GenerationRequest, *, steps: int | None = None) -> list[Image.Image]:
    """One job the plain way: one pipeline call for its images."""
    generators = [
        torch.Generator().manual_seed((request.seed + i) % (MAX_SEED + 1)) for i in range(request.images)
    ]
    return pipe(
        request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_images_per_prompt=request.images,
        num_inference_steps=steps or request.steps,
        guidance_scale=request.guidance,
        width=request.width,
        height=request.height,
        generator=generators,
    ).images


class Baseline:
    """A plain pipeline loaded once (blocking calls; run them in a thread from async code)."""

    def __init__(self, name: str, model: str, device: str, dtype: torch.dtype) -> None:
        self.name = name
        self.device = device
        started = time.perf_counter()
        self.pipe = load_pipeline(model, device, dtype)
        self.load_seconds = time.perf_counter() - started
        self.weights = pipeline_bytes(self.pipe)
        self.dtype = str(self.pipe.unet.dtype).removeprefix("torch.")
        self.rounds: list[float] = []
        self.cpu_rounds: list[float] = []
        self.images: list[Image.Image] = []
        self.working = 0
        self.unet_calls = 0  #: UNet evaluations per job (PNDM, SD 1.5's scheduler, makes steps + 1)

    def warm_up(self, request: GenerationRequest) -> None:
        """One one-step job: one-time setup (kernels, allocator) is not what is timed."""
        with torch.inference_mode():
            generate(self.pipe, request, steps=1)

    def run_round(self, requests: list[GenerationRequest]) -> float:
        """The jobs one after another; returns the wall time."""
        with torch.inference_mode(), PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            images = [image for request in requests for image in generate(self.pipe, request)]
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        self.rounds.append(seconds)
        self.cpu_rounds.append(cpu)
        self.images = self.images or images
        self.working = max(self.working, memory.growth)
        self.unet_calls = int(self.pipe.num_timesteps)
        log.info("%s (%s): %d job(s) in %.1f s", self.name, self.dtype, len(requests), seconds)
        return seconds

    def count_flops(self, request: GenerationRequest) -> JobFlops:
        """Counted FLOPs of `request`'s parts, from a one-image, one-step run under the counter."""
        one = request.replace(images=1)
        return count_job_flops(functools.partial(generate, self.pipe, one, steps=1))

    def result(self) -> SideResult:
        return SideResult(
            self.name,
            self.dtype,
            min(self.rounds),
            self.images,
            self.weights + self.working,
            self.load_seconds,
            list(self.rounds),
            min(self.cpu_rounds),
        )

    def close(self) -> None:
        self.pipe = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
