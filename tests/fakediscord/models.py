"""The fake server's own records of users, guilds, channels, messages and interactions.

These are plain mutable dataclasses, not discord.py objects: the fake must not trust the library it tests.
Tests read them through the driver (`FakeDiscord.messages(channel)`, `FakeInteraction.original`, ...).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Discord's epoch (2015-01-01) in milliseconds, the base of every snowflake.
DISCORD_EPOCH_MS = 1_420_070_400_000

# Channel types.
GUILD_TEXT = 0
DM = 1

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_COMPONENTS_V2 = 1 << 15

# Interaction types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Gateway intents the fake honours.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Permission bits the fake needs by name.
PERM_ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 53) - 1
#: What @everyone gets in a new guild: invite, react, view, send, embed, attach, read history, external
#: emoji, connect, speak, change nickname, use application commands, threads (discord.Permissions names).
DEFAULT_EVERYONE_PERMISSIONS = 0x48_8435_CC41


class SnowflakeGenerator:
    """Strictly increasing snowflakes built from the current time, like Discord's."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> float:
    """Unix time (seconds) at which `snowflake` was made."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


@dataclass(eq=False)
class FakeUser:
    id: int
    name: str
    bot: bool = False
    global_name: str | None = None
    #: False when the member has closed DMs from server members: Discord refuses the bot's DM (50007).
    dms_open: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass(eq=False)
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0


@dataclass(eq=False)
class FakeChannel:
    id: int
    type: int
    name: str
    guild_id: int | None = None
    nsfw: bool = False
    position: int = 0
    topic: str | None = None
    #: The other side of a DM channel (the bot is always the first side).
    recipient: FakeUser | None = None
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.type == DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass(eq=False)
class FakeMember:
    guild_id: int
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = field(default_factory=time.time)

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]


@dataclass(eq=False)
class FakeAttachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    width: int | None = None
    height: int | None = None
    #: Uploaded by the driver for a command option: Discord marks those ephemeral.
    ephemeral: bool = False
    description: str | None = None


@dataclass(frozen=True)
class Button:
    """One button as a member sees it."""

    custom_id: str | None
    label: str | None
    style: int
    disabled: bool
    url: str | None
    emoji: str | None


@dataclass(frozen=True)
class MessageVersion:
    """What a message looked like before an edit."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[FakeAttachment]
    flags: int
    edited_at: float | None


@dataclass(eq=False)
class FakeMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    edited_at: float | None = None
    deleted: bool = False
    #: Earlier versions, oldest first; the current one is the message itself.
    history: list[MessageVersion] = field(default_factory=list)
    #: Emoji text (e.g. "👍" or "name:id") → ids of users who reacted, in order.
    reactions: dict[str, list[int]] = field(default_factory=dict)
    #: The interaction this message answers, if any.
    interaction: FakeInteraction | None = None
    webhook_id: int | None = None
    mention_ids: list[int] = field(default_factory=list)
    reference_id: int | None = None

    @property
    def created_at(self) -> float:
        return snowflake_time(self.id)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while it is a deferred "Bot is thinking..." placeholder."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def edit_count(self) -> int:
        return len(self.history)

    def snapshot(self) -> MessageVersion:
        return MessageVersion(
            content=self.content,
            embeds=list(self.embeds),
            components=list(self.components),
            attachments=list(self.attachments),
            flags=self.flags,
            edited_at=self.edited_at,
        )

    def walk_components(self) -> Iterator[dict[str, Any]]:
        """Every component at any depth (action rows, containers, sections and their children)."""
        stack = list(reversed(self.components))
        while stack:
            component = stack.pop()
            yield component
            children = list(component.get("components", []))
            for key in ("accessory", "component"):
                if key in component:
                    children.append(component[key])
            stack.extend(reversed(children))

    @property
    def buttons(self) -> list[Button]:
        return [
            Button(
                custom_id=c.get("custom_id"),
                label=c.get("label"),
                style=c.get("style", 1),
                disabled=c.get("disabled", False),
                url=c.get("url"),
                emoji=_emoji_text(c["emoji"]) if c.get("emoji") else None,
            )
            for c in self.walk_components()
            if c.get("type") == 2
        ]

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.walk_components() if "custom_id" in c]

    def button(self, label: str) -> Button:
        """The button labelled `label`; raises `LookupError` naming the labels there are."""
        for button in self.buttons:
            if button.label == label:
                return button
        labels = [b.label for b in self.buttons]
        raise LookupError(f"message {self.id} has no button labelled {label!r}; it has {labels}")

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.walk_components() if c.get("custom_id") == custom_id), None)


@dataclass(eq=False)
class FakeInteraction:
    """One interaction the driver sent, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user: FakeUser
    channel: FakeChannel
    guild: FakeGuild | None
    payload: dict[str, Any]
    #: The command path ("quota grant") or the component / modal custom id.
    name: str
    #: For components: the message the component is on.
    message: FakeMessage | None = None
    response_type: int | None = None
    #: The message @original refers to (reply, deferred placeholder or the component's message).
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    autocomplete_choices: list[dict[str, Any]] | None = None
    #: Set when the bot did not acknowledge in time: the member sees "This interaction failed".
    failed: bool = False

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        return self.original is not None and self.original.ephemeral

    @property
    def messages(self) -> list[FakeMessage]:
        """The original response (if it is a message of its own) then the followups."""
        own = [self.original] if self.original is not None and self.original is not self.message else []
        return own + self.followups


def _emoji_text(emoji: dict[str, Any]) -> str:
    return emoji["name"] if not emoji.get("id") else f"{emoji['name']}:{emoji['id']}"
