"""The queue's in-memory mirror of what is waiting and running, for decisions that must not touch the disk.

The database is the truth; this mirror exists so that choosing the next batch, counting a member's jobs
and computing positions cost no I/O. It stays exact because every change goes through the one `JobQueue`
of the process, which updates the mirror right after the transaction that made the change commits
(with no `await` in between, so no other task can observe the gap).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field

from bot.engine.types import ModelProfile
from bot.queue.jobs import Job, QueueLimits
from bot.queue.scheduler import estimate_etas, fair_order
from bot.queue.worker import StopCheck, Worker
from bot.settings import QueueSettings

RECENT_BATCHES = 32  #: how many finished batches the seconds-per-unit average looks back on


@dataclass(eq=False)
class Batch:
    """The jobs one worker runs in one pass, and what may stop it."""

    worker: Worker
    jobs: list[Job]
    units: float
    cancelled: set[int] = field(default_factory=set)
    handed_off: set[int] = field(default_factory=set)  #: generated, now being saved and marked done
    interrupted: str | None = None  #: why the whole batch must stop (timeout, shutdown)
    step: int = 0
    total: int = 0
    task: asyncio.Future[object] | None = None  #: the worker call in flight

    def stop_check(self, ids: frozenset[int]) -> StopCheck:
        """True once the batch is interrupted or every one of `ids` is cancelled (read from any thread)."""
        return lambda: self.interrupted is not None or self.cancelled.issuperset(ids)

    @property
    def remaining_units(self) -> float:
        done = self.step / self.total if self.total else 0.0
        return self.units * (1.0 - done)


@dataclass
class ScopeState:
    paused: bool = False
    max_queued: int | None = None  #: None: the settings' default
    max_running: int | None = None


class QueueState:
    def __init__(self, settings: QueueSettings, profile: ModelProfile) -> None:
        self.settings = settings
        self.profile = profile
        self.waiting: dict[int, Job] = {}
        self.running: dict[int, tuple[Batch, Job]] = {}
        self.batches: dict[str, Batch] = {}  #: worker name → its batch
        self.queued_count: Counter[tuple[int, int]] = Counter()
        self.running_count: Counter[tuple[int, int]] = Counter()
        self.slots: set[int] = set()  #: running jobs that hold one of their member's running slots
        self.served: dict[int, float] = {}  #: owner → when a job of theirs last started
        self.scopes: dict[int, ScopeState] = {}
        self.pace: deque[tuple[float, float]] = deque(maxlen=RECENT_BATCHES)  #: (seconds, units)
        self._order: list[Job] | None = None
        self._index: dict[int, int] = {}

    # -- membership ----------------------------------------------------------------------------------

    def add_waiting(self, job: Job) -> None:
        self.waiting[job.id] = job
        self.queued_count[job.member] += 1
        self._order = None

    def remove_waiting(self, job_id: int) -> Job | None:
        job = self.waiting.pop(job_id, None)
        if job is not None:
            self.queued_count[job.member] -= 1
            self._order = None
        return job

    def start(self, batch: Batch, now: float) -> None:
        """Move the batch's jobs from waiting to running and mark their owners as just served."""
        for job in batch.jobs:
            self.remove_waiting(job.id)
            self.running[job.id] = (batch, job)
            self.running_count[job.member] += 1
            self.slots.add(job.id)
            self.served[job.owner] = now
        self.batches[batch.worker.name] = batch
        self._order = None

    def close_running(self, job_id: int) -> bool:
        """Forget a running job (finished, cancelled or put back); False if it was not running."""
        entry = self.running.pop(job_id, None)
        if entry is None:
            return False
        self.free_slot(job_id, entry[1])
        return True

    def free_slot(self, job_id: int, job: Job | None = None) -> None:
        """The job no longer uses the device (its images are being saved): its member may start another."""
        if job_id in self.slots:
            self.slots.discard(job_id)
            member = (job or self.running[job_id][1]).member
            self.running_count[member] -= 1

    def update(self, job: Job) -> None:
        """Replace the stored copy of a waiting or running job (e.g. after `set_message`)."""
        if job.id in self.waiting:
            self.waiting[job.id] = job
            self._order = None
        elif job.id in self.running:
            self.running[job.id] = (self.running[job.id][0], job)

    # -- limits ----------------------------------------------------------------------------------------

    def scope(self, scope: int) -> ScopeState:
        return self.scopes.setdefault(scope, ScopeState())

    def limits(self, scope: int) -> QueueLimits:
        state = self.scopes.get(scope) or ScopeState()
        return QueueLimits(
            max_queued_per_member=state.max_queued or self.settings.max_queued_per_member,
            max_running_per_member=state.max_running or self.settings.max_running_per_member,
            paused=state.paused,
        )

    def paused_scopes(self) -> set[int]:
        return {scope for scope, state in self.scopes.items() if state.paused}

    def may_start(self, job: Job, worker: Worker, already: int) -> bool:
        """Whether `worker` may start `job` with `already` jobs of its member in the same batch."""
        if job.request.model != worker.model:
            return False
        limits = self.limits(job.scope)
        return not limits.paused and self.running_count[job.member] + already < limits.max_running_per_member

    # -- order, positions, ETAs ------------------------------------------------------------------------

    def changed(self) -> None:
        self._order = None

    def order(self) -> list[Job]:
        if self._order is None:
            self._order = fair_order(self.waiting.values(), self.served, self.paused_scopes())
            self._index = {job.id: n for n, job in enumerate(self._order)}
        return self._order

    def position(self, job_id: int) -> int | None:
        self.order()
        index = self._index.get(job_id)
        return None if index is None else index + 1

    def units(self, job: Job) -> float:
        request = job.request
        return self.profile.work_units(request.width, request.height, request.steps, request.images)

    def seconds_per_unit(self) -> float | None:
        units = sum(u for _, u in self.pace)
        return sum(s for s, _ in self.pace) / units if units > 0 else None

    def etas(self, workers: int) -> list[float | None]:
        """ETA of every job of `order()`, in that order."""
        paused = self.paused_scopes()
        return estimate_etas(
            self.order(),
            self.units,
            self.seconds_per_unit(),
            backlog_units=sum(b.remaining_units for b in self.batches.values()),
            workers=workers,
            held=lambda job: job.scope in paused,
        )

    def remaining_seconds(self, batch: Batch) -> float | None:
        pace = self.seconds_per_unit()
        return None if pace is None else batch.remaining_units * pace
