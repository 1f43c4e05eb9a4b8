"""Content safety through the simulated Discord: the prompt filter, reviews, the mod-log, image checks."""

from __future__ import annotations

import asyncio

import discord
import pytest

from bot.settings import Settings
from tests.cogs.helpers import buttons, done_message, png_bytes, refusals, until
from tests.tiny_classifier import build_tiny_classifier


@pytest.fixture(scope="module")
def classifier_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("classifiers")
    return {
        "flags": str(build_tiny_classifier(root / "flags", nsfw_score=0.9)),
        "passes": str(build_tiny_classifier(root / "passes", nsfw_score=0.1)),
    }


@pytest.fixture
def image_model() -> str | None:
    return None


@pytest.fixture
def settings(tmp_path, image_model, classifier_dirs) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        discord={"preview_edit_interval_s": 1.0},
        safety={"image_classifier": classifier_dirs[image_model] if image_model else None},
    )


@pytest.fixture
def world(simcord_env):
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("art")
    modlog = guild.create_text_channel("mod-log")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    mod = guild.add_member(simcord_env.create_user("mod"), roles=[mods])
    alice = guild.add_member(simcord_env.create_user("alice"))
    return guild, channel, modlog, mod, alice


async def nothing_charged_or_queued(services, guild, member) -> bool:
    balance = await services.credits.balance(guild.id, member.id)
    jobs = await services.queue.jobs_of(guild.id, member.id, ("queued", "running", "done"))
    return balance.available == 40 and balance.held == 0 and not jobs


@pytest.mark.parametrize("prompt", ["a nude statue", "a NUDE statue", "n u d e statue", "p0rn", "$3xy pose"])
async def test_blocked_prompts_are_refused_before_anything_is_charged(simcord_env, services, world, prompt):
    guild, channel, _, _, alice = world
    result = await alice.slash(channel, "imagine", prompt=prompt)
    assert result.ephemeral
    assert "blocked here" in result.response.content and "Nothing was charged" in result.response.content
    assert await nothing_charged_or_queued(services, guild, alice)


async def test_moderator_adds_and_removes_a_term(simcord_env, services, world):
    _guild, channel, _, mod, alice = world
    result = await mod.slash(channel, "moderation terms add", term="dragon")
    assert result.ephemeral and "Blocked `dragon`" in result.response.content
    refused = await alice.slash(channel, "imagine", prompt="a red DRAG0N over the sea")
    assert "drag0n" in refused.response.content and "this server's list" in refused.response.content
    listing = await mod.slash(channel, "moderation terms list")
    assert "`dragon`" in listing.response.content and "minors" in listing.response.content
    await mod.slash(channel, "moderation terms remove", term="dragon")
    accepted = await alice.slash(channel, "imagine", prompt="a red dragon over the sea")
    assert not accepted.ephemeral
    await until(simcord_env, done_message(channel), what="the grid")


async def test_members_cannot_change_the_filter(simcord_env, simcord_bot, services, world):
    guild, channel, _, _, alice = world
    command = next(c for c in await simcord_bot.tree.fetch_commands() if c.name == "moderation")
    guild.set_command_permissions(command, {guild.default_role: True})
    result = await alice.slash(channel, "moderation terms remove", term="nude")
    assert result.ephemeral and "Manage Server" in result.response.content
    assert len(refusals(simcord_env)) == 1
    assert "nude" in (await services.safety.store.terms(guild.id)).active_defaults


async def test_the_rule_on_minors_cannot_be_removed_or_reviewed(simcord_env, services, world):
    guild, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    result = await mod.slash(channel, "moderation terms remove", term="child")
    assert "cannot be turned off" in result.response.content
    refusals(simcord_env)
    refused = await alice.slash(channel, "imagine", prompt="a sexy schoolgirl")
    assert "never makes sexual content involving minors" in refused.response.content
    assert not refused.response.components, "no review is offered for this rule"
    assert await nothing_charged_or_queued(services, guild, alice)


async def review_request(env, world, prompt: str):
    """Set the mod-log, have Alice's prompt refused and ask for review; returns the mod-log post."""
    _, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    refused = await alice.slash(channel, "imagine", prompt=prompt)
    assert "Request review" in buttons(refused.response.message)
    asked = await alice.click(refused.response, label="Request review")
    assert "Sent to the moderators" in asked.response.content
    return await until(
        env,
        lambda: next((m for m in modlog.history() if "Review requested" in m.content), None),
        what="the review request in the mod-log",
    )


async def test_review_approved_runs_the_job_once_and_charges_once(simcord_env, services, world):
    """Refused → Request review → the mod-log shows it → Approve runs it as the member's job."""
    guild, channel, modlog, mod, alice = world
    request = await review_request(simcord_env, world, "a nude marble statue, museum photo")
    assert "nude marble statue" in request.content and set(buttons(request)) == {"Approve", "Deny"}
    await mod.click(request, label="Approve")
    grid = await until(simcord_env, done_message(channel), what="the approved job's grid")
    assert "nude marble statue" in grid.content and f"<@{alice.id}>" in grid.content
    decided = next(m for m in modlog.history() if m.id == request.id)
    assert "Approved by" in decided.content and not decided.components, "no second approval possible"
    balance = await services.credits.balance(guild.id, alice.id)
    jobs = await services.queue.jobs_of(guild.id, alice.id, ("queued", "running", "done"))
    assert len(jobs) == 1 and balance.available == 40 - jobs[0].cost and balance.held == 0
    assert await services.credits.verify() == []
    assert any("approved" in m.content for m in alice.user.dm_channel.history())


async def test_review_denied_runs_nothing(simcord_env, services, world):
    guild, _channel, _modlog, mod, alice = world
    request = await review_request(simcord_env, world, "a nude statue")
    await mod.click(request, label="Deny")
    assert await nothing_charged_or_queued(services, guild, alice)
    assert any("denied" in m.content for m in alice.user.dm_channel.history())


async def test_only_moderators_decide_reviews(simcord_env, services, world):
    guild, _channel, _modlog, _mod, alice = world
    request = await review_request(simcord_env, world, "a nude statue")
    result = await alice.click(request, label="Approve")
    assert "Only moderators" in result.response.content
    refusals(simcord_env)
    assert await nothing_charged_or_queued(services, guild, alice)


async def test_at_most_five_review_requests_a_day(simcord_env, services, world):
    _guild, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    answers = []
    for n in range(6):
        refused = await alice.slash(channel, "imagine", prompt=f"a nude statue number {n}")
        answers.append((await alice.click(refused.response, label="Request review")).response.content)
    assert all("Sent to the moderators" in a for a in answers[:5])
    assert "5 reviews a day" in answers[5]
    refusals(simcord_env)
    requests = [m for m in modlog.history() if "Review requested" in m.content]
    assert len(requests) == 5


async def test_a_reroll_is_filtered_too(simcord_env, services, world):
    """A term added after a grid was made also stops its re-rolls and variations."""
    guild, channel, _, mod, alice = world
    await alice.slash(channel, "imagine", prompt="a red dragon")
    grid = await until(simcord_env, done_message(channel), what="the grid")
    await mod.slash(channel, "moderation terms add", term="dragon")
    for label in ("V2",):
        result = await alice.click(grid, label=label)
        assert result.ephemeral and "dragon" in result.response.content
    result = await alice.click(grid, custom_id=buttons(grid)["🔄"])
    assert "dragon" in result.response.content
    jobs = await services.queue.jobs_of(guild.id, alice.id, ("queued", "running", "done"))
    assert len(jobs) == 1


async def test_the_mod_log_shows_moderator_actions_and_refusals(simcord_env, services, world):
    _guild, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    await mod.slash(channel, "quota grant", user=alice.user, amount=25, reason="contest")
    await alice.slash(channel, "imagine", prompt="a nude statue")
    posts = [m.content for m in modlog.history()]
    assert any("/quota grant" in p and "25" in p and f"<@{alice.id}>" in p for p in posts)
    assert any("Refused /imagine" in p and "nude statue" in p for p in posts)


