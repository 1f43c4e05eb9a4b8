"""Reactions on result messages: 1️⃣–4️⃣, 🔄, ⬆️, 🔀, ✉️ and ❌."""

from __future__ import annotations

import asyncio

from bot.engine.types import JobKind
from tests.cogs.helpers import until


def _message(channel, message_id):
    return next(m for m in channel.history() if m.id == message_id)


async def grid_of(env, channel, member):
    result = await member.slash(channel, "imagine", prompt="a harbour at night --seed 5")
    await until(env, lambda: _message(channel, result.response.id).attachments, what="the grid")
    return _message(channel, result.response.id)


async def test_number_reaction_picks_that_image(simcord_env, services, world):
    """3️⃣ on a grid posts image 3 alone, like U3, with the single-image buttons."""
    _, channel, alice, bob = world
    grid = await grid_of(simcord_env, channel, alice)
    await bob.react(grid, "3️⃣")
    single = await until(
        simcord_env, lambda: channel.last_message if channel.last_message.id != grid.id else None
    )
    assert single.attachments and "Upscale (Subtle)" in str(single.components)
    job = await services.queue.job_for_message(single.id)
    assert job.kind is JobKind.SELECT and job.owner == bob.id and job.parent_index == 3


async def test_reroll_and_upscale_reactions_start_jobs_paid_by_the_reactor(simcord_env, services, world):
    """🔄 on a grid re-rolls; ⬆️ on a single image upscales; the reactor owns and pays for both."""
    guild, channel, alice, bob = world
    grid = await grid_of(simcord_env, channel, alice)
    await bob.react(grid, "🔄")
    await until(simcord_env, lambda: len(channel.history()) == 2 and channel.last_message.attachments)
    reroll = await services.queue.job_for_message(channel.last_message.id)
    assert reroll.owner == bob.id and reroll.kind is JobKind.IMAGINE
    await bob.react(grid, "1️⃣")
    await until(simcord_env, lambda: len(channel.history()) == 3)
    single = channel.last_message
    await bob.react(single, "⬆️")
    await until(simcord_env, lambda: len(channel.history()) == 4 and channel.last_message.attachments)
    upscale = await services.queue.job_for_message(channel.last_message.id)
    assert upscale.kind is JobKind.UPSCALE and upscale.owner == bob.id
    balance = await services.credits.balance(guild.id, bob.id)
    assert balance.available == balance.allowance - reroll.cost - upscale.cost
    alice_balance = await services.credits.balance(guild.id, alice.id)
    assert (
        alice_balance.available
        == alice_balance.allowance - (await services.queue.job_for_message(grid.id)).cost
    )


async def test_cross_reaction_by_owner_cancels_a_waiting_job(simcord_env, services, worker, world):
    """❌ by the owner cancels their waiting job and refunds it; ❌ by someone else does nothing."""
    guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await bob.slash(channel, "imagine", prompt="occupying the worker")
    waiting = await alice.slash(channel, "imagine", prompt="mine")
    message = _message(channel, waiting.response.id)
    await bob.react(message, "❌")
    assert (await services.queue.get(2)).status.value == "queued"
    await alice.react(message, "❌")
    await until(simcord_env, lambda: "Cancelled" in _message(channel, waiting.response.id).content)
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance
    worker.gate.set()


async def test_cross_reaction_deletes_a_finished_result_for_its_owner(simcord_env, services, world):
    """❌ by the owner on a finished grid deletes the message."""
    _, channel, alice, _ = world
    grid = await grid_of(simcord_env, channel, alice)
    await alice.react(grid, "❌")
    await until(simcord_env, lambda: all(m.id != grid.id for m in channel.history()))


async def test_envelope_sends_the_owner_images_and_recipes(simcord_env, services, world):
    """✉️ sends the owner a DM with the images and their recipes (seed, steps, model)."""
    _, channel, alice, bob = world
    grid = await grid_of(simcord_env, channel, alice)
    await bob.react(grid, "✉️")
    dm = await until(simcord_env, lambda: alice.user.dm_channel.last_message, what="the DM")
    assert len(dm.attachments) == 4
    assert "Seed: 5" in dm.content and "Steps:" in dm.content
    assert bob.user.dm_channel.last_message is None


async def test_other_reactions_are_ignored(simcord_env, services, world):
    """A reaction that is not in the map, or on a message that is not a job, does nothing."""
    _, channel, alice, _ = world
    grid = await grid_of(simcord_env, channel, alice)
    await alice.react(grid, "👍")
    assert len(channel.history()) == 1
