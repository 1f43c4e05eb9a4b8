"""U1–U4, V1–V4, 🔄 and the single-image buttons: who pays, what appears, and that they survive a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.engine.types import JobKind
from bot.queue import FakeWorker
from bot.services import open_services
from cogs.client import AtelierBot
from tests.cogs.helpers import button_rows, buttons, done_message, until


async def make_grid(env, channel, member, prompt="a castle at dusk --seed 42"):
    result = await member.slash(channel, "imagine", prompt=prompt)
    await until(env, lambda: _message(channel, result.response.id).attachments, what="the grid")
    return _message(channel, result.response.id)


def _message(channel, message_id):
    return next(m for m in channel.history() if m.id == message_id)


async def test_u_button_posts_that_image_alone_for_free(simcord_env, services, world):
    """U2 posts image 2 at full resolution with Vary/Upscale buttons, and costs nothing."""
    guild, channel, alice, _ = world
    grid = await make_grid(simcord_env, channel, alice)
    before = await services.credits.balance(guild.id, alice.id)
    result = await alice.click(grid, label="U2")
    assert not result.ephemeral
    single = result.response.message
    assert button_rows(single) == [
        ["Vary (Subtle)", "Vary (Strong)", "Upscale (Subtle)", "Upscale (Creative)"]
    ]
    data = await single.attachments[0].read()
    parent = await services.queue.get(int(buttons(grid)["U2"].split(":")[1]))
    assert data == await asyncio.to_thread(Path(parent.result_paths[1]).read_bytes)
    after = await services.credits.balance(guild.id, alice.id)
    assert after.available == before.available


async def test_v_button_starts_a_variation_owned_and_paid_by_the_clicker(simcord_env, services, world):
    """Bob clicking V3 on Alice's grid gets a new grid of variations, charged to Bob, not Alice."""
    guild, channel, alice, bob = world
    grid = await make_grid(simcord_env, channel, alice)
    alice_before = await services.credits.balance(guild.id, alice.id)
    result = await bob.click(grid, label="V3")
    message = await until(simcord_env, done_message(channel), what="the variation grid")
    assert message.id == result.response.id
    assert button_rows(message)[0] == ["U1", "U2", "U3", "U4"]
    job = await services.queue.get(int(buttons(message)["U1"].split(":")[1]))
    parent = await services.queue.get(int(buttons(grid)["V3"].split(":")[1]))
    assert job.kind is JobKind.VARY and job.owner == bob.id
    assert job.parent_job_id == parent.id and job.parent_index == 3
    assert job.request.init_image == parent.result_paths[2]
    assert job.request.prompt == parent.request.prompt
    bob_after = await services.credits.balance(guild.id, bob.id)
    assert bob_after.available == bob_after.allowance - job.cost
    assert (await services.credits.balance(guild.id, alice.id)).available == alice_before.available


async def test_reroll_makes_a_new_grid_with_new_seeds(simcord_env, services, world):
    """🔄 re-runs the same prompt with different seeds."""
    _guild, channel, alice, _ = world
    grid = await make_grid(simcord_env, channel, alice)
    result = await alice.click(grid, custom_id=buttons(grid)["🔄"])
    await until(simcord_env, lambda: _message(channel, result.response.id).attachments)
    message = _message(channel, result.response.id)
    old = await services.queue.get(int(buttons(grid)["🔄"].split(":")[1]))
    new = await services.queue.get(int(buttons(message)["U1"].split(":")[1]))
    assert new.request.prompt == old.request.prompt
    assert new.request.seed != old.request.seed


async def test_upscale_button_makes_a_2x_image(simcord_env, services, world):
    """U1 → Upscale (Subtle) queues a 2× upscale of that image, charged by its size."""
    _guild, channel, alice, _ = world
    grid = await make_grid(simcord_env, channel, alice)
    single = (await alice.click(grid, label="U1")).response.message
    result = await alice.click(single, label="Upscale (Subtle)")
    await until(simcord_env, lambda: _message(channel, result.response.id).attachments)
    message = _message(channel, result.response.id)
    job = await services.queue.get(int(buttons(message)["Vary (Subtle)"].split(":")[1]))
    parent = await services.queue.get(int(buttons(grid)["U1"].split(":")[1]))
    assert job.kind is JobKind.UPSCALE and job.request.scale == 2
    assert (job.request.width, job.request.height) == (2 * parent.request.width, 2 * parent.request.height)
    assert job.request.upscale_mode == "subtle"


async def test_buttons_keep_working_after_a_restart(simcord_env, services, settings, world):
    """Buttons carry the job in their id: after the bot restarts, U1 on an old grid still works."""
    _guild, channel, alice, _ = world
    grid = await make_grid(simcord_env, channel, alice)
    await services.close()
    fresh = await open_services(settings, workers=[FakeWorker()])
    try:
        await simcord_env.restart_bot(AtelierBot(services=fresh))
        result = await alice.click(grid, label="U4")
        assert result.response.message.attachments
        assert "Done" in result.response.content
    finally:
        await fresh.close()
