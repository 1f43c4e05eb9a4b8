"""The queue's value objects: a job as stored, the events it goes through, and views of the queue.

All frozen: a `Job` is a snapshot of its row at one moment. To see the newest state, ask the queue
again (`await queue.get(job_id)`) or follow its events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.engine.types import GenerationRequest, JobKind, Recipe


class JobStatus(StrEnum):
    """Where a job is in its life. Only the first two can change."""

    QUEUED = "queued"  #: waiting for a worker
    RUNNING = "running"  #: a worker is generating it
    DONE = "done"  #: delivered: images on disk, credits charged
    FAILED = "failed"  #: gave up with a reason; credits returned
    CANCELLED = "cancelled"  #: its owner or a moderator cancelled it; credits returned

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class EventType(StrEnum):
    """What just happened to a job."""

    QUEUED = "queued"  #: accepted (or put back after a restart or a worker crash); has position and ETA
    POSITION = "position"  #: its place in the line or its ETA changed
    STARTED = "started"  #: a worker picked it up
    PROGRESS = "progress"  #: a denoising step finished; has step/total and sometimes a preview
    DONE = "done"  #: finished; `job` holds the result paths and recipes
    FAILED = "failed"  #: gave up; `reason` says why
    CANCELLED = "cancelled"  #: cancelled by its owner or a moderator; `reason` says by whom

    @property
    def final(self) -> bool:
        return self in (EventType.DONE, EventType.FAILED, EventType.CANCELLED)


@dataclass(frozen=True)
class Job:
    """One generation job as stored in its row."""

    id: int
    kind: JobKind
    scope: int  #: guild id, 0 for DMs
    owner: int  #: the member who asked and pays
    status: JobStatus
    request: GenerationRequest
    cost: int  #: credits held while it waits, charged only when delivered
    hold_id: int | None  #: the credit hold (None for free SELECT jobs)
    created_at: float  #: unix seconds
    channel_id: int | None = None
    message_id: int | None = None
    parent_job_id: int | None = None  #: the grid this job varies, upscales or selects from
    parent_index: int | None = None  #: which image of that grid, 1-4
    attempts: int = 0  #: how many times a worker started it
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    grid_path: str | None = None  #: the 2×2 grid PNG of a four-image job
    result_paths: tuple[str, ...] = ()  #: one PNG per image, image 1 first
    recipes: tuple[Recipe, ...] = ()
    error: str | None = None  #: why it failed or who cancelled it
    cancelled_by: int | None = None
    images_pruned_at: float | None = None  #: when retention deleted its image files
    nsfw: bool = False  #: asked for in an age-restricted channel (image checks do not withhold there)
    flagged: str | None = None  #: why its images were withheld (credits returned), if they were

    @property
    def relax(self) -> bool:
        return self.request.relax

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def member(self) -> tuple[int, int]:
        """(scope, owner): the unit that per-member limits count."""
        return (self.scope, self.owner)

    @property
    def images(self) -> int:
        return self.request.images

    @property
    def run_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            kind=JobKind(row["kind"]),
            scope=row["scope"],
            owner=row["owner"],
            status=JobStatus(row["status"]),
            request=GenerationRequest.from_dict(json.loads(row["request"])),
            cost=row["cost"],
            hold_id=row["hold_id"],
            created_at=row["created_at"],
            channel_id=row["channel_id"],
            message_id=row["message_id"],
            parent_job_id=row["parent_job_id"],
            parent_index=row["parent_index"],
            attempts=row["attempts"],
            worker=row["worker"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            grid_path=row["grid_path"],
            result_paths=tuple(json.loads(row["result_paths"])),
            recipes=tuple(Recipe.from_dict(r) for r in json.loads(row["recipes"])),
            error=row["error"],
            cancelled_by=row["cancelled_by"],
            images_pruned_at=row["images_pruned_at"],
            nsfw=bool(row["nsfw"]),
            flagged=row["flagged"],
        )

    def image_path(self, index: int) -> Path:
        """The PNG of image `index` (1-based, as on the U1–U4 buttons)."""
        return Path(self.result_paths[index - 1])

    def evolve(self, **changes: Any) -> Job:
        return replace(self, **changes)


@dataclass(frozen=True)
class JobEvent:
    """One change of one job, as told to listeners and subscribers."""

    job_id: int
    type: EventType
    position: int | None = None  #: 1-based place in the line (QUEUED, POSITION)
    eta_s: float | None = None  #: seconds until it should be done; None until the queue has timings
    step: int | None = None  #: PROGRESS: denoising steps done
    total: int | None = None  #: PROGRESS: steps in all
    preview_png: bytes | None = None  #: PROGRESS: a small preview of this job's images, sometimes
    job: Job | None = None  #: the job as stored right after the change
    reason: str | None = None  #: FAILED / CANCELLED / re-QUEUED: why, in a sentence


@dataclass(frozen=True)
class QueueLimits:
    """The limits in force in one scope (moderator overrides or the settings' defaults)."""

    max_queued_per_member: int
    max_running_per_member: int
    paused: bool = False


@dataclass(frozen=True)
class QueueEntry:
    """A waiting or running job in a snapshot."""

    job: Job
    position: int  #: 1-based for waiting jobs, 0 for running ones
    eta_s: float | None
    worker: str | None = None
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class WorkerState:
    """What one worker is doing."""

    name: str
    device: str
    model: str
    job_ids: tuple[int, ...]  #: the batch it runs now, empty when idle
    step: int | None = None
    total: int | None = None

    def describe(self) -> str:
        if not self.job_ids:
            return "idle"
        jobs = ", ".join(str(i) for i in self.job_ids)
        progress = f", step {self.step}/{self.total}" if self.step is not None and self.total else ""
        return f"running job{'s' if len(self.job_ids) > 1 else ''} {jobs}{progress}"


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue at one moment, optionally restricted to one scope (positions stay global)."""

    waiting: tuple[QueueEntry, ...]
    running: tuple[QueueEntry, ...]
    workers: tuple[WorkerState, ...]
    paused: bool  #: the asked-for scope is paused (with no scope: any scope is)
    seconds_per_unit: float | None  #: recent average, what ETAs are made of
