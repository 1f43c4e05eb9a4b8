"""The fake refuses what Discord refuses, in Discord's JSON error shapes (no bot needed: raw HTTP)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakediscord import FakeDiscord
from tests.fakediscord.models import APPLICATION_COMMAND
from tests.fakediscord_test.conftest import Scene

COMMAND = {
    "name": "imagine",
    "description": "Make four images.",
    "options": [
        {"type": 3, "name": "prompt", "description": "What to draw.", "required": True},
    ],
}


@pytest.fixture
async def http(server: FakeDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession(server.api_base + "/", headers=headers) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, path.lstrip("/"), json=body) as response:
        if response.status == 204:
            return 204, None
        assert response.headers["Content-Type"] == "application/json"  # discord.py compares it verbatim
        return response.status, await response.json()


async def test_unknown_route_is_a_json_404_and_is_recorded(
    server: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    """A route the fake does not model answers like Discord and shows up in `unhandled_routes`."""
    status, body = await call(http, "GET", "/guilds/1/audit-logs")

    assert (status, body["code"]) == (404, 0)
    assert server.unhandled_routes == ["GET /api/v10/guilds/1/audit-logs"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": ""}, 50006),
        ({"content": "x" * 2001}, 50035),
        ({"embeds": [{"title": "t"}] * 11}, 50035),
        (
            {
                "components": [
                    {"type": 1, "components": [{"type": 2, "style": 1, "label": "a", "custom_id": "a"}]}
                ]
                * 6
            },
            50035,
        ),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [{"type": 2, "style": 1, "label": "a", "custom_id": "same"}] * 2,
                    }
                ]
            },
            50035,
        ),
        ({"components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "no id"}]}]}, 50035),
        (
            {"components": [{"type": 1, "components": [{"type": 2, "style": 1, "custom_id": "x" * 101}]}]},
            50035,
        ),
    ],
    ids=[
        "empty",
        "long-content",
        "11-embeds",
        "6-rows",
        "duplicate-id",
        "button-without-id",
        "long-custom-id",
    ],
)
async def test_invalid_message_is_refused(
    server: FakeDiscord, scene: Scene, http: aiohttp.ClientSession, body: dict[str, Any], code: int
) -> None:
    """A message Discord would reject gets the same 400 and is not posted."""
    status, error = await call(http, "POST", f"/channels/{scene.channel.id}/messages", body)

    assert (status, error["code"]) == (400, code)
    assert server.messages(scene.channel) == []


async def test_bot_without_send_permission_is_forbidden(
    server: FakeDiscord, scene: Scene, http: aiohttp.ClientSession
) -> None:
    """Where the bot's roles lack Send Messages, posting fails with "Missing Permissions"."""
    scene.guild.everyone.permissions &= ~(1 << 11)

    status, error = await call(http, "POST", f"/channels/{scene.channel.id}/messages", {"content": "hi"})

    assert (status, error["code"]) == (403, 50013)


async def test_dm_to_member_with_closed_dms_is_refused(
    server: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    """A member who closed DMs cannot be messaged: the bot gets 50007."""
    shy = server.create_user("shy", dms_open=False)
    _, channel = await call(http, "POST", "/users/@me/channels", {"recipient_id": str(shy.id)})

    status, error = await call(http, "POST", f"/channels/{channel['id']}/messages", {"content": "your image"})

    assert (status, error["code"]) == (403, 50007)


async def test_interaction_can_be_acknowledged_once(
    server: FakeDiscord, scene: Scene, http: aiohttp.ClientSession
) -> None:
    """A second callback is "already acknowledged"; a followup before any callback is "Unknown Webhook"."""
    interaction = server.world.new_interaction(
        type=APPLICATION_COMMAND, user=scene.alice, channel=scene.channel, name="imagine", data={}
    )
    callback = f"/interactions/{interaction.id}/{interaction.token}/callback"
    followup = f"/webhooks/{server.application_id}/{interaction.token}"

    early, unknown = await call(http, "POST", followup, {"content": "too early"})
    first, _ = await call(http, "POST", callback, {"type": 5})
    second, error = await call(http, "POST", callback, {"type": 4, "data": {"content": "again"}})

    assert (early, unknown["code"], first) == (404, 10015, 204)
    assert (second, error["code"]) == (400, 40060)
    assert interaction.original is not None and interaction.original.loading


@pytest.mark.parametrize(
    ("command", "field"),
    [
        ({**COMMAND, "name": "Imagine"}, "name"),
        ({**COMMAND, "description": ""}, "description"),
        (
            {**COMMAND, "options": [{"type": 3, "name": "a", "description": "a"}, {**COMMAND["options"][0]}]},
            "required",
        ),
        (
            {
                **COMMAND,
                "options": [
                    {"type": 4, "name": "n", "description": "n", "choices": [{"name": "x", "value": "x"}]}
                ],
            },
            "value",
        ),
    ],
    ids=["uppercase-name", "no-description", "required-after-optional", "choice-type"],
)
async def test_invalid_command_schema_is_refused(
    server: FakeDiscord, http: aiohttp.ClientSession, command: dict[str, Any], field: str
) -> None:
    """A command schema Discord would refuse at sync fails the same way and registers nothing."""
    status, error = await call(http, "PUT", f"/applications/{server.application_id}/commands", [command])

    assert (status, error["code"]) == (400, 50035)
    assert field in str(error["errors"])
    assert server.command_names() == []


async def test_resync_keeps_command_ids(server: FakeDiscord, http: aiohttp.ClientSession) -> None:
    """Syncing the same command again keeps its id, as Discord does, so old interactions stay valid."""
    path = f"/applications/{server.application_id}/commands"
    _, first = await call(http, "PUT", path, [COMMAND])
    _, second = await call(http, "PUT", path, [COMMAND, {**COMMAND, "name": "describe"}])

    assert first[0]["id"] == second[0]["id"] and second[1]["id"] != first[0]["id"]
    assert server.command_names() == ["describe", "imagine"]


async def test_gateway_refuses_privileged_intents_not_enabled() -> None:
    """A bot asking for message content when the portal does not allow it is closed with 4014."""
    async with FakeDiscord(allowed_privileged_intents=0) as server, aiohttp.ClientSession() as session:
        async with session.ws_connect(server.gateway_url + "?v=10&encoding=json&compress=zlib-stream") as ws:
            inflate = zlib.decompressobj()
            hello = inflate.decompress(await ws.receive_bytes())
            assert b'"op":10' in hello
            await ws.send_json({"op": 2, "d": {"token": server.token, "intents": 1 << 15, "properties": {}}})
            closing = await ws.receive()

        assert closing.data == 4014
        assert server.problems == ["privileged intents 0x8000 are not enabled"]
