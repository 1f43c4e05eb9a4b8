"""A fake Discord (REST v10 + JSON gateway on 127.0.0.1) that the real discord.py client connects to.

Tests build guilds, members and channels, then act as members through the driver while the bot — in
process or as a separate `python -m bot` — talks HTTP and websocket to it. See `server.FakeDiscord`.
"""

from tests.fakediscord.commands import DriverError
from tests.fakediscord.discordpy import patched_discord_py, point_discord_py_at
from tests.fakediscord.models import (
    Button,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    MessageVersion,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.validation import ApiError

__all__ = [
    "ApiError",
    "Button",
    "DriverError",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "MessageVersion",
    "patched_discord_py",
    "point_discord_py_at",
]
