"""The scheduler's view of a GPU: a `Worker` runs one batch at a time and reports progress.

The queue only ever talks to this small protocol, so a worker may be an engine in a thread of this
process (`LocalWorker`), a scripted fake (`bot.queue.fake.FakeWorker`), or an engine in a Ray actor on
any machine of a cluster (`bot.queue.ray_worker.RayWorker`), without the scheduler changing.

Contract for implementations:
- `run_batch` runs all requests (equal `batch_key()`) as one pass and returns result i for request i.
  It raises the engine's domain errors unchanged: `GenerationCancelled` once `should_stop()` turns true,
  `OutOfMemory`, `InvalidRequest` / `InvalidImage`. Anything else means the worker itself broke.
- `on_progress` is called on the event loop; `should_stop` may be called from any thread and is cheap.
- `restart` brings a broken or hung worker back; `close` frees it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue as thread_queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot.engine.types import GenerationRequest, GenerationResult, ModelProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchProgress:
    """One finished denoising step of a batch."""

    step: int
    total: int
    previews: tuple[bytes, ...] | None = None  #: one small PNG per request, on some steps


ProgressCallback = Callable[[BatchProgress], None]
StopCheck = Callable[[], bool]


@runtime_checkable
class Worker(Protocol):
    """Something that turns batches of requests into images on one device."""

    name: str
    model: str  #: what `GenerationRequest.model` must say for this worker to run it
    device: str
    profile: ModelProfile

    async def run_batch(
        self, requests: list[GenerationRequest], on_progress: ProgressCallback, should_stop: StopCheck
    ) -> list[GenerationResult]: ...

    async def restart(self) -> None: ...

    async def close(self) -> None: ...


class _EngineThread:
    """One daemon thread that runs blocking calls in order, so an engine is never used by two at once.

    Daemon, and never joined: a call stuck inside a GPU kernel must not keep the bot from exiting or
    from replacing this thread with a fresh one.
    """

    def __init__(self, name: str) -> None:
        self._calls: thread_queue.SimpleQueue[Any] = thread_queue.SimpleQueue()
        self.busy = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            function, loop, future = item
            self.busy = True
            try:
                result = function()
            except BaseException as exc:
                _resolve(loop, future, exc=exc)
            else:
                _resolve(loop, future, value=result)
            finally:
                self.busy = False

    def call(self, function: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((function, loop, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], *, value: Any = None, exc: Any = None
) -> None:
    def settle() -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(settle)


def preview_png(image: Any) -> bytes:
    """A preview as PNG bytes (done in the engine thread, so the loop only forwards bytes)."""
    if isinstance(image, bytes):
        return image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class LocalWorker:
    """An engine in this process, run in its own thread so the event loop never waits for torch.

    `engine` is anything shaped like `bot.engine.engine.Engine` (a `profile`, a `device`, and a blocking
    `run(requests, on_progress=, should_stop=)`); `reload`, if given, builds a fresh one on `restart()`.
    """

    def __init__(
        self, engine: Any, *, name: str = "worker-0", reload: Callable[[], Any] | None = None
    ) -> None:
        self.engine = engine
        self.name = name
        self.profile: ModelProfile = engine.profile
        self.model = engine.profile.name
        self.device = str(engine.device)
        self._reload = reload
        self._thread = _EngineThread(f"atelier-{name}")

    @classmethod
    async def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        settings: Any = None,
        name: str = "worker-0",
    ) -> LocalWorker:
        """Load the model (off the loop) into a worker that can reload it after a crash."""
        from bot.engine.engine import Engine

        def load() -> Any:
            return Engine.load(model, device=device, dtype=dtype, settings=settings)

        engine = await asyncio.to_thread(load)
        return cls(engine, name=name, reload=load)

    async def run_batch(
        self, requests: list[GenerationRequest], on_progress: ProgressCallback, should_stop: StopCheck
    ) -> list[GenerationResult]:
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()
        engine = self.engine

        def progress(update: Any) -> None:  # engine thread
            previews = tuple(preview_png(p) for p in update.previews) if update.previews else None
            report = BatchProgress(step=update.step, total=update.total, previews=previews)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
                loop.call_soon_threadsafe(on_progress, report)

        def stop() -> bool:  # engine thread
            return abandoned.is_set() or should_stop()

        try:
            return await self._thread.call(
                lambda: engine.run(requests, on_progress=progress, should_stop=stop)
            )
        except asyncio.CancelledError:
            abandoned.set()  # the caller gave up: stop at the next step instead of running on unseen
            raise

    async def restart(self) -> None:
        """A fresh thread (the old one may be stuck in a step) and, if possible, a freshly loaded engine."""
        if self._thread.busy:
            log.warning("%s: abandoning a thread that is still busy", self.name)
        self._thread.stop()
        self._thread = _EngineThread(f"atelier-{self.name}")
        if self._reload is not None:
            self.engine = None  # let the broken one go before loading another
            self.engine = await self._thread.call(self._reload)

    async def close(self) -> None:
        """Free the engine's device memory (unless its thread is stuck in a step) and end the thread."""
        engine, self.engine = self.engine, None
        if engine is not None and hasattr(engine, "close") and not self._thread.busy:
            await self._thread.call(engine.close)
        self._thread.stop()
