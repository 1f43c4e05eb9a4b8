"""A torch-free stand-in for the engine and its worker: deterministic, instant, and scriptable to fail.

Used by the queue's tests and `scripts/bench_queue.py`, and handy for trying the Discord layer without
a model. Images are small solid squares whose colour depends only on (prompt, seed), so a job's output
is the same whether it ran alone or in a batch, as with the real engine.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from bot.engine.types import GenerationRequest, GenerationResult, ModelProfile, Recipe
from bot.errors import GenerationCancelled, OutOfMemory
from bot.queue.worker import BatchProgress, ProgressCallback, StopCheck

FAKE_PROFILE = ModelProfile(
    name="fake/model",
    family="sd1",
    native_size=512,
    default_steps=4,
    min_steps=1,
    max_steps=50,
    default_guidance=0.0,
    few_step=True,
)


@dataclass(frozen=True)
class FakeProgress:
    """Shaped like the engine's `Progress`."""

    step: int
    total: int
    previews: list[Image.Image] | None = None


class FakeEngine:
    """Shaped like `bot.engine.engine.Engine`: a blocking `run` that makes one tiny image per seed."""

    def __init__(
        self, profile: ModelProfile = FAKE_PROFILE, *, device: str = "cpu", image_size: int = 8
    ) -> None:
        self.profile = profile
        self.device = device
        self.dtype = "float32"
        self.image_size = image_size

    def run(
        self,
        requests: list[GenerationRequest],
        *,
        on_progress: Callable[[FakeProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        if len({r.batch_key() for r in requests}) > 1:
            raise ValueError("all requests of a batch must share batch_key()")
        total = requests[0].steps
        for step in range(1, total + 1):
            if should_stop is not None and should_stop():
                raise GenerationCancelled()
            if on_progress is not None:
                on_progress(FakeProgress(step, total))
        return [self.result(r) for r in requests]

    def result(self, request: GenerationRequest) -> GenerationResult:
        seeds = [request.seed + i for i in range(request.images)]
        images = [self.image(request.prompt, seed) for seed in seeds]
        recipes = [
            Recipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                seed=seed,
                steps=request.steps,
                guidance=request.guidance,
                width=request.width,
                height=request.height,
                sampler=self.profile.sampler,
                model=self.profile.name,
                kind=request.kind,
                chaos=request.chaos,
                strength=request.strength,
                parent=request.init_image,
            )
            for seed in seeds
        ]
        return GenerationResult(request=request, images=images, recipes=recipes, grid=_grid(images))

    def image(self, prompt: str, seed: int) -> Image.Image:
        digest = hashlib.blake2b(f"{prompt}\0{seed}".encode(), digest_size=3).digest()
        return Image.new("RGB", (self.image_size, self.image_size), tuple(digest))


def _grid(images: list[Image.Image]) -> Image.Image | None:
    if len(images) != 4:
        return None
    side = images[0].width
    grid = Image.new("RGB", (2 * side, 2 * side))
    for n, image in enumerate(images):
        grid.paste(image, ((n % 2) * side, (n // 2) * side))
    return grid


class FakeWorker:
    """An in-loop worker over a `FakeEngine`, with switches that make its next batches misbehave.

    - `oom_above_images`: raise `OutOfMemory` for any batch with more images than this.
    - `crash_next` / `hang_next`: the next N batches raise a non-domain error / never return (ignoring
      `should_stop`, like a kernel that never comes back).
    - `gate`: when set to an unset `asyncio.Event`, every batch pauses after its first step until the
      event is set (tests use it to act while a job is running); `should_stop` is honoured after it.
    - `step_delay`: seconds per step (benchmarks use it to pace the fake GPU).
    """

    def __init__(
        self,
        name: str = "fake-0",
        *,
        engine: FakeEngine | None = None,
        device: str = "cpu",
        step_delay: float = 0.0,
    ) -> None:
        self.engine = engine or FakeEngine(device=device)
        self.name = name
        self.profile = self.engine.profile
        self.model = self.profile.name
        self.device = device
        self.step_delay = step_delay
        self.oom_above_images: int | None = None
        self.crash_next = 0
        self.hang_next = 0
        self.gate: asyncio.Event | None = None
        self.batches: list[list[GenerationRequest]] = []  #: every batch it was asked to run
        self.started = asyncio.Event()  #: set when a batch begins (tests clear it to wait for the next)
        self.restarts = 0
        self.closed = False

    async def run_batch(
        self, requests: list[GenerationRequest], on_progress: ProgressCallback, should_stop: StopCheck
    ) -> list[GenerationResult]:
        self.batches.append(list(requests))
        self.started.set()
        if self.crash_next:
            self.crash_next -= 1
            raise RuntimeError("the fake worker crashed")
        if self.hang_next:
            self.hang_next -= 1
            on_progress(BatchProgress(1, requests[0].steps))
            await asyncio.Event().wait()
        if self.oom_above_images is not None and sum(r.images for r in requests) > self.oom_above_images:
            raise OutOfMemory(f"fake: {sum(r.images for r in requests)} images do not fit")
        total = requests[0].steps
        for step in range(1, total + 1):
            if should_stop():
                raise GenerationCancelled()
            on_progress(BatchProgress(step, total))
            if step == 1 and self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.step_delay)
        return [self.engine.result(r) for r in requests]

    async def restart(self) -> None:
        self.restarts += 1

    async def close(self) -> None:
        self.closed = True
