"""Generation workers as Ray actors (`WORKERS=ray`): one actor per GPU, anywhere in a Ray cluster.

The queue, fairness, credits and the database stay in the bot process; an actor only runs the batch it
is given. Each `RayWorker` is the queue's `Worker` for one actor, so the queue's loop per worker gives
every actor exactly one batch at a time, in fair order, and nothing waits in a queue on the far side.

- Progress: `GenerationActor.run_batch` is a Ray streaming generator; every item is awaited as an object
  ref on the event loop (never `ray.get`), so previews reach the job message as with a local worker.
- Cancel: a watcher polls the queue's `should_stop` and calls the actor's `stop`, which the actor's own
  event loop receives while its engine thread runs; the engine stops at the next step.
- Faults: a dead actor or node surfaces as `RayActorError` from the stream. The queue treats that as a
  crashed worker (its jobs go back in line, retried at most once, else failed and refunded) and calls
  `restart`, which waits for Ray to restart the actor (`max_restarts`) or starts a new one.
- Start-up: `connect` checks the address with a plain TCP connection first, because `ray.init` on an
  unreachable address retries for minutes; `RayUnavailable` says so in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.errors import AtelierError, SettingsError
from bot.queue.ray_actor import ActorInfo, EncodedResult, GenerationActor
from bot.queue.worker import BatchProgress, ProgressCallback, StopCheck, Worker

try:
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayTaskError
except ImportError:  # pragma: no cover - depends on the install
    raise SettingsError("WORKERS=ray needs Ray: install it with pip install -e '.[ray]'.") from None

from bot.engine.types import GenerationRequest, GenerationResult
from bot.settings import RaySettings, Settings

log = logging.getLogger(__name__)

STOP_POLL_S = 0.05  #: how often a running batch checks whether the queue wants it stopped
READY_POLL_S = 0.5  #: how often `restart` asks a restarting actor whether it is back
NAMESPACE = "atelier"


class RayUnavailable(SettingsError):
    """The Ray cluster cannot be reached at start-up (`RAY__FALLBACK_LOCAL` decides what happens next)."""


class RayWorker:
    """The queue's `Worker` for one `GenerationActor`; see the module docstring."""

    def __init__(self, actor: Any, info: ActorInfo, *, name: str, spawn: Callable[[], Any]) -> None:
        self.name = name
        self._actor = actor
        self._spawn = spawn  #: starts a replacement actor when this one is gone for good
        self._batch_ids = itertools.count(1)
        self._use(info)

    def _use(self, info: ActorInfo) -> None:
        self.info = info
        self.model = info.model
        self.profile = info.profile
        self.device = info.device  #: as for a local worker ("cuda", "cpu"); where it is: `info.describe()`

    @property
    def actor(self) -> Any:
        """The Ray actor handle (for the dashboard, or a test that kills it)."""
        return self._actor

    @classmethod
    async def start(cls, spawn: Callable[[], Any], *, name: str, timeout_s: float) -> RayWorker:
        """Start an actor with `spawn()` and wait (at most `timeout_s`) until its engine is loaded."""
        actor = spawn()
        try:
            info = await _ready(actor, timeout_s)
        except BaseException:
            _kill(actor)
            raise
        return cls(actor, info, name=name, spawn=spawn)

    async def run_batch(
        self, requests: list[GenerationRequest], on_progress: ProgressCallback, should_stop: StopCheck
    ) -> list[GenerationResult]:
        sources = await asyncio.to_thread(_read_sources, requests)
        batch_id = next(self._batch_ids)
        actor = self._actor
        stream = actor.run_batch.options(num_returns="streaming").remote(batch_id, requests, sources)
        watcher = asyncio.create_task(_stop_when(should_stop, actor, batch_id), name=f"{self.name}-stop")
        encoded: list[EncodedResult] | None = None
        try:
            async for ref in stream:
                item = await ref
                if isinstance(item, BatchProgress):
                    on_progress(item)
                else:
                    encoded = item
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, AtelierError):  # the engine's verdict (cancelled, out of memory, ...)
                raise cause from None
            raise
        except asyncio.CancelledError:
            actor.stop.remote(batch_id)  # the caller gave up: stop at the next step, not run on unseen
            raise
        finally:
            watcher.cancel()
        if encoded is None or len(encoded) != len(requests):
            raise RuntimeError(f"actor {self.name} ended batch {batch_id} without its results")
        return await asyncio.to_thread(lambda: [result.decode() for result in encoded])

    async def restart(self, *, timeout_s: float = 600.0) -> None:
        """Bring the actor back after a crash or a hang; start a new one if Ray gave up on it.

        An actor Ray is restarting answers once its model is loaded again; one stuck in a step still
        answers (its engine runs in a thread), says it is busy, and is killed so that Ray restarts it.
        """
        actor = self._actor
        try:
            busy: bool | None = await asyncio.wait_for(_call(actor.busy), timeout_s)
        except ActorUnavailableError:
            busy = False  # being restarted: `_ready` waits for it
        except ActorDiedError:
            busy = None  # gone for good
        except TimeoutError:
            busy = True  # not even answering
        if busy is not None:
            old_pid = None
            if busy:
                log.warning("%s: the actor is stuck in a batch; Ray restarts it", self.name)
                _kill(actor, restart=True)
                old_pid = self.info.pid  # the kill lands a moment later: wait for the new process
            try:
                self._use(await _ready(actor, timeout_s, not_pid=old_pid))
                return
            except ActorDiedError:
                pass
            except AtelierError:
                _kill(actor, restart=True)  # it could not reload its model: the next try starts afresh
                raise
        log.warning("%s: Ray will not restart this actor; starting a new one", self.name)
        replacement = await type(self).start(self._spawn, name=self.name, timeout_s=timeout_s)
        self._actor = replacement.actor
        self._use(replacement.info)

    async def close(self) -> None:
        """End the actor (its process, and the device memory it held)."""
        _kill(self._actor)


