"""/credits, /queue, /cancel and /settings: a member's own view, always ephemeral."""

from __future__ import annotations

import asyncio
import dataclasses

from bot.queue import FakeEngine, FakeWorker
from bot.queue.fake import FAKE_PROFILE
from bot.services import open_services
from cogs.client import AtelierBot
from tests.cogs.helpers import done_message, refusals, until


async def test_credits_shows_free_bonus_refill_and_queue(simcord_env, services, world):
    """/credits says what is free vs bonus, when it refills, and how many jobs wait."""
    guild, channel, alice, _ = world
    await services.credits.grant(guild.id, alice.id, 7, "contest prize", actor=1)
    result = await alice.slash(channel, "credits")
    assert result.ephemeral
    text = result.response.content
    assert "**47** credits available (40 of 40 free this week, 7 bonus)" in text
    assert "refill <t:" in text
    assert "Jobs waiting or running: 0." in text


async def test_queue_lists_waiting_and_running_jobs(simcord_env, services, worker, world):
    """/queue shows the running job and the waiting ones in order, with owners."""
    _guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await alice.slash(channel, "imagine", prompt="one")
    await bob.slash(channel, "imagine", prompt="two")
    result = await bob.slash(channel, "queue")
    assert result.ephemeral
    lines = result.response.content.splitlines()
    assert lines[0].startswith("▶ job 1") and f"<@{alice.id}>" in lines[0]
    assert lines[1].startswith("1. job 2") and f"<@{bob.id}>" in lines[1]
    assert "-# fake-0 (cpu): running job 1" in lines[-1]  # each worker, and what it runs
    worker.gate.set()


async def test_queue_names_each_workers_model_when_they_differ(simcord_env, services, settings, world):
    """With workers of two models (e.g. Ray actors of two models), /queue says which runs which."""
    _guild, channel, alice, _ = world
    await services.close()
    other = FakeWorker("fake-1", engine=FakeEngine(dataclasses.replace(FAKE_PROFILE, name="fake/other")))
    fresh = await open_services(settings, workers=[FakeWorker(), other])
    try:
        await simcord_env.restart_bot(AtelierBot(services=fresh))
        lines = (await alice.slash(channel, "queue")).response.content.splitlines()
        assert lines[-2:] == ["-# fake-0 (cpu · fake/model): idle", "-# fake-1 (cpu · fake/other): idle"]
    finally:
        await fresh.close()


async def test_cancel_own_waiting_job_refunds_it(simcord_env, services, worker, world):
    """/cancel without a number cancels your latest waiting job and gives the credits back."""
    guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await bob.slash(channel, "imagine", prompt="blocking the worker")
    job_message = await alice.slash(channel, "imagine", prompt="mine")
    result = await alice.slash(channel, "cancel")
    assert result.ephemeral and "Cancelled job 2" in result.response.content
    assert "came back" in result.response.content
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance
    await until(simcord_env, lambda: "Cancelled" in _content(channel, job_message.response.id))
    worker.gate.set()


async def test_cannot_cancel_someone_elses_job(simcord_env, services, worker, world):
    """A member cannot cancel another member's job; the job keeps its place."""
    _guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await alice.slash(channel, "imagine", prompt="alice's")
    result = await bob.slash(channel, "cancel", job=1)
    assert result.ephemeral and "not yours" in result.response.content
    assert len(refusals(simcord_env)) == 1
    assert (await services.queue.get(1)).status.value == "running"
    worker.gate.set()


async def test_cancel_with_nothing_to_cancel_says_so(simcord_env, services, world):
    """/cancel with no job waiting explains there is nothing to cancel."""
    _, channel, alice, _ = world
    result = await alice.slash(channel, "cancel")
    assert result.ephemeral and "no waiting or running job" in result.response.content
    refusals(simcord_env)


async def test_settings_are_saved_and_shown(simcord_env, services, world):
    """/settings stores a member's defaults per server and shows them."""
    guild, channel, alice, _ = world
    result = await alice.slash(channel, "settings", aspect="3:2", stylize=250, private=True)
    assert result.ephemeral
    assert "aspect **3:2**" in result.response.content and "private results **on**" in result.response.content
    prefs = await services.members.preferences(guild.id, alice.id)
    assert (prefs.aspect, prefs.stylize, prefs.private) == ("3:2", 250, True)
    result = await alice.slash(channel, "settings", reset=True)
    assert "aspect **model default**" in result.response.content


async def test_private_results_arrive_by_dm(simcord_env, services, world):
    """With private results on, the channel gets nothing public; the job message lives in the member's DMs."""
    _guild, channel, alice, _ = world
    await alice.slash(channel, "settings", private=True)
    result = await alice.slash(channel, "imagine", prompt="a secret garden")
    assert result.ephemeral and "privately" in result.response.content
    dm_channel = alice.user.dm_channel
    await until(simcord_env, done_message(dm_channel), what="the DM result")
    assert not [m for m in channel.history() if "secret garden" in m.content]


def _content(channel, message_id):
    return next(m for m in channel.history() if m.id == message_id).content
