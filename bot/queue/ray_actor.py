"""What runs inside one Ray actor: one engine, loaded once, running one batch at a time. Ray-free.

`bot.queue.ray_worker` wraps `GenerationActor` with `ray.remote` and talks to it; this module imports
neither Ray nor torch, so both sides can unpickle what it defines and it can be tested without a cluster.

Why the shapes here:
- `run_batch` is an async generator: Ray turns it into a streaming generator, so progress reaches the
  bot step by step while the batch runs, and the last item is the results. The engine itself runs in a
  thread of the actor, so the actor's event loop stays free to receive `stop`.
- Results travel as raw pixel bytes (`EncodedResult`, `RawImage`): lossless, and cheap to make and read,
  where PNG-encoding them would cost more than everything else Ray adds (see `RawImage`).
- Source images of vary/upscale are files on the bot's machine, which an actor on another machine
  cannot open: their bytes come along with the batch and are written to a temporary folder here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.engine.images import make_grid
from bot.engine.types import GenerationRequest, GenerationResult, ModelProfile, Recipe
from bot.queue.worker import BatchProgress, preview_png

_DONE = object()


@dataclass(frozen=True)
class ActorInfo:
    """What an actor can run and where: the queue gives it only jobs for its `model`."""

    model: str
    profile: ModelProfile
    device: str  #: as the engine resolved it: "cuda", "cpu", ...
    dtype: str
    memory_bytes: int  #: the GPU's memory, or the node's RAM for a CPU actor
    node: str  #: IP address of the machine it runs on
    pid: int
    threads: int  #: CPU threads torch uses there (Ray sets them from the actor's CPUs); pixels depend on it

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0]

    def describe(self) -> str:
        """E.g. "cuda@10.0.0.7, 24 GB" (logged at start-up for each actor)."""
        return f"{self.device}@{self.node}, {self.memory_bytes / 2**30:.0f} GB"


@dataclass(frozen=True)
class RawImage:
    """An image as its raw pixel bytes: lossless, and ~0.5 ms each way for 512×512 where PNG takes 15–30 ms
    to encode (measured by `scripts/bench_ray.py`), which would be most of Ray's cost per batch."""

    mode: str
    size: tuple[int, int]
    data: bytes

    @classmethod
    def of(cls, image: Image.Image) -> RawImage:
        return cls(image.mode, image.size, image.tobytes())

    def to_image(self) -> Image.Image:
        return Image.frombytes(self.mode, self.size, self.data)


@dataclass
class EncodedResult:
    """A `GenerationResult` made to cross the process boundary: raw images, no PIL objects, no grid.

    The grid is not sent (it would double the bytes): it is `make_grid(images)`, rebuilt by the bot.
    """

    request: GenerationRequest
    images: list[RawImage]
    recipes: list[Recipe]
    has_grid: bool
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def encode(cls, result: GenerationResult) -> EncodedResult:
        return cls(
            request=result.request,
            images=[RawImage.of(image) for image in result.images],
            recipes=list(result.recipes),
            has_grid=result.grid is not None,
            warnings=list(result.warnings),
            seconds=result.seconds,
            timings=dict(result.timings),
        )

    def decode(self) -> GenerationResult:
        images = [image.to_image() for image in self.images]
        return GenerationResult(
            request=self.request,
            images=images,
            recipes=self.recipes,
            grid=make_grid(images) if self.has_grid else None,
            warnings=self.warnings,
            seconds=self.seconds,
            timings=self.timings,
        )


class GenerationActor:
    """One engine in one Ray actor. `load()` builds it (e.g. `functools.partial(Engine.load, model, ...)`)."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._current: int | None = None  #: id of the batch running now
        self._stop = threading.Event()  #: read by the engine thread between steps
        self._engine: Any = None
        self._load_error: Exception | None = None
        try:
            self._engine = load()
        except Exception as exc:  # kept for `info()`: Ray would turn it into an unreadable traceback
            self._load_error = exc

    async def info(self) -> ActorInfo:
        """What this actor runs; raises the model's load error if it could not be loaded."""
        if self._load_error is not None:
            raise self._load_error
        engine = self._engine
        return ActorInfo(
            model=engine.profile.name,
            profile=engine.profile,
            device=str(engine.device),
            dtype=str(getattr(engine, "dtype", "")),
            memory_bytes=_memory_bytes(str(engine.device)),
            node=_node_address(),
            pid=os.getpid(),
            threads=_threads(),
        )

    async def busy(self) -> bool:
        return self._current is not None

    async def stop(self, batch_id: int) -> None:
        """Stop batch `batch_id` at its next step (a stale id, for a batch already over, does nothing)."""
        if self._current == batch_id:
            self._stop.set()

    async def run_batch(
        self, batch_id: int, requests: list[GenerationRequest], sources: dict[str, bytes]
    ) -> AsyncIterator[BatchProgress | list[EncodedResult]]:
        """Yield a `BatchProgress` per step, then the list of encoded results (one per request).

        Raises the engine's errors unchanged (Ray wraps them; the bot unwraps them).
        """
        if self._load_error is not None:
            raise self._load_error
        if self._current is not None:
            raise RuntimeError(f"batch {self._current} is still running on this actor")
        self._current = batch_id
        self._stop.clear()
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue[Any] = asyncio.Queue()
        folder = Path(tempfile.mkdtemp(prefix="atelier-sources-")) if sources else None
        work: asyncio.Future[list[EncodedResult]] | None = None
        try:
            local = _with_local_sources(requests, sources, folder)

            def progress(update: Any) -> None:  # engine thread
                previews = tuple(preview_png(p) for p in update.previews) if update.previews else None
                report = BatchProgress(step=update.step, total=update.total, previews=previews)
                loop.call_soon_threadsafe(updates.put_nowait, report)

            def run() -> list[EncodedResult]:  # engine thread
                try:
                    results = self._engine.run(local, on_progress=progress, should_stop=self._stop.is_set)
                    return [
                        EncodedResult.encode(_with_original_sources(result, request))
                        for result, request in zip(results, requests, strict=True)
                    ]
                finally:
                    loop.call_soon_threadsafe(updates.put_nowait, _DONE)

            work = loop.run_in_executor(None, run)
            while (update := await updates.get()) is not _DONE:
                yield update
            yield await work
        finally:
            if work is not None and not work.done():  # the caller went away: stop at the next step
                self._stop.set()
                with contextlib.suppress(Exception):
                    await work
            self._current = None
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _with_local_sources(
    requests: list[GenerationRequest], sources: dict[str, bytes], folder: Path | None
) -> list[GenerationRequest]:
    """The requests with each source image path pointing at a copy written here."""
    if folder is None:
        return requests
    paths: dict[str, str] = {}
    for n, (original, data) in enumerate(sources.items()):
        path = folder / f"{n}{Path(original).suffix}"
        path.write_bytes(data)
        paths[original] = str(path)
    return [
        request.replace(init_image=paths[request.init_image]) if request.init_image in paths else request
        for request in requests
    ]


def _with_original_sources(result: GenerationResult, request: GenerationRequest) -> GenerationResult:
    """Undo `_with_local_sources` in a result: its request and recipes name the bot's own source file."""
    if result.request.init_image == request.init_image:
        return result
    result.request = request
    result.recipes = [dataclasses.replace(recipe, parent=request.init_image) for recipe in result.recipes]
    return result


def _memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0


def _threads() -> int:
    torch = sys.modules.get("torch")  # only if the engine uses it
    return int(torch.get_num_threads()) if torch is not None else os.cpu_count() or 1


def _node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (tests of this module): the machine itself
        return "127.0.0.1"
