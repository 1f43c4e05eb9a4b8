"""A bot process to kill: runs a queue whose fake worker hangs in the middle of a batch.

Usage: `python -m tests.bot.queue.crash_child ROOT first|again`, with settings `make_settings(ROOT)`.
It prints "hanging" once a batch of several jobs is stuck mid-way, then waits to be killed (SIGKILL,
like an OOM killer or a power button). "first" finishes a few jobs, then gets four jobs of four members
batched and stuck, with two more queued behind them. "again" starts on the same database: after
recovery, the fair pick of four gets stuck a second time.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.credits import CreditStore
from bot.queue import FakeWorker, JobQueue
from bot.store import Database
from tests.bot.queue.helpers import SCOPE, finished, imagine, make_settings


async def main(root: Path, phase: str) -> None:
    settings = make_settings(root)
    db = await Database.open(settings.database_path)
    worker = FakeWorker()
    queue = JobQueue(db, CreditStore(db, settings.credits), [worker], settings)
    if phase == "first":
        await queue.start()
        for owner in (1, 2):
            await finished(queue, (await queue.submit(SCOPE, owner, imagine(seed=owner))).id)
        worker.gate = asyncio.Event()
        worker.started.clear()
        blocker = await queue.submit(SCOPE, 9, imagine())
        await worker.started.wait()
        for owner in (1, 2, 3, 4):
            await queue.submit(SCOPE, owner, imagine(seed=10 + owner))
        worker.hang_next = 1  # the blocker's batch is past that check: the next batch hangs
        worker.started.clear()
        worker.gate.set()
        await finished(queue, blocker.id)
        await worker.started.wait()
        for owner in (5, 6):
            await queue.submit(SCOPE, owner, imagine(seed=20 + owner))
    else:
        worker.hang_next = 1
        await queue.start()
        await worker.started.wait()
    print("hanging", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
