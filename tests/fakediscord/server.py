"""`FakeDiscord`: a loopback Discord (REST v10 + JSON gateway) and the driver tests use to play members.

    async with FakeDiscord() as server:
        guild = server.create_guild("Test")
        channel = server.create_text_channel(guild, "art")
        alice = server.create_member(guild, "alice")
        ... start the real bot with server.env() (or patch discord.py in-process) ...
        await server.wait_for_commands("imagine")
        ix = await server.invoke(alice, channel, "imagine", {"prompt": "a red fox"})
        reply = await server.wait_for_reply(ix, lambda m: m.attachments)

Members act through the driver (`invoke`, `click`, `select`, `submit_modal`, `react`, `post_message`);
the bot acts through HTTP and sees the members through the gateway. The state outlives bot connections.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from tests.fakediscord.commands import CommandBuilder, DriverError
from tests.fakediscord.gateway import Gateway
from tests.fakediscord.models import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    PRIVILEGED_INTENTS,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
)
from tests.fakediscord.responses import InteractionResponder
from tests.fakediscord.rest import RecordedRequest, RestApi
from tests.fakediscord.world import Upload, World

T = TypeVar("T")


def _permission_value(permissions: Any) -> int:
    """Accept an int or anything with `.value` (e.g. `discord.Permissions(manage_guild=True)`)."""
    return int(getattr(permissions, "value", permissions))


class FakeDiscord:
    """A fake Discord on 127.0.0.1 for the real discord.py client, with a driver for tests."""

    def __init__(
        self,
        *,
        port: int = 0,
        bot_name: str = "Atelier",
        token: str | None = None,
        ack_timeout_s: float | None = 3.0,
        heartbeat_interval_ms: int = 41_250,
        allowed_privileged_intents: int = PRIVILEGED_INTENTS,
        default_timeout_s: float = 10.0,
    ) -> None:
        self.problems: list[str] = []
        self.unhandled_routes: list[str] = []
        self.token = token or f"fake.{secrets.token_urlsafe(24)}"
        self.default_timeout_s = default_timeout_s
        self.world = World(bot_name=bot_name)
        self.gateway = Gateway(
            self.world,
            problems=self.problems,
            heartbeat_interval_ms=heartbeat_interval_ms,
            allowed_privileged_intents=allowed_privileged_intents,
        )
        self.world.gateway = self.gateway
        self.responder = InteractionResponder(self.world, ack_timeout_s=ack_timeout_s)
        self.rest = RestApi(
            self.world, self.gateway, self.responder, token=self.token, unhandled_routes=self.unhandled_routes
        )
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Life-cycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        self.rest.install(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.base_url = f"http://127.0.0.1:{self.port}"
        self.gateway.url = f"ws://127.0.0.1:{self.port}/gateway"

    async def close(self) -> None:
        self.responder.close()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"{self.world.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` must be set to."""
        return self.gateway.url

    def env(self) -> dict[str, str]:
        """Environment for a bot process: DISCORD_TOKEN, DISCORD_API_BASE, DISCORD_GATEWAY_URL."""
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    @property
    def bot(self) -> FakeUser:
        return self.world.bot

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.rest.requests

    @property
    def unauthorized_requests(self) -> list[RecordedRequest]:
        return self.rest.unauthorized_requests

    # Building the world -------------------------------------------------------------------------------

    def create_user(self, name: str, *, dms_open: bool = True) -> FakeUser:
        user = self.world.create_user(name)
        user.dms_open = dms_open
        return user

    def create_guild(self, name: str = "Atelier Test", *, owner: FakeUser | None = None) -> FakeGuild:
        """A guild the bot is in (joining it live if the bot is connected)."""
        return self.world.create_guild(name, owner or self.create_user(f"{name}-owner"))

    def create_role(self, guild: FakeGuild, name: str, *, permissions: Any = 0) -> FakeRole:
        return self.world.create_role(guild, name, _permission_value(permissions))

    def add_member(self, guild: FakeGuild, user: FakeUser, *, roles: Iterable[FakeRole] = ()) -> FakeMember:
        return self.world.add_member(guild, user, list(roles))

    def create_member(
        self, guild: FakeGuild, name: str, *, roles: Iterable[FakeRole] = (), permissions: Any = None
    ) -> FakeUser:
        """A new user in `guild`; `permissions` (int or discord.Permissions) become a role of their own."""
        user = self.create_user(name)
        granted = list(roles)
        if permissions is not None:
            granted.append(self.create_role(guild, f"{name}-role", permissions=permissions))
        self.add_member(guild, user, roles=granted)
        return user

    def create_text_channel(
        self, guild: FakeGuild, name: str = "general", *, nsfw: bool = False, topic: str | None = None
    ) -> FakeChannel:
        return self.world.create_text_channel(guild, name, nsfw=nsfw, topic=topic)

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        return self.world.dm_channel(user)

    # Acting as members --------------------------------------------------------------------------------

    async def invoke(
        self,
        user: FakeUser,
        channel: FakeChannel,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        check_permissions: bool = True,
        wait_ack: bool = True,
    ) -> FakeInteraction:
        """Run a slash command as `user` in `channel`; "quota grant" names a sub-command.

        Option values: str, int, float, bool, FakeUser/FakeMember, FakeChannel, FakeRole, and for
        attachments bytes or (filename, bytes). Returns once the bot acknowledged (or failed to in time).
        """
        self._check_can_act(user, channel)
        builder = CommandBuilder(self.world, user, channel)
        data, schema = builder.build(command, options or {})
        if check_permissions:
            builder.check_visible(schema)
        interaction = self.world.new_interaction(
            type=APPLICATION_COMMAND, user=user, channel=channel, name=command, data=data
        )
        return await self._deliver(interaction, wait_ack=wait_ack)

    async def autocomplete(
        self, user: FakeUser, channel: FakeChannel, command: str, options: Mapping[str, Any], *, focused: str
    ) -> list[dict[str, Any]]:
        """Type into option `focused` of `command`; return the choices the bot suggested."""
        self._check_can_act(user, channel)
        data, _ = CommandBuilder(self.world, user, channel).build(command, options, focused=focused)
        data.pop("resolved", None)  # Discord sends no resolved data with autocomplete
        interaction = self.world.new_interaction(
            type=AUTOCOMPLETE, user=user, channel=channel, name=command, data=data
        )
        await self._deliver(interaction, wait_ack=True)
        if interaction.failed:
            raise TimeoutError(f"the bot did not answer autocomplete for /{command} {focused} in time")
        return interaction.autocomplete_choices or []

    async def click(
        self, user: FakeUser, message: FakeMessage, custom_id: str, *, wait_ack: bool = True
    ) -> FakeInteraction:
        """Press the button `custom_id` on `message` as `user`."""
        component = self._component(user, message, custom_id, kind=2)
        data = {"custom_id": custom_id, "component_type": 2}
        if "id" in component:
            data["id"] = component["id"]
        interaction = self.world.new_interaction(
            type=MESSAGE_COMPONENT,
            user=user,
            channel=self._channel_of(message),
            name=custom_id,
            data=data,
            message=message,
        )
        return await self._deliver(interaction, wait_ack=wait_ack)

    async def select(
        self,
        user: FakeUser,
        message: FakeMessage,
        custom_id: str,
        values: list[str],
        *,
        wait_ack: bool = True,
    ) -> FakeInteraction:
        """Choose `values` in the string select menu `custom_id` on `message`."""
        component = self._component(user, message, custom_id, kind=3)
        offered = [option["value"] for option in component.get("options", [])]
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not set(values) <= set(offered) or not low <= len(values) <= high:
            raise DriverError(f"select {custom_id!r} takes {low}..{high} of {offered}, got {values}")
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        interaction = self.world.new_interaction(
            type=MESSAGE_COMPONENT,
            user=user,
            channel=self._channel_of(message),
            name=custom_id,
            data=data,
            message=message,
        )
        return await self._deliver(interaction, wait_ack=wait_ack)

    async def submit_modal(
        self, user: FakeUser, opened_by: FakeInteraction, values: Mapping[str, str], *, wait_ack: bool = True
    ) -> FakeInteraction:
        """Fill in and submit the modal the bot opened in answer to `opened_by`; keys are text input ids."""
        modal = opened_by.modal
        if modal is None:
            raise DriverError(f"interaction {opened_by.name!r} was not answered with a modal")
        components, inputs = _modal_submission(modal, values)
        unknown = sorted(set(values) - set(inputs))
        if unknown:
            raise DriverError(f"modal {modal['custom_id']!r} has no text input(s) {unknown}; it has {inputs}")
        data = {"custom_id": modal["custom_id"], "components": components}
        interaction = self.world.new_interaction(
            type=MODAL_SUBMIT,
            user=user,
            channel=opened_by.channel,
            name=modal["custom_id"],
            data=data,
            message=opened_by.message,
        )
        return await self._deliver(interaction, wait_ack=wait_ack)

    async def react(self, user: FakeUser, message: FakeMessage, emoji: str) -> None:
        """Add reaction `emoji` ("👍" or "name:id" for a custom emoji) to `message` as `user`."""
        self._check_can_act(user, self._channel_of(message))
        if message.ephemeral or message.deleted:
            raise DriverError(f"message {message.id} cannot be reacted to (ephemeral or deleted)")
        self.world.add_reaction(message, user, emoji)

    async def unreact(self, user: FakeUser, message: FakeMessage, emoji: str) -> None:
        self.world.remove_reaction(message, user, emoji)

    async def post_message(
        self,
        user: FakeUser,
        channel: FakeChannel,
        content: str = "",
        *,
        files: Mapping[str, bytes] | None = None,
    ) -> FakeMessage:
        """Post a plain message as `user` (the bot sees its content only with the MESSAGE_CONTENT intent)."""
        self._check_can_act(user, channel)
        uploads = [Upload(index, name, data) for index, (name, data) in enumerate((files or {}).items())]
        return self.world.create_message(channel, user, {"content": content}, uploads)

    # Looking at what the bot did ----------------------------------------------------------------------

    def messages(
        self, channel: FakeChannel, *, include_ephemeral: bool = True, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Messages in `channel`, oldest first."""
        return [
            m
            for m in self.world.channel_messages.get(channel.id, [])
            if (include_ephemeral or not m.ephemeral) and (include_deleted or not m.deleted)
        ]

    def command(self, name: str, guild: FakeGuild | None = None) -> dict[str, Any] | None:
        """The registered chat-input command `name` as a member of `guild` would see it."""
        return self.world.find_command(name, guild)

    def command_names(self, guild: FakeGuild | None = None) -> list[str]:
        scopes = [None] + ([guild.id] if guild is not None else [])
        return sorted({c["name"] for scope in scopes for c in self.world.commands.get(scope, [])})

    def attachment_downloads(self, attachment_id: int) -> int:
        """How many times the bot fetched that attachment's URL."""
        return self.world.attachment_downloads.get(attachment_id, 0)

    async def wait_for(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - one deadline for the whole wait
        description: str = "the condition",
    ) -> T:
        """Re-check `predicate` after every change until it returns something truthy; return that."""
        return await self.world.wait_for(predicate, timeout or self.default_timeout_s, description)

    async def wait_for_message(
        self,
        channel: FakeChannel,
        predicate: Callable[[FakeMessage], object] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - one deadline for the whole wait
    ) -> FakeMessage:
        """The newest message in `channel` (posted or edited into shape) that satisfies `predicate`."""

        def find() -> FakeMessage | None:
            matches = [m for m in self.messages(channel) if predicate is None or predicate(m)]
            return matches[-1] if matches else None

        return await self.wait_for(
            find, timeout=timeout, description=f"a matching message in #{channel.name}"
        )

    async def wait_for_reply(
        self,
        interaction: FakeInteraction,
        predicate: Callable[[FakeMessage], object] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - one deadline for the whole wait
    ) -> FakeMessage:
        """The first finished (not "thinking") message the bot made for `interaction` matching `predicate`."""

        def find() -> FakeMessage | None:
            candidates = [m for m in interaction.messages if not m.loading and not m.deleted]
            if interaction.response_type in (6, 7) and interaction.original is not None:
                candidates.insert(0, interaction.original)
            return next((m for m in candidates if predicate is None or predicate(m)), None)

        return await self.wait_for(find, timeout=timeout, description=f"a reply to {interaction.name!r}")

    async def wait_for_commands(
        self,
        *names: str,
        guild: FakeGuild | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - one deadline for the whole wait
    ) -> None:
        """Wait until the bot has registered (synced) every command in `names`."""
        await self.wait_for(
            lambda: set(names) <= set(self.command_names(guild)),
            timeout=timeout,
            description=f"commands {sorted(names)} to be registered",
        )

    async def wait_for_bot(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - one deadline for the whole wait
        """Wait until a bot session is identified and connected."""
        await self.wait_for(
            lambda: self.gateway.connected_session(None) is not None,
            timeout=timeout,
            description="a connected bot",
        )

    # Gateway control ----------------------------------------------------------------------------------

    async def request_reconnect(self) -> None:
        """Ask the bot to reconnect (op 7); it resumes its session."""
        await self.gateway.request_reconnect()

    async def drop_connections(self, code: int = 4000) -> None:
        """Cut every gateway websocket; with 4000 the bot resumes and gets the events it missed."""
        await self.gateway.drop_connections(code)

    # Internals ----------------------------------------------------------------------------------------

    async def _deliver(self, interaction: FakeInteraction, *, wait_ack: bool) -> FakeInteraction:
        guild_id = interaction.guild.id if interaction.guild else None
        await self.wait_for(
            lambda: self.gateway.connected_session(guild_id), description="a bot connected to the gateway"
        )
        self.gateway.dispatch_interaction(interaction)
        self.responder.arm(interaction)
        if wait_ack:
            await self.wait_for(
                lambda: interaction.response_type is not None or interaction.failed,
                description=f"the bot to acknowledge {interaction.name!r}",
            )
        return interaction

    def _check_can_act(self, user: FakeUser, channel: FakeChannel) -> None:
        if channel.guild_id is not None and user.id not in self.world.guilds[channel.guild_id].members:
            raise DriverError(f"{user.name} is not a member of the guild of #{channel.name}")
        if channel.is_dm and channel.recipient is not user:
            raise DriverError(f"{user.name} is not the recipient of DM channel {channel.id}")

    def _channel_of(self, message: FakeMessage) -> FakeChannel:
        return self.world.channels[message.channel_id]

    def _component(
        self, user: FakeUser, message: FakeMessage, custom_id: str, *, kind: int
    ) -> dict[str, Any]:
        channel = self._channel_of(message)
        self._check_can_act(user, channel)
        if message.deleted:
            raise DriverError(f"message {message.id} was deleted")
        if message.ephemeral and message.interaction is not None and message.interaction.user is not user:
            raise DriverError(
                f"message {message.id} is ephemeral: only {message.interaction.user.name} sees it"
            )
        component = message.component(custom_id)
        if component is None or component.get("type") != kind:
            raise DriverError(
                f"message {message.id} has no {'button' if kind == 2 else 'select'} {custom_id!r}; "
                f"its custom ids are {message.custom_ids}"
            )
        if component.get("disabled"):
            raise DriverError(f"component {custom_id!r} on message {message.id} is disabled")
        return component


def _modal_submission(
    modal: dict[str, Any], values: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Mirror the modal's layout (action rows or labels) with each text input's submitted value."""
    inputs: list[str] = []

    def answer(component: dict[str, Any]) -> dict[str, Any]:
        custom_id = component["custom_id"]
        inputs.append(custom_id)
        value = values.get(custom_id, component.get("value") or "")
        if component.get("required", True) and not value:
            raise DriverError(f"modal text input {custom_id!r} is required")
        return {"type": component["type"], "custom_id": custom_id, "value": value}

    submitted = []
    for top in modal.get("components", []):
        if top["type"] == 1:
            submitted.append(
                {"type": 1, "components": [answer(c) for c in top["components"] if c["type"] == 4]}
            )
        elif top["type"] == 18 and top["component"]["type"] == 4:
            submitted.append({"type": 18, "component": answer(top["component"])})
    return submitted, inputs
