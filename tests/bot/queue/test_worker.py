"""LocalWorker: an engine in its own thread, reporting back on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.errors import GenerationCancelled
from bot.queue import BatchProgress, FakeEngine, LocalWorker, Worker
from bot.queue.fake import FakeProgress
from tests.bot.queue.helpers import imagine


class SlowEngine(FakeEngine):
    """Blocks its thread for `step_s` per step, like a GPU would, and remembers which thread ran it."""

    def __init__(self, step_s: float = 0.02, previews: bool = False) -> None:
        super().__init__()
        self.step_s = step_s
        self.previews = previews
        self.threads: set[str] = set()

    def run(self, requests, *, on_progress=None, should_stop=None):
        self.threads.add(threading.current_thread().name)
        total = requests[0].steps
        for step in range(1, total + 1):
            if should_stop is not None and should_stop():
                raise GenerationCancelled()
            time.sleep(self.step_s)
            if on_progress is not None:
                shown = [self.image(r.prompt, r.seed) for r in requests] if self.previews else None
                on_progress(FakeProgress(step, total, shown))
        return [self.result(r) for r in requests]


async def test_local_worker_runs_off_the_loop_and_reports_on_it() -> None:
    """The engine runs in the worker's thread; progress (with PNG previews) arrives on the loop's thread."""
    engine = SlowEngine(previews=True)
    worker = LocalWorker(engine, name="gpu-0")
    assert isinstance(worker, Worker)
    seen: list[tuple[BatchProgress, str]] = []

    def progress(update: BatchProgress) -> None:
        seen.append((update, threading.current_thread().name))

    requests = [imagine(seed=1), imagine(seed=9)]
    results = await worker.run_batch(requests, progress, lambda: False)
    await asyncio.sleep(0)  # let the last call_soon_threadsafe land
    assert [r.recipes[0].seed for r in results] == [1, 9]
    assert engine.threads == {"atelier-gpu-0"}
    assert [u.step for u, _ in seen] == [1, 2, 3, 4]
    assert {name for _, name in seen} == {threading.current_thread().name}
    previews = seen[0][0].previews
    assert previews is not None and len(previews) == 2 and previews[0].startswith(b"\x89PNG")
    await worker.close()


async def test_local_worker_stops_between_steps() -> None:
    """When should_stop turns true, the engine stops at the next step with GenerationCancelled."""
    worker = LocalWorker(SlowEngine(), name="gpu-0")
    stop = threading.Event()
    task = asyncio.ensure_future(worker.run_batch([imagine(steps=50)], lambda u: stop.set(), stop.is_set))
    with pytest.raises(GenerationCancelled):
        await task
    await worker.close()


async def test_abandoned_call_stops_the_engine_and_restart_reloads() -> None:
    """A caller that gives up (timeout) stops the engine; restart brings a freshly loaded engine."""
    loads: list[SlowEngine] = []

    def reload() -> SlowEngine:
        loads.append(SlowEngine())
        return loads[-1]

    first = SlowEngine()
    worker = LocalWorker(first, name="gpu-0", reload=reload)
    task = asyncio.ensure_future(worker.run_batch([imagine(steps=500)], lambda u: None, lambda: False))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await worker.restart()
    assert worker.engine is loads[0]
    results = await worker.run_batch([imagine()], lambda u: None, lambda: False)
    assert len(results[0].images) == 4
    await worker.close()
