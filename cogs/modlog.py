"""The mod-log channel: where moderators see, as it happens, what Atelier refused, withheld and changed.

A server picks its channel with `/moderation log`. Posting never fails the action that caused it: a
missing channel or a lost permission is logged and the member's request goes on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from cogs.client import AtelierBot

log = logging.getLogger(__name__)
QUOTED = 500  #: characters of a prompt quoted in the mod-log
NO_MENTIONS = discord.AllowedMentions.none()


def quote(text: str) -> str:
    text = text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"
    return "`" + text.replace("`", "ˋ") + "`"


async def spoiler_file(path: str | Path | None) -> discord.File | None:
    """An image as a spoiler attachment (mod-log posts show refused or flagged pictures blurred).

    Read in a thread: a grid is megabytes, and the event loop must not wait for the disk."""
    if not path:
        return None
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError:
        return None
    return discord.File(io.BytesIO(data), filename=Path(path).name, spoiler=True)


async def post(
    bot: AtelierBot, scope: int, text: str, *, file: discord.File | None = None, view: Any = None
) -> discord.Message | None:
    """Post to the scope's mod-log channel, if it has one; returns the message, or None."""
    channel_id = await bot.services.safety.store.modlog_channel(scope) if scope else None
    if channel_id is None:
        return None
    channel = bot.get_channel(channel_id) or bot.get_partial_messageable(channel_id)
    extra: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
    if file is not None:
        extra["file"] = file
    if view is not None:
        extra["view"] = view
    try:
        return await channel.send(text, **extra)  # type: ignore[union-attr]
    except discord.HTTPException as exc:
        log.warning("Could not post to the mod-log channel %s of %s: %s", channel_id, scope, exc)
        return None
