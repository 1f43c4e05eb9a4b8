"""Fixtures: a fresh fake Discord per test, a small world in it, and in-process probe bots."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import discord
import pytest

from tests.fakediscord import FakeChannel, FakeDiscord, FakeGuild, FakeUser, patched_discord_py
from tests.fakediscord_test.probe_bot import ProbeBot

StartBot = Callable[..., Awaitable[ProbeBot]]


@dataclass
class Scene:
    guild: FakeGuild
    channel: FakeChannel
    alice: FakeUser
    moderator: FakeUser


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def scene(server: FakeDiscord) -> Scene:
    guild = server.create_guild("Atelier Test")
    channel = server.create_text_channel(guild, "art")
    alice = server.create_member(guild, "alice")
    moderator = server.create_member(guild, "mod", permissions=discord.Permissions(manage_guild=True))
    return Scene(guild, channel, alice, moderator)


async def wait_until_ready(bot: ProbeBot, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(10):
        while not bot.is_ready():
            if task.done():
                task.result()  # raises what made the bot stop
            await asyncio.sleep(0.01)


@pytest.fixture
async def start_bot(server: FakeDiscord) -> AsyncIterator[StartBot]:
    """Start in-process probe bots against the fake; they are closed (and the fake checked) at the end."""
    running: list[tuple[ProbeBot, asyncio.Task[None]]] = []

    async def start(instance: int = 1, **kwargs: object) -> ProbeBot:
        bot = ProbeBot(instance, **kwargs)  # type: ignore[arg-type]
        task = asyncio.create_task(bot.start(server.token))
        running.append((bot, task))
        await wait_until_ready(bot, task)
        return bot

    with patched_discord_py(server.api_base, server.gateway_url):
        yield start
        for bot, task in running:
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert server.unhandled_routes == []
    assert server.problems == []
    assert server.unauthorized_requests == []
