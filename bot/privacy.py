"""What Atelier forgets, and when: `/forget` (one member's data in one scope) and image retention.

`/forget` deletes a member's jobs in a scope (rows with their prompts, recipes and history), their image
folders `images/<scope>/<job>/`, the uploads they made, and every row a `RowForgetter` in `FORGETTERS`
names (saved `/settings`, safety review requests, ...): a table added later joins by adding one entry.
Jobs still waiting or running are cancelled first through the queue, so their credits come back, as
with `/cancel`. The credit ledger is not touched: it is append-only (the database refuses edits) and it
never holds prompt text, only amounts, fixed reasons ("job failed") and moderators' own notes, so it
stays complete and `CreditStore.verify()` still adds up.

Files go first, rows second: if the bot dies in between, the rows are still there (their buttons say the
images are gone) and running `/forget` again finishes the job; the other order could leave files that
nothing points to any more. Only files under the images folder are ever deleted, whatever a row says.
The member's wish wins over other members' work: another member's variation of one of these images that
is still waiting loses its source, fails when it starts and is refunded (the engine refuses a missing
source image); their finished jobs keep their own rows and images, unlinked.

Retention: `prune_images` deletes the images of jobs that finished more than `PRIVACY__RETENTION_DAYS`
days ago and marks their rows (`images_pruned_at`), so a button on such a job explains instead of
failing; uploads go once no recent or live job uses them. Images a waiting or running job needs are
never deleted. A follow-up clicked in the instant between a pass reading and deleting a grid can lose
its source the same way (failed, refunded); after the pass, such clicks are refused with the reason.
`Pruner` runs it at start-up and then hourly, as a task owned by the services.

Discord-free (the cog `cogs/privacy.py` only asks and renders) and torch-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import JobFinished, JobNotFound
from bot.queue import JobQueue, JobStatus
from bot.settings import PrivacySettings
from bot.store import Database

log = logging.getLogger(__name__)

DAY_S = 86_400.0
PRUNE_EVERY_S = 3600.0  #: how often the retention pass runs (it also runs at every start)
CHUNK = 500  #: ids per statement, well under SQLite's bound-variable limit
UPLOADS = "uploads"  #: `images/<scope>/uploads/`: images members gave to /vary and /upscale
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


# -- what a member's data is made of ------------------------------------------------------------------


@dataclass(frozen=True)
class RowForgetter:
    """The rows of `table` that belong to one member in one scope, deleted by `/forget`.

    `request_column` names a JSON `GenerationRequest` column whose `init_image` (an upload) is the
    member's too. A table that does not exist (an older database) is skipped, not an error.
    """

    table: str
    label: str  #: how the report names these rows, e.g. "saved /settings"
    scope_column: str = "scope"
    user_column: str = "user_id"
    request_column: str | None = None

    def __post_init__(self) -> None:
        names = (self.table, self.scope_column, self.user_column, self.request_column or "x")
        if not all(_IDENTIFIER.match(name) for name in names):
            raise ValueError(f"RowForgetter names must be plain SQL identifiers, got {names}")

    @property
    def _where(self) -> str:
        return f"{self.table} WHERE {self.scope_column} = ? AND {self.user_column} = ?"

    async def exists(self, conn: aiosqlite.Connection) -> bool:
        rows = await conn.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
        )
        return bool(list(rows))

    async def count(self, conn: aiosqlite.Connection, scope: int, user: int) -> int:
        rows = list(await conn.execute_fetchall(f"SELECT count(*) FROM {self._where}", (scope, user)))
        return int(rows[0][0])

    async def uploads(self, conn: aiosqlite.Connection, scope: int, user: int) -> list[str]:
        if self.request_column is None:
            return []
        sql = f"SELECT json_extract({self.request_column}, '$.init_image') FROM {self._where}"
        return [row[0] for row in await conn.execute_fetchall(sql, (scope, user)) if row[0]]

    async def delete(self, conn: aiosqlite.Connection, scope: int, user: int) -> int:
        cursor = await conn.execute(f"DELETE FROM {self._where}", (scope, user))
        try:
            return cursor.rowcount
        finally:
            await cursor.close()


#: Everything besides jobs that `/forget` deletes. Add an entry for a new per-member table.
FORGETTERS: list[RowForgetter] = [
    RowForgetter("member_preferences", "saved /settings"),
    RowForgetter("safety_reviews", "review requests", request_column="request"),
]


@dataclass(frozen=True)
class ForgetReport:
    """What `/forget` found (a preview) or deleted, counted for the member."""

    jobs: int  #: job rows (prompts, recipes, history), live ones included
    live: int  #: of those, waiting or running: cancelled first, credits returned
    images: int  #: image files (grids and single images)
    uploads: int  #: images the member uploaded to /vary or /upscale
    rows: Mapping[str, int] = field(default_factory=dict)  #: other rows, by `RowForgetter.label`
    ledger_entries: int = 0  #: credit history entries, kept
    kept_live: int = 0  #: jobs queued while forgetting, left alone (run /forget again)
    undeleted: tuple[str, ...] = ()  #: files that could not be deleted (logged)

    @property
    def empty(self) -> bool:
        return not (self.jobs or self.images or self.uploads or any(self.rows.values()))


@dataclass
class _Plan:
    """The member's finished jobs and the files that go with them (paths resolved by `locate`)."""

    scope: int
    job_ids: list[int]
    uploads: list[str]  #: sources this member used first, as stored (only real uploads get deleted)
    rows: dict[str, int]
    ledger_entries: int
    live: int
    folders: list[Path] = field(default_factory=list)
    upload_files: list[Path] = field(default_factory=list)

    def locate(self, images_dir: Path) -> _Plan:
        """Fill in the absolute folders and upload files, only under `images_dir`. Blocking: a thread."""
        root = images_dir.resolve()
        self.folders = [root / str(self.scope) / str(job_id) for job_id in self.job_ids]
        uploads = root / str(self.scope) / UPLOADS
        self.upload_files = [p for p in map(_resolved, self.uploads) if p.parent == uploads]
        return self


