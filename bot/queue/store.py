"""The `jobs` and `queue_scopes` tables: every status change of a job is one guarded UPDATE here.

Guarded means each transition names the statuses it may start from (`WHERE status IN (...)`) and returns
the rows it changed, so two racing transitions (a cancel and the end of a batch) can never both win: the
loser changes nothing and the caller knows it. Methods taking `conn` run inside the caller's transaction,
next to the credit store's writes for the same job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from bot.engine.types import GenerationRequest, JobKind, Recipe
from bot.queue.jobs import Job, JobStatus
from bot.queue.results import SavedImages
from bot.store import Database

INSERT_JOB = """
INSERT INTO jobs (id, kind, scope, owner, status, request, relax, cost, hold_id, channel_id, message_id,
                  parent_job_id, parent_index, created_at, started_at, finished_at, result_paths, recipes,
                  nsfw)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
LAST_JOB_ID = """
SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),
           coalesce((SELECT max(id) FROM jobs), 0)) AS last
"""
GET_JOB = "SELECT * FROM jobs WHERE id = ?"
JOB_FOR_MESSAGE = "SELECT * FROM jobs WHERE message_id = ? ORDER BY id DESC LIMIT 1"
JOBS_WITH_STATUS = "SELECT * FROM jobs WHERE status = ? ORDER BY id"
MEMBER_JOBS = "SELECT * FROM jobs WHERE scope = ? AND owner = ? AND status IN ({statuses}) ORDER BY id"
LAST_SERVED = "SELECT owner, MAX(started_at) AS served FROM jobs WHERE started_at > ? GROUP BY owner"
SET_MESSAGE = "UPDATE jobs SET channel_id = ?, message_id = ? WHERE id = ? RETURNING *"
MARK_RUNNING = """
UPDATE jobs SET status = 'running', worker = ?, started_at = ?, attempts = attempts + 1
WHERE id IN ({ids}) AND status = 'queued' RETURNING id, attempts
"""
MARK_DONE = """
WITH results (id, grid_path, result_paths, recipes) AS (VALUES {rows})
UPDATE jobs SET status = 'done', finished_at = ?, grid_path = results.grid_path,
    result_paths = results.result_paths, recipes = results.recipes
FROM results WHERE jobs.id = results.id AND jobs.status = 'running' RETURNING id
"""
MARK_FINISHED = """
UPDATE jobs SET status = ?, finished_at = ?, error = ?, cancelled_by = ?
WHERE id = ? AND status IN ({statuses}) RETURNING *
"""
REQUEUE = """
UPDATE jobs SET status = 'queued', worker = NULL, started_at = NULL, attempts = MAX(0, attempts - ?)
WHERE id = ? AND status = 'running' RETURNING *
"""
GET_SCOPES = "SELECT scope, paused, max_queued_per_member, max_running_per_member FROM queue_scopes"
UPSERT_SCOPE = """
INSERT INTO queue_scopes (scope, paused, max_queued_per_member, max_running_per_member, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (scope) DO UPDATE SET paused = excluded.paused,
    max_queued_per_member = excluded.max_queued_per_member,
    max_running_per_member = excluded.max_running_per_member, updated_at = excluded.updated_at
"""


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def request_dict(request: GenerationRequest) -> dict[str, Any]:
    """`request.to_dict()` without `dataclasses.asdict`'s deep copy (its fields are all plain values)."""
    return {**vars(request), "kind": request.kind.value}


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """`recipe.to_dict()`, likewise."""
    return {**vars(recipe), "kind": recipe.kind.value}


def _one(rows: Iterable[Any]) -> Job | None:
    rows = list(rows)
    return Job.from_row(rows[0]) if rows else None


