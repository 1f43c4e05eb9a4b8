"""Benchmark Ray workers (WORKERS=ray) on this machine: what Ray adds per batch, and 1 vs 2 actors.

    python scripts/bench_ray.py              # both parts (builds a tiny random-weight SD model offline)
    python scripts/bench_ray.py --overhead   # part 1 only (no model)

1. Dispatch overhead: one 4-image job per batch, run many times by the same instant engine in-process
   (`LocalWorker`) and in a Ray actor (`RayWorker`); the difference of the medians is what Ray adds:
   the call, the streamed progress items (with PNG previews), sending the images back and rebuilding
   them (and the grid) in the bot. Images are 8 px (dispatch alone) and 512 px (a real SD image's
   size). The engine's own time is ~0, so round trip = overhead.
2. Throughput: N `/imagine` jobs of N members through the real queue (ledger, PNGs, SQLite) on the tiny
   pipeline, with one local worker, one Ray actor and two Ray actors (the Ray ones from
   `load_workers`, as the bot builds them). Each batch's round trip minus the engine's own time
   (`GenerationResult.seconds`) gives the overhead with a real engine too.
Everything runs on a private Ray instance on 127.0.0.1 with this machine's cores. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from bot.engine.types import GenerationRequest
from bot.queue import FakeEngine, LocalWorker
from bot.queue.fake import FakeProgress
from bot.settings import CreditSettings, EngineSettings, QueueSettings, RaySettings, Settings
from scripts.bench_queue import request

SCOPE = 1


class NoiseEngine(FakeEngine):
    """An instant engine whose images are random noise of `image_size` px, with previews like the real one."""

    def run(self, requests, *, on_progress=None, should_stop=None):
        total = requests[0].steps
        for step in range(1, total + 1):
            if on_progress is not None:
                previews = [self.preview(r) for r in requests] if step % 2 == 0 else None
                on_progress(FakeProgress(step, total, previews))
        return [self.result(r) for r in requests]

    def image(self, prompt: str, seed: int) -> Image.Image:
        rng = np.random.default_rng(seed)
        side = self.image_size
        return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))

    def preview(self, request: GenerationRequest) -> Image.Image:
        side = max(8, self.image_size // 4)  # a 2×2 grid of latent-sized (1/8) thumbnails
        return Image.new("RGB", (side, side), (request.seed % 256, 0, 0))


async def round_trips(worker: Any, repeats: int) -> list[float]:
    times = []
    for n in range(repeats + 2):
        started = time.perf_counter()
        await worker.run_batch([request(n)], lambda _: None, lambda: False)
        if n >= 2:  # two warm-up batches
            times.append(time.perf_counter() - started)
    return times


async def dispatch_overhead(repeats: int) -> dict[str, Any]:
    import ray

    from bot.queue.ray_actor import GenerationActor
    from bot.queue.ray_worker import RayWorker

    figures: dict[str, Any] = {}
    remote = ray.remote(GenerationActor).options(num_cpus=1, max_restarts=0)
    for side in (8, 512):
        local = LocalWorker(NoiseEngine(image_size=side), name="local")
        actor = await RayWorker.start(
            functools.partial(remote.remote, functools.partial(NoiseEngine, image_size=side)),
            name="ray",
            timeout_s=120,
        )
        local_s = await round_trips(local, repeats)
        ray_s = await round_trips(actor, repeats)
        await local.close()
        await actor.close()
        figures[f"{side}px"] = {
            "local_median_ms": 1000 * statistics.median(local_s),
            "ray_median_ms": 1000 * statistics.median(ray_s),
            "ray_p90_ms": 1000 * sorted(ray_s)[int(0.9 * len(ray_s))],
            "overhead_ms": 1000 * (statistics.median(ray_s) - statistics.median(local_s)),
        }
    return figures


class Timed:
    """Wraps a worker: per batch, the round trip and the engine's own time (`result.seconds`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.samples: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def run_batch(self, requests, on_progress, should_stop):
        started = time.perf_counter()
        results = await self.inner.run_batch(requests, on_progress, should_stop)
        self.samples.append((time.perf_counter() - started, results[0].seconds))
        return results


