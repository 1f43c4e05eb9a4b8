"""REST v10 routes discord.py uses for a slash-command bot, under `/api/v10`, plus attachment downloads.

Every request is recorded with its Authorization header. A route the fake does not know answers 404 in
Discord's JSON shape and is added to `unhandled_routes`, so a test can assert the bot used nothing the
fake does not model. Responses carry `Content-Type: application/json` *exactly*: discord.py compares the
header verbatim and would otherwise hand the bot a `str` instead of a dict.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakediscord import payloads
from tests.fakediscord.gateway import Gateway
from tests.fakediscord.models import DM, FakeChannel, FakeInteraction, FakeMessage
from tests.fakediscord.responses import InteractionResponder
from tests.fakediscord.validation import ApiError, check_commands, unknown
from tests.fakediscord.world import Upload, World

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FILE_FIELD = re.compile(r"^files\[(\d+)\]$")

# Permission bits the REST routes check for the bot.
ADD_REACTIONS, VIEW_CHANNEL, SEND_MESSAGES, MANAGE_MESSAGES = 1 << 6, 1 << 10, 1 << 11, 1 << 13
ATTACH_FILES, READ_HISTORY = 1 << 15, 1 << 16


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    authorization: str | None


def json_response(data: Any, status: int = 200) -> web.Response:
    bucket = hashlib.sha1(b"fakediscord").hexdigest()[:16]
    headers = {
        "Content-Type": "application/json",
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
    }
    return web.Response(status=status, body=json.dumps(data).encode(), headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


async def read_body(request: web.Request) -> tuple[dict[str, Any], list[Upload]]:
    """JSON body, or multipart `payload_json` + `files[n]` parts as discord.py sends attachments."""
    if request.content_type != "multipart/form-data":
        text = await request.text()
        return (json.loads(text) if text else {}), []
    body: dict[str, Any] = {}
    uploads: list[Upload] = []
    reader = await request.multipart()
    async for part in reader:
        name = part.name or ""  # type: ignore[union-attr]
        if name == "payload_json":
            body = json.loads(await part.text())  # type: ignore[union-attr]
        elif match := FILE_FIELD.match(name):
            data = bytes(await part.read(decode=False))  # type: ignore[union-attr]
            uploads.append(Upload(int(match[1]), part.filename or f"file{match[1]}", data))  # type: ignore[union-attr]
        else:
            raise ApiError(400, 50035, f"Unexpected multipart field {name!r}")
    return body, uploads


class RestApi:
    """The HTTP side of the fake: routes → world changes → JSON answers."""

    def __init__(
        self,
        world: World,
        gateway: Gateway,
        responder: InteractionResponder,
        *,
        token: str,
        unhandled_routes: list[str],
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.responder = responder
        self.token = token
        self.unhandled_routes = unhandled_routes
        self.requests: list[RecordedRequest] = []

    def routes(self) -> list[tuple[str, str, Handler]]:
        w = "/webhooks/{app_id}/{token}"
        c = "/channels/{channel_id}"
        m = c + "/messages/{message_id}"
        apps = "/applications/{app_id}"
        return [
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/{user_id}", self.get_user),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", apps + "/commands", self.get_commands),
            ("PUT", apps + "/commands", self.put_commands),
            ("GET", apps + "/commands/{command_id}", self.get_command),
            ("GET", apps + "/guilds/{guild_id}/commands", self.get_commands),
            ("PUT", apps + "/guilds/{guild_id}/commands", self.put_commands),
            ("GET", apps + "/guilds/{guild_id}/commands/{command_id}", self.get_command),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            ("POST", w, self.followup),
            ("GET", w + "/messages/{message_id}", self.get_webhook_message),
            ("PATCH", w + "/messages/{message_id}", self.edit_webhook_message),
            ("DELETE", w + "/messages/{message_id}", self.delete_webhook_message),
            ("GET", c, self.get_channel),
            ("POST", c + "/typing", self.typing),
            ("GET", c + "/messages", self.list_messages),
            ("POST", c + "/messages", self.create_message),
            ("GET", m, self.get_message),
            ("PATCH", m, self.edit_message),
            ("DELETE", m, self.delete_message),
            ("DELETE", m + "/reactions", self.clear_reactions),
            ("GET", m + "/reactions/{emoji}", self.reaction_users),
            ("PUT", m + "/reactions/{emoji}/@me", self.add_reaction),
            ("DELETE", m + "/reactions/{emoji}/{user_id}", self.remove_reaction),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", self.get_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
        ]

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)
        for method, path, handler in self.routes():
            app.router.add_route(method, "/api/v10" + path, handler)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.download)
        app.router.add_route("*", "/api/{tail:.*}", self.unhandled)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            authorization = request.headers.get("Authorization")
            self.requests.append(RecordedRequest(request.method, request.path, authorization))
        try:
            return await handler(request)
        except ApiError as error:
            return json_response(error.body(), error.status)

    async def unhandled(self, request: web.Request) -> web.Response:
        self.unhandled_routes.append(f"{request.method} {request.path}")
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    @property
    def unauthorized_requests(self) -> list[RecordedRequest]:
        """Bot routes called without `Authorization: Bot <token>` (webhook/callback routes need none)."""
        public = ("/api/v10/webhooks/", "/api/v10/interactions/")
        expected = f"Bot {self.token}"
        return [r for r in self.requests if not r.path.startswith(public) and r.authorization != expected]

    # Helpers ------------------------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> FakeChannel:
        channel = self.world.get_channel(request.match_info["channel_id"])
        self._require(channel, VIEW_CHANNEL)
        return channel

    def _require(self, channel: FakeChannel, bits: int) -> None:
        if channel.type == DM or channel.guild_id is None:
            return
        granted = self.world.permissions(self.world.guilds[channel.guild_id], self.world.bot)
        if granted & bits != bits:
            raise ApiError(403, 50013, "Missing Permissions")

    def _message(self, request: web.Request) -> tuple[FakeChannel, FakeMessage]:
        channel = self._channel(request)
        return channel, self.world.get_message(channel, request.match_info["message_id"])

    def _emoji(self, request: web.Request) -> str:
        return unquote(request.match_info["emoji"])

    def _render(self, message: FakeMessage) -> web.Response:
        return json_response(self.world.render(message))

    # Users, gateway, application ----------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        me = payloads.user_payload(self.world.bot) | {"verified": True, "mfa_enabled": False, "flags": 0}
        return json_response(me)

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(payloads.user_payload(self.world.get_user(request.match_info["user_id"])))

    async def create_dm(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        user = self.world.get_user(body.get("recipient_id", 0))
        return json_response(payloads.channel_payload(self.world.dm_channel(user)))

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway.url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {
            "total": 1000,
            "remaining": 1000 - self.gateway.identify_count,
            "reset_after": 0,
            "max_concurrency": 1,
        }
        return json_response({"url": self.gateway.url, "shards": 1, "session_start_limit": limit})

    async def get_application(self, request: web.Request) -> web.Response:
        world = self.world
        return json_response(
            {
                "id": str(world.application_id),
                "name": world.bot.name,
                "icon": None,
                "description": "",
                "summary": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": payloads.user_payload(world.owner),
                "bot": payloads.user_payload(world.bot),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "approximate_guild_count": len(world.guilds),
            }
        )

    # Application commands -----------------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["app_id"] != str(self.world.application_id):
            raise unknown("application")
        guild_id = request.match_info.get("guild_id")
        return self.world.get_guild(guild_id).id if guild_id else None

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.world.commands.get(self._command_scope(request), []))

    async def get_command(self, request: web.Request) -> web.Response:
        commands = self.world.commands.get(self._command_scope(request), [])
        command = next((c for c in commands if c["id"] == request.match_info["command_id"]), None)
        if command is None:
            raise unknown("application command")
        return json_response(command)

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite: ids survive for commands whose (type, name) already existed, like Discord's."""
        scope = self._command_scope(request)
        body, _ = await read_body(request)
        check_commands(body)
        previous = {(c.get("type", 1), c["name"]): c["id"] for c in self.world.commands.get(scope, [])}
        stored = []
        for command in body:
            kind = command.get("type", 1)
            command_id = previous.get((kind, command["name"])) or str(self.world.snowflakes.next())
            entry = {
                "id": command_id,
                "application_id": str(self.world.application_id),
                "version": str(self.world.snowflakes.next()),
                "type": kind,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
            } | command
            if entry["default_member_permissions"] is not None:  # Discord answers with a string
                entry["default_member_permissions"] = str(int(entry["default_member_permissions"]))
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self.world.commands[scope] = stored
        self.world.touch()
        return json_response(stored)

    # Interactions -------------------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self.responder.lookup(
            request.match_info["token"], interaction_id=request.match_info["interaction_id"]
        )
        body, uploads = await read_body(request)
        response = self.responder.callback(interaction, body, uploads)
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response(response)
        return no_content()

    def _webhook_interaction(self, request: web.Request) -> FakeInteraction:
        if request.match_info["app_id"] != str(self.world.application_id):
            raise unknown("webhook")
        return self.responder.lookup(request.match_info["token"])

    async def followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        body, uploads = await read_body(request)
        message = self.responder.followup(interaction, body, uploads)
        if request.query.get("wait") in ("1", "true", "True"):
            return self._render(message)
        return no_content()

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        return self._render(self.responder.message(interaction, request.match_info["message_id"]))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        message = self.responder.message(interaction, request.match_info["message_id"])
        body, uploads = await read_body(request)
        return self._render(self.responder.edit(message, body, uploads))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        self.world.delete_message(self.responder.message(interaction, request.match_info["message_id"]))
        return no_content()

    # Channels and messages ----------------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(payloads.channel_payload(self._channel(request)))

    async def typing(self, request: web.Request) -> web.Response:
        self._require(self._channel(request), SEND_MESSAGES)
        return no_content()

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self._require(channel, READ_HISTORY)
        limit = min(int(request.query.get("limit", 50)), 100)
        visible = [m for m in self.world.channel_messages[channel.id] if not m.deleted and not m.ephemeral]
        if "before" in request.query:
            visible = [m for m in visible if m.id < int(request.query["before"])]
        if "after" in request.query:
            visible = [m for m in visible if m.id > int(request.query["after"])][:limit]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([self.world.render(m) for m in newest_first])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        body, uploads = await read_body(request)
        self._require(channel, SEND_MESSAGES | (ATTACH_FILES if uploads else 0))
        if channel.type == DM and channel.recipient is not None and not channel.recipient.dms_open:
            raise ApiError(403, 50007, "Cannot send messages to this user")
        flags = body.pop("flags", 0) & ((1 << 2) | (1 << 12) | (1 << 15))
        message = self.world.create_message(channel, self.world.bot, body, uploads, flags=flags)
        return self._render(message)

    async def get_message(self, request: web.Request) -> web.Response:
        _, message = self._message(request)
        return self._render(message)

    async def edit_message(self, request: web.Request) -> web.Response:
        _, message = self._message(request)
        if message.author is not self.world.bot:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        body, uploads = await read_body(request)
        return self._render(self.responder.edit(message, body, uploads))

    async def delete_message(self, request: web.Request) -> web.Response:
        _, message = self._message(request)
        if message.author is not self.world.bot:
            self._require(self.world.get_channel(message.channel_id), MANAGE_MESSAGES)
        self.world.delete_message(message)
        return no_content()

    # Reactions ----------------------------------------------------------------------------------------

    async def add_reaction(self, request: web.Request) -> web.Response:
        channel, message = self._message(request)
        emoji = self._emoji(request)
        if emoji not in message.reactions:
            self._require(channel, ADD_REACTIONS | READ_HISTORY)
        self.world.add_reaction(message, self.world.bot, emoji)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        channel, message = self._message(request)
        target = request.match_info["user_id"]
        user = self.world.bot if target == "@me" else self.world.get_user(target)
        if user is not self.world.bot:
            self._require(channel, MANAGE_MESSAGES)
        self.world.remove_reaction(message, user, self._emoji(request))
        return no_content()

    async def reaction_users(self, request: web.Request) -> web.Response:
        _, message = self._message(request)
        user_ids = message.reactions.get(self._emoji(request), [])
        return json_response([payloads.user_payload(self.world.users[u]) for u in user_ids])

    async def clear_reactions(self, request: web.Request) -> web.Response:
        channel, message = self._message(request)
        self._require(channel, MANAGE_MESSAGES)
        for emoji, user_ids in list(message.reactions.items()):
            for user_id in list(user_ids):
                self.world.remove_reaction(message, self.world.users[user_id], emoji)
        return no_content()

    # Guilds -------------------------------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self.world.get_guild(request.match_info["guild_id"])
        if self.world.bot.id not in guild.members:
            raise unknown("guild")
        data = payloads.guild_payload(guild, [])
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "large"):
            data.pop(key)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self.world.get_guild(request.match_info["guild_id"])
        return json_response([payloads.channel_payload(c) for c in guild.channels.values()])

    async def get_roles(self, request: web.Request) -> web.Response:
        guild = self.world.get_guild(request.match_info["guild_id"])
        return json_response([payloads.role_payload(r) for r in guild.roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.world.get_guild(request.match_info["guild_id"])
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise unknown("member")
        return json_response(payloads.member_payload(member))

    # Attachments --------------------------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.Response:
        attachment = self.world.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.world.attachment_downloads[attachment.id] = (
            self.world.attachment_downloads.get(attachment.id, 0) + 1
        )
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )
