"""/imagine and its job message, through a simulated Discord, on an instant fake worker."""

from __future__ import annotations

import asyncio

import discord
import pytest

from tests.cogs.helpers import button_rows, buttons, done_message, refusals, until


async def test_imagine_posts_a_grid_with_upscale_and_variation_buttons(simcord_env, services, world):
    """/imagine answers at once, then the same message becomes the grid with U1–U4 / V1–V4 🔄."""
    guild, channel, alice, _ = world
    before = await services.credits.balance(guild.id, alice.id)
    result = await alice.slash(channel, "imagine", prompt="a castle at dusk --ar 16:9 --seed 42")
    assert result.acknowledged and not result.ephemeral
    assert "a castle at dusk" in result.response.content
    assert "credits" in result.response.content
    message = await until(simcord_env, done_message(channel), what="the grid")
    assert message.id == result.response.id, "the job message is edited in place"
    assert button_rows(message) == [["U1", "U2", "U3", "U4"], ["V1", "V2", "V3", "V4", "🔄"]]
    assert message.attachments[0].filename == "grid.png"
    assert "seed 42" in message.content
    after = await services.credits.balance(guild.id, alice.id)
    job = await services.queue.get(int(buttons(message)["U1"].split(":")[1]))
    assert job.cost > 0
    assert before.available - after.available == job.cost
    assert f"{job.cost} credits" in result.response.content


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a castle --ar 9:1", "--ar"),
        ("a castle --seed -4", "--seed"),
        ("a castle --chaos 300", "--chaos"),
        ("a castle --frobnicate 3", "--frobnicate"),
        ("--ar 16:9", "prompt"),
    ],
)
async def test_malformed_prompt_is_refused_privately_and_costs_nothing(
    simcord_env, services, world, prompt, expected
):
    """A bad flag gets an ephemeral message naming the flag; nothing is queued or charged."""
    guild, channel, alice, _ = world
    result = await alice.slash(channel, "imagine", prompt=prompt)
    assert result.ephemeral
    assert expected in result.response.content
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance and balance.held == 0
    assert await services.queue.jobs_of(guild.id, alice.id, ("queued", "running", "done")) == []
    assert len(refusals(simcord_env)) == 1


async def test_not_enough_credits_says_balance_cost_and_refill(simcord_env, services, world):
    """A member out of credits is told what it costs, what they have and when it refills."""
    guild, channel, alice, _ = world
    await services.credits.set_allowance(guild.id, alice.id, 2, actor=1)
    result = await alice.slash(channel, "imagine", prompt="a castle")
    assert result.ephemeral
    assert "costs 4 credits but you have 2" in result.response.content
    assert "refill" in result.response.content
    await services.credits.set_policy(guild.id, relax_allowed=True, actor=1)
    result = await alice.slash(channel, "imagine", prompt="a castle")
    assert "--relax" in result.response.content
    assert len(refusals(simcord_env)) == 2


async def test_relax_job_is_free_where_allowed(simcord_env, services, world):
    """With relax mode on, `--relax` queues a job that costs nothing."""
    guild, channel, alice, _ = world
    await services.credits.set_policy(guild.id, relax_allowed=True, actor=1)
    result = await alice.slash(channel, "imagine", prompt="a castle --relax")
    assert "relax mode (free)" in result.response.content
    await until(simcord_env, done_message(channel), what="the grid")
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance


async def test_waiting_message_shows_position_and_updates(simcord_env, services, worker, world):
    """A queued job's message says its position, then follows the job to its grid."""
    _guild, channel, alice, bob = world
    worker.gate = asyncio.Event()
    await alice.slash(channel, "imagine", prompt="first")
    second = await bob.slash(channel, "imagine", prompt="second")
    assert "Waiting to start (position 1" in second.response.content
    worker.gate.set()
    await until(simcord_env, lambda: "Done" in simcord_env_message(channel, second.response.id).content)
    assert simcord_env_message(channel, second.response.id).attachments


def simcord_env_message(channel, message_id: int) -> discord.Message:
    return next(m for m in channel.history() if m.id == message_id)


async def test_progress_edits_are_throttled(simcord_env, services, worker, world, settings):
    """However many steps a job has, its message is edited at most once per interval while it runs."""
    _guild, channel, alice, _ = world
    worker.step_delay = 0.05
    result = await alice.slash(channel, "imagine", prompt="a castle --steps 40")
    await until(simcord_env, done_message(channel), timeout=20)
    edits = [
        r for r in simcord_env.http_requests if r.method == "PATCH" and str(result.response.id) in r.path
    ]
    run_seconds = 40 * 0.05
    assert len(edits) <= run_seconds / settings.discord.preview_edit_interval_s + 3


async def test_failed_job_says_so_and_returns_credits(simcord_env, services, worker, world):
    """When generation fails, the message says so in plain words and that the credits came back."""
    guild, channel, alice, _ = world
    worker.crash_next = 2
    result = await alice.slash(channel, "imagine", prompt="a castle")
    await until(
        simcord_env,
        lambda: "Failed" in simcord_env_message(channel, result.response.id).content,
        what="the failure message",
    )
    text = simcord_env_message(channel, result.response.id).content
    assert "credits came back" in text
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance


async def test_imagine_works_in_direct_messages_with_its_own_scope(simcord_env, services):
    """In DMs /imagine runs too, charged to the DM scope, not to any server."""
    alice = simcord_env.create_user("alice")
    result = await alice.slash("imagine", prompt="a lighthouse")
    assert result.acknowledged and not result.ephemeral
    await until(simcord_env, lambda: services.queue is not None)
    jobs = await services.queue.jobs_of(0, alice.id, ("queued", "running", "done"))
    assert len(jobs) == 1


async def test_picker_options_and_saved_defaults_apply(simcord_env, services, world):
    """`aspect`/`seed` options and /settings defaults shape the job; flags in the prompt win."""
    guild, channel, alice, _ = world
    await alice.slash(channel, "settings", aspect="16:9")
    await alice.slash(channel, "imagine", prompt="a castle", seed=7)
    await alice.slash(channel, "imagine", prompt="a castle --ar 1:1", aspect="2:1")
    await until(simcord_env, done_message(channel))
    first, second = sorted(
        await services.queue.jobs_of(guild.id, alice.id, ("queued", "running", "done")), key=lambda j: j.id
    )
    assert first.request.width > first.request.height and first.request.seed == 7
    assert second.request.width == second.request.height


async def test_imagine_cooldown_refuses_a_second_prompt_too_soon(simcord_env, services, settings, world):
    """With a cooldown set, a second /imagine right after the first is refused with the wait time."""
    _, channel, alice, bob = world
    settings.discord.imagine_cooldown_s = 60
    first = await alice.slash(channel, "imagine", prompt="one")
    second = await alice.slash(channel, "imagine", prompt="two")
    other = await bob.slash(channel, "imagine", prompt="someone else")
    assert not first.ephemeral and not other.ephemeral
    assert second.ephemeral and "try again in" in second.response.content
    assert len(refusals(simcord_env)) == 1
