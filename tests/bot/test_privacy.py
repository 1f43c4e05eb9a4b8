"""/forget and image retention (bot/privacy.py), on a real queue and ledger over a fake worker."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from bot.engine.types import GenerationRequest, JobKind
from bot.errors import ImagesGone, JobNotFound
from bot.files import save_upload
from bot.members import MemberStore, Preferences
from bot.privacy import DAY_S, FORGETTERS, Pruner, RowForgetter, forget_member, prune_images, survey_member
from bot.queue import FakeWorker, JobStatus
from bot.settings import PrivacySettings
from tests.bot.queue.helpers import OTHER_SCOPE, SCOPE, finished, imagine, make_settings, running_queue

ALICE, BOB = 11, 22
SECRET = "alice's secret portrait of her neighbour"


class Clock:
    """The queue's clock: job times are whatever the test says."""

    def __init__(self) -> None:
        self.now = time.time()  # files written now are "now" for the pruner too

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def bot_parts(settings, clock):
    async with running_queue(settings, clock=clock) as (queue, credits, workers):
        yield queue, credits, workers[0]


async def make(queue, scope, owner, request, **kwargs):
    job = await queue.submit(scope, owner, request, **kwargs)
    return await finished(queue, job.id)


async def upload(settings, scope, colour=(10, 200, 30)) -> str:
    image = Image.new("RGB", (64, 64), colour)
    return str(await asyncio.to_thread(save_upload, settings.images_dir, scope, image))


def vary_upload(path: str, prompt: str = SECRET) -> GenerationRequest:
    return imagine(prompt, kind=JobKind.VARY, strength=0.7, init_image=path)


def on_disk(*paths: str | Path) -> bool:
    return all(os.path.exists(path) for path in paths)


def folder(settings, job) -> Path:
    return settings.images_dir.resolve() / str(job.scope) / str(job.id)


async def ledger_rows(queue) -> list[dict]:
    rows = await queue._db.fetchall("SELECT * FROM credit_ledger ORDER BY id")
    return [dict(row) for row in rows]


async def test_forget_deletes_jobs_images_uploads_and_settings_but_keeps_the_ledger(bot_parts, settings):
    """Alice's jobs, images, upload and /settings here are gone; her ledger rows stay and still add up."""
    queue, credits, _ = bot_parts
    members = MemberStore(queue._db)
    grid = await make(queue, SCOPE, ALICE, imagine(SECRET))
    source = await upload(settings, SCOPE)
    varied = await make(queue, SCOPE, ALICE, vary_upload(source))
    await members.set_preferences(SCOPE, ALICE, aspect="16:9", private=True)
    assert folder(settings, grid).is_dir() and folder(settings, varied).is_dir()
    ledger_before = await ledger_rows(queue)
    balance_before = await credits.balance(SCOPE, ALICE)

    preview = await survey_member(queue._db, settings.images_dir, SCOPE, ALICE)
    assert (preview.jobs, preview.images, preview.uploads) == (2, 10, 1)  # 4 images + grid per job
    assert preview.rows["saved /settings"] == 1
    assert folder(settings, grid).is_dir(), "a preview deletes nothing"

    report = await forget_member(queue._db, queue, settings.images_dir, SCOPE, ALICE)

    assert (report.jobs, report.images, report.uploads, report.live) == (2, 10, 1, 0)
    for job in (grid, varied):
        with pytest.raises(JobNotFound):
            await queue.get(job.id)
        assert not on_disk(folder(settings, job))
    assert not on_disk(source)
    assert await members.preferences(SCOPE, ALICE) == Preferences()
    assert not await queue._db.fetchall("SELECT * FROM member_preferences WHERE user_id = ?", (ALICE,))
    assert await ledger_rows(queue) == ledger_before, "the ledger keeps every row, unchanged"
    holds = await queue._db.fetchall("SELECT * FROM credit_holds")
    stored = json.dumps([*ledger_before, *(dict(h) for h in holds)])
    assert SECRET not in stored and "neighbour" not in stored
    assert (await credits.balance(SCOPE, ALICE)).available == balance_before.available
    assert await credits.verify() == []
    assert report.ledger_entries == len([r for r in ledger_before if r["user_id"] == ALICE])