async def throughput(model: str, label: str, workers: list[Any], jobs: int, steps: int) -> dict[str, Any]:
    from bot.credits import CreditStore
    from bot.queue import JobQueue
    from bot.store import Database

    timed = [Timed(w) for w in workers]
    with tempfile.TemporaryDirectory(prefix="atelier-bench-ray-") as root:
        settings = Settings(
            _env_file=None,
            data_dir=Path(root),
            queue=QueueSettings(batching=False, max_queued_per_member=1000),
            engine=EngineSettings(),
            credits=CreditSettings(default_allowance=1_000_000_000),
        )
        db = await Database.open(settings.database_path)
        queue = JobQueue(db, CreditStore(db, settings.credits), timed, settings)  # type: ignore[arg-type]
        try:
            await queue.start()
            size = workers[0].profile.native_size
            warm = [await queue.submit(SCOPE, 10_000 + n, request(n, size=size, steps=steps)) for n in (1, 2)]
            await wait_done(queue, [j.id for j in warm])
            for worker in timed:
                worker.samples.clear()
            started = time.perf_counter()
            submitted = [
                await queue.submit(SCOPE, n, request(n, size=size, steps=steps)) for n in range(1, jobs + 1)
            ]
            await wait_done(queue, [j.id for j in submitted])
            seconds = time.perf_counter() - started
        finally:
            await queue.stop()
            await db.close()
    samples = [s for worker in timed for s in worker.samples]
    overheads = [1000 * (trip - engine) for trip, engine in samples]
    return {
        "workers": label,
        "jobs": jobs,
        "seconds": seconds,
        "images_per_s": 4 * jobs / seconds,
        "engine_ms_per_batch": 1000 * statistics.median(engine for _, engine in samples),
        "overhead_ms_per_batch": statistics.median(overheads),
    }


async def wait_done(queue: Any, ids: list[int]) -> None:
    for job_id in ids:
        async for event in queue.subscribe(job_id):
            if event.type.final:
                break


async def real_engine(jobs: int, steps: int) -> list[dict[str, Any]]:
    from bot.engine.engine import Engine
    from bot.queue.ray_worker import load_ray_workers
    from tests.tiny_models import build_tiny_sd

    rows = []
    with tempfile.TemporaryDirectory(prefix="atelier-tiny-") as folder:
        model = str(build_tiny_sd(Path(folder) / "tiny-sd"))
        engine = await asyncio.to_thread(Engine.load, model, device="cpu", dtype="float32")
        rows.append(await throughput(model, "1 local", [LocalWorker(engine)], jobs, steps))
        for actors in (1, 2):
            settings = Settings(
                _env_file=None,
                model=model,
                dtype="float32",
                workers="ray",
                ray=RaySettings(actors=actors, cpus_per_actor=2 / actors),
            )
            workers = await load_ray_workers(settings)
            rows.append(await throughput(model, f"{actors} Ray actor(s)", workers, jobs, steps))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", action="store_true", help="part 1 only")
    parser.add_argument("--repeats", type=int, default=50, help="batches per overhead figure")
    parser.add_argument("--jobs", type=int, default=12, help="jobs per throughput figure")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per job (tiny model)")
    args = parser.parse_args()

    import os

    import ray
    import torch

    from bot.queue.ray_worker import start_private

    cores = os.cpu_count() or 1
    start_private(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        report: dict[str, Any] = {"cores": cores, "torch_threads": torch.get_num_threads()}
        report["overhead"] = asyncio.run(dispatch_overhead(args.repeats))
        for side, row in report["overhead"].items():
            print(
                f"dispatch, 4 images of {side}: local {row['local_median_ms']:.1f} ms, "
                f"Ray {row['ray_median_ms']:.1f} ms (p90 {row['ray_p90_ms']:.1f}) "
                f"-> Ray adds {row['overhead_ms']:.1f} ms per batch"
            )
        if not args.overhead:
            report["throughput"] = asyncio.run(real_engine(args.jobs, args.steps))
            for row in report["throughput"]:
                engine_ms, overhead_ms = row["engine_ms_per_batch"], row["overhead_ms_per_batch"]
                print(
                    f"tiny model, {row['jobs']} jobs x {args.steps} steps, {row['workers']}: "
                    f"{row['images_per_s']:.2f} images/s; per batch: engine {engine_ms:.0f} ms, "
                    f"round trip - engine {overhead_ms:.1f} ms"
                )
        print(json.dumps(report))
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
