"""The generation job queue: fair share, batching, durable jobs, credits held and settled per job.

Torch-free: the engine is reached only through `Worker`s. Public API:
`JobQueue` and its value objects (`Job`, `JobStatus`, `JobEvent`, `EventType`, `QueueSnapshot`, ...),
the `Worker` protocol with `LocalWorker` (an engine in a thread) and `FakeWorker` (tests, benchmarks).
"""

from bot.queue.events import Subscription
from bot.queue.fake import FakeEngine, FakeWorker
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
from bot.queue.queue import JobQueue
from bot.queue.worker import BatchProgress, LocalWorker, Worker

__all__ = [
    "BatchProgress",
    "EventType",
    "FakeEngine",
    "FakeWorker",
    "Job",
    "JobEvent",
    "JobQueue",
    "JobStatus",
    "LocalWorker",
    "QueueEntry",
    "QueueLimits",
    "QueueSnapshot",
    "Subscription",
    "Worker",
    "WorkerState",
]
