"""A member's own view: `/credits`, `/queue`, `/cancel` and `/settings`. All answers are ephemeral."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.engine.prompt import ASPECT_CHOICES, parse_prompt
from bot.errors import JobNotFound
from cogs import modlog, render
from cogs.permissions import is_moderator

if TYPE_CHECKING:
    from cogs.client import AtelierBot

QUEUE_SHOWN = 15  #: lines of /queue before "and N more"


def scope_of(interaction: discord.Interaction) -> int:
    return interaction.guild_id or 0


def balance_text(balance: object, queued: int) -> str:
    b = balance
    if b.blocked:  # type: ignore[attr-defined]
        return "A moderator has blocked you from generating images here."
    if b.unlimited:  # type: ignore[attr-defined]
        lines = ["You have **unlimited** credits here."]
    else:
        lines = [
            f"**{b.available}** credits available "  # type: ignore[attr-defined]
            f"({b.free_left} of {b.allowance} free this {b.period}, {b.bonus} bonus"  # type: ignore[attr-defined]
            + (f", {b.held} held by queued jobs" if b.held else "")  # type: ignore[attr-defined]
            + ").",
            f"Free credits refill <t:{int(b.refills_at.timestamp())}:R> "  # type: ignore[attr-defined]
            f"(<t:{int(b.refills_at.timestamp())}:f>); unused free credits do not carry over.",  # type: ignore[attr-defined]
        ]
    if b.relax_allowed:  # type: ignore[attr-defined]
        lines.append("Relax mode is on here: add `--relax` to queue a job for free at the lowest priority.")
    lines.append(f"Jobs waiting or running: {queued}.")
    return "\n".join(lines)


class Account(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="credits", description="Your credit balance, when it refills, and your queued jobs"
    )
    async def credits(self, interaction: discord.Interaction) -> None:
        services = self.bot.services
        scope = scope_of(interaction)
        balance = await services.credits.balance(scope, interaction.user.id)
        jobs = await services.queue.jobs_of(scope, interaction.user.id, ("queued", "running"))
        await interaction.response.send_message(balance_text(balance, len(jobs)), ephemeral=True)

    @app_commands.command(name="queue", description="What is waiting and running, with positions and ETA")
    async def queue(self, interaction: discord.Interaction) -> None:
        snapshot = await self.bot.services.queue.snapshot(scope_of(interaction))
        lines = []
        for entry in snapshot.running:
            lines.append(
                f"▶ job {entry.job.id} · <@{entry.job.owner}> · {render.cost_text(entry.job)} · running"
            )
        for entry in snapshot.waiting[:QUEUE_SHOWN]:
            eta = render.eta_text(entry.eta_s).removeprefix(", ")
            lines.append(f"{entry.position}. job {entry.job.id} · <@{entry.job.owner}> · {eta or 'soon'}")
        if len(snapshot.waiting) > QUEUE_SHOWN:
            lines.append(f"… and {len(snapshot.waiting) - QUEUE_SHOWN} more")
        workers = getattr(snapshot, "workers", ())
        several_models = len({worker.model for worker in workers}) > 1
        for worker in workers:
            model = f" · {worker.model}" if several_models else ""  # e.g. Ray actors of two models
            lines.append(f"-# {worker.name} ({worker.device}{model}): {worker.describe()}")
        if getattr(snapshot, "paused", False):
            lines.insert(0, "⏸ The queue is paused here by a moderator.")
        text = "\n".join(lines) if lines else "The queue is empty: your next /imagine starts right away."
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="cancel", description="Cancel one of your queued or running jobs")
    @app_commands.describe(job="The job number (default: your most recent waiting or running job)")
    async def cancel(self, interaction: discord.Interaction, job: int | None = None) -> None:
        queue = self.bot.services.queue
        scope = scope_of(interaction)
        if job is None:
            mine = await queue.jobs_of(scope, interaction.user.id, ("queued", "running"))
            if not mine:
                raise JobNotFound("You have no waiting or running job to cancel.")
            job = max(j.id for j in mine)
        moderator = await is_moderator(interaction)
        cancelled = await queue.cancel(job, by=interaction.user.id, moderator=moderator)
        await interaction.response.send_message(
            f"Cancelled job {cancelled.id}. {render.refunded(cancelled)}", ephemeral=True
        )
        if cancelled.owner != interaction.user.id:
            await modlog.post(
                self.bot,
                scope,
                f"🛡️ <@{interaction.user.id}> cancelled job {cancelled.id} of <@{cancelled.owner}>.",
            )

    @app_commands.command(
        name="settings", description="Your defaults for new jobs here (shown if you give none)"
    )
    @app_commands.describe(
        aspect="Default aspect ratio",
        stylize="Default --stylize (0–1000)",
        relax="Queue new jobs in relax mode (free, lowest priority) where allowed",
        private="Show your progress and results only to you, by DM",
        reset="Forget all your defaults first",
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECT_CHOICES])
    async def settings(
        self,
        interaction: discord.Interaction,
        aspect: str | None = None,
        stylize: app_commands.Range[int, 0, 1000] | None = None,
        relax: bool | None = None,
        private: bool | None = None,
        reset: bool = False,
    ) -> None:
        services = self.bot.services
        if aspect is not None:
            parse_prompt(f"test --ar {aspect}", services.profile)  # refuses an aspect the model cannot do
        prefs = await services.members.set_preferences(
            scope_of(interaction),
            interaction.user.id,
            aspect=aspect,
            stylize=stylize,
            relax=relax,
            private=private,
            clear=reset,
        )
        text = (
            f"Your defaults here: aspect **{prefs.aspect or 'model default'}**, "
            f"stylize **{prefs.stylize if prefs.stylize is not None else 'default'}**, "
            f"relax **{'on' if prefs.relax else 'off'}**, "
            f"private results **{'on' if prefs.private else 'off'}**.\n"
            "Flags typed in a prompt always win over these."
        )
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Account(bot))
