"""Turn `invoke(user, channel, "quota grant", {...})` into the `data` of a real APPLICATION_COMMAND.

The registered schema (what the bot synced) decides everything, as in Discord's client: the path must
name a sub-command, values must fit the option types, ranges, lengths and choices, required options must
be there, and user/channel/role/attachment values travel as ids with their `resolved` objects. A
mismatch raises `DriverError` naming what the schema allows, because a member could not have sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fakediscord import payloads
from tests.fakediscord.models import (
    ALL_PERMISSIONS,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
)
from tests.fakediscord.world import Upload, World

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
TYPE_NAMES = {
    STRING: "string",
    INTEGER: "integer",
    BOOLEAN: "boolean",
    USER: "user",
    CHANNEL: "channel",
    ROLE: "role",
    MENTIONABLE: "mentionable",
    NUMBER: "number",
    ATTACHMENT: "attachment",
}


class DriverError(Exception):
    """The test asked for something a Discord member could not do (wrong option, hidden command, ...)."""


class CommandBuilder:
    """Builds the interaction `data` for one invocation and checks the member may see the command."""

    def __init__(self, world: World, user: FakeUser, channel: FakeChannel) -> None:
        self.world = world
        self.user = user
        self.channel = channel
        self.guild: FakeGuild | None = world.guilds.get(channel.guild_id) if channel.guild_id else None
        self.resolved: dict[str, dict[str, Any]] = {}

    def find(self, root: str) -> dict[str, Any]:
        command = self.world.find_command(root, self.guild)
        if command is None:
            scopes = {self.guild.id if self.guild else None, None}
            known = sorted(c["name"] for scope in scopes for c in self.world.commands.get(scope, []))
            raise DriverError(f"/{root} is not registered here; registered commands: {known}")
        return command

    def check_visible(self, command: dict[str, Any]) -> None:
        """Discord hides a command a member may not use: wrong context, NSFW, default permissions."""
        name = command["name"]
        context = 0 if self.guild is not None else 1
        contexts = command.get("contexts")
        if contexts is not None and context not in contexts:
            raise DriverError(
                f"/{name} is not available in {'guilds' if context == 0 else 'DMs'} (contexts={contexts})"
            )
        if self.guild is None and command.get("dm_permission") is False:
            raise DriverError(f"/{name} has dm_permission=false")
        if command.get("nsfw") and not self.channel.nsfw:
            raise DriverError(f"/{name} is age-restricted and #{self.channel.name} is not an NSFW channel")
        required = command.get("default_member_permissions")
        if required is not None and self.guild is not None:
            needed, granted = int(required), self.world.permissions(self.guild, self.user)
            # "0" means administrators only; administrators and the owner hold every permission.
            if granted != ALL_PERMISSIONS and (needed == 0 or granted & needed != needed):
                raise DriverError(
                    f"{self.user.name} cannot see /{name}: it needs default_member_permissions={required}, "
                    f"they have {granted}; pass check_permissions=False to simulate a moderator override"
                )

    def build(
        self, path: str, values: Mapping[str, Any], *, focused: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (interaction data, the command schema) for `path` ("imagine", "quota grant") and values."""
        root, *subs = path.split()
        command = self.find(root)
        level = command.get("options") or []
        chain: list[dict[str, Any]] = []
        for sub in subs:
            option = next(
                (o for o in level if o["name"] == sub and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None
            )
            if option is None:
                names = [o["name"] for o in level if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
                raise DriverError(f"/{path}: {sub!r} is not a sub-command here; choose one of {names}")
            chain.append(option)
            level = option.get("options") or []
        nested = [o["name"] for o in level if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        if nested:
            raise DriverError(f"/{path} is a group; invoke one of its sub-commands {nested}")
        options = self._options(path, level, values, focused)
        for option in reversed(chain):
            options = [{"name": option["name"], "type": option["type"], "options": options}]
        data: dict[str, Any] = {"id": command["id"], "name": root, "type": 1, "options": options}
        if self.resolved:
            data["resolved"] = self.resolved
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return data, command

    def _options(
        self, path: str, schema: list[dict[str, Any]], values: Mapping[str, Any], focused: str | None
    ) -> list[dict[str, Any]]:
        by_name = {option["name"]: option for option in schema}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise DriverError(f"/{path} has no option(s) {unknown}; its options are {sorted(by_name)}")
        missing = [
            o["name"]
            for o in schema
            if o.get("required") and o["name"] not in values and o["name"] != focused
        ]
        if missing:
            raise DriverError(f"/{path} needs option(s) {missing}")
        result = []
        for option in schema:  # Discord sends options in schema order
            if option["name"] not in values:
                continue
            value = values[option["name"]]
            if option["name"] == focused:
                result.append(
                    {"name": option["name"], "type": option["type"], "value": str(value), "focused": True}
                )
            else:
                result.append(
                    {
                        "name": option["name"],
                        "type": option["type"],
                        "value": self._value(path, option, value),
                    }
                )
        return result

    def _value(self, path: str, option: dict[str, Any], value: Any) -> Any:
        kind, name = option["type"], f"/{path} {option['name']}"
        if kind == STRING:
            return self._choice(name, option, self._text(name, option, value))
        if kind in (INTEGER, NUMBER):
            return self._choice(name, option, self._number(name, option, value))
        if kind == BOOLEAN:
            if not isinstance(value, bool):
                raise DriverError(f"{name} is a boolean, got {value!r}")
            return value
        if kind == USER or (kind == MENTIONABLE and isinstance(value, FakeUser | FakeMember)):
            return self._resolve_user(name, value)
        if kind in (ROLE, MENTIONABLE):
            return self._resolve_role(name, value)
        if kind == CHANNEL:
            return self._resolve_channel(name, option, value)
        if kind == ATTACHMENT:
            return self._resolve_attachment(name, value)
        raise DriverError(f"{name} has option type {kind}, which the fake does not model")

    def _text(self, name: str, option: dict[str, Any], value: Any) -> str:
        if not isinstance(value, str):
            raise DriverError(f"{name} is a string, got {value!r}")
        low, high = option.get("min_length", 0), option.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise DriverError(f"{name} must be {low} to {high} characters long, got {len(value)}")
        return value

    def _number(self, name: str, option: dict[str, Any], value: Any) -> int | float:
        allowed = int if option["type"] == INTEGER else int | float
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise DriverError(
                f"{name} is {'an integer' if option['type'] == INTEGER else 'a number'}, got {value!r}"
            )
        if option.get("min_value") is not None and value < option["min_value"]:
            raise DriverError(f"{name} must be at least {option['min_value']}, got {value}")
        if option.get("max_value") is not None and value > option["max_value"]:
            raise DriverError(f"{name} must be at most {option['max_value']}, got {value}")
        return value

    def _choice(self, name: str, option: dict[str, Any], value: Any) -> Any:
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise DriverError(f"{name} must be one of {[c['value'] for c in choices]}, got {value!r}")
        return value

    def _resolve_user(self, name: str, value: Any) -> str:
        user = value.user if isinstance(value, FakeMember) else value
        if not isinstance(user, FakeUser):
            raise DriverError(f"{name} takes a FakeUser or FakeMember, got {value!r}")
        self.resolved.setdefault("users", {})[str(user.id)] = payloads.user_payload(user)
        member = self.world.member_of(self.guild, user)
        if member is not None and self.guild is not None:
            permissions = self.world.permissions(self.guild, user)
            data = payloads.member_payload(member, permissions=permissions, with_user=False)
            self.resolved.setdefault("members", {})[str(user.id)] = data
        return str(user.id)

    def _resolve_role(self, name: str, value: Any) -> str:
        if not isinstance(value, FakeRole) or self.guild is None or value.id not in self.guild.roles:
            raise DriverError(f"{name} takes a FakeRole of this guild, got {value!r}")
        self.resolved.setdefault("roles", {})[str(value.id)] = payloads.role_payload(value)
        return str(value.id)

    def _resolve_channel(self, name: str, option: dict[str, Any], value: Any) -> str:
        if not isinstance(value, FakeChannel):
            raise DriverError(f"{name} takes a FakeChannel, got {value!r}")
        allowed = option.get("channel_types")
        if allowed and value.type not in allowed:
            raise DriverError(f"{name} accepts channel types {allowed}, got type {value.type}")
        permissions = self.world.permissions(self.guild, self.user) if self.guild else None
        data = payloads.channel_payload(value, permissions=permissions)
        self.resolved.setdefault("channels", {})[str(value.id)] = data
        return str(value.id)

    def _resolve_attachment(self, name: str, value: Any) -> str:
        """Upload the bytes as Discord does when a member attaches a file to a command option."""
        if isinstance(value, FakeAttachment):
            attachment = value
        else:
            filename, data = value if isinstance(value, tuple) else (_guess_filename(value), value)
            if not isinstance(data, bytes | bytearray):
                raise DriverError(f"{name} takes bytes or (filename, bytes), got {type(data).__name__}")
            upload = Upload(0, filename, bytes(data))
            attachment = self.world.store_attachment(self.channel.id, upload, ephemeral=True)
        self.resolved.setdefault("attachments", {})[str(attachment.id)] = payloads.attachment_payload(
            attachment
        )
        return str(attachment.id)


def _guess_filename(data: Any) -> str:
    if isinstance(data, bytes | bytearray):
        if data.startswith(b"\x89PNG"):
            return "upload.png"
        if data.startswith(b"\xff\xd8"):
            return "upload.jpg"
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return "upload.webp"
    return "upload.bin"