async def test_forget_leaves_other_members_and_other_scopes_alone(bot_parts, settings):
    """Bob's jobs here and Alice's jobs in another server keep their rows and files."""
    queue, credits, _ = bot_parts
    members = MemberStore(queue._db)
    mine = await make(queue, SCOPE, ALICE, imagine(SECRET))
    bobs = await make(queue, SCOPE, BOB, imagine("bob's lighthouse"))
    elsewhere = await make(queue, OTHER_SCOPE, ALICE, imagine("alice elsewhere"))
    await members.set_preferences(SCOPE, BOB, aspect="3:2")
    await members.set_preferences(OTHER_SCOPE, ALICE, aspect="2:3")

    await forget_member(queue._db, queue, settings.images_dir, SCOPE, ALICE)

    assert not folder(settings, mine).exists()
    for job in (bobs, elsewhere):
        kept = await queue.get(job.id)
        assert kept.request.prompt == job.request.prompt
        assert on_disk(*kept.result_paths)
    assert (await members.preferences(SCOPE, BOB)).aspect == "3:2"
    assert (await members.preferences(OTHER_SCOPE, ALICE)).aspect == "2:3"
    assert await credits.verify() == []


async def test_forget_cancels_waiting_and_running_jobs_first_and_returns_their_credits(bot_parts, settings):
    """A member who forgets mid-job gets the held credits back; nothing of those jobs is delivered later."""
    queue, credits, worker = bot_parts
    worker.gate = asyncio.Event()
    running = await queue.submit(SCOPE, ALICE, imagine(SECRET, seed=1))
    waiting = await queue.submit(SCOPE, ALICE, imagine(SECRET, seed=2, width=768))  # not batched with it
    await worker.started.wait()
    assert (await credits.balance(SCOPE, ALICE)).held > 0

    report = await forget_member(queue._db, queue, settings.images_dir, SCOPE, ALICE)
    worker.gate.set()
    await asyncio.sleep(0.1)

    assert report.live == 2 and report.jobs == 2
    balance = await credits.balance(SCOPE, ALICE)
    assert balance.held == 0 and balance.available == balance.allowance
    for job in (running, waiting):
        with pytest.raises(JobNotFound):
            await queue.get(job.id)
        assert not on_disk(folder(settings, job))
    assert await credits.verify() == []
    assert (await queue.snapshot()).waiting == ()


async def test_an_upload_belongs_to_the_member_who_uploaded_it(bot_parts, settings):
    """Bob re-rolled Alice's /vary upload: his /forget keeps her upload, hers deletes it."""
    queue, credits, _ = bot_parts
    source = await upload(settings, SCOPE)
    alices = await make(queue, SCOPE, ALICE, vary_upload(source, "alice's upload"))
    bobs_reroll = await make(queue, SCOPE, BOB, alices.request.replace(seed=99, model=""))
    assert bobs_reroll.request.init_image == source

    report = await forget_member(queue._db, queue, settings.images_dir, SCOPE, BOB)
    assert report.uploads == 0 and on_disk(source)
    assert (await queue.get(alices.id)).request.init_image == source

    report = await forget_member(queue._db, queue, settings.images_dir, SCOPE, ALICE)
    assert report.uploads == 1 and not on_disk(source)
    assert await credits.verify() == []


async def test_forgetting_unlinks_a_remaining_child_job(bot_parts, settings):
    """A job made from a forgotten member's image keeps its row; its parent link is cleared."""
    queue, _, _ = bot_parts
    grid = await make(queue, SCOPE, ALICE, imagine(SECRET))
    child = await make(
        queue, SCOPE, BOB, imagine("bob", kind=JobKind.VARY, strength=0.7), parent=(grid.id, 1)
    )
    await forget_member(queue._db, queue, settings.images_dir, SCOPE, ALICE)
    kept = await queue.get(child.id)
    assert kept.parent_job_id is None
    assert on_disk(*kept.result_paths)