class JobStore:
    """SQL for jobs. Plain reads go through the shared `Database`; writes take the caller's `conn`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def last_id(self) -> int:
        """The highest job id ever handed out (ids are never reused, even after deletes)."""
        row = await self.db.fetchone(LAST_JOB_ID)
        return int(row["last"]) if row is not None else 0

    async def insert(
        self,
        conn: aiosqlite.Connection,
        job_id: int,
        *,
        scope: int,
        owner: int,
        request: GenerationRequest,
        status: JobStatus,
        now: float,
        cost: int = 0,
        hold_id: int | None = None,
        channel_id: int | None = None,
        message_id: int | None = None,
        parent: tuple[int, int] | None = None,
        result_paths: Sequence[str] = (),
        recipes: Sequence[Recipe] = (),
        nsfw: bool = False,
    ) -> None:
        finished = now if status.finished else None
        await conn.execute(
            INSERT_JOB,
            (
                job_id,
                request.kind.value,
                scope,
                owner,
                status.value,
                json.dumps(request_dict(request)),
                int(request.relax),
                cost,
                hold_id,
                channel_id,
                message_id,
                parent[0] if parent else None,
                parent[1] if parent else None,
                now,
                finished,
                finished,
                json.dumps(list(result_paths)),
                json.dumps([recipe_dict(r) for r in recipes]),
                int(nsfw),
            ),
        )

    async def mark_running(
        self, conn: aiosqlite.Connection, jobs: Sequence[Job], worker: str, now: float
    ) -> list[Job]:
        """Start those of `jobs` that are still queued; returns them as started (others were cancelled)."""
        sql = MARK_RUNNING.format(ids=_placeholders(len(jobs)))
        attempts = dict(await conn.execute_fetchall(sql, (worker, now, *(job.id for job in jobs))))
        return [
            job.evolve(status=JobStatus.RUNNING, worker=worker, started_at=now, attempts=attempts[job.id])
            for job in jobs
            if job.id in attempts
        ]

    async def mark_done(
        self, conn: aiosqlite.Connection, saved: Sequence[tuple[Job, SavedImages]], now: float
    ) -> list[Job]:
        """Mark those of these jobs that are still running done with their images, in one statement."""
        if not saved:
            return []
        params: list[Any] = []
        for job, images in saved:
            recipes = json.dumps([recipe_dict(r) for r in images.recipes])
            params += [job.id, images.grid_path, json.dumps(list(images.result_paths)), recipes]
        sql = MARK_DONE.format(rows=",".join(["(?, ?, ?, ?)"] * len(saved)))
        done = {row[0] for row in await conn.execute_fetchall(sql, (*params, now))}
        return [
            job.evolve(
                status=JobStatus.DONE,
                finished_at=now,
                grid_path=images.grid_path,
                result_paths=images.result_paths,
                recipes=images.recipes,
            )
            for job, images in saved
            if job.id in done
        ]

    async def mark_flagged(self, conn: aiosqlite.Connection, job: Job, reason: str) -> Job:
        """Record why a delivered job's images were withheld."""
        await conn.execute("UPDATE jobs SET flagged = ? WHERE id = ?", (reason, job.id))
        return job.evolve(flagged=reason)

    async def mark_finished(
        self,
        conn: aiosqlite.Connection,
        job_id: int,
        status: JobStatus,
        *,
        error: str,
        now: float,
        allowed_from: Sequence[JobStatus],
        cancelled_by: int | None = None,
    ) -> Job | None:
        sql = MARK_FINISHED.format(statuses=_placeholders(len(allowed_from)))
        params = (status.value, now, error, cancelled_by, job_id, *(s.value for s in allowed_from))
        return _one(await conn.execute_fetchall(sql, params))

    async def requeue(
        self, conn: aiosqlite.Connection, job_id: int, *, refund_attempt: bool = False
    ) -> Job | None:
        """Put a running job back in line; `refund_attempt` when we interrupted it, not it us."""
        return _one(await conn.execute_fetchall(REQUEUE, (int(refund_attempt), job_id)))

    async def set_message(self, job_id: int, channel_id: int | None, message_id: int | None) -> Job | None:
        return _one(await self.db.write(SET_MESSAGE, (channel_id, message_id, job_id)))

    async def get(self, job_id: int) -> Job | None:
        row = await self.db.fetchone(GET_JOB, (job_id,))
        return Job.from_row(row) if row is not None else None

    async def get_in(self, conn: aiosqlite.Connection, job_id: int) -> Job | None:
        return _one(await conn.execute_fetchall(GET_JOB, (job_id,)))

    async def for_message(self, message_id: int) -> Job | None:
        row = await self.db.fetchone(JOB_FOR_MESSAGE, (message_id,))
        return Job.from_row(row) if row is not None else None

    async def with_status(self, status: JobStatus) -> list[Job]:
        return [Job.from_row(r) for r in await self.db.fetchall(JOBS_WITH_STATUS, (status.value,))]

    async def of_member(self, scope: int, owner: int, statuses: Sequence[JobStatus]) -> list[Job]:
        sql = MEMBER_JOBS.format(statuses=_placeholders(len(statuses)))
        rows = await self.db.fetchall(sql, (scope, owner, *(s.value for s in statuses)))
        return [Job.from_row(r) for r in rows]

    async def last_served(self, since: float) -> dict[int, float]:
        """When each member last had a job started, for members served after `since`."""
        return {row["owner"]: row["served"] for row in await self.db.fetchall(LAST_SERVED, (since,))}

    async def scopes(self) -> list[aiosqlite.Row]:
        return await self.db.fetchall(GET_SCOPES)

    async def save_scope(
        self, scope: int, *, paused: bool, max_queued: int | None, max_running: int | None, now: float
    ) -> None:
        await self.db.execute(UPSERT_SCOPE, (scope, int(paused), max_queued, max_running, now))


def select_request(parent: Job, index: int) -> GenerationRequest:
    """The request a SELECT job records: the parent's, narrowed to image `index` (1-based)."""
    return parent.request.replace(
        kind=JobKind.SELECT,
        images=1,
        seed=parent.request.seed + index - 1,
        init_image=parent.result_paths[index - 1],
    )
