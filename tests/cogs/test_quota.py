"""/quota: only moderators, only in their own server, every action in the ledger with the actor."""

from __future__ import annotations

import asyncio

import discord
import pytest

from tests.cogs.helpers import refusals


@pytest.fixture
def world(simcord_env):
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("art")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    mod = guild.add_member(simcord_env.create_user("mod"), roles=[mods])
    alice = guild.add_member(simcord_env.create_user("alice"))
    return guild, channel, mod, alice


async def show_quota_to_everyone(bot, guild) -> None:
    """What a server admin can do in Integrations settings: Discord then lets anyone *invoke* /quota."""
    quota = next(c for c in await bot.tree.fetch_commands() if c.name == "quota")
    guild.set_command_permissions(quota, {guild.default_role: True})


async def test_non_moderator_is_refused_and_nothing_changes(simcord_env, simcord_bot, services, world):
    """Even where /quota is visible to all, a member without Manage Server is refused at run time."""
    guild, channel, _, alice = world
    await show_quota_to_everyone(simcord_bot, guild)
    result = await alice.slash(channel, "quota grant", user=alice.user, amount=100)
    assert result.ephemeral
    assert "Manage Server" in result.response.content
    assert len(refusals(simcord_env)) == 1
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.bonus == 0


async def test_grant_and_revoke_are_in_the_ledger_with_the_moderator(simcord_env, services, world):
    """A moderator grants and revokes bonus credits; the ledger names the moderator and the reason."""
    guild, channel, mod, alice = world
    result = await mod.slash(channel, "quota grant", user=alice.user, amount=25, reason="art contest")
    assert result.ephemeral and "now have 65" in result.response.content
    result = await mod.slash(channel, "quota revoke", user=alice.user, amount=5, reason="oops")
    assert "now have 60" in result.response.content
    rows = await services.credits.ledger(guild.id, alice.id)
    assert {(row.actor, row.reason) for row in rows} >= {(mod.id, "art contest"), (mod.id, "oops")}
    result = await mod.slash(channel, "quota show", user=alice.user)
    assert "art contest" in result.response.content and "**60** credits available" in result.response.content
    assert await services.credits.verify() == []


async def test_revoking_more_than_the_bonus_is_refused(simcord_env, services, world):
    """Taking away more bonus credits than a member has is refused with the reason; nothing is written."""
    guild, channel, mod, alice = world
    await mod.slash(channel, "quota grant", user=alice.user, amount=3)
    result = await mod.slash(channel, "quota revoke", user=alice.user, amount=10)
    assert result.ephemeral
    assert len(refusals(simcord_env)) == 1
    assert (await services.credits.balance(guild.id, alice.id)).bonus == 3


async def test_amounts_are_bounded_in_the_command_schema(simcord_env, simcord_bot):
    """Discord itself refuses amounts below 1 or above 10⁹ (an amount of −10⁹ never reaches the bot)."""
    group = simcord_bot.tree.get_command("quota")
    grant = group.get_command("grant").to_dict(simcord_bot.tree)
    amount = next(o for o in grant["options"] if o["name"] == "amount")
    assert (amount["min_value"], amount["max_value"]) == (1, 1_000_000_000)


async def test_block_stops_a_member_and_unblock_lets_them_back(simcord_env, services, world):
    """A blocked member's /imagine is refused with a message saying a moderator blocked them."""
    _guild, channel, mod, alice = world
    await mod.slash(channel, "quota block", user=alice.user, reason="spam")
    result = await alice.slash(channel, "imagine", prompt="a castle")
    assert result.ephemeral and "blocked" in result.response.content
    refusals(simcord_env)
    await mod.slash(channel, "quota unblock", user=alice.user)
    result = await alice.slash(channel, "imagine", prompt="a castle")
    assert not result.ephemeral


async def test_set_default_prices_and_relax(simcord_env, services, world):
    """Allowance overrides, the server default, prices and relax mode all take effect."""
    guild, channel, mod, alice = world
    await mod.slash(channel, "quota set", user=alice.user, allowance=100)
    assert (await services.credits.balance(guild.id, alice.id)).allowance == 100
    await mod.slash(channel, "quota default", allowance=10, period="day")
    policy = await services.credits.policy(guild.id)
    assert (policy.allowance, policy.period) == (10, "day")
    await mod.slash(channel, "quota prices", kind="imagine", credits_per_unit=2.0)
    result = await alice.slash(channel, "imagine", prompt="a castle")
    assert "8 credits" in result.response.content
    await mod.slash(channel, "quota relax", mode="on")
    assert (await services.credits.policy(guild.id)).relax_allowed


async def test_pause_holds_new_work_in_this_server_only(simcord_env, services, world):
    """/quota pause stops jobs from this server starting; /quota resume lets them run."""
    guild, channel, mod, _alice = world
    result = await mod.slash(channel, "quota pause")
    assert "paused" in result.response.content
    limits = await services.queue.limits(guild.id)
    assert limits.paused
    await mod.slash(channel, "quota resume")
    assert not (await services.queue.limits(guild.id)).paused


async def test_moderator_role_counts_as_moderator(simcord_env, simcord_bot, services, world):
    """A member with the configured moderator role may use /quota without Manage Server."""
    guild, channel, mod, alice = world
    await show_quota_to_everyone(simcord_bot, guild)
    helpers = guild.create_role("Helpers")
    helper = guild.add_member(simcord_env.create_user("helper"), roles=[helpers])
    await mod.slash(channel, "quota modrole", role=helpers)
    result = await helper.slash(channel, "quota grant", user=alice.user, amount=5)
    assert "Gave" in result.response.content


async def test_clear_cancels_a_members_waiting_jobs(simcord_env, services, worker, world):
    """/quota clear cancels a member's waiting jobs and returns their credits."""
    guild, channel, mod, alice = world
    worker.gate = asyncio.Event()
    await mod.slash(channel, "imagine", prompt="running")
    await alice.slash(channel, "imagine", prompt="waiting 1")
    await alice.slash(channel, "imagine", prompt="waiting 2")
    result = await mod.slash(channel, "quota clear", user=alice.user)
    assert "Cancelled 2 waiting job(s)" in result.response.content
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance
    worker.gate.set()


async def test_show_a_member_who_never_used_the_bot(simcord_env, services, world):
    """/quota show for a newcomer shows a full allowance and no history instead of an error."""
    _guild, channel, mod, alice = world
    result = await mod.slash(channel, "quota show", user=alice.user)
    assert "**40** credits available" in result.response.content
    assert "none yet" in result.response.content
