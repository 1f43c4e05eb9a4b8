"""Atelier's side: the same jobs through the real queue and engine, with everything Atelier does by default.

`open_services` opens a fresh database in a temporary DATA_DIR and starts the real `JobQueue` on workers
from `bot.services.load_workers` (in-process engines, or whatever WORKERS selects), each wrapped in a
`TimedWorker` that notes, per batch, the time the queue waited for `run_batch` and the engine's own
timings returned with the results. That works the same for any worker, local or remote: the difference
between the two is the dispatch overhead (thread hand-off, or serialisation and transport).

The N jobs are submitted as N members' `/imagine` jobs, each built by the real prompt parser, and the
clock runs from the first submit to the last job delivered: grid assembly, PNGs with their recipes,
database writes and ledger settlement, and progress previews are all inside it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bot.bench.baseline import SideResult
from bot.bench.measure import PeakMemory, pipeline_bytes
from bot.engine.device import dtype_name, resolve_dtype
from bot.engine.types import GenerationRequest, GenerationResult, ModelProfile
from bot.queue import EventType, JobEvent, JobStatus, Worker
from bot.queue.worker import ProgressCallback, StopCheck
from bot.settings import Settings

log = logging.getLogger(__name__)

SCOPE = 1
FIRST_OWNER = 1000


@dataclass
class BatchTiming:
    requests: int
    images: int
    wall: float  #: seconds the queue waited for `run_batch`
    engine: float  #: seconds inside `Engine.run` (`GenerationResult.seconds`)
    timings: dict[str, float]  #: the engine's per-stage seconds for the whole batch


class TimedWorker:
    """A `Worker` that forwards everything to `inner` and records each batch's timing."""

    def __init__(self, inner: Worker) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.device = inner.device
        self.profile = inner.profile
        self.batches: list[BatchTiming] = []

    async def run_batch(
        self, requests: list[GenerationRequest], on_progress: ProgressCallback, should_stop: StopCheck
    ) -> list[GenerationResult]:
        started = time.perf_counter()
        results = await self.inner.run_batch(requests, on_progress, should_stop)
        wall = time.perf_counter() - started
        first = results[0]
        self.batches.append(
            BatchTiming(
                len(requests), sum(r.images for r in requests), wall, first.seconds, dict(first.timings)
            )
        )
        return results

    async def restart(self) -> None:
        await self.inner.restart()

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class JobClock:
    submitted: float
    started: float | None = None
    first_step: float | None = None
    first_preview: float | None = None
    finished: float | None = None
    status: str | None = None


@dataclass
class AtelierRound:
    seconds: float
    cpu_seconds: float  #: CPU time of the whole process (all threads: engine, loop, PNG writers)
    batches: list[BatchTiming]
    clocks: list[JobClock]  #: in submission order
    images: list[Image.Image]


class AtelierSide:
    """Atelier's services on a fresh DATA_DIR, started once, then run round after round.

    Build it with `await AtelierSide.start(settings, build_requests)`; `build_requests` turns the loaded
    model's profile into the jobs (so `--model` can be anything). `close()` stops the queue and workers.
    """

    def __init__(self, settings: Settings, services: Any, timed: list[TimedWorker]) -> None:
        self.settings = settings
        self.services = services
        self.timed = timed
        self.device = timed[0].device
        self.dtype = dtype_name(resolve_dtype(settings.dtype, self.device))  # what the engine resolved
        self.requests: list[GenerationRequest] = []
        self.rounds: list[AtelierRound] = []
        self.load_seconds = 0.0
        self.weights = 0
        self.working = 0
        self._clocks: dict[int, JobClock] = {}
        self._finished = asyncio.Event()
        self._owner = FIRST_OWNER
        services.queue.add_listener(self._listen)

    @classmethod
    async def start(
        cls, settings: Settings, build_requests: Callable[[ModelProfile], list[GenerationRequest]]
    ) -> AtelierSide:
        from bot.services import load_workers, open_services

        loaded = time.perf_counter()
        timed = [TimedWorker(worker) for worker in await load_workers(settings)]
        load_seconds = time.perf_counter() - loaded
        # In-process engines only: a Ray actor's weights live in its own process (counted as 0 here).
        pipes = [getattr(getattr(t.inner, "engine", None), "pipe", None) for t in timed]
        weights = sum(pipeline_bytes(pipe) for pipe in pipes if pipe is not None)
        services = await open_services(settings, workers=timed)  # type: ignore[arg-type]
        side = cls(settings, services, timed)
        side.load_seconds, side.weights = load_seconds, weights
        try:
            side.requests = build_requests(timed[0].profile)
            await side._run(side.requests[:1], steps=1)  # kernels, compile: not timed
        except BaseException:
            await side.close()
            raise
        return side

    async def run_round(self) -> float:
        """Submit every request as a different member's job and wait until all are delivered."""
        for worker in self.timed:
            worker.batches.clear()
        with PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            ids = await self._run(self.requests)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        self.working = max(self.working, memory.growth)
        jobs = [await self.services.queue.get(job_id) for job_id in ids]
        failed = [f"job {j.id}: {j.status} ({j.error})" for j in jobs if j.status is not JobStatus.DONE]
        if failed:
            raise RuntimeError(f"Atelier did not deliver every job: {'; '.join(failed)}")
        images = [_load(path) for job in jobs for path in job.result_paths] if not self.rounds else []
        batches = [batch for worker in self.timed for batch in worker.batches]
        self.rounds.append(AtelierRound(seconds, cpu, batches, [self._clocks[i] for i in ids], images))
        log.info("Atelier (%s): %d job(s) in %.1f s", self.dtype, len(ids), seconds)
        return seconds

    @property
    def best(self) -> AtelierRound:
        return min(self.rounds, key=lambda r: r.seconds)

    def result(self) -> SideResult:
        return SideResult(
            "atelier",
            self.dtype,
            self.best.seconds,
            self.rounds[0].images,
            self.weights + self.working,
            self.load_seconds,
            [r.seconds for r in self.rounds],
            min(r.cpu_seconds for r in self.rounds),
        )

    async def close(self) -> None:
        await self.services.close()

    async def _run(self, requests: list[GenerationRequest], *, steps: int | None = None) -> list[int]:
        queue = self.services.queue
        ids = []
        for request in requests:
            submitted = time.perf_counter()
            job = await queue.submit(SCOPE, self._owner, request.replace(steps=steps or request.steps))
            self._owner += 1  # a new member each time: one member's jobs would run one by one
            self._clocks[job.id] = JobClock(submitted)
            ids.append(job.id)
        while not all(self._clocks[i].finished is not None for i in ids):
            self._finished.clear()
            if all(self._clocks[i].finished is not None for i in ids):
                break
            await self._finished.wait()
        return ids

    def _listen(self, event: JobEvent) -> None:
        clock = self._clocks.get(event.job_id)
        if clock is None:
            return
        now = time.perf_counter()
        if event.type is EventType.STARTED and clock.started is None:
            clock.started = now
        elif event.type is EventType.PROGRESS:
            clock.started = clock.started or now
            clock.first_step = clock.first_step or now
            if event.preview_png and clock.first_preview is None:
                clock.first_preview = now
        elif event.type.final:
            clock.finished, clock.status = now, event.type.value
            self._finished.set()


def _load(path: str) -> Image.Image:
    with Image.open(Path(path)) as image:
        return image.convert("RGB")
