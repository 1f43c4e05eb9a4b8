"""The real Atelier bot, driven through simcord's simulated Discord, on an instant torch-free worker."""

from __future__ import annotations

import pytest

from bot.queue import FakeWorker
from bot.services import open_services
from bot.settings import Settings
from cogs.client import AtelierBot


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        discord={"preview_edit_interval_s": 1.0},
    )


@pytest.fixture
def worker() -> FakeWorker:
    return FakeWorker()


@pytest.fixture
async def services(settings, worker):
    services = await open_services(settings, workers=[worker])
    yield services
    await services.close()


@pytest.fixture
def simcord_bot(services) -> AtelierBot:
    return AtelierBot(services=services)


@pytest.fixture
def world(simcord_env):
    """A server with an #art channel and two members, Alice and Bob (test files may define their own)."""
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("art")
    alice = guild.add_member(simcord_env.create_user("alice"))
    bob = guild.add_member(simcord_env.create_user("bob"))
    return guild, channel, alice, bob
