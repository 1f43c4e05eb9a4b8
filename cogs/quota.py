"""`/quota …`: moderators set allowances, grant and revoke credits, block members and pause the queue.

Every action is checked at run time (`moderator_only`), acts only in the server it is used in, and is
written to the credit ledger with the moderator as the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.engine.types import JobKind
from bot.errors import UnknownAccount
from cogs.account import balance_text, scope_of
from cogs.permissions import moderator_only

if TYPE_CHECKING:
    from cogs.client import AtelierBot

AMOUNT_MAX = 1_000_000_000
Amount = app_commands.Range[int, 1, AMOUNT_MAX]
LEDGER_SHOWN = 10


@app_commands.default_permissions(manage_guild=True)
class Quota(
    commands.GroupCog, group_name="quota", group_description="Moderators: credits, quotas and the queue"
):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        super().__init__()

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="set", description="Give a member their own free allowance per period")
    @app_commands.describe(
        user="The member", allowance="Free credits per period", unlimited="No limit at all"
    )
    @moderator_only()
    async def set_allowance(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        allowance: app_commands.Range[int, 0, AMOUNT_MAX] | None = None,
        unlimited: bool = False,
    ) -> None:
        await self.bot.services.credits.set_allowance(
            scope_of(interaction), user.id, allowance, unlimited=unlimited, actor=interaction.user.id
        )
        what = (
            "unlimited credits"
            if unlimited
            else (
                f"{allowance} free credits per period"
                if allowance is not None
                else "the server default allowance"
            )
        )
        await self._reply(interaction, f"{user.mention} now has {what}.")

    @app_commands.command(name="grant", description="Give a member bonus credits (kept until spent)")
    @app_commands.describe(user="The member", amount="Credits to give", reason="Shown in the ledger")
    @moderator_only()
    async def grant(
        self, interaction: discord.Interaction, user: discord.User, amount: Amount, reason: str = ""
    ) -> None:
        credits = self.bot.services.credits
        await credits.grant(scope_of(interaction), user.id, amount, reason, actor=interaction.user.id)
        balance = await credits.balance(scope_of(interaction), user.id)
        await self._reply(
            interaction, f"Gave {user.mention} {amount} bonus credits; they now have {balance.available}."
        )

    @app_commands.command(name="revoke", description="Take bonus credits away from a member")
    @app_commands.describe(user="The member", amount="Credits to take", reason="Shown in the ledger")
    @moderator_only()
    async def revoke(
        self, interaction: discord.Interaction, user: discord.User, amount: Amount, reason: str = ""
    ) -> None:
        credits = self.bot.services.credits
        await credits.revoke(scope_of(interaction), user.id, amount, reason, actor=interaction.user.id)
        balance = await credits.balance(scope_of(interaction), user.id)
        await self._reply(
            interaction, f"Took {amount} credits from {user.mention}; they now have {balance.available}."
        )

    @app_commands.command(name="show", description="A member's balance and latest ledger entries")
    @app_commands.describe(user="The member")
    @moderator_only()
    async def show(self, interaction: discord.Interaction, user: discord.User) -> None:
        services = self.bot.services
        scope = scope_of(interaction)
        balance = await services.credits.balance(scope, user.id)
        jobs = await services.queue.jobs_of(scope, user.id, ("queued", "running"))
        try:
            rows = await services.credits.ledger(scope, user.id, limit=LEDGER_SHOWN)
        except UnknownAccount:
            rows = []  # never used the bot here: a full allowance and no history
        lines = [f"{user.mention}:", balance_text(balance, len(jobs)), "", "Latest ledger entries:"]
        if not rows:
            lines.append("-# none yet")
        for row in rows:
            lines.append(f"-# <t:{int(row.created_at.timestamp())}:f> {row.describe()}")
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="default", description="The server's free allowance and how often it refills")
    @app_commands.describe(
        allowance="Free credits per member per period", period="Refills at 00:00 UTC (weeks: Monday)"
    )
    @moderator_only()
    async def default(
        self,
        interaction: discord.Interaction,
        allowance: app_commands.Range[int, 0, AMOUNT_MAX],
        period: Literal["day", "week", "month"],
    ) -> None:
        await self.bot.services.credits.set_policy(
            scope_of(interaction), allowance=allowance, period=period, actor=interaction.user.id
        )
        await self._reply(interaction, f"Everyone here now gets {allowance} free credits per {period}.")

    @app_commands.command(
        name="prices", description="Credits per unit of work (one native-size image) for a kind of job"
    )
    @app_commands.describe(
        kind="Which kind of job", credits_per_unit="e.g. 1 = one credit per standard image"
    )
    @moderator_only()
    async def prices(
        self,
        interaction: discord.Interaction,
        kind: Literal["imagine", "vary", "upscale"],
        credits_per_unit: app_commands.Range[float, 0, 1000],
    ) -> None:
        await self.bot.services.credits.set_price(
            scope_of(interaction), JobKind(kind), credits_per_unit, actor=interaction.user.id
        )
        await self._reply(interaction, f"{kind} now costs {credits_per_unit:g} credits per unit of work.")

    @app_commands.command(name="block", description="Stop a member from generating images here")
    @app_commands.describe(user="The member", reason="Shown in the ledger")
    @moderator_only()
    async def block(self, interaction: discord.Interaction, user: discord.User, reason: str = "") -> None:
        await self.bot.services.credits.block(
            scope_of(interaction), user.id, actor=interaction.user.id, reason=reason
        )
        await self._reply(interaction, f"{user.mention} can no longer generate images here.")

    @app_commands.command(name="unblock", description="Let a blocked member generate images again")
    @app_commands.describe(user="The member")
    @moderator_only()
    async def unblock(self, interaction: discord.Interaction, user: discord.User) -> None:
        await self.bot.services.credits.unblock(scope_of(interaction), user.id, actor=interaction.user.id)
        await self._reply(interaction, f"{user.mention} can generate images again.")

    @app_commands.command(name="relax", description="Allow free, lowest-priority relax jobs here")
    @app_commands.describe(mode="on: members may add --relax to queue for free at the lowest priority")
    @moderator_only()
    async def relax(self, interaction: discord.Interaction, mode: Literal["on", "off"]) -> None:
        await self.bot.services.credits.set_policy(
            scope_of(interaction), relax_allowed=mode == "on", actor=interaction.user.id
        )
        await self._reply(interaction, f"Relax mode is now {mode} here.")

    @app_commands.command(
        name="pause", description="Stop starting new jobs from this server (queued jobs wait)"
    )
    @moderator_only()
    async def pause(self, interaction: discord.Interaction) -> None:
        await self.bot.services.queue.pause(scope_of(interaction))
        await self._reply(interaction, "The queue is paused here: queued jobs wait, running ones finish.")

    @app_commands.command(name="resume", description="Start jobs from this server again")
    @moderator_only()
    async def resume(self, interaction: discord.Interaction) -> None:
        await self.bot.services.queue.resume(scope_of(interaction))
        await self._reply(interaction, "The queue is running again here.")

    @app_commands.command(
        name="clear", description="Cancel all of a member's waiting jobs (credits returned)"
    )
    @app_commands.describe(user="The member")
    @moderator_only()
    async def clear(self, interaction: discord.Interaction, user: discord.User) -> None:
        cleared = await self.bot.services.queue.clear(scope_of(interaction), user.id, by=interaction.user.id)
        await self._reply(
            interaction, f"Cancelled {len(cleared)} waiting job(s) of {user.mention}; credits returned."
        )

    @app_commands.command(name="modrole", description="Members with this role count as moderators here")
    @app_commands.describe(role="The role (leave empty to remove it)")
    @moderator_only()
    async def modrole(self, interaction: discord.Interaction, role: discord.Role | None = None) -> None:
        await self.bot.services.members.set_moderator_role(scope_of(interaction), role.id if role else None)
        text = f"{role.mention} members are now moderators here." if role else "No moderator role is set now."
        await self._reply(interaction, text)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Quota(bot))
