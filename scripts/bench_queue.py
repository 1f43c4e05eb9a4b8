"""Benchmark the job queue: throughput, submit latency, event-loop stalls, and batching on a real engine.

    python scripts/bench_queue.py            # everything (builds a tiny random-weight SD model offline)
    python scripts/bench_queue.py --fake     # only the fake-engine figures (no torch)

Figures, each with the credit ledger on (every job is quoted, held, and settled in SQLite):
1. jobs/s through submit → run → done with the fake engine (instant, tiny PNGs written to disk);
2. submit latency p50/p99 with 200 concurrent submitters, as one burst and as a sustained stream;
3. the worst event-loop stall while the real (tiny) engine generates, measured by a 1 ms ticker;
4. images/s for 8 queued jobs on the real tiny engine, batching on vs off.
Not a test: numbers depend on the machine. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.credits import CreditStore
from bot.engine.types import GenerationRequest, JobKind
from bot.queue import FakeWorker, JobQueue, Worker
from bot.settings import CreditSettings, EngineSettings, QueueSettings, Settings
from bot.store import Database

SCOPE = 1


def settings_for(
    root: Path, *, batching: bool = True, max_batch_images: int = 16, bounded: bool = False
) -> Settings:
    """Unbounded queue limits unless `bounded` (then the defaults: 5 per member, 100 in all)."""
    limits = {} if bounded else {"max_queued_per_member": 1000, "max_queue_length": 100_000}
    return Settings(
        _env_file=None,
        data_dir=root,
        queue=QueueSettings(batching=batching, **limits),
        engine=EngineSettings(max_batch_images=max_batch_images),
        credits=CreditSettings(default_allowance=1_000_000_000),
    )


def request(seed: int, *, size: int = 512, steps: int = 4, guidance: float = 0.0) -> GenerationRequest:
    """A small /imagine request for the benchmarks (scripts/bench_ray.py uses it too)."""
    return GenerationRequest(
        kind=JobKind.IMAGINE,
        prompt=f"bench {seed % 7}",
        width=size,
        height=size,
        steps=steps,
        guidance=guidance,
        seed=seed,
    )


@asynccontextmanager
async def open_queue(settings: Settings, workers: list[Worker]) -> AsyncIterator[JobQueue]:
    db = await Database.open(settings.database_path)
    queue = JobQueue(db, CreditStore(db, settings.credits), workers, settings)
    await queue.start()
    try:
        yield queue
    finally:
        await queue.stop()
        await db.close()


class LoopMonitor:
    """Measures how late a 1 ms ticker wakes up: the worst delay is the worst stall of the loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def __enter__(self) -> LoopMonitor:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


class Completion:
    """Counts final events, to wait for N jobs to finish without polling the database."""

    def __init__(self, queue: JobQueue) -> None:
        self.done = 0
        self.event = asyncio.Event()
        self.target = 0
        queue.add_listener(self)

    def __call__(self, event) -> None:
        if event.type.final:
            self.done += 1
            if self.done >= self.target:
                self.event.set()

    async def wait_for(self, target: int) -> None:
        self.target = target
        if self.done >= target:
            return
        self.event.clear()
        await self.event.wait()


async def bench_throughput(root: Path, jobs: int, members: int, in_flight: int) -> None:
    """Closed loop: `members` members each keep `in_flight` jobs in the queue (submitting the next as
    soon as one finishes) until `jobs` jobs are done. 50 × 2 stays within the default limits."""
    settings = settings_for(root / "throughput", bounded=True)
    async with open_queue(settings, [FakeWorker()]) as queue:
        completion = Completion(queue)
        slots = {owner: asyncio.Semaphore(in_flight) for owner in range(1, members + 1)}
        queue.add_listener(lambda event: event.type.final and slots[event.job.owner].release())
        submitted = 0

        async def member(owner: int) -> None:
            nonlocal submitted
            while submitted < jobs:
                await slots[owner].acquire()
                if submitted >= jobs:
                    return
                submitted += 1
                await queue.submit(SCOPE, owner, request(submitted))

        with LoopMonitor() as monitor:
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(member(owner) for owner in range(1, members + 1)))
            await completion.wait_for(jobs)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"1. throughput (fake engine, ledger on, 5 PNGs per job written; {members} members keeping "
            f"{in_flight} jobs each in the queue): {jobs} jobs in {elapsed:.2f} s = "
            f"{jobs / elapsed:.0f} jobs/s; CPU {cpu / jobs * 1000:.2f} ms per job (all threads); "
            f"worst loop stall {monitor.worst * 1000:.1f} ms"
        )


