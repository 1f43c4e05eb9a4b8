"""Fair order and batch picking, as pure functions over job lists."""

from __future__ import annotations

import itertools

from bot.queue.jobs import Job, JobStatus
from bot.queue.scheduler import estimate_etas, fair_order, pick_batch
from tests.bot.queue.helpers import SCOPE, imagine

_ids = itertools.count(1)


def job(owner: int, *, scope: int = SCOPE, relax: bool = False, **request: object) -> Job:
    return Job(
        id=next(_ids),
        kind=imagine().kind,
        scope=scope,
        owner=owner,
        status=JobStatus.QUEUED,
        request=imagine(relax=relax, **request),
        cost=4,
        hold_id=None,
        created_at=0.0,
    )


def owners(jobs: list[Job]) -> list[int]:
    return [j.owner for j in jobs]


def test_one_members_burst_interleaves_with_everyone_else() -> None:
    """Ten jobs from one member do not make two others wait behind all ten."""
    heavy = [job(1) for _ in range(10)]
    light = [job(2), job(3)]
    order = fair_order(heavy + light, last_served={})
    assert owners(order)[:4] == [1, 2, 3, 1]
    assert [j.id for j in order if j.owner == 1] == [j.id for j in heavy]  # FIFO within a member


def test_least_recently_served_member_goes_first() -> None:
    """Whoever was served longest ago is next, even if their job is newer."""
    early, late = job(1), job(2)
    order = fair_order([early, late], last_served={1: 200.0, 2: 100.0})
    assert owners(order) == [2, 1]


def test_never_served_members_go_by_their_oldest_job() -> None:
    """Among members never served, the one who asked first goes first."""
    first, second = job(5), job(4)
    assert fair_order([second, first], last_served={}) == [first, second]


def test_relax_jobs_wait_for_every_normal_job() -> None:
    """A relax job, however old, runs only when no normal job waits."""
    relaxed = job(1, relax=True)
    normal = [job(2), job(3), job(1)]
    order = fair_order([relaxed, *normal], last_served={})
    assert order[-1] is relaxed


def test_paused_scope_jobs_go_last_without_blocking_others() -> None:
    """Jobs of a paused scope keep their own order at the end of the line."""
    paused = [job(1, scope=7), job(2, scope=7)]
    other = job(3)
    order = fair_order([*paused, other], last_served={}, paused={7})
    assert order == [other, *paused]


def test_batch_takes_compatible_jobs_from_the_next_few_picks() -> None:
    """Jobs that share a forward pass ride along; an incompatible size or a full batch stays behind."""
    a, b, wide, c, d, e = job(1), job(2), job(3, width=768), job(4), job(5), job(6)
    order = fair_order([a, b, wide, c, d, e], last_served={})
    batch = pick_batch(order, lambda j, already: True, max_images=16)
    assert batch == [a, b, c, d]  # 16 images; the 768-wide job needs its own pass


def test_batch_never_reaches_beyond_the_lookahead() -> None:
    """A compatible job far down the line does not jump ahead of everyone between."""
    head = job(1)
    others = [job(10 + n, width=768) for n in range(8)]
    far = job(99)
    order = fair_order([head, *others, far], last_served={})
    assert pick_batch(order, lambda j, already: True, max_images=16) == [head]


def test_batch_respects_running_limits_and_priority_class() -> None:
    """A member at their running limit is skipped, and relax jobs do not ride with normal ones."""
    a1, a2, b_relax = job(1), job(1), job(2, relax=True)
    order = fair_order([a1, a2, b_relax], last_served={})
    batch = pick_batch(order, lambda j, already: already < 1, max_images=16)
    assert batch == [a1]


def test_first_runnable_job_leads_the_batch() -> None:
    """If the first in line may not start (member busy), the next runnable one goes."""
    busy, free = job(1), job(2)
    order = fair_order([busy, free], last_served={})
    assert pick_batch(order, lambda j, already: j.owner != 1, max_images=16, batching=False) == [free]


def test_etas_accumulate_work_ahead() -> None:
    """Each job's ETA covers the running backlog, the jobs ahead and its own work."""
    order = [job(1), job(2), job(3, scope=7)]
    etas = estimate_etas(order, lambda j: 4.0, 0.5, backlog_units=2.0, workers=2, held=lambda j: j.scope == 7)
    assert etas == [(2 + 4) * 0.5 / 2, (2 + 8) * 0.5 / 2, None]
    assert (
        estimate_etas(order, lambda j: 4.0, None, backlog_units=0, workers=1, held=lambda j: False)
        == [None] * 3
    )
