"""Point discord.py at the fake: its REST base *and* its gateway URL.

Setting `Route.BASE` is not enough. discord.py 2.7's `Client.connect` never asks `GET /gateway/bot` (only
`AutoShardedClient` does): it opens `DiscordWebSocket.DEFAULT_GATEWAY` (wss://gateway.discord.gg/), and
goes back to it after an INVALID_SESSION. Both class attributes must change, before `Client.start`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """For a whole process (e.g. a bot started with `FakeDiscord.env()`)."""
    Route.BASE = api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


@contextlib.contextmanager
def patched_discord_py(api_base: str, gateway_url: str) -> Iterator[None]:
    """For an in-process client in a test; restores discord.py's real endpoints afterwards."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    point_discord_py_at(api_base, gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
