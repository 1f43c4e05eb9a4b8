"""The JSON gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatches.

A *session* (what READY's `session_id` names) outlives its websocket: while the bot reconnects, events
are numbered and buffered, and a RESUME replays the ones after the client's last sequence number, as
Discord does. A clean close (1000/1001) ends the session; any other loss keeps it resumable for
`resume_window_s`. Transport compression is `zlib-stream` (one deflate stream per connection, every
payload ending in a Z_SYNC_FLUSH), which is what discord.py asks for unless `zstandard` is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakediscord import payloads
from tests.fakediscord.models import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    FakeInteraction,
    FakeMessage,
)
from tests.fakediscord.world import EventData, World

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

# Opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

# Close codes (Discord's).
UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED, ALREADY_AUTHENTICATED = 4001, 4002, 4003, 4005
INVALID_API_VERSION, INVALID_INTENTS, DISALLOWED_INTENTS = 4012, 4013, 4014


@dataclass(frozen=True)
class _Close:
    code: int
    message: str


class Connection:
    """One websocket: an ordered outbox drained by a writer task that compresses when asked to."""

    def __init__(self, ws: web.WebSocketResponse, *, zlib_stream: bool) -> None:
        self.ws = ws
        self.compressor = zlib.compressobj() if zlib_stream else None
        self.outbox: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self.session: Session | None = None
        #: The code the fake closed with; aiohttp reports 1000 for any close the server starts.
        self.server_close_code: int | None = None
        self.writer = asyncio.create_task(self._write(), name="fakediscord-gateway-writer")

    def send(self, payload: dict[str, Any]) -> None:
        self.outbox.put_nowait(payload)

    async def _write(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, _Close):
                await self.ws.close(code=item.code, message=item.message.encode())
                return
            text = json.dumps(item, separators=(",", ":"))
            try:
                if self.compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self.compressor.compress(text.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                return  # the socket closed under us; the reader notices and detaches the session

    async def close(self, code: int, message: str = "") -> None:
        """Close after what is already queued has been sent, so a close never overtakes a payload."""
        self.server_close_code = code
        if self.writer.done():
            await self.ws.close(code=code, message=message.encode())
            return
        self.outbox.put_nowait(_Close(code, message))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.writer)

    async def stop(self) -> None:
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer


class Session:
    """A gateway session: identity, intents, sequence numbers and the replay buffer."""

    def __init__(self, *, token: str, intents: int, shard: tuple[int, int] | None, buffer_size: int) -> None:
        self.id = secrets.token_hex(16)
        self.token = token
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.buffer: deque[dict[str, Any]] = deque(maxlen=buffer_size)
        self.connection: Connection | None = None
        self.ended = False
        self.disconnected_at: float | None = None
        self.presence: dict[str, Any] | None = None
        self.created_at = time.monotonic()

    def covers(self, guild_id: int | None) -> bool:
        """Whether this session's shard receives events of `guild_id` (DMs go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == ((guild_id >> 22) % count if guild_id is not None else 0)

    def send_dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.buffer.append(payload)
        if self.connection is not None:
            self.connection.send(payload)


