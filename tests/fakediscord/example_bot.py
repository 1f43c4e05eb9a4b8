"""A tiny discord.py bot in its own process, to prove a separate process can use the fake.

    python -m tests.fakediscord.example_bot      # with the variables of FakeDiscord.env()

It reads DISCORD_TOKEN, DISCORD_API_BASE and DISCORD_GATEWAY_URL, registers `/ping` (answered with a
persistent counter button) and answers the button from any later process, since the count lives in the
button's custom id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re

import discord
from discord import app_commands
from discord.ext import commands

from tests.fakediscord.discordpy import point_discord_py_at


class PingButton(discord.ui.DynamicItem[discord.ui.Button], template=r"ping:(?P<count>[0-9]+)"):
    def __init__(self, count: int) -> None:
        super().__init__(discord.ui.Button(label=f"Pressed {count}", custom_id=f"ping:{count}"))
        self.count = count

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> PingButton:
        return cls(int(match["count"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None).add_item(PingButton(self.count + 1))
        await interaction.response.edit_message(
            content=f"pressed {self.count + 1} by pid {os.getpid()}", view=view
        )


class ExampleBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())

    async def setup_hook(self) -> None:
        self.add_dynamic_items(PingButton)
        self.tree.add_command(ping)
        await self.tree.sync()


@app_commands.command(description="Answer with the process id and a counter button.")
async def ping(interaction: discord.Interaction) -> None:
    view = discord.ui.View(timeout=None).add_item(PingButton(0))
    await interaction.response.send_message(f"pong from pid {os.getpid()}", view=view)


async def main() -> None:
    point_discord_py_at(os.environ["DISCORD_API_BASE"], os.environ["DISCORD_GATEWAY_URL"])
    async with ExampleBot() as bot:
        await bot.start(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
