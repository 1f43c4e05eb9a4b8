"""The queue with fake workers: fairness, priorities, limits, cancelling, pausing, events, results."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.engine.types import JobKind
from bot.errors import (
    InvalidLimit,
    InvalidRequest,
    JobFinished,
    JobNotFound,
    NotAllowed,
    QueueFull,
    QueuePaused,
)
from bot.queue import EventType, FakeWorker, JobStatus
from bot.settings import Settings
from tests.bot.queue.helpers import (
    OTHER_SCOPE,
    SCOPE,
    Recorder,
    finished,
    imagine,
    make_settings,
    running_queue,
)


async def test_submit_runs_to_done_and_charges(settings: Settings) -> None:
    """A submitted job is queued, run, saved as PNGs with recipes and charged exactly its cost."""
    async with running_queue(settings) as (queue, credits, _):
        job = await queue.submit(SCOPE, 1, imagine(), channel_id=5, message_id=6)
        assert job.status is JobStatus.QUEUED and job.cost == 4 and job.request.model == "fake/model"
        done = await finished(queue, job.id)
        assert done.status is JobStatus.DONE
        assert [Path(p).name for p in done.result_paths] == ["1.png", "2.png", "3.png", "4.png"]
        assert all_files(done.grid_path, *done.result_paths)
        assert Path(done.grid_path).parent == settings.images_dir.resolve() / str(SCOPE) / str(job.id)
        assert [r.seed for r in done.recipes] == [1, 2, 3, 4]
        balance = await credits.balance(SCOPE, 1)
        assert (balance.free_left, balance.held) == (36, 0)
        assert await credits.verify() == []


def all_files(*paths: str) -> bool:
    return all(Path(p).is_file() for p in paths)


async def test_events_follow_a_job_from_queued_to_done(settings: Settings) -> None:
    """Subscribers hear queued, started, every step and done, in that order."""
    async with running_queue(settings) as (queue, _, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        job = await queue.submit(SCOPE, 1, imagine())
        await finished(queue, job.id)
        assert recorder.types(job.id) == [
            "queued",
            "started",
            "progress",
            "progress",
            "progress",
            "progress",
            "done",
        ]
        progress = [e for e in recorder.events if e.type is EventType.PROGRESS]
        assert [(e.step, e.total) for e in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
        done = recorder.events[-1]
        assert done.job is not None and done.job.status is JobStatus.DONE


async def test_subscribing_to_a_finished_job_tells_its_outcome(settings: Settings) -> None:
    """Following a job that already finished yields its final state once, then ends."""
    async with running_queue(settings) as (queue, _, _):
        job = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        events = [event async for event in queue.subscribe(job.id)]
        assert [e.type for e in events] == [EventType.DONE] and events[0].job == job
        with pytest.raises(JobNotFound):
            async for _ in queue.subscribe(424242):
                pass


async def test_async_listeners_are_called_too(settings: Settings) -> None:
    """A coroutine listener (the Discord layer's) hears events without blocking the queue."""
    heard: list[str] = []
    done = asyncio.Event()

    async def listener(event) -> None:
        await asyncio.sleep(0)
        heard.append(event.type.value)
        if event.type.final:
            done.set()

    async with running_queue(settings) as (queue, _, _):
        queue.add_listener(listener)
        await queue.submit(SCOPE, 1, imagine())
        await asyncio.wait_for(done.wait(), 5)
        assert heard[0] == "queued" and heard[-1] == "done"


async def test_fairness_single_jobs_finish_before_heavy_members_second(tmp_path: Path) -> None:
    """A member with ten jobs does not block two members with one job each."""
    settings = make_settings(tmp_path, batching=False, max_queued_per_member=10)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        heavy = [await queue.submit(SCOPE, 1, imagine(seed=n)) for n in range(10)]
        light = [await queue.submit(SCOPE, 2, imagine()), await queue.submit(OTHER_SCOPE, 3, imagine())]
        worker.gate.set()
        for job in heavy + light:
            await finished(queue, job.id)
        order = recorder.finish_order()
        assert order.index(light[0].id) < order.index(heavy[1].id)
        assert order.index(light[1].id) < order.index(heavy[1].id)
        assert [i for i in order if i in {j.id for j in heavy}] == [j.id for j in heavy]


async def test_positions_and_etas_for_waiting_jobs(tmp_path: Path) -> None:
    """Waiting jobs have 1-based positions in fair order, and ETAs once a batch has been timed."""
    settings = make_settings(tmp_path, batching=False)
    worker = FakeWorker()
    async with running_queue(settings, [worker]) as (queue, _, _):
        warmup = await queue.submit(SCOPE, 9, imagine())
        await finished(queue, warmup.id)  # gives the queue a pace
        worker.gate = asyncio.Event()
        worker.started.clear()
        running = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        a1 = await queue.submit(SCOPE, 1, imagine())
        a2 = await queue.submit(SCOPE, 1, imagine())
        b1 = await queue.submit(SCOPE, 2, imagine())
        positions = {j.id: (await queue.position(j.id))[0] for j in (a1, a2, b1)}
        assert positions == {b1.id: 1, a1.id: 2, a2.id: 3}
        etas = [(await queue.position(j.id))[1] for j in (b1, a1, a2)]
        assert all(e is not None for e in etas) and etas[0] < etas[1] < etas[2]
        assert (await queue.position(running.id))[0] == 0
        snapshot = await queue.snapshot(SCOPE)
        assert [e.job.id for e in snapshot.waiting] == [b1.id, a1.id, a2.id]
        assert [e.job.id for e in snapshot.running] == [running.id]
        assert snapshot.workers[0].job_ids == (running.id,)
        worker.gate.set()


async def test_position_changes_are_announced(tmp_path: Path) -> None:
    """When the job ahead is cancelled, the ones behind hear their new position."""
    settings = make_settings(tmp_path, batching=False)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        first = await queue.submit(SCOPE, 2, imagine())
        second = await queue.submit(SCOPE, 3, imagine())
        assert (await queue.position(second.id))[0] == 2
        await queue.cancel(first.id, by=2)
        moved = await recorder.wait_for(lambda e: e.type is EventType.POSITION and e.job_id == second.id)
        assert moved.position == 1
        worker.gate.set()


async def test_relax_jobs_run_only_when_no_normal_job_waits(tmp_path: Path) -> None:
    """Normal jobs queued after a relax job still run before it; the relax job then runs, for free."""
    settings = make_settings(tmp_path, batching=False)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        recorder = Recorder()
        queue.add_listener(recorder)
        blocker = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        relaxed = await queue.submit(SCOPE, 2, imagine(relax=True))
        normal = [await queue.submit(SCOPE, 3, imagine()), await queue.submit(SCOPE, 4, imagine())]
        assert relaxed.cost == 0
        worker.gate.set()
        for job in (blocker, relaxed, *normal):
            await finished(queue, job.id)
        assert recorder.finish_order()[-1] == relaxed.id
        assert (await credits.balance(SCOPE, 2)).free_left == 40


async def test_per_member_queue_limit_refuses_with_reason(tmp_path: Path) -> None:
    """Over the per-member limit, a job is refused at once, saying the limit and how many wait."""
    settings = make_settings(tmp_path, max_queued_per_member=2)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()  # the first one runs, two more may wait
        await queue.submit(SCOPE, 1, imagine())
        await queue.submit(SCOPE, 1, imagine())
        with pytest.raises(QueueFull, match=r"already have 2 jobs waiting.*\(2\)"):
            await queue.submit(SCOPE, 1, imagine())
        assert len(await queue.jobs_of(SCOPE, 1, ["queued", "running"])) == 3  # nothing written
        assert (await credits.balance(SCOPE, 1)).held == 12
        await queue.submit(OTHER_SCOPE, 1, imagine())  # limits are per scope
        worker.gate.set()


async def test_scope_limits_override_the_defaults(tmp_path: Path) -> None:
    """A moderator's per-scope limit applies there only, and survives a restart."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        limits = await queue.set_limits(SCOPE, max_queued_per_member=1)
        assert (limits.max_queued_per_member, limits.max_running_per_member) == (1, 1)
        await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        await queue.submit(SCOPE, 1, imagine())
        with pytest.raises(QueueFull, match=r"\(1\)"):
            await queue.submit(SCOPE, 1, imagine())
        await queue.submit(OTHER_SCOPE, 1, imagine())
        await queue.submit(OTHER_SCOPE, 1, imagine())
        with pytest.raises(InvalidLimit, match="from 1 to 1000"):
            await queue.set_limits(SCOPE, max_running_per_member=0)
        worker.gate.set()
    async with running_queue(settings) as (queue, _, _):
        assert (await queue.limits(SCOPE)).max_queued_per_member == 1
        assert (await queue.set_limits(SCOPE, max_queued_per_member=None)).max_queued_per_member == 5


async def test_global_queue_length_refuses_with_reason(tmp_path: Path) -> None:
    """When the whole queue is full, the refusal says so and counts the member's own waiting jobs."""
    settings = make_settings(tmp_path, max_queue_length=2)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        await queue.submit(SCOPE, 2, imagine())
        await queue.submit(SCOPE, 3, imagine())
        with pytest.raises(QueueFull, match=r"queue is full: 2 jobs are waiting.*1 of them is yours"):
            await queue.submit(SCOPE, 2, imagine())
        with pytest.raises(QueueFull, match="none of them is yours"):
            await queue.submit(SCOPE, 4, imagine())
        worker.gate.set()


async def test_running_limit_lets_other_members_use_the_second_worker(tmp_path: Path) -> None:
    """With one job running per member, a member's second job waits while another member's runs."""
    settings = make_settings(tmp_path, batching=False)
    workers = [FakeWorker("gpu-0"), FakeWorker("gpu-1")]
    gate = asyncio.Event()
    for worker in workers:
        worker.gate = gate
    async with running_queue(settings, workers) as (queue, _, _):
        a1 = await queue.submit(SCOPE, 1, imagine())
        a2 = await queue.submit(SCOPE, 1, imagine())
        b1 = await queue.submit(SCOPE, 2, imagine())
        await asyncio.gather(*(w.started.wait() for w in workers))
        snapshot = await queue.snapshot()
        assert {e.job.id for e in snapshot.running} == {a1.id, b1.id}
        assert [e.job.id for e in snapshot.waiting] == [a2.id]
        gate.set()
        await finished(queue, a2.id)


async def test_cancel_queued_job_refunds_and_is_never_run(tmp_path: Path) -> None:
    """A waiting job cancelled by its owner never runs and its credits come back."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        first = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        waiting = await queue.submit(SCOPE, 2, imagine(prompt="never"))
        assert (await credits.balance(SCOPE, 2)).available == 36
        cancelled = await queue.cancel(waiting.id, by=2)
        assert cancelled.status is JobStatus.CANCELLED and cancelled.cancelled_by == 2
        assert (await credits.balance(SCOPE, 2)).available == 40
        worker.gate.set()
        await finished(queue, first.id)
        assert (await queue.snapshot()).waiting == ()
        assert all(r.prompt != "never" for batch in worker.batches for r in batch)
        with pytest.raises(JobFinished, match="already finished"):
            await queue.cancel(waiting.id, by=2)


async def test_cancel_running_job_stops_it_and_refunds(settings: Settings) -> None:
    """Cancelling a running job interrupts it between steps and returns the credits."""
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        job = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        await queue.cancel(job.id, by=1)
        worker.gate.set()
        done = await finished(queue, job.id)
        assert done.status is JobStatus.CANCELLED and done.result_paths == ()
        assert (await credits.balance(SCOPE, 1)).free_left == 40
        follow = await queue.submit(SCOPE, 1, imagine())  # the worker is free again
        assert (await finished(queue, follow.id)).status is JobStatus.DONE


async def test_cancel_one_job_of_a_batch_keeps_the_others(tmp_path: Path) -> None:
    """In a batch, a cancelled job is refunded and its output discarded; the rest are delivered."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        first = await queue.submit(SCOPE, 9, imagine(prompt="warm-up"))
        await worker.started.wait()
        keep = await queue.submit(SCOPE, 1, imagine())
        drop = await queue.submit(SCOPE, 2, imagine())
        worker.started.clear()
        first_gate, worker.gate = worker.gate, asyncio.Event()  # the next batch waits on a new gate
        first_gate.set()
        await finished(queue, first.id)
        await worker.started.wait()
        assert [len(b) for b in worker.batches] == [1, 2]
        await queue.cancel(drop.id, by=2)
        worker.gate.set()
        assert (await finished(queue, keep.id)).status is JobStatus.DONE
        dropped = await queue.get(drop.id)
        assert dropped.status is JobStatus.CANCELLED and dropped.result_paths == ()
        assert not (settings.images_dir.resolve() / str(SCOPE) / str(drop.id)).exists()
        assert (await credits.balance(SCOPE, 2)).free_left == 40
        assert (await credits.balance(SCOPE, 1)).free_left == 36


async def test_only_owner_or_moderator_may_cancel(settings: Settings) -> None:
    """Another member cannot cancel your job; a moderator can; unknown ids are reported."""
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        job = await queue.submit(SCOPE, 1, imagine())
        with pytest.raises(NotAllowed, match="not yours"):
            await queue.cancel(job.id, by=2)
        with pytest.raises(JobNotFound):
            await queue.cancel(job.id, by=3, moderator=True, scope=OTHER_SCOPE)
        with pytest.raises(JobNotFound):
            await queue.cancel(999_999, by=1)
        cancelled = await queue.cancel(job.id, by=3, moderator=True)
        assert cancelled.error == "cancelled by a moderator"
        worker.gate.set()


async def test_pause_is_per_scope_and_resume_restarts(settings: Settings) -> None:
    """Pausing one server stops its jobs and refuses new ones there, while other servers carry on."""
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, _, _):
        blocker = await queue.submit(OTHER_SCOPE, 1, imagine())
        await worker.started.wait()
        held = await queue.submit(SCOPE, 2, imagine())
        await queue.pause(SCOPE)
        with pytest.raises(QueuePaused, match="paused"):
            await queue.submit(SCOPE, 3, imagine())
        other = await queue.submit(OTHER_SCOPE, 4, imagine())
        worker.gate.set()
        await finished(queue, blocker.id)
        await finished(queue, other.id)
        assert (await queue.get(held.id)).status is JobStatus.QUEUED
        snapshot = await queue.snapshot(SCOPE)
        assert snapshot.paused and snapshot.waiting[0].eta_s is None
        assert not (await queue.snapshot(OTHER_SCOPE)).paused
        await queue.resume(SCOPE)
        assert (await finished(queue, held.id)).status is JobStatus.DONE