# -- /forget ----------------------------------------------------------------------------------------------

MEMBER_JOBS = """
SELECT id, status, json_extract(request, '$.init_image') AS source FROM jobs
WHERE scope = ? AND owner = ? ORDER BY id
"""
#: Who first used each upload: its uploader (an upload is saved for, and right before, one job).
FIRST_USERS = """
SELECT json_extract(request, '$.init_image') AS source, owner, min(id) FROM jobs
WHERE scope = ? AND json_extract(request, '$.init_image') IN ({marks}) GROUP BY source
"""
LEDGER_ENTRIES = "SELECT count(*) FROM credit_ledger WHERE scope = ? AND user_id = ?"
#: Jobs made from an image of a deleted job (others' variations, upscales, U1–U4) lose the link, not
#: their own rows: `parent_job_id` is a foreign key.
UNLINK_CHILDREN = (
    "UPDATE jobs SET parent_job_id = NULL WHERE parent_job_id IN ({marks}) AND id NOT IN ({marks})"
)
DELETE_JOBS = "DELETE FROM jobs WHERE id IN ({marks}) AND status NOT IN ('queued', 'running') RETURNING id"


async def survey_member(
    db: Database,
    images_dir: Path,
    scope: int,
    user: int,
    *,
    forgetters: Sequence[RowForgetter] = FORGETTERS,
) -> ForgetReport:
    """What `/forget` would delete for this member in this scope, without deleting anything."""
    async with db.transaction() as conn:
        plan = await _plan(conn, scope, user, forgetters)
    await asyncio.to_thread(plan.locate, images_dir)
    images = await asyncio.to_thread(_count_files, plan.folders)
    uploads = await asyncio.to_thread(_count_files, plan.upload_files)
    return ForgetReport(
        jobs=len(plan.job_ids) + plan.live,
        live=plan.live,
        images=images,
        uploads=uploads,
        rows=plan.rows,
        ledger_entries=plan.ledger_entries,
    )


