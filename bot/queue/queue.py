"""The job queue between Discord and the GPUs: durable, fair, batched, and honest about every job.

Life of a job: `submit` quotes it, holds its credits and inserts its row in one transaction (or refuses
at once with the reason); a worker loop per device claims the next batch in fair order, marks it
running, runs it, writes the PNGs off the loop, and marks each job done while settling its hold (or
failed / cancelled while releasing it) in one transaction. Every status change is committed before
it is announced, so a listener never reports something a crash could undo.

Recovery rules, the same for a crashed worker and a killed process: a job is started at most
`MAX_ATTEMPTS` times; a job interrupted before that is queued again in its old place, after that it
fails and its credits come back. Each job therefore ends delivered-and-charged or refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from bot.credits import CreditStore
from bot.engine.types import GenerationRequest, GenerationResult, JobKind, ModelProfile
from bot.errors import (
    AtelierError,
    GenerationCancelled,
    ImagesGone,
    InvalidLimit,
    InvalidRequest,
    JobFinished,
    JobNotFound,
    NotAllowed,
    OutOfMemory,
    QueueFull,
    QueuePaused,
    SettingsError,
)
from bot.queue.events import EventHub, Listener, Subscription
from bot.queue.jobs import (
    EventType,
    Job,
    JobEvent,
    JobStatus,
    QueueEntry,
    QueueLimits,
    QueueSnapshot,
    WorkerState,
)
from bot.queue.recovery import MAX_ATTEMPTS, reconcile_holds, recover_interrupted
from bot.queue.results import discard, job_folder, save_result
from bot.queue.scheduler import pick_batch
from bot.queue.state import Batch, QueueState
from bot.queue.store import JobStore, select_request
from bot.queue.worker import BatchProgress, Worker
from bot.settings import Settings
from bot.store import Database

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  #: how long a timed-out or interrupted batch gets to stop at a step boundary
POSITION_INTERVAL_S = 0.5  #: positions are re-announced at most this often (each change moves many jobs)
SERVED_MEMORY_S = 86_400.0  #: at start-up, members served longer ago than this count as never served
LIMIT_RANGE = (1, 1000)
TIMEOUT = "timeout"
SHUTDOWN = "shutdown"
UNCHANGED: Any = object()  #: `set_limits` default: leave this limit as it is


#: Why a finished job's images must be withheld, or None (see `bot.safety.Safety.flag_reason`).
ImageCheck = Callable[[Job, GenerationResult], Awaitable[str | None]]


class _TimedOut(Exception):
    pass


def _gone(path: str | Path) -> bool:
    """Whether a stored image was deleted (pruned, forgotten, by hand): one stat, fine on the loop."""
    return not Path(path).exists()


class JobQueue:
    """Fair-share generation queue. Build it, `await start()`, and `await stop()` at shutdown."""

    def __init__(
        self,
        db: Database,
        credits: CreditStore,
        workers: list[Worker],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        image_check: ImageCheck | None = None,
    ) -> None:
        """`image_check(job, result)` returns why a finished job's images must be withheld, or None; a
        withheld job is recorded done, flagged, and its credits are returned instead of charged."""
        if not workers:
            raise SettingsError("The queue needs at least one worker: set DEVICE (one worker per device).")
        if len({w.name for w in workers}) != len(workers):
            raise SettingsError(f"Worker names must be unique, got {[w.name for w in workers]}.")
        self.workers = list(workers)
        self._db = db
        self._credits = credits
        self._settings = settings
        self._clock = clock
        self._image_check = image_check
        self._store = JobStore(db)
        self._images_dir = settings.images_dir.resolve()  #: absolute, so stored paths survive a chdir
        self._hub = EventHub()
        self._state = QueueState(settings.queue, self.workers[0].profile)
        self._wake = {w.name: asyncio.Event() for w in self.workers}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._broken: set[str] = set()  #: workers to restart before their next batch
        self._announced: dict[int, tuple[int, bool]] = {}  #: job → (position, has ETA) last told
        self._position_timer: asyncio.TimerHandle | None = None
        self._last_positions = 0.0
        self._running = False
        self._stopping = False
        self._last_job_id = 0
        self._deliveries: dict[str, asyncio.Task[None]] = {}  #: each worker's newest delivery

    @property
    def profile(self) -> ModelProfile:
        """The profile of the model new jobs run on (the first worker's)."""
        return self.workers[0].profile

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the last run, then start one loop per worker."""
        if self._running:
            return
        for row in await self._store.scopes():
            scope = self._state.scope(row["scope"])
            scope.paused = bool(row["paused"])
            scope.max_queued = row["max_queued_per_member"]
            scope.max_running = row["max_running_per_member"]
        self._last_job_id = await self._store.last_id()
        requeued, failed = await recover_interrupted(self._db, self._store, self._credits, self._clock())
        await reconcile_holds(self._db, self._store, self._credits)
        for job in await self._store.with_status(JobStatus.QUEUED):
            self._state.add_waiting(job)
        self._state.served = await self._store.last_served(self._clock() - SERVED_MEMORY_S)
        self._running = True
        for job in requeued:
            self._announce_queued(job, "the bot restarted while it was running")
        for job in failed:
            self._publish(JobEvent(job.id, EventType.FAILED, job=job, reason=job.error))
        for worker in self.workers:
            self._loops[worker.name] = asyncio.create_task(self._serve(worker), name=f"queue-{worker.name}")

    async def stop(self, *, grace_s: float = 30.0) -> None:
        """Finish running batches (after `grace_s`, checkpoint them back to queued); leave the rest queued."""
        if not self._running or self._stopping:
            return
        self._stopping = True
        self._poke()
        loops = list(self._loops.values())
        if loops:
            _, pending = await asyncio.wait(loops, timeout=grace_s)
            if pending:
                for batch in self._state.batches.values():
                    batch.interrupted = SHUTDOWN
                _, pending = await asyncio.wait(pending, timeout=STOP_GRACE_S)
                for task in pending:
                    task.cancel()  # its jobs stay 'running' in the database: the next start retries them
                await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._deliveries.values(), return_exceptions=True)
        if self._position_timer is not None:
            self._position_timer.cancel()
        await self._hub.close()
        for worker in self.workers:
            try:
                await worker.close()
            except Exception:
                log.exception("Closing worker %s failed", worker.name)
        self._running = False

    # -- submitting --------------------------------------------------------------------------------------

    async def submit(
        self,
        scope: int,
        owner: int,
        request: GenerationRequest,
        *,
        channel_id: int | None = None,
        message_id: int | None = None,
        parent: tuple[int, int] | None = None,
        nsfw: bool = False,
    ) -> Job:
        """Queue a job: quote, hold the credits and insert it in one transaction, or refuse with the reason.

        Raises InsufficientCredits, Blocked, NotAllowed (relax off here), QueueFull, QueuePaused,
        InvalidRequest (a SELECT, an unknown model, a bad parent), JobNotFound (no such parent here).
        """
        self._check_open()
        if request.kind is JobKind.SELECT:
            raise InvalidRequest("U1–U4 selections are not generated: use select(), which is free.")
        worker = self._worker_for(request.model)
        request = request.replace(model=worker.model)
        if parent is not None:
            source = await self._parent(scope, *parent)
            if request.init_image is None:
                request = request.replace(init_image=str(source.image_path(parent[1])))
        if request.init_image is not None and _gone(request.init_image):
            raise ImagesGone(
                "The image this job starts from is no longer stored on the server (old images are "
                "deleted after a while), so it cannot be made again. Upload it with /vary or /upscale."
            )
        self._refuse_if_full(scope, owner)  # fail fast, before waiting for the database
        now = self._clock()
        async with self._db.transaction() as conn:
            self._refuse_if_full(scope, owner)  # exact: no other submit can commit while we hold it
            cost = await self._credits.quote(scope, request, worker.profile, conn=conn)
            job_id = self._new_job_id()
            hold = await self._credits.reserve(scope, owner, cost, job_id, relax=request.relax, conn=conn)
            await self._store.insert(
                conn,
                job_id,
                scope=scope,
                owner=owner,
                request=request,
                status=JobStatus.QUEUED,
                now=now,
                cost=hold.amount,
                hold_id=hold.id,
                channel_id=channel_id,
                message_id=message_id,
                parent=parent,
                nsfw=nsfw,
            )
        job = Job(
            id=job_id,
            kind=request.kind,
            scope=scope,
            owner=owner,
            status=JobStatus.QUEUED,
            request=request,
            cost=hold.amount,
            hold_id=hold.id,
            created_at=now,
            channel_id=channel_id,
            message_id=message_id,
            parent_job_id=parent[0] if parent else None,
            parent_index=parent[1] if parent else None,
            nsfw=nsfw,
        )
        self._state.add_waiting(job)
        self._announce_queued(job)
        self._poke()
        return job

    async def select(
        self,
        scope: int,
        owner: int,
        parent_job_id: int,
        index: int,
        *,
        channel_id: int | None = None,
        message_id: int | None = None,
    ) -> Job:
        """U1–U4: record a free, finished job that hands out image `index` (1-based) of a finished grid."""
        self._check_open()
        parent = await self._parent(scope, parent_job_id, index)
        now = self._clock()
        async with self._db.transaction() as conn:
            job_id = self._new_job_id()
            await self._store.insert(
                conn,
                job_id,
                scope=scope,
                owner=owner,
                request=select_request(parent, index),
                status=JobStatus.DONE,
                now=now,
                channel_id=channel_id,
                message_id=message_id,
                parent=(parent_job_id, index),
                result_paths=[parent.result_paths[index - 1]],
                recipes=parent.recipes[index - 1 : index],
            )
        job = await self.get(job_id)
        self._publish(JobEvent(job.id, EventType.DONE, job=job))
        return job

    # -- cancelling and moderating -------------------------------------------------------------------------

    async def cancel(self, job_id: int, by: int, *, moderator: bool = False, scope: int | None = None) -> Job:
        """Cancel a waiting or running job and return its credits. Others' jobs need `moderator=True`.

        Pass `scope` (the scope the caller acts in) to refuse jobs of other scopes as not found.
        """
        job = await self.get(job_id)
        if scope is not None and job.scope != scope:
            raise JobNotFound(f"There is no job {job_id} here.")
        if job.owner != by and not moderator:
            raise NotAllowed(f"Job {job_id} is not yours: only its owner or a moderator can cancel it.")
        reason = "cancelled by its owner" if by == job.owner else "cancelled by a moderator"
        cancelled = await self._cancel_jobs([job_id], by, reason, (JobStatus.QUEUED, JobStatus.RUNNING))
        if not cancelled:
            job = await self.get(job_id)
            raise JobFinished(
                f"Job {job_id} has already finished ({job.status}): there is nothing to cancel."
            )
        return cancelled[0]

    async def clear(self, scope: int, owner: int, by: int) -> list[Job]:
        """Cancel every waiting job of one member in one scope (a moderator action); running ones finish."""
        ids = [job.id for job in self._state.waiting.values() if job.member == (scope, owner)]
        return await self._cancel_jobs(ids, by, "cleared by a moderator", (JobStatus.QUEUED,))

    async def pause(self, scope: int) -> None:
        """Stop starting jobs of this scope (new submissions are refused); other scopes are untouched."""
        await self._save_scope(scope, paused=True)

    async def resume(self, scope: int) -> None:
        await self._save_scope(scope, paused=False)
        self._poke()

    async def limits(self, scope: int) -> QueueLimits:
        return self._state.limits(scope)

    async def set_limits(
        self, scope: int, *, max_queued_per_member: Any = UNCHANGED, max_running_per_member: Any = UNCHANGED
    ) -> QueueLimits:
        """Override this scope's per-member limits; pass None to go back to the bot's default."""
        state = self._state.scope(scope)
        queued = state.max_queued if max_queued_per_member is UNCHANGED else max_queued_per_member
        running = state.max_running if max_running_per_member is UNCHANGED else max_running_per_member
        for name, value in (("max_queued_per_member", queued), ("max_running_per_member", running)):
            if value is not None and (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not LIMIT_RANGE[0] <= value <= LIMIT_RANGE[1]
            ):
                raise InvalidLimit(
                    f"{name} must be a whole number from {LIMIT_RANGE[0]} to {LIMIT_RANGE[1]}, not {value!r}."
                )
        await self._save_scope(scope, max_queued=queued, max_running=running)
        self._poke()
        return self._state.limits(scope)

    # -- reading -----------------------------------------------------------------------------------------

    async def get(self, job_id: int) -> Job:
        job = await self._store.get(job_id)
        if job is None:
            raise JobNotFound(
                f"There is no job {job_id}: it never existed, or its owner deleted it with /forget."
            )
        return job

    async def job_for_message(self, message_id: int) -> Job:
        """The job whose progress or result a Discord message shows."""
        job = await self._store.for_message(message_id)
        if job is None:
            raise JobNotFound(f"Message {message_id} does not belong to any job.")
        return job

    async def jobs_of(
        self,
        scope: int,
        owner: int,
        statuses: Iterable[JobStatus | str] = (JobStatus.QUEUED, JobStatus.RUNNING),
    ) -> list[Job]:
        """A member's jobs in one scope with the given statuses, oldest first."""
        wanted = []
        for status in statuses:
            try:
                wanted.append(JobStatus(status))
            except ValueError:
                allowed = ", ".join(s.value for s in JobStatus)
                raise InvalidRequest(f"{status!r} is not a job status: use {allowed}.") from None
        return await self._store.of_member(scope, owner, wanted) if wanted else []

    async def set_message(self, job_id: int, channel_id: int | None, message_id: int | None) -> Job:
        """Remember which Discord message shows this job (progress edits and reactions find it there)."""
        job = await self._store.set_message(job_id, channel_id, message_id)
        if job is None:
            raise JobNotFound(f"There is no job {job_id}.")
        self._state.update(job)
        return job

    async def position(self, job_id: int) -> tuple[int, float | None]:
        """(1-based place in line, ETA in seconds) of a waiting job; (0, seconds left) while it runs;
        (0, None) once finished. ETAs are None until the queue has timed a batch."""
        position = self._state.position(job_id)
        if position is not None:
            return position, self._state.etas(self._live_workers())[position - 1]
        if job_id in self._state.running:
            return 0, self._state.remaining_seconds(self._state.running[job_id][0])
        await self.get(job_id)  # raises JobNotFound for unknown ids
        return 0, None

    async def snapshot(self, scope: int | None = None) -> QueueSnapshot:
        """Waiting and running jobs (of one scope, or all) with their global positions and ETAs."""
        state = self._state
        order = state.order()
        etas = state.etas(self._live_workers())
        waiting = tuple(
            QueueEntry(job, n, eta)
            for n, (job, eta) in enumerate(zip(order, etas, strict=True), start=1)
            if scope is None or job.scope == scope
        )
        running = tuple(
            QueueEntry(job, 0, state.remaining_seconds(batch), batch.worker.name, batch.step, batch.total)
            for batch, job in state.running.values()
            if scope is None or job.scope == scope
        )
        workers = []
        for worker in self.workers:
            batch = state.batches.get(worker.name)
            ids = tuple(j.id for j in batch.jobs if j.id in state.running) if batch else ()
            workers.append(
                WorkerState(
                    worker.name,
                    worker.device,
                    worker.model,
                    ids,
                    batch.step if batch else None,
                    batch.total if batch else None,
                )
            )
        paused = scope in state.paused_scopes() if scope is not None else bool(state.paused_scopes())
        return QueueSnapshot(waiting, running, tuple(workers), paused, state.seconds_per_unit())

    # -- events ------------------------------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Hear every event of every job (sync or async callback); returns a function that removes it."""
        return self._hub.add_listener(callback)

    def subscribe(self, job_id: int) -> Subscription:
        """Follow one job: its current state first, then every change until it finishes."""
        return self._hub.subscribe(job_id, lambda: self._current_event(job_id))

    async def _current_event(self, job_id: int) -> JobEvent:
        position = self._state.position(job_id)
        if position is not None:
            eta = self._state.etas(self._live_workers())[position - 1]
            return JobEvent(job_id, EventType.QUEUED, position, eta, job=self._state.waiting[job_id])
        if job_id in self._state.running:
            batch, job = self._state.running[job_id]
            kind = EventType.PROGRESS if batch.step else EventType.STARTED
            return JobEvent(job_id, kind, step=batch.step or None, total=batch.total or None, job=job)
        job = await self.get(job_id)
        kind = {JobStatus.DONE: EventType.DONE, JobStatus.FAILED: EventType.FAILED}.get(job.status)
        return JobEvent(job_id, kind or EventType.CANCELLED, job=job, reason=job.error)

    def _publish(self, event: JobEvent) -> None:
        self._hub.publish(event)

    def _announce_queued(self, job: Job, reason: str | None = None) -> None:
        position = self._state.position(job.id)
        eta = self._state.etas(self._live_workers())[position - 1] if position else None
        if position is not None:
            self._announced[job.id] = (position, eta is not None)
        self._publish(JobEvent(job.id, EventType.QUEUED, position, eta, job=job, reason=reason))
        self._changed()

    def _changed(self) -> None:
        """The line moved: re-announce positions soon (at most every POSITION_INTERVAL_S)."""
        if self._position_timer is not None or not self._running:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_positions + POSITION_INTERVAL_S - loop.time())
        self._position_timer = loop.call_later(delay, self._announce_positions)

    def _announce_positions(self) -> None:
        self._position_timer = None
        self._last_positions = asyncio.get_running_loop().time()
        order = self._state.order()
        etas = self._state.etas(self._live_workers())
        announced = {}
        for n, (job, eta) in enumerate(zip(order, etas, strict=True), start=1):
            now = (n, eta is not None)
            announced[job.id] = now
            if self._announced.get(job.id) != now:
                self._publish(JobEvent(job.id, EventType.POSITION, n, eta, job=job))
        self._announced = announced

    # -- worker loops ------------------------------------------------------------------------------------

    def _poke(self) -> None:
        for wake in self._wake.values():
            wake.set()

    async def _serve(self, worker: Worker) -> None:
        """One worker's loop: claim the next batch, run it, repeat; restart the worker when it broke."""
        wake = self._wake[worker.name]
        backoff = 1.0
        while not self._stopping:
            if worker.name in self._broken:
                try:
                    await worker.restart()
                except Exception:
                    log.exception("Restarting worker %s failed; next try in %.0f s", worker.name, backoff)
                    await self._sleep(wake, backoff)
                    backoff = min(60.0, backoff * 2)
                    continue
                log.warning("Worker %s restarted", worker.name)
                self._broken.discard(worker.name)
                backoff = 1.0
            wake.clear()
            batch = self._claim(worker)
            if batch is None:
                await wake.wait()
                continue
            try:
                await self._run(batch)
            except Exception:
                log.exception("Worker %s failed on jobs %s", worker.name, [j.id for j in batch.jobs])
                self._broken.add(worker.name)
                await self._give_back(self._still_running(batch), "the worker crashed", refund_attempt=False)
            finally:
                # Whatever happened, no job of this batch stays 'running' in memory, except those whose
                # delivery is under way (it lets them go when it ends).
                for job in batch.jobs:
                    if job.id not in batch.handed_off:
                        self._state.close_running(job.id)
                self._state.batches.pop(worker.name, None)
                self._changed()
                self._poke()

    @staticmethod
    async def _sleep(wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)

    def _claim(self, worker: Worker) -> Batch | None:
        """Take the next batch for `worker` off the waiting line (in memory; `_run` records it)."""
        if self._stopping or worker.name in self._broken or worker.name in self._state.batches:
            return None
        state = self._state
        jobs = pick_batch(
            state.order(),
            lambda job, already: state.may_start(job, worker, already),
            max_images=self._settings.engine.max_batch_images,
            batching=self._settings.queue.batching,
        )
        if not jobs:
            return None
        batch = Batch(worker, jobs, units=sum(state.units(j) for j in jobs))
        state.start(batch, self._clock())
        self._changed()
        return batch

    def _still_running(self, batch: Batch) -> list[Job]:
        """The batch's jobs that are still running and not being delivered."""
        running = self._state.running
        return [running[j.id][1] for j in batch.jobs if j.id in running and j.id not in batch.handed_off]

    def _timeout(self, jobs: list[Job]) -> float:
        """Each job brings its own time allowance into a batch, so batching never causes a timeout."""
        return self._settings.queue.job_timeout_s * len(jobs)

    def _live_workers(self) -> int:
        return max(1, len(self.workers) - len(self._broken))

    async def _run(self, batch: Batch) -> None:
        # 1. Record the start, then announce it. Jobs cancelled since the claim are not started.
        async with self._db.transaction() as conn:
            started = await self._store.mark_running(conn, batch.jobs, batch.worker.name, self._clock())
        batch.jobs = started  # a job missing here was cancelled between the claim and now
        for job in started:
            self._state.running[job.id] = (batch, job)
            self._publish(JobEvent(job.id, EventType.STARTED, job=job))
        # 2. Generate (splitting once if the device runs out of memory) and deliver.
        await self._execute(batch, started, may_split=True)

    async def _execute(self, batch: Batch, jobs: list[Job], *, may_split: bool) -> None:
        jobs = [job for job in jobs if job.id not in batch.cancelled]
        if not jobs:
            return
        try:
            results = await self._call(batch, jobs)
        except OutOfMemory:
            if may_split and len(jobs) > 1:
                half = (len(jobs) + 1) // 2
                log.warning(
                    "Out of memory on %d jobs on %s: retrying in two halves", len(jobs), batch.worker.name
                )
                await self._execute(batch, jobs[:half], may_split=False)
                await self._execute(batch, jobs[half:], may_split=False)
            else:
                await self._fail(jobs, "the device ran out of memory; try a smaller size")
            return
        except GenerationCancelled:
            if batch.interrupted == SHUTDOWN:
                await self._give_back(jobs, "the bot is restarting", refund_attempt=True)
            else:  # everyone in it was cancelled, unless the engine stopped on its own
                await self._fail(
                    [j for j in jobs if j.id not in batch.cancelled], "the generation stopped early"
                )
            return
        except _TimedOut:
            await self._fail(jobs, f"it took longer than {self._timeout(jobs):g} s, the time limit")
            await self._let_go(batch)
            return
        except AtelierError as exc:  # InvalidRequest, InvalidImage, ...: the job's fault, not the worker's
            await self._fail(jobs, str(exc))
            return
        except Exception as exc:
            log.exception("Worker %s crashed on jobs %s", batch.worker.name, [j.id for j in jobs])
            self._broken.add(batch.worker.name)
            await self._give_back(jobs, f"the worker crashed ({type(exc).__name__})", refund_attempt=False)
            return
        await self._hand_off(batch, jobs, results)

    async def _call(self, batch: Batch, jobs: list[Job]) -> list[GenerationResult]:
        """Run `jobs` on the batch's worker under the time limit; record the pace if they all finish."""
        ids = frozenset(job.id for job in jobs)

        def progress(update: BatchProgress) -> None:
            batch.step, batch.total = update.step, update.total
            for n, job in enumerate(jobs):
                if job.id in batch.cancelled:
                    continue
                preview = update.previews[n] if update.previews and n < len(update.previews) else None
                self._publish(
                    JobEvent(
                        job.id,
                        EventType.PROGRESS,
                        step=update.step,
                        total=update.total,
                        preview_png=preview,
                        job=job,
                    )
                )

        started = time.perf_counter()
        task = asyncio.ensure_future(
            batch.worker.run_batch([job.request for job in jobs], progress, batch.stop_check(ids))
        )
        batch.task = task
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout(jobs))
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            batch.interrupted = TIMEOUT
            raise _TimedOut()
        results = task.result()
        if len(results) != len(jobs):
            raise RuntimeError(f"the worker returned {len(results)} results for {len(jobs)} requests")
        self._state.pace.append((time.perf_counter() - started, sum(self._state.units(j) for j in jobs)))
        return results

    async def _let_go(self, batch: Batch) -> None:
        """After a timeout: give the worker a moment to stop at a step; if it does not, restart it."""
        task = batch.task
        if task is None:
            return
        _, pending = await asyncio.wait({task}, timeout=min(STOP_GRACE_S, self._settings.queue.job_timeout_s))
        if pending:
            task.cancel()
            log.error("Worker %s did not stop after a timeout: restarting it", batch.worker.name)
            self._broken.add(batch.worker.name)

    async def _hand_off(self, batch: Batch, jobs: list[Job], results: list[GenerationResult]) -> None:
        """Deliver in the background, so the device starts its next batch while PNGs are written.

        At most one delivery per worker waits behind the running batch: a worker faster than its disk
        slows down to it instead of piling results up in memory.
        """
        previous = self._deliveries.get(batch.worker.name)
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        for job in jobs:
            batch.handed_off.add(job.id)
            self._state.free_slot(job.id)
        self._deliveries[batch.worker.name] = asyncio.create_task(
            self._deliver_safely(batch, jobs, results), name=f"deliver-{jobs[0].id}"
        )

    async def _deliver_safely(self, batch: Batch, jobs: list[Job], results: list[GenerationResult]) -> None:
        try:
            await self._deliver(batch, jobs, results)
        except Exception:
            log.exception("Delivering jobs %s failed", [j.id for j in jobs])
            running = [self._state.running[j.id][1] for j in jobs if j.id in self._state.running]
            try:
                await self._give_back(running, "its images could not be stored", refund_attempt=False)
            except Exception:
                log.exception(
                    "Jobs %s stay 'running' until the next start retries them", [j.id for j in jobs]
                )
        finally:
            for job in jobs:
                self._state.close_running(job.id)
            self._changed()
            self._poke()

    async def _deliver(self, batch: Batch, jobs: list[Job], results: list[GenerationResult]) -> None:
        """Write the PNGs (off the loop), then mark the jobs done and charge them in one transaction."""
        kept = {job.id: (job, result) for job, result in zip(jobs, results, strict=True)}
        kept = {job_id: item for job_id, item in kept.items() if job_id not in batch.cancelled}
        folders = {
            job_id: job_folder(self._images_dir, job.scope, job_id) for job_id, (job, _) in kept.items()
        }
        try:
            # One thread per job: writing files mostly waits on the disk, so the jobs' writes overlap.
            saved = await asyncio.gather(
                *(asyncio.to_thread(save_result, folders[i], result) for i, (_, result) in kept.items())
            )
        except OSError as exc:
            await self._fail(
                [job for job, _ in kept.values()], f"the images could not be saved ({exc.strerror or exc})"
            )
            return
        flags = await self._check_images(kept)
        async with self._db.transaction() as conn:
            jobs_saved = [(job, images) for (job, _), images in zip(kept.values(), saved, strict=True)]
            done = await self._store.mark_done(conn, jobs_saved, self._clock())
            for index, job in enumerate(done):
                if job.id in flags:  # withheld: recorded, and its credits go back
                    done[index] = await self._store.mark_flagged(conn, job, flags[job.id])
                    await self._release(conn, job, "images withheld by the image check")
                    continue
                if job.hold_id is not None and not await self._credits.settle(job.hold_id, conn=conn):
                    log.warning(
                        "Job %s was delivered but its hold %s was already closed", job.id, job.hold_id
                    )
        for job in done:
            self._state.close_running(job.id)
            warnings = kept[job.id][1].warnings
            self._publish(JobEvent(job.id, EventType.DONE, job=job, reason="; ".join(warnings) or None))
        delivered = {job.id for job in done}
        discarded = [folder for job_id, folder in folders.items() if job_id not in delivered]
        if discarded:  # cancelled while their images were being written: not delivered, not kept
            await asyncio.to_thread(discard, discarded)

    async def _check_images(self, kept: dict[int, tuple[Job, GenerationResult]]) -> dict[int, str]:
        """Job id → why its images must be withheld, for the jobs the image check flags."""
        if self._image_check is None:
            return {}
        reasons = await asyncio.gather(
            *(self._image_check(job, result) for job, result in kept.values()), return_exceptions=True
        )
        flags = {}
        for job_id, reason in zip(kept, reasons, strict=True):
            if isinstance(reason, Exception):  # fail closed: an unchecked image is not posted
                log.error("The image check failed for job %s", job_id, exc_info=reason)
                reason = "the image check could not run"
            if reason:
                flags[job_id] = str(reason)
        return flags

    # -- ending jobs -------------------------------------------------------------------------------------

    async def _fail(self, jobs: list[Job], reason: str) -> None:
        """Mark running jobs failed and return their credits."""
        if not jobs:
            return
        now = self._clock()
        failed = []
        async with self._db.transaction() as conn:
            for job in jobs:
                row = await self._store.mark_finished(
                    conn, job.id, JobStatus.FAILED, error=reason, now=now, allowed_from=(JobStatus.RUNNING,)
                )
                if row is not None:
                    await self._release(conn, row, "job failed")
                    failed.append(row)
        for job in failed:
            self._state.close_running(job.id)
            self._publish(JobEvent(job.id, EventType.FAILED, job=job, reason=reason))

    async def _give_back(self, jobs: list[Job], reason: str, *, refund_attempt: bool) -> None:
        """Interrupted running jobs: back in line in their old place, or failed if already retried."""
        if not jobs:
            return
        now = self._clock()
        requeued, failed = [], []
        async with self._db.transaction() as conn:
            for job in jobs:
                if refund_attempt or job.attempts < MAX_ATTEMPTS:
                    row = await self._store.requeue(conn, job.id, refund_attempt=refund_attempt)
                    if row is not None:
                        requeued.append(row)
                    continue
                row = await self._store.mark_finished(
                    conn,
                    job.id,
                    JobStatus.FAILED,
                    error=f"{reason}, twice",
                    now=now,
                    allowed_from=(JobStatus.RUNNING,),
                )
                if row is not None:
                    await self._release(conn, row, "job failed")
                    failed.append(row)
        for job in requeued:
            self._state.close_running(job.id)
            self._state.add_waiting(job)
            self._announce_queued(job, f"{reason}; it will run again")
        for job in failed:
            self._state.close_running(job.id)
            self._publish(JobEvent(job.id, EventType.FAILED, job=job, reason=job.error))
        self._poke()

    async def _cancel_jobs(
        self, ids: list[int], by: int, reason: str, allowed_from: tuple[JobStatus, ...]
    ) -> list[Job]:
        now = self._clock()
        cancelled = []
        async with self._db.transaction() as conn:
            for job_id in ids:
                row = await self._store.mark_finished(
                    conn,
                    job_id,
                    JobStatus.CANCELLED,
                    error=reason,
                    now=now,
                    allowed_from=allowed_from,
                    cancelled_by=by,
                )
                if row is not None:
                    await self._release(conn, row, "job cancelled")
                    cancelled.append(row)
        for job in cancelled:
            self._state.remove_waiting(job.id)
            running = self._state.running.get(job.id)
            if running is not None:
                running[0].cancelled.add(job.id)  # the batch stops if nobody in it is left
                self._state.close_running(job.id)
            self._publish(JobEvent(job.id, EventType.CANCELLED, job=job, reason=reason))
        if cancelled:
            self._changed()
            self._poke()
        return cancelled

    async def _release(self, conn: Any, job: Job, reason: str) -> None:
        if job.hold_id is not None:
            await self._credits.release(job.hold_id, reason, conn=conn)

    # -- helpers -----------------------------------------------------------------------------------------

    def _new_job_id(self) -> int:
        """The next job id, handed out in memory (this process owns the database) to save a round trip.

        Ids are never reused: one taken by a transaction that rolls back is simply skipped.
        """
        self._last_job_id += 1
        return self._last_job_id

    def _check_open(self) -> None:
        if self._stopping:
            raise QueuePaused(
                "Atelier is restarting: nothing new is queued right now. Try again in a minute."
            )
        if not self._running:
            raise QueuePaused("The queue has not started yet. Try again in a moment.")

    def _worker_for(self, model: str) -> Worker:
        if not model:
            return self.workers[0]
        for worker in self.workers:
            if worker.model == model:
                return worker
        loaded = ", ".join(sorted({w.model for w in self.workers}))
        raise InvalidRequest(f"The model {model!r} is not loaded here; use one of: {loaded}.")

    def _refuse_if_full(self, scope: int, owner: int) -> None:
        limits = self._state.limits(scope)
        if limits.paused:
            raise QueuePaused(
                "A moderator has paused the queue here: nothing new is queued until they resume it."
            )
        mine = self._state.queued_count[(scope, owner)]
        if mine >= limits.max_queued_per_member:
            raise QueueFull(
                f"You already have {mine} jobs waiting here, the most one member may queue "
                f"({limits.max_queued_per_member}). Wait for one to start, or cancel one with /cancel."
            )
        waiting = len(self._state.waiting)
        limit = self._settings.queue.max_queue_length
        if waiting >= limit:
            yours = (
                f"{mine} of them {'is' if mine == 1 else 'are'} yours" if mine else "none of them is yours"
            )
            raise QueueFull(
                f"The queue is full: {waiting} jobs are waiting, the most it holds ({limit}), and {yours}. "
                "Try again in a few minutes."
            )

    async def _parent(self, scope: int, parent_job_id: int, index: int) -> Job:
        parent = await self._store.get(parent_job_id)
        if parent is None or parent.scope != scope:
            raise JobNotFound(f"There is no job {parent_job_id} here.")
        if parent.status is not JobStatus.DONE:
            raise InvalidRequest(
                f"Job {parent_job_id} has no images yet (it is {parent.status}): wait until it is done."
            )
        count = len(parent.result_paths)
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= count:
            raise InvalidRequest(
                f"Job {parent_job_id} has {count} image(s): pick one from 1 to {count}, not {index!r}."
            )
        self._require_image(parent, index)
        return parent

    def _require_image(self, job: Job, index: int) -> None:
        """Refuse, saying why, when image `index` of `job` was deleted (retention pruning or by hand)."""
        if job.images_pruned_at is not None:
            days = self._settings.privacy.retention_days
            raise ImagesGone(
                f"The images of job {job.id} are no longer stored: Atelier deletes images "
                f"{days} days after they are made, and these were deleted <t:{int(job.images_pruned_at)}:D>. "
                + (
                    "Its prompt is kept: 🔄 on its grid still makes new images."
                    if job.kind is JobKind.IMAGINE
                    else "Its prompt is kept: /imagine with the same prompt still works."
                )
            )
        if _gone(job.image_path(index)):
            raise ImagesGone(
                f"Image {index} of job {job.id} is no longer stored on the server, so it cannot be used."
            )

    async def _save_scope(self, scope: int, **changes: Any) -> None:
        state = self._state.scope(scope)
        new = {
            "paused": state.paused,
            "max_queued": state.max_queued,
            "max_running": state.max_running,
            **changes,
        }
        await self._store.save_scope(scope, now=self._clock(), **new)
        state.paused, state.max_queued, state.max_running = (
            new["paused"],
            new["max_queued"],
            new["max_running"],
        )
        self._state.changed()
        self._changed()
