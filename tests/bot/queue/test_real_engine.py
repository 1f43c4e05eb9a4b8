"""The queue over the real (tiny, random-weight) pipeline: batching changes nothing in the images."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.engine.png import read_recipe
from bot.engine.types import GenerationRequest, JobKind
from bot.queue import JobStatus, LocalWorker
from bot.settings import EngineSettings
from tests.bot.queue.helpers import SCOPE, finished, make_settings, running_queue

pytestmark = pytest.mark.slow


class GatedWorker:
    """Delegates to a real worker, but holds each batch until `gate` is set, recording batch sizes."""

    def __init__(self, inner: LocalWorker) -> None:
        self.inner = inner
        self.name, self.model, self.device, self.profile = (
            inner.name,
            inner.model,
            inner.device,
            inner.profile,
        )
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.sizes: list[int] = []

    async def run_batch(self, requests, on_progress, should_stop):
        self.sizes.append(len(requests))
        self.started.set()
        await self.gate.wait()
        return await self.inner.run_batch(requests, on_progress, should_stop)

    async def restart(self) -> None:
        await self.inner.restart()

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def engine(tiny_sd_path: Path):
    """A fresh engine per test: the queue owns its workers and closes them (and their engine) on stop."""
    from bot.engine.engine import Engine

    return Engine.load(str(tiny_sd_path), device="cpu", dtype="float32", settings=EngineSettings())


def tiny(engine, prompt: str, seed: int, **changes) -> GenerationRequest:
    values = dict(
        kind=JobKind.IMAGINE,
        prompt=prompt,
        width=engine.profile.native_size,
        height=engine.profile.native_size,
        steps=2,
        guidance=0.0,  # no classifier-free guidance: half the work, same batching path
        seed=seed,
        model=engine.profile.name,
    )
    values.update(changes)
    return GenerationRequest(**values)


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


async def test_batched_jobs_match_solo_runs(tmp_path: Path, engine) -> None:
    """Two jobs run as one batch produce exactly the images each would have produced alone."""
    settings = make_settings(tmp_path)
    worker = GatedWorker(LocalWorker(engine, name="cpu-0"))
    async with running_queue(settings, [worker]) as (queue, _, _):
        blocker = await queue.submit(SCOPE, 9, tiny(engine, "a red apple", 1, images=1))
        await worker.started.wait()
        jobs = [
            await queue.submit(SCOPE, 1, tiny(engine, "a castle at dusk", 11)),
            await queue.submit(SCOPE, 2, tiny(engine, "a cat, watercolor", 22)),
        ]
        worker.gate.set()
        await finished(queue, blocker.id, within=120)
        done = [await finished(queue, job.id, within=120) for job in jobs]
        solo = await asyncio.to_thread(lambda: [engine.run([job.request])[0] for job in jobs])
    assert worker.sizes == [1, 2]
    for job, alone in zip(done, solo, strict=True):
        assert job.status is JobStatus.DONE
        for path, image in zip(job.result_paths, alone.images, strict=True):
            expected = np.asarray(image.convert("RGB"), dtype=np.int16)
            assert np.array_equal(pixels(path), expected), (
                f"job {job.id}: {Path(path).name} differs from solo"
            )


async def test_end_to_end_writes_pngs_with_recipes(tmp_path: Path, engine) -> None:
    """Submit → done leaves a grid and four PNGs on disk, each carrying the recipe to make it again."""
    settings = make_settings(tmp_path)
    events = []
    async with running_queue(settings, [LocalWorker(engine, name="cpu-0")]) as (queue, credits, _):
        queue.add_listener(events.append)
        job = await queue.submit(SCOPE, 1, tiny(engine, "a ship in the rain", 7))
        job = await finished(queue, job.id, within=120)
        assert job.status is JobStatus.DONE
        assert (await credits.balance(SCOPE, 1)).held == 0
    steps = [(e.step, e.total) for e in events if e.type.value == "progress"]
    assert steps[-1] == (2, 2)
    with Image.open(job.grid_path) as grid:
        assert grid.size == (2 * engine.profile.native_size, 2 * engine.profile.native_size)
    for n, (path, recipe) in enumerate(zip(job.result_paths, job.recipes, strict=True)):
        assert Path(path).name == f"{n + 1}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (recipe.width, recipe.height)
        assert recipe.seed == 7 + n and read_recipe(path) == recipe