async def test_clear_cancels_a_members_waiting_jobs(tmp_path: Path) -> None:
    """A moderator clearing a member cancels and refunds their waiting jobs only, in that scope only."""
    settings = make_settings(tmp_path)
    worker = FakeWorker()
    worker.gate = asyncio.Event()
    async with running_queue(settings, [worker]) as (queue, credits, _):
        running = await queue.submit(SCOPE, 1, imagine())
        await worker.started.wait()
        waiting = [await queue.submit(SCOPE, 1, imagine()) for _ in range(2)]
        elsewhere = await queue.submit(OTHER_SCOPE, 1, imagine())
        cleared = await queue.clear(SCOPE, 1, by=77)
        assert sorted(j.id for j in cleared) == sorted(j.id for j in waiting)
        assert all(j.error == "cleared by a moderator" and j.cancelled_by == 77 for j in cleared)
        assert (await credits.balance(SCOPE, 1)).held == 4
        worker.gate.set()
        assert (await finished(queue, running.id)).status is JobStatus.DONE
        assert (await finished(queue, elsewhere.id)).status is JobStatus.DONE


async def test_select_hands_out_one_image_for_free(settings: Settings) -> None:
    """U2 on a finished grid records a free, done job pointing at image 2, without running anything."""
    async with running_queue(settings) as (queue, credits, workers):
        grid = await queue.submit(SCOPE, 1, imagine(seed=10))
        grid = await finished(queue, grid.id)
        runs = len(workers[0].batches)
        chosen = await queue.select(SCOPE, 2, grid.id, 2)
        assert chosen.status is JobStatus.DONE and chosen.cost == 0 and chosen.hold_id is None
        assert chosen.result_paths == (grid.result_paths[1],) and chosen.recipes[0].seed == 11
        assert (chosen.parent_job_id, chosen.parent_index) == (grid.id, 2)
        assert len(workers[0].batches) == runs
        assert (await credits.balance(SCOPE, 2)).free_left == 40
        with pytest.raises(InvalidRequest, match="pick one from 1 to 4"):
            await queue.select(SCOPE, 2, grid.id, 5)
        with pytest.raises(JobNotFound):
            await queue.select(OTHER_SCOPE, 2, grid.id, 1)