async def forget_member(
    db: Database,
    queue: JobQueue,
    images_dir: Path,
    scope: int,
    user: int,
    *,
    forgetters: Sequence[RowForgetter] = FORGETTERS,
) -> ForgetReport:
    """Delete a member's jobs, images, uploads and per-member rows in one scope; keep their ledger.

    Waiting and running jobs are cancelled first (credits returned). A job the member queues while
    this runs is left alone and counted in `kept_live`.
    """
    cancelled = await _cancel_live(queue, scope, user)
    async with db.transaction() as conn:
        plan = await _plan(conn, scope, user, forgetters)
    await asyncio.to_thread(plan.locate, images_dir)
    images, uploads, undeleted = await asyncio.to_thread(_delete_files, plan)
    rows: dict[str, int] = {}
    async with db.transaction() as conn:
        deleted = 0
        for chunk in _chunks(plan.job_ids):
            marks = ",".join("?" * len(chunk))
            await conn.execute_fetchall(UNLINK_CHILDREN.format(marks=marks), (*chunk, *chunk))
            deleted += len(list(await conn.execute_fetchall(DELETE_JOBS.format(marks=marks), chunk)))
        for forgetter in forgetters:
            if await forgetter.exists(conn):
                rows[forgetter.label] = await forgetter.delete(conn, scope, user)
    report = ForgetReport(
        jobs=deleted,
        live=cancelled,
        images=images,
        uploads=uploads,
        rows=rows,
        ledger_entries=plan.ledger_entries,
        kept_live=plan.live,
        undeleted=tuple(undeleted),
    )
    log.info(
        "Forgot member %s in scope %s: %d jobs (%d cancelled), %d images, %d uploads, %s",
        user, scope, report.jobs, cancelled, images, uploads, rows,
    )  # fmt: skip
    return report


async def _cancel_live(queue: JobQueue, scope: int, user: int) -> int:
    """Cancel the member's waiting and running jobs here, as their own /cancel would (credits back)."""
    cancelled = 0
    for job in await queue.jobs_of(scope, user, _LIVE):
        with contextlib.suppress(JobFinished, JobNotFound):  # it ended meanwhile: deleted with the rest
            await queue.cancel(job.id, by=user, scope=scope)
            cancelled += 1
    return cancelled


async def _plan(
    conn: aiosqlite.Connection, scope: int, user: int, forgetters: Sequence[RowForgetter]
) -> _Plan:
    jobs = list(await conn.execute_fetchall(MEMBER_JOBS, (scope, user)))
    finished = [row for row in jobs if row["status"] not in _LIVE]
    sources = {row["source"] for row in finished if row["source"]}
    rows = {}
    for forgetter in forgetters:
        if await forgetter.exists(conn):
            rows[forgetter.label] = await forgetter.count(conn, scope, user)
            sources.update(await forgetter.uploads(conn, scope, user))
    first_users: dict[str, int] = {}
    for chunk in _chunks(sorted(sources)):
        sql = FIRST_USERS.format(marks=",".join("?" * len(chunk)))
        for row in await conn.execute_fetchall(sql, (scope, *chunk)):
            first_users[row["source"]] = row["owner"]
    ledger = list(await conn.execute_fetchall(LEDGER_ENTRIES, (scope, user)))
    return _Plan(
        scope=scope,
        job_ids=[row["id"] for row in finished],
        # a source first used by another member is theirs (this member re-rolled their job): kept
        uploads=[source for source in sorted(sources) if first_users.get(source, user) == user],
        rows=rows,
        ledger_entries=int(ledger[0][0]),
        live=len(jobs) - len(finished),
    )


def _count_files(paths: Iterable[Path]) -> int:
    """Files in these folders (or these files themselves) that exist. Blocking: call in a thread."""
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(1 for entry in path.rglob("*") if entry.is_file())
        elif path.is_file():
            total += 1
    return total


def _delete_files(plan: _Plan) -> tuple[int, int, list[str]]:
    """Delete the plan's located folders and uploads: (images, uploads, paths that failed). Blocking."""
    undeleted: list[str] = []
    images = 0
    for folder in plan.folders:
        if folder.is_dir():
            count = _count_files([folder])
            shutil.rmtree(folder, onerror=lambda _f, path, _e: undeleted.append(str(path)))
            images += 0 if folder.exists() else count
    uploads = 0
    for upload in plan.upload_files:
        try:
            upload.unlink()
            uploads += 1
        except FileNotFoundError:
            pass
        except OSError:
            undeleted.append(str(upload))
    if undeleted:
        log.error("Could not delete %d file(s), e.g. %s", len(undeleted), undeleted[0])
    return images, uploads, undeleted


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# -- retention ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneReport:
    """What one retention pass deleted."""

    jobs: int = 0  #: job rows marked `images_pruned_at`
    images: int = 0  #: image files deleted from job folders
    uploads: int = 0  #: uploads deleted
    skipped: int = 0  #: due jobs left for later because a live job uses their images