class Gateway:
    """Accepts gateway websockets and fans world events out to the sessions entitled to them."""

    def __init__(
        self,
        world: World,
        *,
        problems: list[str],
        heartbeat_interval_ms: int,
        allowed_privileged_intents: int,
        resume_window_s: float = 120.0,
        buffer_size: int = 5000,
    ) -> None:
        self.world = world
        self.problems = problems
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_privileged_intents = allowed_privileged_intents
        self.resume_window_s = resume_window_s
        self.buffer_size = buffer_size
        self.url = ""
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeat_count = 0

    # Delivery -----------------------------------------------------------------------------------------

    def live_sessions(self) -> list[Session]:
        now = time.monotonic()
        for session in self.sessions.values():
            lost = session.connection is None and session.disconnected_at is not None
            if lost and now - session.disconnected_at > self.resume_window_s:  # type: ignore[operator]
                session.ended = True
        return [s for s in self.sessions.values() if not s.ended]

    def connected_session(self, guild_id: int | None) -> Session | None:
        """The newest identified, connected session whose shard covers `guild_id`."""
        candidates = [s for s in self.live_sessions() if s.connection is not None and s.covers(guild_id)]
        return max(candidates, key=lambda s: s.created_at, default=None)

    def dispatch(self, event: str, data: EventData, *, guild_id: int | None, intent: int | None) -> None:
        for session in self.live_sessions():
            if session.covers(guild_id) and (intent is None or session.intents & intent):
                session.send_dispatch(event, data(session.intents) if callable(data) else data)

    def dispatch_message(self, event: str, message: FakeMessage) -> None:
        """MESSAGE_CREATE/UPDATE; content stripped for sessions without MESSAGE_CONTENT, as Discord does."""
        bot_id = self.world.bot.id
        intent = INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES

        def render(intents: int) -> dict[str, Any]:
            data = self.world.render(message, with_member=True)
            private = message.guild_id is None or message.author.id == bot_id or bot_id in message.mention_ids
            if not private and not intents & INTENT_MESSAGE_CONTENT:
                data |= {"content": "", "embeds": [], "attachments": [], "components": []}
            return data

        self.dispatch(event, render, guild_id=message.guild_id, intent=intent)

    def dispatch_interaction(self, interaction: FakeInteraction) -> None:
        """INTERACTION_CREATE goes to one session only (no intent needed), the newest connected one."""
        guild_id = interaction.guild.id if interaction.guild else None
        session = self.connected_session(guild_id)
        if session is None:
            raise RuntimeError("no bot is connected to the fake gateway: start the bot before driving it")
        session.send_dispatch("INTERACTION_CREATE", interaction.payload)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to every connection: the client closes and RESUMEs."""
        for connection in list(self.connections):
            connection.send({"op": RECONNECT, "d": None})

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every websocket with `code` (4000 keeps sessions resumable, 1000 ends them)."""
        for connection in list(self.connections):
            await connection.close(code)

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.close(1001, "fake discord is shutting down")
            await connection.stop()

    # The websocket ------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        connection = Connection(ws, zlib_stream=compress == "zlib-stream")
        self.connections.add(connection)
        try:
            if request.query.get("v") != "10" or request.query.get("encoding", "json") != "json":
                await self._fail(
                    connection, INVALID_API_VERSION, f"gateway query {dict(request.query)}: need v=10 json"
                )
                return ws
            if compress not in (None, "zlib-stream"):
                message = (
                    f"gateway compress={compress!r}: the fake speaks zlib-stream only (zstandard installed?)"
                )
                await self._fail(connection, DECODE_ERROR, message)
                return ws
            connection.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    await self._fail(connection, DECODE_ERROR, f"gateway got a {message.type.name} frame")
                    break
                if not await self._receive(connection, message.data):
                    break
        finally:
            self._detach(connection, connection.server_close_code or ws.close_code)
            await connection.stop()
            self.connections.discard(connection)
        return ws

    async def _receive(self, connection: Connection, text: str) -> bool:
        try:
            payload = json.loads(text)
            op, data = payload["op"], payload.get("d")
        except (ValueError, KeyError, TypeError):
            await self._fail(connection, DECODE_ERROR, f"gateway got undecodable payload {text[:200]!r}")
            return False
        if op == HEARTBEAT:
            self.heartbeat_count += 1
            connection.send({"op": HEARTBEAT_ACK})
            return True
        handlers: dict[int, Callable[[Connection, Any], Any]] = {
            IDENTIFY: self._identify,
            RESUME: self._resume,
            PRESENCE_UPDATE: self._presence,
            REQUEST_GUILD_MEMBERS: self._request_members,
            VOICE_STATE_UPDATE: self._presence,
        }
        handler = handlers.get(op)
        if handler is None:
            await self._fail(connection, UNKNOWN_OPCODE, f"gateway got unknown opcode {op}")
            return False
        if connection.session is None and op not in (IDENTIFY, RESUME):
            await self._fail(connection, NOT_AUTHENTICATED, f"gateway got opcode {op} before IDENTIFY")
            return False
        return await handler(connection, data) is not False

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> bool:
        if connection.session is not None:
            await self._fail(connection, ALREADY_AUTHENTICATED, "gateway got a second IDENTIFY")
            return False
        intents = data.get("intents")
        if not isinstance(intents, int):
            await self._fail(connection, INVALID_INTENTS, "IDENTIFY without intents")
            return False
        refused = intents & PRIVILEGED_INTENTS & ~self.allowed_privileged_intents
        if refused:
            await self._fail(
                connection, DISALLOWED_INTENTS, f"privileged intents {refused:#x} are not enabled"
            )
            return False
        shard = tuple(data["shard"]) if data.get("shard") else None
        # A new identity supersedes sessions nobody is connected to any more.
        for old in self.sessions.values():
            if old.connection is None:
                old.ended = True
        session = Session(
            token=data.get("token", ""), intents=intents, shard=shard, buffer_size=self.buffer_size
        )  # type: ignore[arg-type]
        if data.get("presence"):
            session.presence = data["presence"]
        self.sessions[session.id] = session
        self._attach(session, connection)
        self.identify_count += 1
        session.send_dispatch("READY", self._ready_payload(session))
        for guild in self.world.guilds.values():
            if self.world.bot.id in guild.members and session.covers(guild.id) and intents & INTENT_GUILDS:
                session.send_dispatch("GUILD_CREATE", self.world.guild_create_payload(guild, intents))
        self.world.touch()
        return True

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> bool:
        session = self.sessions.get(data.get("session_id", ""))
        if session is None or session not in self.live_sessions():
            connection.send({"op": INVALID_SESSION, "d": False})
            return True
        if session.connection is not None:
            old = session.connection
            session.connection = None
            await old.close(4009, "session resumed elsewhere")
        last = data.get("seq") or 0
        self._attach(session, connection)
        for payload in session.buffer:
            if payload["s"] > last:
                connection.send(payload)
        session.send_dispatch("RESUMED", {})
        self.resume_count += 1
        self.world.touch()
        return True

    async def _presence(self, connection: Connection, data: dict[str, Any]) -> bool:
        if connection.session is not None:
            connection.session.presence = data
        return True

    async def _request_members(self, connection: Connection, data: dict[str, Any]) -> bool:
        session = connection.session
        assert session is not None
        guild_ids = data["guild_id"] if isinstance(data["guild_id"], list) else [data["guild_id"]]
        for guild_id in guild_ids:
            guild = self.world.guilds.get(int(guild_id))
            members = list(guild.members.values()) if guild else []
            if not session.intents & INTENT_GUILD_MEMBERS:
                self.problems.append("REQUEST_GUILD_MEMBERS without the GUILD_MEMBERS intent")
                members = []
            if data.get("user_ids"):
                wanted = {int(u) for u in data["user_ids"]}
                members = [m for m in members if m.user.id in wanted]
            query = (data.get("query") or "").lower()
            members = [m for m in members if m.user.name.lower().startswith(query)]
            if data.get("limit"):
                members = members[: data["limit"]]
            chunk = {
                "guild_id": str(guild_id),
                "members": [payloads.member_payload(m) for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce"):
                chunk["nonce"] = data["nonce"]
            session.send_dispatch("GUILD_MEMBERS_CHUNK", chunk)
        return True

    def _ready_payload(self, session: Session) -> dict[str, Any]:
        bot = payloads.user_payload(self.world.bot) | {"verified": True, "mfa_enabled": False, "flags": 0}
        guilds = [
            {"id": str(guild.id), "unavailable": True}
            for guild in self.world.guilds.values()
            if self.world.bot.id in guild.members and session.covers(guild.id)
        ]
        data: dict[str, Any] = {
            "v": 10,
            "user": bot,
            "guilds": guilds,
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.url,
            "application": {"id": str(self.world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "_trace": ["fakediscord"],
        }
        if session.shard is not None:
            data["shard"] = list(session.shard)
        return data

    def _attach(self, session: Session, connection: Connection) -> None:
        session.connection = connection
        session.disconnected_at = None
        connection.session = session

    def _detach(self, connection: Connection, close_code: int | None) -> None:
        session = connection.session
        if session is None or session.connection is not connection:
            return
        session.connection = None
        session.disconnected_at = time.monotonic()
        if close_code in (1000, 1001):
            session.ended = True
        self.world.touch()

    async def _fail(self, connection: Connection, code: int, problem: str) -> None:
        log.warning("fake gateway: %s", problem)
        self.problems.append(problem)
        await connection.close(code, problem[:120])
