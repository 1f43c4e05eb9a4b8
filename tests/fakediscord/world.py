"""Everything the fake Discord knows, and every change to it.

One `World` outlives any number of bot connections: a bot process that restarts finds its guilds,
messages, commands and attachments where it left them. Every change wakes `FakeDiscord.wait_for` and,
where Discord would, becomes a gateway event (the gateway decides who may see it).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tests.fakediscord import payloads
from tests.fakediscord.models import (
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM,
    GUILD_TEXT,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    PERM_ADMINISTRATOR,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    SnowflakeGenerator,
)
from tests.fakediscord.validation import ApiError, check_message_body, form_error, unknown

if TYPE_CHECKING:
    from tests.fakediscord.gateway import Gateway

#: Discord's default upload limit for a bot without boosts.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: How often `wait_for` re-checks a condition that no change of the fake announces.
POLL_S = 0.02
MENTION = re.compile(r"<@!?(\d+)>")
T = TypeVar("T")
#: A gateway event body, or a function of the receiving session's intents that builds it.
EventData = dict[str, Any] | Callable[[int], dict[str, Any]]


@dataclass(frozen=True)
class Upload:
    """One `files[n]` part of a multipart request."""

    index: int
    filename: str
    data: bytes


class World:
    """The fake's whole state: entities, messages, commands, interactions; changes notify waiters."""

    def __init__(self, *, bot_name: str = "Atelier") -> None:
        self.snowflakes = SnowflakeGenerator()
        self.bot = FakeUser(id=self.snowflakes.next(), name=bot_name, bot=True)
        self.application_id = self.bot.id
        self.owner = FakeUser(id=self.snowflakes.next(), name="app-owner")
        self.users: dict[int, FakeUser] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.channel_messages: dict[int, list[FakeMessage]] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        self.attachment_downloads: dict[int, int] = {}
        #: Registered application commands: None → global, guild id → that guild's.
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        self.base_url = ""
        self.gateway: Gateway | None = None
        self._change = asyncio.Event()

    # Change notification ------------------------------------------------------------------------------

    def touch(self) -> None:
        """Wake everything waiting in `wait_for`; called after every change."""
        event, self._change = self._change, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], T], seconds: float, description: str) -> T:
        """Re-check after every change, and every `POLL_S` for conditions outside the fake (bot, database)."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    change = self._change
                    result = predicate()
                    if result:
                        return result
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(change.wait(), POLL_S)
        except TimeoutError:
            raise TimeoutError(f"waited {seconds:g}s for {description}; {self.describe_recent()}") from None

    def describe_recent(self, count: int = 5) -> str:
        recent = sorted(self.messages.values(), key=lambda m: m.id)[-count:]
        if not recent:
            return "no messages were sent"
        lines = [
            f"#{m.channel_id} {m.author.name}: {m.content!r}{' (ephemeral)' if m.ephemeral else ''}"
            for m in recent
        ]
        return "last messages: " + " | ".join(lines)

    def dispatch(self, event: str, data: EventData, *, guild_id: int | None, intent: int | None) -> None:
        if self.gateway is not None:
            self.gateway.dispatch(event, data, guild_id=guild_id, intent=intent)

    # Entities -----------------------------------------------------------------------------------------

    def create_user(self, name: str, *, bot: bool = False) -> FakeUser:
        user = FakeUser(id=self.snowflakes.next(), name=name, bot=bot)
        self.users[user.id] = user
        self.touch()
        return user

    def create_guild(self, name: str, owner: FakeUser) -> FakeGuild:
        guild = FakeGuild(id=self.snowflakes.next(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = FakeRole(guild.id, guild.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS)
        for user in (owner, self.bot):
            guild.members[user.id] = FakeMember(guild.id, user)
        self.guilds[guild.id] = guild
        self.dispatch(
            "GUILD_CREATE",
            lambda intents: self.guild_create_payload(guild, intents),
            guild_id=guild.id,
            intent=INTENT_GUILDS,
        )
        self.touch()
        return guild

    def create_role(self, guild: FakeGuild, name: str, permissions: int) -> FakeRole:
        role = FakeRole(self.snowflakes.next(), guild.id, name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        data = {"guild_id": str(guild.id), "role": payloads.role_payload(role)}
        self.dispatch("GUILD_ROLE_CREATE", data, guild_id=guild.id, intent=INTENT_GUILDS)
        self.touch()
        return role

    def add_member(self, guild: FakeGuild, user: FakeUser, roles: list[FakeRole]) -> FakeMember:
        member = FakeMember(guild.id, user, [role.id for role in roles])
        guild.members[user.id] = member
        data = payloads.member_payload(member) | {"guild_id": str(guild.id)}
        self.dispatch("GUILD_MEMBER_ADD", data, guild_id=guild.id, intent=INTENT_GUILD_MEMBERS)
        self.touch()
        return member

    def create_text_channel(
        self, guild: FakeGuild, name: str, *, nsfw: bool, topic: str | None
    ) -> FakeChannel:
        channel = FakeChannel(
            self.snowflakes.next(),
            GUILD_TEXT,
            name,
            guild.id,
            nsfw=nsfw,
            position=len(guild.channels),
            topic=topic,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        self.dispatch(
            "CHANNEL_CREATE", payloads.channel_payload(channel), guild_id=guild.id, intent=INTENT_GUILDS
        )
        self.touch()
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM channel with `user`, created on first use as Discord does."""
        for channel in self.channels.values():
            if channel.type == DM and channel.recipient is user:
                return channel
        channel = FakeChannel(self.snowflakes.next(), DM, "", recipient=user)
        self.channels[channel.id] = channel
        self.channel_messages[channel.id] = []
        self.touch()
        return channel

    def get_user(self, user_id: int | str) -> FakeUser:
        user = self.users.get(int(user_id))
        if user is None:
            raise unknown("user")
        return user

    def get_guild(self, guild_id: int | str) -> FakeGuild:
        guild = self.guilds.get(int(guild_id))
        if guild is None:
            raise unknown("guild")
        return guild

    def get_channel(self, channel_id: int | str) -> FakeChannel:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise unknown("channel")
        return channel

    def get_message(self, channel: FakeChannel, message_id: int | str) -> FakeMessage:
        """A message visible through channel routes: not deleted, not ephemeral, in that channel."""
        message = self.messages.get(int(message_id))
        if message is None or message.deleted or message.ephemeral or message.channel_id != channel.id:
            raise unknown("message")
        return message

    def member_of(self, guild: FakeGuild | None, user: FakeUser) -> FakeMember | None:
        return guild.members.get(user.id) if guild is not None else None

    def permissions(self, guild: FakeGuild, user: FakeUser) -> int:
        """Guild-level permissions: owner and administrators get everything, others the union of roles."""
        if guild.owner_id == user.id:
            return ALL_PERMISSIONS
        member = guild.members.get(user.id)
        if member is None:
            return 0
        value = guild.everyone.permissions
        for role_id in member.role_ids:
            value |= guild.roles[role_id].permissions
        return ALL_PERMISSIONS if value & PERM_ADMINISTRATOR else value

    def guild_create_payload(self, guild: FakeGuild, intents: int) -> dict[str, Any]:
        """GUILD_CREATE: with every member if the bot has GUILD_MEMBERS, else only the bot itself."""
        if intents & INTENT_GUILD_MEMBERS:
            members = list(guild.members.values())
        else:
            members = [guild.members[self.bot.id]]
        return payloads.guild_payload(guild, members, joined_at=guild.members[self.bot.id].joined_at)

    # Attachments --------------------------------------------------------------------------------------

    def store_attachment(self, channel_id: int, upload: Upload, *, ephemeral: bool = False) -> FakeAttachment:
        if len(upload.data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, 40005, "Request entity too large")
        attachment_id = self.snowflakes.next()
        filename = upload.filename or "unknown"
        width, height = _image_size(upload.data)
        attachment = FakeAttachment(
            id=attachment_id,
            filename=filename,
            data=upload.data,
            content_type=mimetypes.guess_type(filename)[0],
            url=f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}",
            width=width,
            height=height,
            ephemeral=ephemeral,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    # Messages -----------------------------------------------------------------------------------------

    def render(self, message: FakeMessage, *, with_member: bool = False) -> dict[str, Any]:
        guild = self.guilds.get(message.guild_id) if message.guild_id else None
        member = self.member_of(guild, message.author) if with_member else None
        mentions = [self.users[user_id] for user_id in message.mention_ids if user_id in self.users]
        return payloads.message_payload(message, self_id=self.bot.id, mentions=mentions, member=member)

    def create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: dict[str, Any],
        uploads: list[Upload],
        *,
        flags: int = 0,
        type: int = 0,
        interaction: FakeInteraction | None = None,
        validate: bool = True,
    ) -> FakeMessage:
        if validate:
            check_message_body(body, file_count=len(uploads), creating=True)
        reference = body.get("message_reference") or {}
        message = FakeMessage(
            id=self.snowflakes.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            flags=flags | body.get("flags", 0),
            type=type if not reference else 19,
            interaction=interaction,
            webhook_id=self.application_id if interaction is not None else None,
            reference_id=int(reference["message_id"]) if reference.get("message_id") else None,
        )
        self._apply_body(message, body, uploads, creating=True)
        self.messages[message.id] = message
        self.channel_messages[channel.id].append(message)
        if not message.ephemeral:
            channel.last_message_id = message.id
            self._dispatch_message("MESSAGE_CREATE", message)
        self.touch()
        return message

    def edit_message(self, message: FakeMessage, body: dict[str, Any], uploads: list[Upload]) -> FakeMessage:
        check_message_body(body, file_count=len(uploads), creating=False)
        message.history.append(message.snapshot())
        self._apply_body(message, body, uploads, creating=False)
        message.flags &= ~(1 << 7)  # an edit ends the "thinking" state
        message.edited_at = time.time()
        if not message.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", message)
        self.touch()
        return message

    def delete_message(self, message: FakeMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id:
                data["guild_id"] = str(message.guild_id)
            self.dispatch("MESSAGE_DELETE", data, guild_id=message.guild_id, intent=_message_intent(message))
        self.touch()

    def _apply_body(
        self, message: FakeMessage, body: dict[str, Any], uploads: list[Upload], *, creating: bool
    ) -> None:
        if "content" in body:
            message.content = body["content"] or ""
            message.mention_ids = [int(m) for m in MENTION.findall(message.content)]
        if "embeds" in body:
            message.embeds = body["embeds"] or []
        if "components" in body:
            message.components = body["components"] or []
        if "flags" in body and not creating:
            # Only SUPPRESS_EMBEDS and COMPONENTS_V2 may change in an edit; ephemeral/loading stay.
            message.flags = (message.flags & ((1 << 6) | (1 << 7))) | (body["flags"] or 0) & ~(
                (1 << 6) | (1 << 7)
            )
        message.attachments = self._attachments_after(message, body, uploads, creating=creating)

    def _attachments_after(
        self, message: FakeMessage, body: dict[str, Any], uploads: list[Upload], *, creating: bool
    ) -> list[FakeAttachment]:
        """Keep the existing attachments listed by id, add the new files; no list → append the files."""
        by_index = {upload.index: upload for upload in uploads}
        listed = body.get("attachments")
        if listed is None:
            kept = [] if creating else list(message.attachments)
            new = [self.store_attachment(message.channel_id, u, ephemeral=message.ephemeral) for u in uploads]
            return kept + new
        result: list[FakeAttachment] = []
        existing = {a.id: a for a in message.attachments}
        for index, entry in enumerate(listed):
            ref = int(entry["id"])
            if ref in by_index:
                upload = by_index.pop(ref)
                renamed = Upload(upload.index, entry.get("filename") or upload.filename, upload.data)
                attachment = self.store_attachment(message.channel_id, renamed, ephemeral=message.ephemeral)
                attachment.description = entry.get("description")
                result.append(attachment)
            elif ref in existing:
                result.append(existing[ref])
            else:
                raise form_error(
                    ["attachments", index, "id"], "ATTACHMENT_NOT_FOUND", f"Unknown attachment id {ref}"
                )
        if by_index:
            raise form_error(
                ["attachments"], "ATTACHMENT_NOT_FOUND", f"files {sorted(by_index)} are not listed"
            )
        return result

    def _dispatch_message(self, event: str, message: FakeMessage) -> None:
        if self.gateway is not None:
            self.gateway.dispatch_message(event, message)

    # Reactions ----------------------------------------------------------------------------------------

    def add_reaction(self, message: FakeMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.setdefault(emoji, [])
        if user.id in users:
            return
        users.append(user.id)
        data = self._reaction_event(message, user, emoji)
        guild = self.guilds.get(message.guild_id) if message.guild_id else None
        member = self.member_of(guild, user)
        if member is not None:
            data["member"] = payloads.member_payload(member)
        data["message_author_id"] = str(message.author.id)
        data["burst"] = False
        data["type"] = 0
        self.dispatch(
            "MESSAGE_REACTION_ADD", data, guild_id=message.guild_id, intent=_reaction_intent(message)
        )
        self.touch()

    def remove_reaction(self, message: FakeMessage, user: FakeUser, emoji: str) -> None:
        users = message.reactions.get(emoji, [])
        if user.id not in users:
            return
        users.remove(user.id)
        if not users:
            del message.reactions[emoji]
        data = self._reaction_event(message, user, emoji) | {"burst": False, "type": 0}
        self.dispatch(
            "MESSAGE_REACTION_REMOVE", data, guild_id=message.guild_id, intent=_reaction_intent(message)
        )
        self.touch()

    def _reaction_event(self, message: FakeMessage, user: FakeUser, emoji: str) -> dict[str, Any]:
        name, _, emoji_id = emoji.partition(":")
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": {"id": emoji_id or None, "name": name},
        }
        if message.guild_id:
            data["guild_id"] = str(message.guild_id)
        return data

    # Interactions -------------------------------------------------------------------------------------

    def new_interaction(
        self,
        *,
        type: int,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        data: dict[str, Any],
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        """Build the INTERACTION_CREATE payload a member's action produces, and remember it."""
        guild = self.guilds.get(channel.guild_id) if channel.guild_id else None
        interaction_id = self.snowflakes.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": type,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": MAX_UPLOAD_BYTES,
            "channel_id": str(channel.id),
        }
        if guild is not None:
            member = guild.members[user.id]
            permissions = self.permissions(guild, user)
            bot_permissions = self.permissions(guild, self.bot)
            payload |= {
                "guild_id": str(guild.id),
                "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": payloads.member_payload(member, permissions=permissions),
                "channel": payloads.channel_payload(channel, permissions=permissions),
                "app_permissions": str(bot_permissions),
                "authorizing_integration_owners": {"0": str(guild.id)},
                "context": 0,
            }
        else:
            payload |= {
                "user": payloads.user_payload(user),
                "channel": payloads.channel_payload(channel),
                "app_permissions": str(DEFAULT_EVERYONE_PERMISSIONS),
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,
            }
        if message is not None:
            payload["message"] = self.render(message)
        interaction = FakeInteraction(
            id=interaction_id,
            token=token,
            type=type,
            user=user,
            channel=channel,
            guild=guild,
            payload=payload,
            name=name,
            message=message,
        )
        self.interactions[interaction_id] = interaction
        self.interactions_by_token[token] = interaction
        return interaction

    # Commands -----------------------------------------------------------------------------------------

    def find_command(self, name: str, guild: FakeGuild | None, *, type: int = 1) -> dict[str, Any] | None:
        """The command members see under `name`: the guild's own first, then the global one."""
        scopes = ([guild.id] if guild is not None else []) + [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == type:
                    return command
        return None


def _message_intent(message: FakeMessage) -> int:
    return INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES


def _reaction_intent(message: FakeMessage) -> int:
    return INTENT_GUILD_MESSAGE_REACTIONS if message.guild_id else INTENT_DIRECT_MESSAGE_REACTIONS


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height when the bytes are an image Pillow can read (Discord reports them too)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None, None
