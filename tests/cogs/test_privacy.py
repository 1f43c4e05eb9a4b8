"""/forget through the simulated Discord, and buttons on jobs whose images retention deleted."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from bot.errors import ImagesGone, JobNotFound
from bot.privacy import DAY_S, prune_images
from tests.cogs.helpers import buttons, done_message, refusals, until


async def grid_of(env, services, channel, member, prompt):
    """Run /imagine to the end: (the result message, its job as stored)."""
    await member.slash(channel, "imagine", prompt=prompt)
    message = await until(env, done_message(channel), what="the grid")
    return message, await services.queue.get(job_id_of(message))


def job_id_of(message) -> int:
    return int(buttons(message)["U1"].split(":")[1])


def on_disk(*paths) -> bool:
    return all(os.path.exists(p) for p in paths)


async def test_forget_asks_first_and_deletes_nothing_when_kept(simcord_env, services, world):
    """/forget counts what would go and what stays; "Keep everything" deletes nothing."""
    guild, channel, alice, _ = world
    _, job = await grid_of(simcord_env, services, channel, alice, "alice's lighthouse")
    await alice.slash(channel, "settings", aspect="3:2")

    asked = await alice.slash(channel, "forget")

    assert asked.ephemeral
    text = asked.response.content
    assert "This deletes 1 job (prompts, settings and history), 5 images, 0 uploaded images" in text
    assert "saved /settings (1)" in text and "credit history" in text and "cannot be undone" in text
    await alice.click(asked.response, label="Keep everything")
    assert "Kept: nothing was deleted." in asked.response.content
    assert not asked.response.components
    assert (await services.queue.get(job.id)).request.prompt == "alice's lighthouse"
    assert on_disk(*job.result_paths)
    assert (await services.members.preferences(guild.id, alice.id)).aspect == "3:2"


async def test_forget_deletes_the_members_jobs_images_and_settings_here_only(simcord_env, services, world):
    """After confirming, Alice's job rows, image files and settings are gone; Bob's job is untouched."""
    guild, channel, alice, bob = world
    _, alice_job = await grid_of(simcord_env, services, channel, alice, "alice's secret garden")
    _, bob_job = await grid_of(simcord_env, services, channel, bob, "bob's harbour")
    await alice.slash(channel, "settings", private=False, stylize=300)
    ledger = await services.db.fetchall("SELECT * FROM credit_ledger WHERE user_id = ?", (alice.id,))

    asked = await alice.slash(channel, "forget")
    await alice.click(asked.response, label="Delete my data")

    text = await until(simcord_env, lambda: "Done" in asked.response.content and asked.response.content)
    assert text.startswith("Done: deleted 1 job (prompts, settings and history), 5 images, 0 uploaded images")
    assert "saved /settings (1)" in text and "in this server" in text
    with pytest.raises(JobNotFound):
        await services.queue.get(alice_job.id)
    assert not on_disk(*alice_job.result_paths, alice_job.grid_path)
    assert (await services.members.preferences(guild.id, alice.id)).stylize is None
    assert on_disk(*bob_job.result_paths) and (await services.queue.get(bob_job.id)).owner == bob.id
    after = await services.db.fetchall("SELECT * FROM credit_ledger WHERE user_id = ?", (alice.id,))
    assert [dict(r) for r in after] == [dict(r) for r in ledger]
    assert await services.credits.verify() == []


async def test_forget_cancels_a_waiting_job_and_returns_its_credits(simcord_env, services, worker, world):
    """Confirming cancels the waiting job first: its message says so and its credits come back."""
    guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await bob.slash(channel, "imagine", prompt="bob holds the worker")
    job_message = await alice.slash(channel, "imagine", prompt="alice waits")
    assert (await services.credits.balance(guild.id, alice.id)).held > 0

    asked = await alice.slash(channel, "forget")
    assert "1 job still waiting or running will be cancelled first" in asked.response.content
    await alice.click(asked.response, label="Delete my data")

    await until(simcord_env, lambda: "Cancelled" in _content(channel, job_message.response.id), what="cancel")
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.held == 0 and balance.available == balance.allowance
    assert await services.queue.jobs_of(guild.id, alice.id, ("queued", "running", "cancelled")) == []
    assert await services.credits.verify() == []
    worker.gate.set()


async def test_forget_with_nothing_stored_says_so(simcord_env, services, world):
    """A member with no jobs or settings here is told there is nothing to delete, with no buttons."""
    _, channel, alice, _ = world
    result = await alice.slash(channel, "forget")
    assert result.ephemeral and "nothing to delete" in result.response.content
    assert not result.response.components


async def test_forget_in_direct_messages_is_its_own_scope(simcord_env, services, world):
    """/forget in DMs deletes the DM jobs and leaves the member's server jobs alone (and vice versa)."""
    _, channel, alice, _ = world
    _, server_job = await grid_of(simcord_env, services, channel, alice, "in the server")
    await alice.user.slash("imagine", prompt="in my DMs")
    dm_message = await until(simcord_env, done_message(alice.user.dm_channel), what="the DM grid")
    dm_job = await services.queue.get(job_id_of(dm_message))
    assert dm_job.scope == 0

    asked = await alice.user.slash("forget")
    assert "in your direct messages with Atelier" in asked.response.content
    await alice.user.click(asked.response, label="Delete my data")
    await until(simcord_env, lambda: "Done" in asked.response.content, what="the report")

    with pytest.raises(JobNotFound):
        await services.queue.get(dm_job.id)
    assert on_disk(*server_job.result_paths)


async def test_buttons_on_a_pruned_job_explain_instead_of_failing(simcord_env, services, world, settings):
    """After retention deleted a grid's images, U2 and V1 answer that they are gone; nothing is charged."""
    guild, channel, alice, bob = world
    grid, _ = await grid_of(simcord_env, services, channel, alice, "an old castle")
    report = await prune_images(services.db, settings.images_dir, 30, now=time.time() + 31 * DAY_S)
    assert report.jobs == 1
    before = await services.credits.balance(guild.id, bob.id)

    for label in ("U2", "V1"):
        result = await bob.click(grid, label=label)
        assert result.ephemeral
        assert "no longer stored" in result.response.content and "30 days" in result.response.content
    assert all(isinstance(error, ImagesGone) for error in refusals(simcord_env))
    assert (await services.credits.balance(guild.id, bob.id)).available == before.available
    rerolled = await bob.click(grid, custom_id=buttons(grid)["🔄"])
    assert not rerolled.ephemeral, "the prompt is kept, so a re-roll still works"


async def test_envelope_on_a_pruned_grid_tells_the_reactor(simcord_env, services, world, settings):
    """✉️ on a grid whose images were deleted DMs the reactor why, instead of failing silently."""
    _, channel, alice, bob = world
    grid, _ = await grid_of(simcord_env, services, channel, alice, "an old castle")
    await prune_images(services.db, settings.images_dir, 30, now=time.time() + 31 * DAY_S)
    await bob.react(grid, "✉️")
    dm = await until(simcord_env, lambda: bob.user.dm_channel.last_message, what="the DM")
    assert "no longer stored" in dm.content
    assert alice.user.dm_channel.last_message is None


def _content(channel, message_id):
    return next(m for m in channel.history() if m.id == message_id).content
