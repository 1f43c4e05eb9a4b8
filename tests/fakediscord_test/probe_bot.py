"""A small real discord.py bot that exercises what Atelier will use: slash commands (with a group,
an attachment option and a permission check), deferred replies, a persistent DynamicItem button, a
modal, a reaction listener and edits that replace attachments."""

from __future__ import annotations

import asyncio
import io
import re

import discord
from discord import app_commands
from discord.ext import commands


class CounterButton(discord.ui.DynamicItem[discord.ui.Button], template=r"counter:(?P<count>[0-9]+)"):
    """Persistent: the count lives in the custom id, so any client instance can answer the click."""

    def __init__(self, count: int) -> None:
        super().__init__(discord.ui.Button(label=f"+1 (now {count})", custom_id=f"counter:{count}"))
        self.count = count

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> CounterButton:
        return cls(int(match["count"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        client: ProbeBot = interaction.client  # type: ignore[assignment]
        view = discord.ui.View(timeout=None).add_item(CounterButton(self.count + 1))
        await interaction.response.edit_message(
            content=f"count {self.count + 1} (instance {client.instance})", view=view
        )


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="What do you think?", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks for: {self.text.value}", ephemeral=True)


quota = app_commands.Group(
    name="quota", description="Manage credits.", default_permissions=discord.Permissions(manage_guild=True)
)


@quota.command(name="grant", description="Give a member extra credits.")
@app_commands.checks.has_permissions(manage_guild=True)
async def quota_grant(
    interaction: discord.Interaction, member: discord.Member, amount: app_commands.Range[int, 1, 100]
) -> None:
    await interaction.response.send_message(f"granted {amount} to {member.display_name}")


@quota_grant.error
async def quota_grant_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    await interaction.response.send_message("You need Manage Server to grant credits.", ephemeral=True)


@app_commands.command(description="Say hello.")
async def hello(interaction: discord.Interaction, name: str) -> None:
    await interaction.response.send_message(f"hello {name}")


@app_commands.command(description="A private answer.")
async def secret(interaction: discord.Interaction) -> None:
    file = discord.File(io.BytesIO(b"private"), filename="secret.txt")
    await interaction.response.send_message("only you can see this", file=file, ephemeral=True)


async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    styles = ["raw", "vivid", "painterly"]
    return [app_commands.Choice(name=s.title(), value=s) for s in styles if s.startswith(current)]


class StylePicker(discord.ui.View):
    """A non-persistent view: discord.py finds it again by the message id of the reply."""

    @discord.ui.select(
        custom_id="style:pick", options=[discord.SelectOption(label=s) for s in ("raw", "vivid")]
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.send_message(f"picked {select.values[0]}")


@app_commands.command(description="Choose a style.")
@app_commands.autocomplete(style=style_choices)
async def style(interaction: discord.Interaction, style: str = "") -> None:
    await interaction.response.send_message(f"style {style or 'unset'}", view=StylePicker())


@app_commands.command(description="Read an image and send it back.")
async def echo(interaction: discord.Interaction, image: discord.Attachment) -> None:
    await interaction.response.defer(thinking=True)
    data = await image.read()
    file = discord.File(io.BytesIO(data[::-1]), filename="reversed.bin")
    await interaction.followup.send(f"{len(data)} bytes from {image.filename}", file=file)


@app_commands.command(description="A counter with a persistent button.")
async def counter(interaction: discord.Interaction) -> None:
    view = discord.ui.View(timeout=None).add_item(CounterButton(0))
    await interaction.response.send_message("count 0", view=view)


@app_commands.command(description="Open a feedback form.")
async def feedback(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(FeedbackModal())


@app_commands.command(description="Progress then a result, like a generation.")
async def render(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    preview = discord.File(io.BytesIO(b"preview"), filename="preview.png")
    message = await interaction.edit_original_response(content="rendering 50%", attachments=[preview])
    final = discord.File(io.BytesIO(b"final"), filename="final.png")
    await message.edit(content="done", attachments=[*message.attachments, final])
    final = discord.File(io.BytesIO(b"final"), filename="final.png")  # a File is consumed by one upload
    await interaction.edit_original_response(content="done", attachments=[final])
    note = await interaction.followup.send("temporary note", ephemeral=True, wait=True)
    await note.delete()
    client: ProbeBot = interaction.client  # type: ignore[assignment]
    client.fetched.append(await interaction.original_response())


@app_commands.command(description="Answers too late.")
async def slow(interaction: discord.Interaction, seconds: float) -> None:
    await asyncio.sleep(seconds)
    client: ProbeBot = interaction.client  # type: ignore[assignment]
    try:
        await interaction.response.send_message("finally")
    except discord.HTTPException as exc:
        client.errors.append(exc)


class ProbeBot(commands.Bot):
    """Records what it saw through the gateway so tests can check the cache stays realistic."""

    def __init__(self, instance: int = 1, *, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.instance = instance
        self.seen_messages: list[discord.Message] = []
        self.fetched: list[object] = []
        self.errors: list[Exception] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CounterButton)
        for command in (hello, secret, style, echo, counter, feedback, render, slow, quota):
            self.tree.add_command(command)
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        self.seen_messages.append(message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.user_id == self.user.id:  # type: ignore[union-attr]
            return
        channel = self.get_channel(payload.channel_id)
        assert isinstance(channel, discord.TextChannel)
        message = await channel.fetch_message(payload.message_id)
        await message.add_reaction("✅")
        who = payload.member.display_name if payload.member else "?"
        receipt = discord.File(io.BytesIO(b"receipt"), filename="receipt.txt")
        reply = await channel.send(f"saw {payload.emoji} from {who}", file=receipt)
        await reply.edit(content=f"{reply.content} (noted)")
