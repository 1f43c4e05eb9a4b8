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
from bot.privacy import Pruner
from bot.queue import JobQueue, Worker
from bot.safety import Safety
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
    safety: Safety
    pruner: Pruner | None = None  #: deletes old images (PRIVACY__RETENTION_DAYS), see bot/privacy.py

    @property
    def profile(self) -> ModelProfile:
        """The profile of the model new jobs run on (the first worker's)."""
        return self.queue.profile

    async def close(self) -> None:
        if self.pruner is not None:
            await self.pruner.stop()
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


async def load_workers(settings: Settings) -> list[Worker]:
    """The workers `settings` asks for: in-process ones by default, Ray actors with `WORKERS=ray`.

    An unreachable Ray cluster stops start-up with one line, or, with `RAY__FALLBACK_LOCAL=true`, is
    reported in one line and replaced by local workers.
    """
    if settings.workers == "ray":
        from bot.queue.ray_worker import RayUnavailable, load_ray_workers

        try:
            return await load_ray_workers(settings)
        except RayUnavailable as exc:
            if not settings.ray.fallback_local:
                raise
            log.warning("%s Running local workers instead (RAY__FALLBACK_LOCAL=true).", exc)
    return await load_local_workers(settings)


async def open_services(settings: Settings, workers: list[Worker] | None = None) -> Services:
    """Open the database, load (or take) the workers and start the queue."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(settings.database_path)
    try:
        credits = CreditStore(db, settings.credits)
        safety = await Safety.open(db, settings.safety)
        if workers is None:
            workers = await load_workers(settings)
        queue = JobQueue(db, credits, workers, settings, image_check=safety.flag_reason)
        await queue.start()
    except BaseException:
        await db.close()
        raise
    pruner = Pruner(db, settings.images_dir, settings.privacy)
    pruner.start()
    return Services(
        settings=settings,
        db=db,
        credits=credits,
        members=MemberStore(db),
        queue=queue,
        safety=safety,
        pruner=pruner,
    )
