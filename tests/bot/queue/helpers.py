"""Shared helpers for the queue's tests: requests, a started queue over fake workers, waiting for jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.credits import CreditStore
from bot.engine.types import GenerationRequest, JobKind
from bot.queue import FakeWorker, Job, JobEvent, JobQueue
from bot.settings import CreditSettings, EngineSettings, QueueSettings, Settings
from bot.store import Database

SCOPE = 1000  #: a guild id
OTHER_SCOPE = 2000


def imagine(prompt: str = "a castle at dusk", seed: int = 1, **changes: Any) -> GenerationRequest:
    """A four-image job at native size and default steps: 4 work units, so 4 credits at default prices."""
    values: dict[str, Any] = dict(
        kind=JobKind.IMAGINE, prompt=prompt, width=512, height=512, steps=4, guidance=0.0, seed=seed
    )
    values.update(changes)
    return GenerationRequest(**values)


def make_settings(tmp_path: Path, **queue: Any) -> Settings:
    credit_values = {"default_allowance": 40, "relax_allowed": True}
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        queue=QueueSettings(**queue),
        engine=EngineSettings(max_batch_images=16),
        credits=CreditSettings(**credit_values),
    )


class Recorder:
    """A listener that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: JobEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[JobEvent], bool], within: float = 5.0) -> JobEvent:
        """The first event (already heard or still to come) that matches `predicate`."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def types(self, job_id: int) -> list[str]:
        return [e.type.value for e in self.events if e.job_id == job_id]

    def finish_order(self) -> list[int]:
        return [e.job_id for e in self.events if e.type.final]


@asynccontextmanager
async def running_queue(
    settings: Settings,
    workers: list[FakeWorker] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    db: Database | None = None,
) -> AsyncIterator[tuple[JobQueue, CreditStore, list[FakeWorker]]]:
    """A started queue over fake workers on the settings' database; stopped (and closed) on exit."""
    own_db = db is None
    database = db or await Database.open(settings.database_path)
    credits = CreditStore(database, settings.credits)
    workers = workers if workers is not None else [FakeWorker()]
    extra = {"clock": clock} if clock is not None else {}
    queue = JobQueue(database, credits, workers, settings, **extra)
    await queue.start()
    try:
        yield queue, credits, workers
    finally:
        await queue.stop(grace_s=2.0)
        if own_db:
            await database.close()


async def finished(queue: JobQueue, job_id: int, within: float = 10.0) -> Job:
    """Wait until the job reaches done, failed or cancelled, and return it as stored."""
    async with asyncio.timeout(within):
        async for event in queue.subscribe(job_id):
            if event.type.final:
                break
    return await queue.get(job_id)