@pytest.mark.parametrize("image_model", ["flags"])
async def test_flagged_results_are_withheld_and_refunded(simcord_env, services, world, image_model):
    guild, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    result = await alice.slash(channel, "imagine", prompt="a castle at dusk")
    message = await until(
        simcord_env,
        lambda: next((m for m in channel.history() if "image check flagged" in m.content), None),
        what="the withheld result",
    )
    assert message.id == result.response.id
    assert not message.attachments and not message.components
    assert "came back" in message.content
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == 40 and balance.held == 0
    await until(simcord_env, lambda: any("⚠️" in m.content for m in modlog.history()), what="the mod-log post")


@pytest.mark.parametrize("image_model", ["flags"])
async def test_spoiler_mode_posts_flagged_results_blurred(simcord_env, services, world, image_model):
    guild, channel, _, mod, alice = world
    await mod.slash(channel, "moderation images", action="spoiler")
    await alice.slash(channel, "imagine", prompt="a castle at dusk")
    message = await until(
        simcord_env,
        lambda: next((m for m in channel.history() if "image check flagged" in m.content), None),
    )
    assert message.attachments and message.attachments[0].filename.startswith("SPOILER_")
    assert not message.components
    assert (await services.credits.balance(guild.id, alice.id)).available == 40


@pytest.mark.parametrize("image_model", ["flags"])
async def test_age_restricted_channels_get_their_results(
    simcord_env, services, world, image_model, monkeypatch
):
    """simcord does not model the NSFW channel flag, so the test sets it the way discord.py reads it."""
    guild, channel, _, _, alice = world
    monkeypatch.setattr(discord.TextChannel, "is_nsfw", lambda self: self.id == channel.id)
    await alice.slash(channel, "imagine", prompt="a castle at dusk")
    message = await until(simcord_env, done_message(channel), what="the grid")
    assert message.attachments[0].filename == "grid.png"
    assert (await services.credits.balance(guild.id, alice.id)).available < 40


@pytest.mark.parametrize("image_model", ["passes"])
async def test_clean_results_are_posted_as_usual(simcord_env, services, world, image_model):
    _guild, channel, _, _, alice = world
    await alice.slash(channel, "imagine", prompt="a castle at dusk")
    message = await until(simcord_env, done_message(channel), what="the grid")
    assert message.attachments[0].filename == "grid.png"


@pytest.mark.parametrize("image_model", ["flags"])
async def test_flagged_uploads_are_refused_before_any_work(simcord_env, services, world, image_model):
    guild, channel, _, _, alice = world
    result = await alice.slash(channel, "vary", image=("photo.png", png_bytes()))
    text = result.followups[-1].content if result.followups else result.response.content
    assert "flagged your upload" in text
    assert await nothing_charged_or_queued(services, guild, alice)


async def test_the_mod_log_must_be_a_channel_atelier_can_post_in(simcord_env, services, world):
    guild, channel, modlog, mod, _ = world
    result = await mod.slash(channel, "moderation log", channel=modlog)
    assert "will be posted in" in result.response.content
    assert any("made this Atelier's mod-log" in m.content for m in modlog.history())
    assert await services.safety.store.modlog_channel(guild.id) == modlog.id
    result = await mod.slash(channel, "moderation log")
    assert "off" in result.response.content
    assert await services.safety.store.modlog_channel(guild.id) is None


async def test_a_mod_log_atelier_cannot_post_in_is_refused(simcord_env, services, world):
    guild, channel, _, mod, _ = world
    bot_role = guild.roles["TestBot"]
    closed = guild.create_text_channel(
        "closed", overwrites={bot_role: discord.PermissionOverwrite(send_messages=False)}
    )
    result = await mod.slash(channel, "moderation log", channel=closed)
    assert "cannot post" in result.response.content
    assert await services.safety.store.modlog_channel(guild.id) is None


async def test_a_moderator_cancelling_a_members_job_is_in_the_mod_log(simcord_env, services, worker, world):
    guild, channel, modlog, mod, alice = world
    await mod.slash(channel, "moderation log", channel=modlog)
    worker.gate = asyncio.Event()  # hold the job after its first step, so it is still live
    await alice.slash(channel, "imagine", prompt="a castle at dusk")
    job = (await services.queue.jobs_of(guild.id, alice.id, ("queued", "running")))[0]
    await mod.slash(channel, "cancel", job=job.id)
    worker.gate.set()
    assert any(f"cancelled job {job.id}" in m.content for m in modlog.history())