async def bench_submit_latency(root: Path, submitters: int, rounds: int, rate: float, seconds: float) -> None:
    """Latency of `submit` (quote + hold + insert, one transaction) while the fake worker drains the queue.

    Burst: all `submitters` submit at the same instant, `rounds` times (the queue drained in between).
    Sustained: the same submitters submit at random moments, `rate` submits/s in all, for `seconds`.
    """
    settings = settings_for(root / "latency")
    async with open_queue(settings, [FakeWorker()]) as queue:
        completion = Completion(queue)
        burst: list[float] = []
        stream: list[float] = []

        async def submit(member: int, seed: int, into: list[float]) -> None:
            before = time.perf_counter()
            await queue.submit(SCOPE, member, request(seed))
            into.append(time.perf_counter() - before)

        for n in range(rounds):
            await asyncio.gather(*(submit(m, n * 1000 + m, burst) for m in range(1, submitters + 1)))
            await completion.wait_for(len(burst))

        async def submitter(member: int) -> None:
            deadline = time.perf_counter() + seconds
            n = 0
            while True:
                await asyncio.sleep(random.expovariate(rate / submitters))
                if time.perf_counter() > deadline:
                    return
                n += 1
                await submit(member, 10**6 + member * 1000 + n, stream)

        await asyncio.gather(*(submitter(m) for m in range(1, submitters + 1)))
        await completion.wait_for(len(burst) + len(stream))
        for name, samples in (
            (f"burst: all at once, {rounds} rounds", burst),
            (f"sustained: {len(stream) / seconds:.0f} submits/s for {seconds:.0f} s", stream),
        ):
            print(
                f"2. submit latency, {submitters} concurrent submitters ({name}, n={len(samples)}): "
                f"p50 {percentile(samples, 50) * 1000:.1f} ms, p99 {percentile(samples, 99) * 1000:.1f} ms, "
                f"max {max(samples) * 1000:.1f} ms"
            )


def percentile(samples: list[float], p: float) -> float:
    return (
        statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]
        if len(samples) > 1
        else samples[0]
    )


async def real_worker(model_dir: Path, max_batch_images: int) -> Worker:
    from bot.engine.engine import Engine
    from bot.queue import LocalWorker

    engine = await asyncio.to_thread(
        Engine.load, str(model_dir), device="cpu", settings=EngineSettings(max_batch_images=max_batch_images)
    )
    return LocalWorker(engine, name="cpu-0")


async def bench_real_engine(root: Path, model_dir: Path, jobs: int, steps: int) -> None:
    for batching in (False, True):
        settings = settings_for(root / f"real-{batching}", batching=batching)
        worker = await real_worker(model_dir, settings.engine.max_batch_images)
        size = worker.profile.native_size
        async with open_queue(settings, [worker]) as queue:
            completion = Completion(queue)
            warm = await queue.submit(SCOPE, 999, request(0, size=size, steps=steps))  # first call pays setup
            await completion.wait_for(1)
            assert (await queue.get(warm.id)).status.value == "done"
            with LoopMonitor() as monitor:
                started = time.perf_counter()
                for n in range(jobs):
                    await queue.submit(SCOPE, 1 + n, request(n, size=size, steps=steps))
                await completion.wait_for(1 + jobs)
                elapsed = time.perf_counter() - started
            statuses = {(await queue.get(j)).status.value for j in range(warm.id + 1, warm.id + 1 + jobs)}
            images = jobs * 4
            print(
                f"{'4' if batching else '3'}. real tiny engine ({size} px, {steps} steps, CPU), batching "
                f"{'on ' if batching else 'off'}: {jobs} jobs = {images} images in {elapsed:.2f} s = "
                f"{images / elapsed:.1f} images/s; worst loop stall {monitor.worst * 1000:.1f} ms; {statuses}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="only the fake-engine figures (no torch)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="sustained submits/s for the latency figure")
    parser.add_argument("--model", type=Path, help="a diffusers directory (default: build a tiny one)")
    parser.add_argument("--dir", type=Path, help="where DATA_DIR goes (default: the system temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        await bench_throughput(root, args.jobs, members=50, in_flight=2)
        await bench_submit_latency(root, submitters=200, rounds=5, rate=args.rate, seconds=10.0)
        if args.fake:
            return
        model_dir = args.model
        if model_dir is None:
            from tests.tiny_models import build_tiny_sd

            model_dir = root / "tiny-sd"
            build_tiny_sd(model_dir)
        await bench_real_engine(root, model_dir, jobs=8, steps=4)


if __name__ == "__main__":
    asyncio.run(main())
