"""Fan-out of job events: listeners hear every job, subscribers follow one.

Publishing never waits: a listener that returns a coroutine (an `async def` callback) runs as an owned
task, and each subscriber has its own unbounded inbox, so a slow Discord edit can never hold up the GPU.
Listener errors are logged, not raised into the queue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from bot.queue.jobs import JobEvent

log = logging.getLogger(__name__)

Listener = Callable[[JobEvent], Any]


class EventHub:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._inboxes: dict[int, set[asyncio.Queue[JobEvent]]] = defaultdict(set)
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(event)` for every event of every job; returns a function that removes it."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def publish(self, event: JobEvent) -> None:
        for callback in list(self._listeners):
            try:
                outcome = callback(event)
            except Exception:
                log.exception("Job listener %r failed on %s of job %s", callback, event.type, event.job_id)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._tasks.add(task)
                task.add_done_callback(self._finished)
        for inbox in self._inboxes.get(event.job_id, ()):
            inbox.put_nowait(event)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("A job listener failed", exc_info=task.exception())

    def subscribe(self, job_id: int, current: Callable[[], Awaitable[JobEvent]]) -> Subscription:
        inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._inboxes[job_id].add(inbox)
        return Subscription(self, job_id, inbox, current)

    def _unsubscribe(self, job_id: int, inbox: asyncio.Queue[JobEvent]) -> None:
        inboxes = self._inboxes.get(job_id)
        if inboxes is not None:
            inboxes.discard(inbox)
            if not inboxes:
                del self._inboxes[job_id]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


class Subscription:
    """The events of one job, starting with its current state and ending after its final event.

    Registered when created, so nothing that happens after `subscribe()` returns is missed.
    Use as `async for event in queue.subscribe(job_id)`; `aclose()` stops early.
    """

    def __init__(
        self,
        hub: EventHub,
        job_id: int,
        inbox: asyncio.Queue[JobEvent],
        current: Callable[[], Awaitable[JobEvent]],
    ) -> None:
        self._hub = hub
        self._job_id = job_id
        self._inbox = inbox
        self._current: Callable[[], Awaitable[JobEvent]] | None = current
        self._ended = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        if self._ended:
            raise StopAsyncIteration
        try:
            if self._current is not None:
                current, self._current = self._current, None
                event = await current()
            else:
                event = await self._inbox.get()
        except BaseException:
            await self.aclose()
            raise
        if event.type.final:
            await self.aclose()
        return event

    async def aclose(self) -> None:
        self._ended = True
        self._hub._unsubscribe(self._job_id, self._inbox)
