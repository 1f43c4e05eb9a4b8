"""WORKERS=ray: the queue's workers as Ray actors on a private Ray instance bound to 127.0.0.1.

Two CPU actors on the tiny pipeline are started once for the module (each loads the model once, as on a
GPU) and lent to each test's queue; the Ray processes are shut down at the end of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from bot.engine.types import GenerationRequest, JobKind
from bot.errors import SettingsError
from bot.queue import EventType, FakeEngine, JobStatus, LocalWorker
from bot.queue.ray_actor import GenerationActor
from bot.settings import EngineSettings, RaySettings, Settings, load_settings
from tests.bot.queue.helpers import SCOPE, Recorder, finished, imagine, make_settings, running_queue

ray = pytest.importorskip("ray")
RayWorker = pytest.importorskip("bot.queue.ray_worker").RayWorker

pytestmark = pytest.mark.slow

LONG_STEPS = 80  #: a job that runs long enough to be cancelled or killed half-way (~1–4 s here)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A private Ray instance (the one the bot starts without RAY__ADDRESS): 2 CPUs, no dashboard.

    Its processes are children of this one; all of them must be gone once it is shut down.
    """
    from bot.queue.ray_worker import start_private

    start_private(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        yield
    finally:
        spawned = psutil.Process().children(recursive=True)
        ray.shutdown()
    _, alive = psutil.wait_procs(spawned, timeout=15)
    assert not alive, f"Ray processes left running: {[p.name() for p in alive]}"


def ray_settings(tmp_path: Path, model: str, **ray_options: Any) -> Settings:
    settings = make_settings(tmp_path, batching=False)
    options = RaySettings(cpus_per_actor=0.5, start_timeout_s=120, **ray_options)
    return settings.model_copy(update={"model": model, "workers": "ray", "ray": options, "dtype": "float32"})


@pytest.fixture(scope="module")
def actors(ray_local: None, tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list]:
    """Two actors on the tiny SD model, built by the same `load_workers` the bot calls."""
    from bot.services import load_workers

    settings = ray_settings(tmp_path_factory.mktemp("ray"), str(tiny_sd_path), actors=2)
    workers = asyncio.run(load_workers(settings))
    yield workers

    async def close() -> None:
        await asyncio.gather(*(w.close() for w in workers))

    asyncio.run(close())


class Lent:
    """A module-wide worker lent to one test's queue: stopping the queue does not end the actor."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.worker, name)

    async def close(self) -> None:
        pass


def tiny(profile: Any, prompt: str, seed: int, steps: int = 2, **changes: Any) -> GenerationRequest:
    values: dict[str, Any] = dict(
        kind=JobKind.IMAGINE,
        prompt=prompt,
        width=profile.native_size,
        height=profile.native_size,
        steps=steps,
        guidance=0.0,
        seed=seed,
        model=profile.name,
    )
    values.update(changes)
    return GenerationRequest(**values)


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


async def test_actors_are_placed_with_their_capabilities(actors: list) -> None:
    """Each actor says what it runs and where: the model, the device kind, its memory, its node."""
    assert [w.name for w in actors] == ["ray-0", "ray-1"]
    for worker in actors:
        assert worker.info.device_kind == "cpu" and worker.info.node == "127.0.0.1"
        assert worker.info.memory_bytes > 2**30
        assert worker.device == "cpu" and worker.info.describe().startswith("cpu@127.0.0.1, ")
    assert len({w.info.pid for w in actors}) == 2  # two processes, each with its own engine


def test_ray_listens_on_the_loopback_address_only(actors: list) -> None:
    """Every server of the private Ray instance (GCS, raylet, workers, agents) is on 127.0.0.1 only."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    listening = set()
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    listening.add((process.name(), connection.laddr.ip))
    assert {name for name, _ in listening} >= {"raylet", "gcs_server"}
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


async def test_images_match_a_local_worker(actors: list, tiny_sd_path: Path, tmp_path: Path) -> None:
    """The same recipes give the same pixels on a Ray actor as in-process, for imagine and vary.

    As everywhere, "the same" assumes the same device, dtype and CPU thread count (matrix libraries
    split sums differently over a different number of threads), so this process uses the actor's.
    """
    import torch

    remote = actors[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(remote.info.threads)
    try:
        await _compare_with_local(remote, tiny_sd_path, tmp_path)
    finally:
        torch.set_num_threads(threads)


async def _compare_with_local(remote: Any, tiny_sd_path: Path, tmp_path: Path) -> None:
    from bot.engine.engine import Engine

    engine = Engine.load(str(tiny_sd_path), device="cpu", dtype="float32", settings=EngineSettings())
    local = LocalWorker(engine, name="local")
    batch = [tiny(engine.profile, "a red fox", 3), tiny(engine.profile, "a blue whale", 11)]
    mine, theirs = await asyncio.gather(
        local.run_batch(batch, lambda _: None, lambda: False),
        remote.run_batch(batch, lambda _: None, lambda: False),
    )
    source = tmp_path / "source.png"
    mine[0].images[0].save(source)
    vary = [
        tiny(engine.profile, "a red fox, oil", 5, kind=JobKind.VARY, strength=0.6, init_image=str(source))
    ]
    mine += await local.run_batch(vary, lambda _: None, lambda: False)
    theirs += await remote.run_batch(vary, lambda _: None, lambda: False)
    await local.close()
    for a, b in zip(mine, theirs, strict=True):
        assert a.recipes == b.recipes and b.request == a.request  # the source path is the bot's own
        assert len(a.images) == len(b.images) == 4
        for x, y in zip(a.images, b.images, strict=True):
            assert np.array_equal(pixels(x), pixels(y))
        assert np.array_equal(pixels(a.grid), pixels(b.grid))
    assert theirs[2].recipes[0].parent == str(source)


async def test_fair_order_holds_across_two_actors(actors: list, tmp_path: Path) -> None:
    """Three members' jobs start in fair-share order, and both actors take turns."""
    settings = make_settings(tmp_path, batching=False)
    profile = actors[0].profile
    async with running_queue(settings, [Lent(w) for w in actors]) as (queue, _, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        names = {}
        for owner, n in [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1)]:
            job = await queue.submit(SCOPE, owner, tiny(profile, f"member {owner} job {n}", n, steps=12))
            names[job.id] = f"{'ABC'[owner - 1]}{n}"
        done = [await finished(queue, job_id, within=60) for job_id in names]
    started = [names[e.job_id] for e in recorder.events if e.type is EventType.STARTED]
    assert started == ["A1", "B1", "C1", "A2", "B2", "A3"]
    assert all(job.status is JobStatus.DONE for job in done)
    assert {job.worker for job in done} == {"ray-0", "ray-1"}


async def test_progress_and_cancel_reach_the_actor(actors: list, tmp_path: Path) -> None:
    """Previews stream back while the actor runs; /cancel stops it between steps and refunds."""
    settings = make_settings(tmp_path, batching=False)
    worker = actors[0]
    async with running_queue(settings, [Lent(worker)]) as (queue, credits, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        job = await queue.submit(SCOPE, 1, tiny(worker.profile, "a slow castle", 1, steps=LONG_STEPS))
        preview = await recorder.wait_for(
            lambda e: e.type is EventType.PROGRESS and e.preview_png is not None, within=60
        )
        assert preview.preview_png.startswith(b"\x89PNG") and preview.total == LONG_STEPS
        await queue.cancel(job.id, by=1)
        assert (await finished(queue, job.id)).status is JobStatus.CANCELLED
        assert (await credits.balance(SCOPE, 1)).available == 40
        async with asyncio.timeout(30):  # the actor stops at its next step, long before the last one
            while await worker.actor.busy.remote():  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.05)
        steps = [e.step for e in recorder.events if e.type is EventType.PROGRESS]
        assert max(steps) < LONG_STEPS
        after = await queue.submit(SCOPE, 1, tiny(worker.profile, "next", 2))
        assert (await finished(queue, after.id, within=60)).status is JobStatus.DONE


async def test_killed_actor_job_is_retried_on_the_other_and_charged_once(
    actors: list, tmp_path: Path
) -> None:
    """An actor killed mid-batch: its job runs again on the other actor, is delivered once, charged once."""
    settings = make_settings(tmp_path, batching=False)
    async with running_queue(settings, [Lent(w) for w in actors]) as (queue, credits, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        request = tiny(actors[0].profile, "a doomed castle", 4, steps=LONG_STEPS)
        job = await queue.submit(SCOPE, 1, request)
        await recorder.wait_for(lambda e: e.job_id == job.id and e.type is EventType.PROGRESS, within=60)
        running_on = (await queue.get(job.id)).worker
        first = next(w for w in actors if w.name == running_on)
        old_pid = first.info.pid
        ray.kill(first.actor, no_restart=False)  # the process dies; Ray restarts it (max_restarts)
        done = await finished(queue, job.id, within=120)
        assert done.status is JobStatus.DONE and done.attempts == 2
        assert done.worker != first.name
        assert recorder.types(job.id).count("done") == 1
        assert recorder.types(job.id).count("queued") == 2  # submitted, then put back after the crash
        assert (await credits.balance(SCOPE, 1)).free_left == 40 - done.cost
        assert await credits.verify() == []
        info = await first.actor.info.remote()  # Ray restarted it, with its model loaded again
        assert info.pid != old_pid and info.model == first.model
        again = await queue.submit(SCOPE, 2, tiny(actors[0].profile, "after the storm", 5))
        assert (await finished(queue, again.id, within=60)).status is JobStatus.DONE


class HangingEngine(FakeEngine):
    """A fake engine that never returns from a "hang" prompt and ignores `should_stop` (a stuck kernel)."""

    def run(self, requests, *, on_progress=None, should_stop=None):
        if requests[0].prompt == "hang":
            threading.Event().wait()
        return super().run(requests, on_progress=on_progress, should_stop=should_stop)


def fake_actor(engine: type[FakeEngine], max_restarts: int) -> functools.partial:
    remote = ray.remote(GenerationActor).options(num_cpus=0.25, max_restarts=max_restarts)
    return functools.partial(remote.remote, engine)


async def test_a_stuck_actor_is_killed_and_restarted_by_ray(ray_local: None) -> None:
    """An actor stuck in a step (as after a timeout) is restarted by Ray with a fresh engine."""
    worker = await RayWorker.start(fake_actor(HangingEngine, max_restarts=1), name="hung", timeout_s=60)
    try:
        stuck = asyncio.create_task(worker.run_batch([imagine("hang")], lambda _: None, lambda: False))
        async with asyncio.timeout(30):
            while not await worker.actor.busy.remote():  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.05)
        pid = worker.info.pid
        await worker.restart(timeout_s=60)
        assert worker.info.pid != pid
        with pytest.raises(ray.exceptions.RayActorError):
            await stuck  # the batch that was running when the actor was killed
        async with asyncio.timeout(30):
            results = await worker.run_batch([imagine(seed=3)], lambda _: None, lambda: False)
        assert results[0].recipes[0].seed == 3
    finally:
        await worker.close()


async def test_an_actor_ray_gave_up_on_is_replaced(ray_local: None) -> None:
    """When Ray will not restart a dead actor (no restarts left), `restart` starts a new one."""
    worker = await RayWorker.start(fake_actor(FakeEngine, max_restarts=0), name="mortal", timeout_s=60)
    try:
        first = worker.actor
        ray.kill(first, no_restart=True)
        with pytest.raises(ray.exceptions.RayActorError):
            await worker.run_batch([imagine()], lambda _: None, lambda: False)
        await worker.restart(timeout_s=60)
        assert worker.actor is not first
        async with asyncio.timeout(30):
            results = await worker.run_batch([imagine(seed=7)], lambda _: None, lambda: False)
        assert [r.recipes[0].seed for r in results] == [7]
    finally:
        await worker.close()


async def test_jobs_only_go_to_actors_with_their_model(
    actors: list, tiny_fewstep_path: Path, tmp_path: Path
) -> None:
    """With actors of two models, every job runs on an actor of its own model."""
    from bot.engine.engine import Engine

    load = functools.partial(Engine.load, str(tiny_fewstep_path), device="cpu", dtype="float32")
    remote = ray.remote(GenerationActor).options(num_cpus=0.5, max_restarts=0)
    other = await RayWorker.start(functools.partial(remote.remote, load), name="ray-few", timeout_s=120)
    try:
        assert other.model != actors[0].model
        settings = make_settings(tmp_path, batching=False)
        async with running_queue(settings, [Lent(actors[0]), Lent(other)]) as (queue, _, _):
            jobs = []
            for owner in range(1, 7):
                profile = (actors[0] if owner % 2 else other).profile
                jobs.append(await queue.submit(SCOPE, owner, tiny(profile, f"job of {owner}", owner)))
            done = [await finished(queue, job.id, within=60) for job in jobs]
        by_model = {actors[0].model: "ray-0", other.model: "ray-few"}
        assert all(job.status is JobStatus.DONE for job in done)
        assert [job.worker for job in done] == [by_model[job.request.model] for job in done]
    finally:
        await other.close()


async def test_unreachable_cluster_is_one_line_or_falls_back(tiny_sd_path: Path, tmp_path: Path) -> None:
    """A cluster nobody answers at stops start-up with one line, or runs local workers if allowed."""
    from bot.services import load_workers

    closed = _closed_port()
    settings = ray_settings(tmp_path, str(tiny_sd_path), address=f"127.0.0.1:{closed}", connect_timeout_s=2)
    with pytest.raises(SettingsError) as refused:
        await load_workers(settings)
    message = str(refused.value)
    assert f"RAY__ADDRESS='127.0.0.1:{closed}'" in message and "unreachable" in message
    assert "\n" not in message
    fallback = settings.model_copy(update={"ray": settings.ray.model_copy(update={"fallback_local": True})})
    workers = await load_workers(fallback)
    assert [type(w) for w in workers] == [LocalWorker] and workers[0].model == str(tiny_sd_path)
    await workers[0].close()
    client = settings.model_copy(update={"ray": RaySettings(address="ray://head:10001")})
    with pytest.raises(SettingsError, match="Ray Client"):  # no streaming through it: refused, not tried
        await load_workers(client)


def test_worker_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKERS and RAY__* are read like every other setting; a wrong value is named in one line."""
    monkeypatch.setenv("WORKERS", "ray")
    monkeypatch.setenv("RAY__ADDRESS", "ray://head:10001")
    monkeypatch.setenv("RAY__ACTORS", "4")
    monkeypatch.setenv("RAY__EXTRA_MODELS", '["stabilityai/sdxl-turbo"]')
    settings = load_settings(_env_file=None)
    assert settings.workers == "ray" and settings.ray.address == "ray://head:10001"
    assert settings.ray.actors == 4 and settings.ray.extra_models == ["stabilityai/sdxl-turbo"]
    monkeypatch.setenv("WORKERS", "gpu")
    with pytest.raises(SettingsError, match="WORKERS='gpu'"):
        load_settings(_env_file=None)


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens once it is closed again