async def test_variation_of_a_grid_image_uses_that_image(settings: Settings) -> None:
    """A job submitted with a parent grid image starts from that image's PNG."""
    async with running_queue(settings) as (queue, _, _):
        grid = await finished(queue, (await queue.submit(SCOPE, 1, imagine())).id)
        vary = imagine(kind=JobKind.VARY, strength=0.6)
        job = await queue.submit(SCOPE, 1, vary, parent=(grid.id, 3))
        assert job.request.init_image == grid.result_paths[2]
        assert (await finished(queue, job.id)).status is JobStatus.DONE
        pending = await queue.submit(SCOPE, 1, imagine())
        with pytest.raises(InvalidRequest, match="no images yet"):
            await queue.submit(SCOPE, 1, vary, parent=(pending.id, 1))


async def test_message_ids_find_their_job(settings: Settings) -> None:
    """The Discord message a job is shown in leads back to the job."""
    async with running_queue(settings) as (queue, _, _):
        job = await queue.submit(SCOPE, 1, imagine())
        await queue.set_message(job.id, 10, 20)
        assert (await queue.job_for_message(20)).id == job.id
        with pytest.raises(JobNotFound):
            await queue.job_for_message(21)
        with pytest.raises(InvalidRequest, match="not a job status"):
            await queue.jobs_of(SCOPE, 1, ["waiting"])
