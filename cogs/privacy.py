"""/forget: a member deletes what Atelier stored about them here, after seeing what that means.

The answer is ephemeral: it counts what would go (jobs with their prompts, images, uploads, saved
settings, review requests) and what stays (the credit history, and messages already posted in Discord),
with a red **Delete my data** and a **Keep everything** button. Nothing is deleted without the click;
no answer within `CONFIRM_TIMEOUT_S` deletes nothing. The work is `bot.privacy.forget_member`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.privacy import ForgetReport, forget_member, survey_member
from cogs.errors import report_error, tell

if TYPE_CHECKING:
    from cogs.client import AtelierBot

CONFIRM_TIMEOUT_S = 120.0


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _where(scope: int) -> str:
    return "in your direct messages with Atelier" if scope == 0 else "in this server"


def _parts(report: ForgetReport) -> list[str]:
    parts = [
        _plural(report.jobs, "job") + " (prompts, settings and history)",
        _plural(report.images, "image"),
        _plural(report.uploads, "uploaded image"),
    ]
    parts += [f"{label} ({count})" for label, count in report.rows.items() if count]
    return parts


def _kept(report: ForgetReport) -> str:
    return (
        f"Your credit history ({_plural(report.ledger_entries, 'entry', 'entries')}) "
        "stays, as this server's accounting; it holds amounts and reasons, never prompts. Messages "
        "Atelier already posted in Discord are not touched: delete those in Discord."
    )


def confirmation_text(report: ForgetReport, scope: int) -> str:
    live = (
        f" {_plural(report.live, 'job')} still waiting or running will be cancelled first, and "
        "their credits come back."
        if report.live
        else ""
    )
    return (
        f"**Forget everything Atelier stored about you {_where(scope)}?**\n"
        f"This deletes {', '.join(_parts(report))}.{live}\n"
        f"{_kept(report)}\n**This cannot be undone.**"
    )


def done_text(report: ForgetReport, scope: int) -> str:
    lines = [f"Done: deleted {', '.join(_parts(report))} {_where(scope)}."]
    if report.live:
        lines.append(f"Cancelled first, with their credits returned: {_plural(report.live, 'job')}.")
    if report.kept_live:
        lines.append(
            f"Queued while this ran, and kept: {_plural(report.kept_live, 'job')}. "
            "Run /forget again once they finish."
        )
    if report.undeleted:
        lines.append(
            f"Could not be deleted: {_plural(len(report.undeleted), 'file')}; the bot's operator "
            "can see which in its log."
        )
    lines.append(_kept(report))
    return "\n".join(lines)


class ConfirmForget(discord.ui.View):
    """The two buttons under the /forget question; only the member who asked can press them."""

    def __init__(self, bot: AtelierBot, interaction: discord.Interaction, scope: int) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.bot = bot
        self.asked = interaction
        self.scope = scope

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.asked.user.id:
            return True
        await tell(interaction, "Only the member who asked can answer this.")
        return False

    @discord.ui.button(label="Delete my data", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Deleting…", view=None)
        services = self.bot.services
        report = await forget_member(
            services.db, services.queue, services.settings.images_dir, self.scope, interaction.user.id
        )
        await interaction.edit_original_response(content=done_text(report, self.scope))

    @discord.ui.button(label="Keep everything", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, _button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Kept: nothing was deleted.", view=None)

    async def on_timeout(self) -> None:
        with contextlib.suppress(discord.HTTPException):  # the member dismissed it: nothing to update
            await self.asked.edit_original_response(
                content="No answer within two minutes: nothing was deleted.", view=None
            )

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, _item: discord.ui.Item[Any]
    ) -> None:
        await report_error(interaction, error)


class Privacy(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="forget", description="Delete your prompts, images and job history here (asks first)"
    )
    async def forget(self, interaction: discord.Interaction) -> None:
        services = self.bot.services
        scope = interaction.guild_id or 0
        report = await survey_member(services.db, services.settings.images_dir, scope, interaction.user.id)
        if report.empty:
            await interaction.response.send_message(
                f"Atelier stores no jobs, images or settings of yours {_where(scope)}: nothing to delete.\n"
                + _kept(report),
                ephemeral=True,
            )
            return
        view = ConfirmForget(self.bot, interaction, scope)
        await interaction.response.send_message(confirmation_text(report, scope), view=view, ephemeral=True)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Privacy(bot))
