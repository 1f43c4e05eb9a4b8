"""Small helpers for driving the bot through simcord."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import discord
from PIL import Image


async def until(
    env: Any,
    condition: Callable[[], Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper for tests, not a cancellable wait
    what: str = "condition",
) -> Any:
    """Let the bot work (its own tasks and its file writes in threads) until `condition()` is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await env.settle()
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def buttons(message: discord.Message) -> dict[str, str]:
    """Label (or emoji, for 🔄) → custom id of every button under a message."""
    found = {}
    for row in message.components:
        for child in getattr(row, "children", []):
            key = child.label or str(child.emoji)
            found[key] = child.custom_id
    return found


def button_rows(message: discord.Message) -> list[list[str]]:
    return [[child.label or str(child.emoji) for child in row.children] for row in message.components]


def png_bytes(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def done_message(channel: Any) -> Callable[[], discord.Message | None]:
    """A condition: the channel's newest message is a finished result (it has an attachment and buttons)."""

    def check() -> discord.Message | None:
        message = channel.last_message
        if message is not None and message.attachments and message.components and "Done" in message.content:
            return message
        return None

    return check


def refusals(env: Any) -> list[BaseException]:
    """Acknowledge the bot's refusals (simcord reports every error the tree handled) and return them.

    Fails if anything else went wrong: a refusal must be a domain error or a failed permission check.
    """
    from discord import app_commands

    from bot.errors import AtelierError

    found = []
    for error in env.errors:
        original = error
        while isinstance(original, app_commands.CommandInvokeError) and original.__cause__ is not None:
            original = original.__cause__
        assert isinstance(original, AtelierError | app_commands.CheckFailure), (
            f"unexpected error: {original!r}"
        )
        found.append(original)
    return found
