"""What members notice when things go wrong: OOM, stuck and crashing workers, restarts and kills."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bot.credits import CreditStore, LedgerKind
from bot.errors import InvalidRequest
from bot.queue import FakeWorker, Job, JobStatus
from bot.queue.store import JobStore
from bot.settings import Settings
from bot.store import Database
from tests.bot.queue.helpers import (
    OTHER_SCOPE,
    SCOPE,
    Recorder,
    finished,
    imagine,
    make_settings,
    running_queue,
)

REPO = Path(__file__).resolve().parents[3]


async def batch_of_two(queue, worker: FakeWorker) -> tuple[Job, Job]:
    """Queue two compatible jobs behind a gated one so that they run as one batch."""
    worker.gate = asyncio.Event()
    blocker = await queue.submit(SCOPE, 9, imagine(prompt="first"))
    await worker.started.wait()
    jobs = (await queue.submit(SCOPE, 1, imagine(seed=5)), await queue.submit(SCOPE, 2, imagine(seed=7)))
    worker.gate.set()
    await finished(queue, blocker.id)
    worker.gate = None
    return jobs


async def test_out_of_memory_retries_in_smaller_batches(tmp_path: Path) -> None:
    """A batch that does not fit is split and both halves still deliver their own images."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    async with running_queue(settings, [worker]) as (queue, _, _):
        worker.oom_above_images = 4
        first, second = await batch_of_two(queue, worker)
        assert (await finished(queue, first.id)).status is JobStatus.DONE
        second = await finished(queue, second.id)
        assert second.status is JobStatus.DONE and [r.seed for r in second.recipes] == [7, 8, 9, 10]
        assert [len(b) for b in worker.batches] == [1, 2, 1, 1]


async def test_out_of_memory_on_a_single_job_fails_and_refunds(settings: Settings) -> None:
    """A job too big for the device fails with a reason, and its credits come back."""
    worker = FakeWorker()
    worker.oom_above_images = 2
    async with running_queue(settings, [worker]) as (queue, credits, _):
        job = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert job.status is JobStatus.FAILED and "ran out of memory" in job.error
        assert (await credits.balance(SCOPE, 1)).free_left == 40


async def test_bad_request_fails_with_the_engines_reason(settings: Settings) -> None:
    """An error the engine explains is shown to the member, and the worker carries on."""

    class Picky(FakeWorker):
        async def run_batch(self, requests, on_progress, should_stop):
            if requests[0].prompt == "bad":
                raise InvalidRequest("Width 512 is not allowed here.")
            return await super().run_batch(requests, on_progress, should_stop)

    async with running_queue(settings, [Picky()]) as (queue, credits, _):
        bad = await finished(queue, (await queue.submit(SCOPE, 1, imagine(prompt="bad"))).id)
        assert bad.status is JobStatus.FAILED and bad.error == "Width 512 is not allowed here."
        good = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert good.status is JobStatus.DONE
        assert (await credits.balance(SCOPE, 1)).free_left == 36


async def test_stuck_job_times_out_and_the_worker_is_restarted(tmp_path: Path) -> None:
    """A job that never finishes fails after the time limit, refunded; the next job runs normally."""
    settings = make_settings(tmp_path, job_timeout_s=0.2)
    worker = FakeWorker()
    worker.hang_next = 1
    async with running_queue(settings, [worker]) as (queue, credits, _):
        stuck = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert stuck.status is JobStatus.FAILED and "longer than 0.2 s" in stuck.error
        assert (await credits.balance(SCOPE, 1)).free_left == 40
        after = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert after.status is JobStatus.DONE
        assert worker.restarts == 1


