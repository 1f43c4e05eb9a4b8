"""The one error funnel: every refusal becomes an ephemeral sentence, everything else is logged.

Domain errors (`bot.errors.AtelierError`) already carry the text a member should read; app-command
check failures carry theirs too. Anything else is unexpected: it is logged with the job id (when one
is known) and the member gets a short apology rather than a traceback or a silent "thinking…".
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.errors import AtelierError

log = logging.getLogger(__name__)

UNEXPECTED = (
    "Something went wrong on Atelier's side and it has been logged{ref}. "
    "You are only ever charged for images that were delivered: anything held for this was returned."
)


def user_message(error: BaseException, *, job_id: int | None = None) -> str:
    """The sentence to show for `error`; logs it when it is not a known refusal."""
    original = error
    while isinstance(original, app_commands.CommandInvokeError | app_commands.TransformerError):
        original = original.__cause__ or getattr(original, "original", None) or original
        if not isinstance(original, app_commands.CommandInvokeError | app_commands.TransformerError):
            break
    if isinstance(original, AtelierError):
        return str(original)
    if isinstance(original, app_commands.CommandOnCooldown):  # a CheckFailure too: test it first
        per, wait = original.cooldown.per, original.retry_after
        return f"Slow down: one /imagine every {per:.0f} s here; try again in {wait:.0f} s."
    if isinstance(original, app_commands.CheckFailure) and str(original):
        return str(original)
    ref = f" (job {job_id})" if job_id is not None else ""
    log.error("Unexpected error%s", ref, exc_info=original)
    return UNEXPECTED.format(ref=ref)


async def tell(interaction: discord.Interaction, text: str, *, view: discord.ui.View | None = None) -> None:
    """Answer ephemerally whether or not the interaction was already acknowledged."""
    extra = {"view": view} if view is not None else {}
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, **extra)
        else:
            await interaction.response.send_message(text, ephemeral=True, **extra)
    except discord.HTTPException:
        log.warning("Could not deliver an error message to %s", interaction.user.id)


async def report_error(
    interaction: discord.Interaction, error: BaseException, *, job_id: int | None = None
) -> None:
    await tell(interaction, user_message(error, job_id=job_id))


class AtelierTree(app_commands.CommandTree):
    """Command tree whose `on_error` is the error funnel."""

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await report_error(interaction, error)