# -- starting --------------------------------------------------------------------------------------------


def connect(options: RaySettings) -> None:
    """Connect this process to Ray (blocking: call it in a thread), or raise `RayUnavailable`.

    With neither RAY__ADDRESS nor Ray's own RAY_ADDRESS, a private instance is started (`start_private`);
    an already initialised Ray (e.g. in tests) is used as it is.
    """
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and address.startswith("ray://"):
        raise SettingsError(
            f"RAY__ADDRESS={address!r}: Ray Client (ray://) cannot stream progress from the actors; run the "
            "bot on a machine of the cluster (ray start --address=HEAD:6379) and use auto or HEAD:6379."
        )
    if address is not None:
        _probe(address, options.connect_timeout_s)
    if ray.is_initialized():
        return
    try:
        if address is None:
            start_private()
        else:
            ray.init(address=address, namespace=NAMESPACE)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"at RAY__ADDRESS={address!r}" if address else "on this machine"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayUnavailable(f"Ray is unavailable {where}: {first_line}") from None


def start_private(**options: Any) -> None:
    """Start a Ray instance for this process alone, every server of it listening on 127.0.0.1 only.

    On Linux, Ray replaces a loopback node address with the machine's outward one (so that other nodes
    could join) and listens there; its switch for single-machine platforms keeps the loopback address.
    Usage statistics are off unless RAY_USAGE_STATS_ENABLED says otherwise.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    constants = ray._private.ray_constants
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address="127.0.0.1", namespace=NAMESPACE, **options)
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


async def load_ray_workers(settings: Settings) -> list[Worker]:
    """One actor per GPU of the cluster (or `RAY__ACTORS`) for each served model, each loaded once."""
    from bot.engine.engine import Engine  # torch: only now, and it is what the actors need too

    options = settings.ray
    await asyncio.to_thread(connect, options)
    resources = await asyncio.to_thread(ray.cluster_resources)
    gpus = int(resources.get("GPU", 0))
    models = [settings.model, *(m for m in options.extra_models if m != settings.model)]
    per_model = options.actors or max(1, gpus // len(models))
    # DEVICE picks the kind of actor: cuda asks for GPUs even if none is up yet (an autoscaler adds them).
    wanted = settings.devices[0].split(":")[0]
    if wanted == "cuda" or (wanted == "auto" and gpus):
        placement: dict[str, Any] = {"num_gpus": 1, "num_cpus": options.cpus_per_actor}
        device = "cuda"
    else:
        placement, device = {"num_cpus": options.cpus_per_actor}, "cpu" if wanted == "auto" else wanted
    remote = ray.remote(GenerationActor).options(
        max_restarts=options.max_restarts, max_task_retries=0, **placement
    )
    spawns = []
    for model in models:
        load = functools.partial(
            Engine.load, model, device=device, dtype=settings.dtype, settings=settings.engine
        )
        spawns += [functools.partial(remote.remote, load)] * per_model
    log.info(
        "Ray: %d GPU(s) in the cluster; starting %d %s actor(s) for %s",
        gpus,
        len(spawns),
        device,
        ", ".join(models),
    )
    started = await asyncio.gather(
        *(
            RayWorker.start(spawn, name=f"ray-{n}", timeout_s=options.start_timeout_s)
            for n, spawn in enumerate(spawns)
        ),
        return_exceptions=True,
    )
    workers = [w for w in started if isinstance(w, RayWorker)]
    errors = [e for e in started if isinstance(e, BaseException)]
    if errors:
        for worker in workers:
            await worker.close()
        raise SettingsError(f"A Ray actor could not load its model: {_one_line(errors[0])}")
    for worker in workers:
        log.info("%s: %s on %s (pid %d)", worker.name, worker.model, worker.info.describe(), worker.info.pid)
    return list(workers)


# -- helpers ---------------------------------------------------------------------------------------------


async def _call(method: Any, *args: Any) -> Any:
    return await method.remote(*args)


async def _ready(actor: Any, timeout_s: float, *, not_pid: int | None = None) -> ActorInfo:
    """The actor's `info()` once it is up (waiting through a restart, and until its process is not
    `not_pid`), within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    info: ActorInfo = await actor.info.remote()
                    if info.pid != not_pid:
                        return info
                except ActorUnavailableError:
                    pass
                except RayTaskError as exc:  # the actor is up but its model did not load
                    raise (exc.cause or exc) from None
                await asyncio.sleep(READY_POLL_S)
    except (TimeoutError, GetTimeoutError):
        raise TimeoutError(
            f"a Ray actor was not ready after {timeout_s:g} s (not enough free GPUs/CPUs in the cluster, "
            "or a slow model download?): see RAY__START_TIMEOUT_S"
        ) from None


