"""JSON shapes of the Discord API v10, rendered from the fake's records.

Each function returns exactly the keys discord.py reads (and a few it ignores, as Discord sends them), so
the real client builds real `discord.Member`, `discord.Message`, ... objects from them.
"""

from __future__ import annotations

import datetime
from typing import Any

from tests.fakediscord.models import (
    APPLICATION_COMMAND,
    DM,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
)


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat()


def user_payload(user: FakeUser) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.name,
        "global_name": user.global_name,
        "discriminator": "0",
        "avatar": None,
        "bot": user.bot,
        "public_flags": 0,
    }


def role_payload(role: FakeRole) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def member_payload(
    member: FakeMember, *, permissions: int | None = None, with_user: bool = True
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "roles": [str(role_id) for role_id in member.role_ids],
        "nick": member.nick,
        "avatar": None,
        "joined_at": iso(member.joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if with_user:
        data["user"] = user_payload(member.user)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def channel_payload(channel: FakeChannel, *, permissions: int | None = None) -> dict[str, Any]:
    last = str(channel.last_message_id) if channel.last_message_id else None
    if channel.type == DM:
        recipients = [user_payload(channel.recipient)] if channel.recipient else []
        return {
            "id": str(channel.id),
            "type": DM,
            "last_message_id": last,
            "recipients": recipients,
            "flags": 0,
        }
    data: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "position": channel.position,
        "permission_overwrites": [],
        "nsfw": channel.nsfw,
        "topic": channel.topic,
        "parent_id": None,
        "rate_limit_per_user": 0,
        "last_message_id": last,
        "flags": 0,
    }
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def guild_payload(
    guild: FakeGuild, members: list[FakeMember], *, joined_at: float | None = None
) -> dict[str, Any]:
    """A full guild as in GUILD_CREATE (with `members`) or GET /guilds/{id} (without)."""
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "features": [],
        "roles": [role_payload(role) for role in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "joined_at": iso(joined_at),
        "large": False,
        "unavailable": False,
        "member_count": len(guild.members),
        "members": [member_payload(member) for member in members],
        "channels": [channel_payload(channel) for channel in guild.channels.values()],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "max_members": 500_000,
        "max_video_channel_users": 25,
    }


def attachment_payload(attachment: FakeAttachment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": len(attachment.data),
        "url": attachment.url,
        "proxy_url": attachment.url,
        "content_type": attachment.content_type,
        "description": attachment.description,
        "flags": 0,
    }
    if attachment.width is not None:
        data["width"] = attachment.width
        data["height"] = attachment.height
    if attachment.ephemeral:
        data["ephemeral"] = True
    return data


def message_payload(
    message: FakeMessage,
    *,
    self_id: int,
    mentions: list[FakeUser] | None = None,
    member: FakeMember | None = None,
) -> dict[str, Any]:
    """A message as REST returns it and as MESSAGE_CREATE / MESSAGE_UPDATE carry it.

    `self_id` is the bot (for `reactions[].me`); `member` is the author's guild member, which gateway
    events include without its `user`.
    """
    data: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "type": message.type,
        "content": message.content,
        "author": user_payload(message.author),
        "timestamp": iso(message.created_at),
        "edited_timestamp": iso(message.edited_at),
        "tts": False,
        "mention_everyone": False,
        "mentions": [user_payload(user) for user in mentions or []],
        "mention_roles": [],
        "attachments": [attachment_payload(a) for a in message.attachments],
        "embeds": message.embeds,
        "components": message.components,
        "pinned": False,
        "flags": message.flags,
        "reactions": [
            {
                "emoji": _emoji_payload(emoji),
                "count": len(users),
                "count_details": {"normal": len(users), "burst": 0},
                "me": self_id in users,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in message.reactions.items()
            if users
        ],
    }
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    if member is not None:
        data["member"] = member_payload(member, with_user=False)
    if message.webhook_id is not None:
        data["webhook_id"] = str(message.webhook_id)
    if message.reference_id is not None:
        data["message_reference"] = {
            "message_id": str(message.reference_id),
            "channel_id": str(message.channel_id),
        }
    if message.interaction is not None:
        data["application_id"] = str(message.webhook_id)
        data.update(_interaction_metadata(message.interaction))
    return data


def _interaction_metadata(interaction: FakeInteraction) -> dict[str, Any]:
    owners = {"0": str(interaction.guild.id)} if interaction.guild else {"1": str(interaction.user.id)}
    metadata: dict[str, Any] = {
        "id": str(interaction.id),
        "type": interaction.type,
        "user": user_payload(interaction.user),
        "authorizing_integration_owners": owners,
    }
    legacy: dict[str, Any] = {
        "id": str(interaction.id),
        "type": interaction.type,
        "name": interaction.name,
        "user": user_payload(interaction.user),
    }
    if interaction.type == APPLICATION_COMMAND:
        metadata["name"] = interaction.name
        metadata["command_type"] = 1
    elif interaction.message is not None:
        metadata["interacted_message_id"] = str(interaction.message.id)
    return {"interaction_metadata": metadata, "interaction": legacy}


def _emoji_payload(emoji: str) -> dict[str, Any]:
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}