async def test_a_new_per_member_table_joins_forget_with_one_entry(bot_parts, settings):
    """Review requests (safety_reviews) and any table listed as a RowForgetter are deleted per member."""
    queue, _, _ = bot_parts
    db = queue._db
    source = await upload(settings, SCOPE)
    request = json.dumps({**vars(vary_upload(source)), "kind": "vary"})
    for user in (ALICE, BOB):
        await db.execute(
            "INSERT INTO safety_reviews (scope, user_id, request, reason, status, created_at) "
            "VALUES (?, ?, ?, 'refused', 'pending', 0)",
            (SCOPE, user, request if user == ALICE else "{}"),
        )
    await db.execute("CREATE TABLE notes (scope INTEGER, user_id INTEGER, text TEXT)")
    await db.execute("INSERT INTO notes VALUES (?, ?, 'a'), (?, ?, 'b')", (SCOPE, ALICE, SCOPE, BOB))
    forgetters = [*FORGETTERS, RowForgetter("notes", "notes"), RowForgetter("not_created_yet", "later")]

    report = await forget_member(db, queue, settings.images_dir, SCOPE, ALICE, forgetters=forgetters)

    assert report.rows["review requests"] == 1 and report.rows["notes"] == 1
    assert "later" not in report.rows, "a table that does not exist is skipped"
    assert report.uploads == 1 and not on_disk(source)
    left = await db.fetchall("SELECT user_id FROM safety_reviews UNION ALL SELECT user_id FROM notes")
    assert [row[0] for row in left] == [BOB, BOB]


def test_forgetter_names_must_be_identifiers():
    """A forgetter's table name is put into SQL, so only plain identifiers are accepted."""
    with pytest.raises(ValueError):
        RowForgetter("notes; DROP TABLE jobs", "x")


# -- retention -------------------------------------------------------------------------------------------


async def test_prune_deletes_old_images_and_marks_the_job(bot_parts, settings, clock):
    """Images of a job finished 31 days ago go, a 5-day-old job's stay; the old row says when."""
    queue, _, _ = bot_parts
    old = await make(queue, SCOPE, ALICE, imagine("old"))
    clock.now += 26 * DAY_S
    recent = await make(queue, SCOPE, BOB, imagine("recent"))
    now = clock.now + 5 * DAY_S

    report = await prune_images(queue._db, settings.images_dir, 30, now=now)

    assert (report.jobs, report.images) == (1, 5)
    assert not on_disk(folder(settings, old))
    assert (await queue.get(old.id)).images_pruned_at == now
    assert (await queue.get(old.id)).request.prompt == "old", "the prompt is kept"
    assert all(on_disk(p) for p in (await queue.get(recent.id)).result_paths)
    assert (await queue.get(recent.id)).images_pruned_at is None
    again = await prune_images(queue._db, settings.images_dir, 30, now=now)
    assert again.jobs == 0, "a pruned job is not pruned twice"


async def test_prune_never_touches_what_a_waiting_or_running_job_needs(bot_parts, settings, clock):
    """An old grid a queued variation starts from, and an old upload a running job uses, are kept."""
    queue, _, worker = bot_parts
    grid = await make(queue, SCOPE, ALICE, imagine("old grid"))
    source = await upload(settings, SCOPE)
    old = clock.now - 40 * DAY_S
    os.utime(source, (old, old))
    worker.gate = asyncio.Event()
    running = await queue.submit(SCOPE, BOB, vary_upload(source, "bob's"))
    waiting = await queue.submit(
        SCOPE, BOB, imagine("v", kind=JobKind.VARY, strength=0.7, width=768), parent=(grid.id, 3)
    )
    await worker.started.wait()

    report = await prune_images(queue._db, settings.images_dir, 30, now=clock.now + 31 * DAY_S)

    assert report.skipped == 1 and report.uploads == 0
    assert on_disk(source)
    assert on_disk(*grid.result_paths)
    assert (await queue.get(grid.id)).images_pruned_at is None, "tried again on the next pass"
    worker.gate.set()
    for job in (running, waiting):
        assert (await finished(queue, job.id)).status is JobStatus.DONE