async def _stop_when(should_stop: StopCheck, actor: Any, batch_id: int) -> None:
    while not should_stop():  # noqa: ASYNC110 - a plain callable, readable from any thread, not an Event
        await asyncio.sleep(STOP_POLL_S)
    actor.stop.remote(batch_id)


def _read_sources(requests: list[GenerationRequest]) -> dict[str, bytes]:
    """The bytes of every source image (vary, upscale): the actor may be on a machine without the file."""
    sources: dict[str, bytes] = {}
    for request in requests:
        path = request.init_image
        if path and path not in sources:
            with contextlib.suppress(OSError):  # a missing file: the engine says so, in its own words
                sources[path] = Path(path).read_bytes()
    return sources


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast on an address nobody answers at (`ray.init` would retry for minutes)."""
    target = address
    if target == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto") or ""
        except Exception:
            target = ""
        if not target:
            return  # ray.init("auto") itself says at once that no cluster is running here
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(
            f"RAY__ADDRESS={address!r} is not an address: use auto or host:port (the head node's port, "
            "6379 by default)."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayUnavailable(
            f"The Ray cluster at RAY__ADDRESS={address!r} is unreachable ({reason}); start it with "
            "`ray start --head` there, or fix RAY__ADDRESS."
        ) from None


def _kill(actor: Any, *, restart: bool = False) -> None:
    with contextlib.suppress(Exception):  # already dead, or Ray already shut down
        ray.kill(actor, no_restart=not restart)


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