#: A page of due jobs, oldest first, after the last one seen (jobs skipped for now are not seen again).
#: Without statistics SQLite prefers `jobs_by_status` and sorts every finished job (40 ms a page at 200k
#: jobs); the partial index of migration 0005 answers a page in 1 ms.
DUE_JOBS = """
SELECT id, scope, finished_at FROM jobs INDEXED BY jobs_to_prune
WHERE images_pruned_at IS NULL AND status IN ('done', 'failed', 'cancelled') AND finished_at < ?
  AND (finished_at, id) > (?, ?)
ORDER BY finished_at, id LIMIT ?
"""
#: The images live jobs read: their sources (uploads, or an image of an older job).
LIVE_SOURCES = """
SELECT json_extract(request, '$.init_image') FROM jobs
WHERE status IN ('queued', 'running') AND json_extract(request, '$.init_image') IS NOT NULL
"""
#: Uploads still in use: by a live job, or by a job that finished within the retention period.
USED_UPLOADS = """
SELECT DISTINCT json_extract(request, '$.init_image') FROM jobs
WHERE json_extract(request, '$.init_image') IS NOT NULL
  AND (status IN ('queued', 'running') OR finished_at >= ?)
"""
MARK_PRUNED = "UPDATE jobs SET images_pruned_at = ? WHERE id IN ({marks}) AND images_pruned_at IS NULL"


async def prune_images(db: Database, images_dir: Path, retention_days: int, *, now: float) -> PruneReport:
    """Delete images older than `retention_days` (0: none) and mark their jobs; never a live job's.

    A job is due when it finished before `now - retention_days`; its folder goes, then its row is
    marked, so a pass cut short is finished by the next one. Uploads go when older than that too and
    no live or recent job uses them (a re-roll keeps using its upload).
    """
    if retention_days <= 0:
        return PruneReport()
    root = await asyncio.to_thread(images_dir.resolve)
    cutoff = now - retention_days * DAY_S
    jobs = images = skipped = 0
    after: tuple[float, int] = (float("-inf"), 0)
    while due := await db.fetchall(DUE_JOBS, (cutoff, *after, CHUNK)):
        after = (due[-1]["finished_at"], due[-1]["id"])
        live_sources = [row[0] for row in await db.fetchall(LIVE_SOURCES)]
        needed = await asyncio.to_thread(_folders_of, live_sources)
        folders = {row["id"]: root / str(row["scope"]) / str(row["id"]) for row in due}
        free = {job: folder for job, folder in folders.items() if folder not in needed}
        skipped += len(folders) - len(free)
        images += await asyncio.to_thread(_remove_folders, list(free.values()))
        ids = list(free)
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            await db.execute(MARK_PRUNED.format(marks=marks), (now, *chunk))
        jobs += len(ids)
    used = [row[0] for row in await db.fetchall(USED_UPLOADS, (cutoff,))]
    uploads = await asyncio.to_thread(_sweep_uploads, root, cutoff, used)
    report = PruneReport(jobs=jobs, images=images, uploads=uploads, skipped=skipped)
    if jobs or uploads:
        log.info(
            "Retention (%d days): deleted %d images of %d jobs and %d uploads; %d jobs wait for live jobs",
            retention_days, images, jobs, uploads, skipped,
        )  # fmt: skip
    return report


def _resolved(path: str) -> Path:
    return Path(path).resolve()


def _folders_of(paths: Iterable[str]) -> set[Path]:
    return {_resolved(path).parent for path in paths}


def _remove_folders(folders: list[Path]) -> int:
    removed = 0
    for folder in folders:
        if folder.is_dir():
            removed += _count_files([folder])
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def _sweep_uploads(root: Path, cutoff: float, in_use: Iterable[str]) -> int:
    """Delete uploads last written before `cutoff` that no live or recent job uses. Blocking."""
    used = set(map(_resolved, in_use))
    removed = 0
    for folder in root.glob(f"*/{UPLOADS}"):
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path).resolve()
                if entry.is_file() and entry.stat().st_mtime < cutoff and path not in used:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
    return removed


class Pruner:
    """Owns the retention task: a pass at start, then every `interval_s`; `stop()` cancels it cleanly."""

    def __init__(
        self,
        db: Database,
        images_dir: Path,
        settings: PrivacySettings,
        *,
        interval_s: float = PRUNE_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._images_dir = images_dir
        self._days = settings.retention_days
        self._interval_s = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  #: completed passes, for the log and tests

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._days <= 0:
            log.info("Image retention is off (PRIVACY__RETENTION_DAYS=0): images are kept for ever")
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="prune-images")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await prune_images(self._db, self._images_dir, self._days, now=self._clock())
            except Exception:
                log.exception("Pruning old images failed; trying again in %.0f s", self._interval_s)
            self.passes += 1
            await asyncio.sleep(self._interval_s)