async def test_prune_deletes_old_unused_uploads_only(bot_parts, settings, clock):
    """An old upload nobody uses is deleted; a fresh one and one a recent job re-used are kept."""
    queue, _, _ = bot_parts
    stale, fresh, reused = [await upload(settings, SCOPE, (n, n, n)) for n in (1, 2, 3)]
    long_ago = clock.now - 60 * DAY_S
    for path in (stale, reused):
        os.utime(path, (long_ago, long_ago))
    await make(queue, SCOPE, ALICE, vary_upload(reused))

    report = await prune_images(queue._db, settings.images_dir, 30, now=clock.now)

    assert report.uploads == 1
    assert not on_disk(stale)
    assert on_disk(fresh) and on_disk(reused)


async def test_retention_zero_keeps_everything(bot_parts, settings, clock):
    """PRIVACY__RETENTION_DAYS=0 keeps images for ever."""
    queue, _, _ = bot_parts
    job = await make(queue, SCOPE, ALICE, imagine("kept"))
    report = await prune_images(queue._db, settings.images_dir, 0, now=clock.now + 3650 * DAY_S)
    assert report.jobs == 0 and folder(settings, job).is_dir()


async def test_a_pruned_job_refuses_follow_ups_with_a_reason_but_re_rolls(bot_parts, settings, clock):
    """U/V/upscale on a pruned grid say the images were deleted and when; a re-roll still works."""
    queue, _, _ = bot_parts
    grid = await make(queue, SCOPE, ALICE, imagine("castle"))
    await prune_images(queue._db, settings.images_dir, 30, now=clock.now + 31 * DAY_S)
    with pytest.raises(ImagesGone, match=r"no longer stored.*30 days.*deleted <t:\d+:D>"):
        await queue.select(SCOPE, BOB, grid.id, 2)
    with pytest.raises(ImagesGone):
        await queue.submit(SCOPE, BOB, imagine("v", kind=JobKind.VARY, strength=0.7), parent=(grid.id, 1))
    reroll = await make(queue, SCOPE, BOB, grid.request.replace(seed=5, model=""))
    assert reroll.status is JobStatus.DONE


async def test_an_image_deleted_by_hand_is_refused_not_run(bot_parts, settings):
    """A source image missing from disk is refused before anything is charged."""
    queue, credits, _ = bot_parts
    source = await upload(settings, SCOPE)
    await asyncio.to_thread(os.remove, source)
    before = await credits.balance(SCOPE, ALICE)
    with pytest.raises(ImagesGone, match="no longer stored"):
        await queue.submit(SCOPE, ALICE, vary_upload(source))
    assert (await credits.balance(SCOPE, ALICE)).available == before.available


async def test_the_pruner_runs_at_start_and_stops_cleanly(bot_parts, settings, clock):
    """The owned task makes a first pass right away, and stop() ends it without leaving a task behind."""
    queue, _, _ = bot_parts
    job = await make(queue, SCOPE, ALICE, imagine("old"))
    later = PrivacySettings(retention_days=1)
    pruner = Pruner(queue._db, settings.images_dir, later, clock=lambda: clock.now + 2 * DAY_S)
    pruner.start()
    async with asyncio.timeout(5):
        while pruner.passes == 0:  # noqa: ASYNC110 - a test polling the owned task
            await asyncio.sleep(0.01)
    assert pruner.running
    assert not on_disk(folder(settings, job))
    await pruner.stop()
    assert not pruner.running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "prune-images"]
    off = Pruner(queue._db, settings.images_dir, PrivacySettings(retention_days=0))
    off.start()
    assert not off.running


async def test_services_own_the_pruner(tmp_path):
    """open_services starts the pruner and close() stops it."""
    from bot.services import open_services

    services = await open_services(make_settings(tmp_path), workers=[FakeWorker()])
    pruner = services.pruner
    assert pruner is not None and pruner.running
    await services.close()
    assert not pruner.running
