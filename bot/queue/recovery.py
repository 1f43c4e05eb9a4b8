"""Start-up recovery: what a killed or crashed process left behind, put right before any job runs.

The rules (the same the worker loops apply to a crashed worker): a job is started at most
`MAX_ATTEMPTS` times. A job left 'running' by the last process is queued again in its old place if it
has a start left, and failed with its credits returned if not. Then every open credit hold is checked
against its job, so each job ends either delivered and charged, or not delivered and refunded.
"""

from __future__ import annotations

import logging

from bot.credits import CreditStore
from bot.queue.jobs import Job, JobStatus
from bot.queue.store import JobStore
from bot.store import Database

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  #: starts per job: the first, and one retry after a worker crash or a restart


async def recover_interrupted(
    db: Database, store: JobStore, credits: CreditStore, now: float
) -> tuple[list[Job], list[Job]]:
    """Jobs left 'running': (queued again, failed and refunded)."""
    running = await store.with_status(JobStatus.RUNNING)
    if not running:
        return [], []
    requeued, failed = [], []
    async with db.transaction() as conn:
        for job in running:
            if job.attempts < MAX_ATTEMPTS:
                row = await store.requeue(conn, job.id)
                if row is not None:
                    requeued.append(row)
                continue
            reason = "the bot restarted while it was running, twice"
            row = await store.mark_finished(
                conn, job.id, JobStatus.FAILED, error=reason, now=now, allowed_from=(JobStatus.RUNNING,)
            )
            if row is not None:
                if row.hold_id is not None:
                    await credits.release(row.hold_id, "job failed", conn=conn)
                failed.append(row)
    log.warning(
        "Recovered %d interrupted jobs: %d queued again, %d failed", len(running), len(requeued), len(failed)
    )
    return requeued, failed


async def reconcile_holds(db: Database, store: JobStore, credits: CreditStore) -> None:
    """Close every open hold whose job is finished or missing (charging it only if the job was delivered).

    Run after `recover_interrupted`, when no job is running. Holds of queued jobs stay open however old
    they are, unlike `CreditStore.release_abandoned`'s age rule: a job waiting in a paused scope must
    still be able to pay when it finally runs.
    """
    holds = await credits.open_holds()
    if not holds:
        return
    live = {job.hold_id for job in await store.with_status(JobStatus.QUEUED)}
    settled = released = 0
    async with db.transaction() as conn:
        for hold in holds:
            if hold.id in live:
                continue
            job = await store.get_in(conn, hold.job_id) if hold.job_id is not None else None
            if job is not None and job.status is JobStatus.DONE and job.hold_id == hold.id:
                settled += await credits.settle(hold.id, conn=conn)
            else:
                reason = "abandoned: its job is finished or missing"
                released += await credits.release(hold.id, reason, conn=conn)
    if settled or released:
        log.warning(
            "Closed %d abandoned credit holds (%d charged, %d returned)",
            settled + released,
            settled,
            released,
        )
