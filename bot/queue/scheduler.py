"""Fair share, as pure functions over the waiting jobs: who goes next, what rides along, and when.

The rule: normal jobs before relax jobs; within a class, the oldest job of the member who was served
least recently; within a member, first come first served. Serving a member moves them to the back, so
ten jobs from one member interleave with everyone else's instead of blocking them. A member here is a
Discord user across all scopes: the GPU is shared by every server, so fairness is too.

`fair_order` plays that rule forward over everything waiting, which gives every job its position;
the worker takes the first job it may run and `pick_batch` adds compatible jobs from a little further
down the same order, so batching never lets a job jump far ahead of its turn.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Mapping

from bot.queue.jobs import Job

#: How far down the fair order a batch may reach for companions of the job whose turn it is. Jobs that
#: close would start within the next couple of batches anyway; reaching further would be queue-jumping.
BATCH_LOOKAHEAD = 8

NEVER = float("-inf")


def fair_order(
    waiting: Iterable[Job], last_served: Mapping[int, float], paused: Collection[int] = ()
) -> list[Job]:
    """Every waiting job in the order the queue would start them, given when each owner last started one.

    Jobs of paused scopes come last, in their own fair order: they keep their place among themselves
    without holding up anyone else.
    """
    classes: dict[tuple[bool, bool], dict[int, deque[Job]]] = defaultdict(lambda: defaultdict(deque))
    for job in sorted(waiting, key=lambda j: j.id):
        classes[(job.scope in paused, job.relax)][job.owner].append(job)

    # Real start times rank (0, t); starts that this simulation hands out rank (1, n), after all real ones.
    virtual: dict[int, int] = {}
    order: list[Job] = []
    for key in sorted(classes):
        per_owner = classes[key]
        heap = [
            (_served_rank(owner, last_served, virtual), jobs[0].id, owner)
            for owner, jobs in per_owner.items()
        ]
        heapq.heapify(heap)
        while heap:
            _, _, owner = heapq.heappop(heap)
            jobs = per_owner[owner]
            order.append(jobs.popleft())
            virtual[owner] = len(order)
            if jobs:
                heapq.heappush(heap, ((1, virtual[owner]), jobs[0].id, owner))
    return order


def _served_rank(
    owner: int, last_served: Mapping[int, float], virtual: Mapping[int, int]
) -> tuple[int, float]:
    if owner in virtual:
        return (1, virtual[owner])
    return (0, last_served.get(owner, NEVER))


def pick_batch(
    order: list[Job],
    can_run: Callable[[Job, int], bool],
    *,
    max_images: int,
    batching: bool = True,
    lookahead: int = BATCH_LOOKAHEAD,
) -> list[Job]:
    """The next batch for one worker: the first job in `order` it may run, plus compatible followers.

    `can_run(job, already)` says whether the worker may start `job` when `already` jobs of the same member
    are in this batch (per-member running limits, paused scopes, the worker's model). Companions share the
    head's `batch_key()` and priority class, come from the next `lookahead` places of the order, and keep
    the batch within `max_images`. A head larger than `max_images` still runs, alone.
    """
    index = next((n for n, job in enumerate(order) if can_run(job, 0)), None)
    if index is None:
        return []
    head = order[index]
    batch = [head]
    if not batching:
        return batch
    key = head.request.batch_key()
    images = head.images
    taken = Counter({head.member: 1})
    for job in order[index + 1 : index + 1 + lookahead]:
        if job.relax != head.relax or job.request.batch_key() != key or images + job.images > max_images:
            continue
        if not can_run(job, taken[job.member]):
            continue
        batch.append(job)
        images += job.images
        taken[job.member] += 1
    return batch


def estimate_etas(
    order: list[Job],
    units: Callable[[Job], float],
    seconds_per_unit: float | None,
    *,
    backlog_units: float,
    workers: int,
    held: Callable[[Job], bool],
) -> list[float | None]:
    """Seconds until each job of `order` is done: the work ahead of it and its own, at the recent pace.

    `backlog_units` is what the running batches still have to do. Jobs that cannot start (`held`, e.g. a
    paused scope) get no ETA, and neither does anyone while the queue has no timings yet.
    """
    if seconds_per_unit is None:
        return [None] * len(order)
    ahead = backlog_units
    etas: list[float | None] = []
    for job in order:
        if held(job):
            etas.append(None)
            continue
        ahead += units(job)
        etas.append(ahead * seconds_per_unit / max(1, workers))
    return etas