async def test_crashed_worker_is_restarted_and_the_job_retried(settings: Settings) -> None:
    """When the worker dies mid-job, it is restarted and the job runs again, charged once."""
    worker = FakeWorker()
    worker.crash_next = 1
    async with running_queue(settings, [worker]) as (queue, credits, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        job = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert job.status is JobStatus.DONE and job.attempts == 2
        assert worker.restarts == 1
        assert recorder.types(job.id).count("queued") == 2
        assert (await credits.balance(SCOPE, 1)).free_left == 36


async def test_job_that_crashes_the_worker_twice_fails_refunded(settings: Settings) -> None:
    """A job is retried once only; the second crash fails it and returns the credits."""
    worker = FakeWorker()
    worker.crash_next = 2
    async with running_queue(settings, [worker]) as (queue, credits, _):
        job = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        assert job.status is JobStatus.FAILED and "crashed" in job.error and "twice" in job.error
        assert (await credits.balance(SCOPE, 1)).free_left == 40
        assert await credits.verify() == []


async def test_shutdown_checkpoints_the_running_batch(tmp_path: Path) -> None:
    """A batch still running at shutdown goes back to the queue, and the next start delivers it."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        job = await queue.submit(SCOPE, 1, imagine())
        waiting = await queue.submit(SCOPE, 2, imagine(width=768))
        await worker.started.wait()
        stopping = asyncio.create_task(queue.stop(grace_s=0.05))
        await asyncio.sleep(0.1)
        worker.gate.set()  # the step ends; the worker sees the stop request
        await stopping
        assert (await queue.get(job.id)).status is JobStatus.QUEUED
        assert (await queue.get(job.id)).attempts == 0
        assert (await queue.get(waiting.id)).status is JobStatus.QUEUED
    async with running_queue(settings) as (queue, credits, _):
        assert (await finished(queue, job.id)).status is JobStatus.DONE
        assert (await finished(queue, waiting.id)).status is JobStatus.DONE
        assert await credits.verify() == []


async def kill_mid_batch(root: Path, phase: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bot.queue.crash_child",
        str(root),
        phase,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        async with asyncio.timeout(30):
            line = await child.stdout.readline()
        assert line.strip() == b"hanging"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()


async def running_ids(settings: Settings) -> set[int]:
    """The jobs a killed process left marked running."""
    async with await Database.open(settings.database_path) as db:
        return {job.id for job in await JobStore(db).with_status(JobStatus.RUNNING)}


async def test_restart_after_kill_retries_once_then_fails_and_credits_balance(tmp_path: Path) -> None:
    """After SIGKILLs mid-batch, every job ends delivered-and-charged or failed-and-refunded, in order."""
    settings = make_settings(tmp_path)
    await kill_mid_batch(tmp_path, "first")  # a batch of four stuck in its first attempt
    first = await running_ids(settings)
    await kill_mid_batch(tmp_path, "again")  # after recovery, the fair pick of four stuck again
    second = await running_ids(settings)
    assert len(first) == len(second) == 4 and first & second
    async with running_queue(settings) as (queue, credits, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        jobs = []
        for owner in range(1, 10):
            jobs += await queue.jobs_of(SCOPE, owner, list(JobStatus))
        for job in jobs:
            await finished(queue, job.id)
        jobs = [await queue.get(job.id) for job in jobs]
        failed = [j for j in jobs if j.status is JobStatus.FAILED]
        assert len(jobs) == 9 and {j.id for j in failed} == first & second  # stuck twice: failed
        assert all(j.attempts == 2 and "restarted" in j.error for j in failed)
        assert all(j.status is JobStatus.DONE for j in jobs if j not in failed)
        assert await credits.verify() == []
        assert await credits.open_holds() == []
        for owner in {j.owner for j in jobs}:
            entries = await credits.ledger(SCOPE, owner, limit=100)
            for job in (j for j in jobs if j.owner == owner):
                kinds = [e.kind for e in entries if e.job_id == job.id]
                expected = LedgerKind.CHARGE if job.status is JobStatus.DONE else LedgerKind.RELEASE
                assert kinds == [expected], (job.id, job.status, kinds)
            delivered = sum(j.cost for j in jobs if j.owner == owner and j.status is JobStatus.DONE)
            balance = await credits.balance(SCOPE, owner)
            assert (balance.free_left, balance.held) == (40 - delivered, 0)


async def test_start_returns_holds_of_missing_jobs_and_keeps_queued_ones(tmp_path: Path) -> None:
    """Credits held for a job that does not exist come back at start-up; a waiting job keeps its hold."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        blocker = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        waiting = await queue.submit(OTHER_SCOPE, 2, imagine())
        await queue.pause(OTHER_SCOPE)  # keeps it waiting across the restart
        worker.gate.set()
        await finished(queue, blocker.id)
    async with await Database.open(settings.database_path) as db:
        orphan = await CreditStore(db, settings.credits).reserve(SCOPE, 7, 4, None)
        assert orphan.amount == 4
    async with running_queue(settings) as (queue, credits, _):
        assert [h.id for h in await credits.open_holds()] == [waiting.hold_id]
        assert (await credits.balance(SCOPE, 7)).held == 0
        await queue.resume(OTHER_SCOPE)
        assert (await finished(queue, waiting.id)).status is JobStatus.DONE
        assert await credits.verify() == []
