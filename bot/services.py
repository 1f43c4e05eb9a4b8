"""The services the Discord layer uses, built in one place: settings → database → engine → queue.

`open_services()` is what `python -m bot` calls; tests call it with fake or tiny workers. The cogs
reach these through `bot.services` on the Discord client and never build anything themselves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.credits import CreditStore
from bot.engine.types import ModelProfile
from bot.members import MemberStore
from bot.queue import JobQueue, Worker
from bot.settings import Settings
from bot.store import Database

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    credits: CreditStore
    members: MemberStore
    queue: JobQueue

    @property
    def profile(self) -> ModelProfile:
        """The profile of the model new jobs run on (the first worker's)."""
        return self.queue.profile

    async def close(self) -> None:
        await self.queue.stop()
        await self.db.close()


async def load_local_workers(settings: Settings) -> list[Worker]:
    """One in-process worker per configured device, each loading the model once (off the loop)."""
    from bot.engine.engine import Engine
    from bot.queue.worker import LocalWorker

    workers: list[Worker] = []
    for device in settings.devices:
        engine = await asyncio.to_thread(
            Engine.load, settings.model, device=device, dtype=settings.dtype, settings=settings.engine
        )
        log.info(
            "Loaded %s on %s (%s, %s)", settings.model, engine.device, engine.dtype, engine.profile.family
        )
        workers.append(LocalWorker(engine, name=f"worker-{len(workers)}"))
    return workers


async def open_services(settings: Settings, workers: list[Worker] | None = None) -> Services:
    """Open the database, load (or take) the workers and start the queue."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(settings.database_path)
    try:
        credits = CreditStore(db, settings.credits)
        if workers is None:
            workers = await load_local_workers(settings)
        queue = JobQueue(db, credits, workers, settings)
        await queue.start()
    except BaseException:
        await db.close()
        raise
    return Services(settings=settings, db=db, credits=credits, members=MemberStore(db), queue=queue)
