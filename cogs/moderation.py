"""`/moderation …`: the server's prompt filter, its mod-log channel and what happens to flagged images.

Like `/quota`, every command checks at run time that its caller is a moderator and acts only on the
server it is used in. Every moderator command (these and `/quota …`) is posted to the mod-log once it
succeeded, with its options, by the listener at the end of this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs import modlog
from cogs.permissions import moderator_only

if TYPE_CHECKING:
    from cogs.client import AtelierBot

LOGGED_GROUPS = ("quota", "moderation")
LIST_LIMIT = 1800  #: characters of a term list shown before it is cut


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Moderation(
    commands.GroupCog,
    group_name="moderation",
    group_description="Moderators: blocked prompt terms, the mod-log and flagged images",
):
    terms = app_commands.Group(name="terms", description="The words this server refuses in prompts")

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        super().__init__()

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=modlog.NO_MENTIONS)

    @terms.command(name="add", description="Refuse prompts that contain this word or phrase")
    @app_commands.describe(term="A word or phrase; case, spacing, punctuation and leetspeak are matched")
    @moderator_only()
    async def terms_add(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, 100]
    ) -> None:
        store = self.bot.services.safety.store
        added = await store.add_term(interaction.guild_id or 0, term, interaction.user.id)
        await self._reply(
            interaction, f"Blocked `{added}`: prompts containing it are refused here from now on."
        )

    @terms.command(name="remove", description="Stop refusing a term (yours or a built-in default)")
    @app_commands.describe(term="The term as `/moderation terms list` shows it")
    @moderator_only()
    async def terms_remove(
        self, interaction: discord.Interaction, term: app_commands.Range[str, 1, 100]
    ) -> None:
        store = self.bot.services.safety.store
        removed = await store.remove_term(interaction.guild_id or 0, term, interaction.user.id)
        await self._reply(interaction, f"`{removed}` is no longer refused here.")

    @terms.command(name="list", description="Show what this server's prompt filter refuses")
    @moderator_only()
    async def terms_list(self, interaction: discord.Interaction) -> None:
        view = await self.bot.services.safety.store.terms(interaction.guild_id or 0)
        lines = [
            "**Always refused:** sexual content involving minors (cannot be turned off).",
            f"**This server's terms ({len(view.added)}):** " + (_join(view.added) or "none yet"),
            f"**Built-in defaults in force ({len(view.active_defaults)}):** " + _join(view.active_defaults),
        ]
        if view.removed_defaults:
            lines.append(f"**Defaults removed here:** {_join(view.removed_defaults)}")
        text = "\n".join(lines)
        if len(text) > LIST_LIMIT:
            text = text[: LIST_LIMIT - 1] + "…"
        await self._reply(interaction, text)

    @app_commands.command(name="log", description="Choose the channel where moderation events are posted")
    @app_commands.describe(channel="The mod-log channel; leave empty to stop posting")
    @moderator_only()
    async def log(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        scope = interaction.guild_id or 0
        store = self.bot.services.safety.store
        if channel is None:
            await store.configure(scope, modlog_channel_id=None)
            await self._reply(interaction, "The mod-log is off: moderation events are no longer posted.")
            return
        try:
            await channel.send(
                f"📋 <@{interaction.user.id}> made this Atelier's mod-log: refused prompts, flagged images, "
                "review requests and moderator actions will be posted here.",
                allowed_mentions=modlog.NO_MENTIONS,
            )
        except discord.HTTPException:
            await self._reply(
                interaction, f"Atelier cannot post in {channel.mention}: give it Send Messages there first."
            )
            return
        await store.configure(scope, modlog_channel_id=channel.id)
        await self._reply(interaction, f"Moderation events will be posted in {channel.mention}.")

    @app_commands.command(name="images", description="What happens to images the image check flags")
    @app_commands.describe(
        action="withhold: not posted; spoiler: posted blurred. Credits come back either way"
    )
    @moderator_only()
    async def images(self, interaction: discord.Interaction, action: Literal["withhold", "spoiler"]) -> None:
        safety = self.bot.services.safety
        await safety.store.configure(interaction.guild_id or 0, flagged_images=action)
        what = "withheld" if action == "withhold" else "posted as blurred spoilers"
        text = f"Flagged images outside age-restricted channels will be {what}; their credits come back."
        if safety.checker is None:
            text += (
                "\nNote: image checking is off on this bot (its owner has not set SAFETY__IMAGE_CLASSIFIER)."
            )
        await self._reply(interaction, text)

    @commands.Cog.listener()
    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command | app_commands.ContextMenu
    ) -> None:
        """Post every successful moderator command to the mod-log, with its options."""
        root = getattr(command, "root_parent", None) or command
        if root.name not in LOGGED_GROUPS or interaction.guild_id is None:
            return
        options = ", ".join(f"{name}: {_show(value)}" for name, value in interaction.namespace)
        text = f"🛡️ <@{interaction.user.id}> used `/{command.qualified_name}`" + (
            f" — {options}" if options else ""
        )
        await modlog.post(self.bot, interaction.guild_id, text)


def _join(terms: list[str]) -> str:
    return ", ".join(f"`{term}`" for term in terms)


def _show(value: object) -> str:
    mention = getattr(value, "mention", None)
    return mention if isinstance(mention, str) else f"`{value}`"


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Moderation(bot))
