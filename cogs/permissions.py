"""Who counts as a moderator, checked at run time on every moderator action.

`default_permissions(manage_guild=True)` on the command group only hides it in Discord's UI, and server
admins can override that; the real check is here: Manage Server, or the configured moderator role
(per server via `/quota modrole`, or `DISCORD__MODERATOR_ROLE_ID` for all). In DMs, only the bot's owner.
"""

from __future__ import annotations

import discord
from discord import app_commands

REFUSAL = "Only moderators can do this: it needs the Manage Server permission or the moderator role."


async def is_moderator(interaction: discord.Interaction) -> bool:
    client = interaction.client
    if interaction.guild_id is None:
        return await client.is_owner(interaction.user)  # type: ignore[attr-defined]
    if interaction.permissions.manage_guild:
        return True
    roles = {role.id for role in getattr(interaction.user, "roles", [])}
    services = client.services  # type: ignore[attr-defined]
    configured = {
        services.settings.discord.moderator_role_id,
        await services.members.moderator_role(interaction.guild_id),
    }
    return bool(roles & {r for r in configured if r})


async def member_is_moderator(client: discord.Client, member: discord.abc.User, scope: int) -> bool:
    """The same rule for a reaction, where there is no interaction to read permissions from."""
    if scope == 0 or not isinstance(member, discord.Member):
        return await client.is_owner(member)  # type: ignore[attr-defined]
    if member.guild_permissions.manage_guild:
        return True
    services = client.services  # type: ignore[attr-defined]
    configured = {services.settings.discord.moderator_role_id, await services.members.moderator_role(scope)}
    return bool({role.id for role in member.roles} & {r for r in configured if r})


def moderator_only():
    """App-command check that refuses non-moderators with a sentence naming what is needed."""

    async def predicate(interaction: discord.Interaction) -> bool:
        if await is_moderator(interaction):
            return True
        raise app_commands.CheckFailure(REFUSAL)

    return app_commands.check(predicate)
