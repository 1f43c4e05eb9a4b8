"""The driver only lets tests do what a member could do, and builds interactions from the synced schema."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.fakediscord import DriverError, FakeDiscord
from tests.fakediscord.commands import CommandBuilder
from tests.fakediscord_test.conftest import Scene

COMMANDS = [
    {
        "name": "imagine",
        "description": "Make four images.",
        "options": [
            {"type": 3, "name": "prompt", "description": "What to draw.", "required": True, "max_length": 20},
            {"type": 4, "name": "seed", "description": "Seed.", "min_value": 0, "max_value": 9},
            {
                "type": 3,
                "name": "style",
                "description": "Style.",
                "choices": [{"name": "Raw", "value": "raw"}],
            },
            {"type": 11, "name": "image", "description": "Start image."},
            {"type": 7, "name": "where", "description": "Channel.", "channel_types": [0]},
        ],
    },
    {
        "name": "quota",
        "description": "Credits.",
        "options": [
            {
                "type": 1,
                "name": "grant",
                "description": "Give credits.",
                "options": [
                    {"type": 6, "name": "member", "description": "Who.", "required": True},
                    {"type": 4, "name": "amount", "description": "How many.", "required": True},
                ],
            }
        ],
    },
]


@pytest.fixture
async def synced(server: FakeDiscord) -> None:
    """Register the commands the way a bot's tree.sync() does."""
    headers = {"Authorization": f"Bot {server.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        url = f"{server.api_base}/applications/{server.application_id}/commands"
        async with http.put(url, json=COMMANDS) as response:
            assert response.status == 200


def build(server: FakeDiscord, scene: Scene, path: str, values: dict[str, Any]) -> dict[str, Any]:
    data, _ = CommandBuilder(server.world, scene.alice, scene.channel).build(path, values)
    return data


@pytest.mark.parametrize(
    ("path", "values", "complaint"),
    [
        ("draw", {"prompt": "x"}, "/draw is not registered here"),
        ("imagine", {}, "needs option(s) ['prompt']"),
        ("imagine", {"prompt": "x", "size": 3}, "has no option(s) ['size']"),
        ("imagine", {"prompt": 3}, "is a string"),
        ("imagine", {"prompt": "x" * 21}, "must be 0 to 20 characters"),
        ("imagine", {"prompt": "x", "seed": 10}, "must be at most 9"),
        ("imagine", {"prompt": "x", "seed": True}, "is an integer"),
        ("imagine", {"prompt": "x", "style": "vivid"}, "must be one of ['raw']"),
        ("imagine", {"prompt": "x", "image": "not bytes"}, "takes bytes"),
        ("quota", {}, "is a group; invoke one of its sub-commands ['grant']"),
        ("quota take", {}, "'take' is not a sub-command here"),
    ],
)
async def test_invocation_a_member_could_not_send_is_refused(
    server: FakeDiscord, scene: Scene, synced: None, path: str, values: dict[str, Any], complaint: str
) -> None:
    """The driver names the mistake instead of sending Discord-impossible data to the bot."""
    with pytest.raises(DriverError, match=re.escape(complaint)):
        await server.invoke(scene.alice, scene.channel, path, values)
    assert server.world.interactions == {}


async def test_subcommand_options_nest_and_resolve_the_member(
    server: FakeDiscord, scene: Scene, synced: None
) -> None:
    """A sub-command's options arrive nested under it, with the chosen member resolved."""
    data = build(server, scene, "quota grant", {"member": scene.moderator, "amount": 3})

    (grant,) = data["options"]
    assert (grant["name"], grant["type"]) == ("grant", 1)
    assert grant["options"] == [
        {"name": "member", "type": 6, "value": str(scene.moderator.id)},
        {"name": "amount", "type": 4, "value": 3},
    ]
    assert data["resolved"]["users"][str(scene.moderator.id)]["username"] == "mod"
    assert int(data["resolved"]["members"][str(scene.moderator.id)]["permissions"]) & (1 << 5)


async def test_attachment_option_is_uploaded_and_served(
    server: FakeDiscord, scene: Scene, synced: None
) -> None:
    """An attached file gets an ephemeral attachment whose URL serves the exact bytes."""
    data = build(server, scene, "imagine", {"prompt": "fox", "image": ("start.webp", b"RIFF0000WEBPdata")})

    (attachment,) = data["resolved"]["attachments"].values()
    assert attachment["filename"] == "start.webp" and attachment["ephemeral"] is True
    async with aiohttp.ClientSession() as http, http.get(attachment["url"]) as response:
        assert await response.read() == b"RIFF0000WEBPdata"
        assert response.content_type == "image/webp"


async def test_channel_option_checks_channel_types(server: FakeDiscord, scene: Scene, synced: None) -> None:
    """A channel option limited to text channels refuses a DM channel."""
    with pytest.raises(DriverError, match="accepts channel types"):
        build(server, scene, "imagine", {"prompt": "x", "where": server.dm_channel(scene.alice)})


async def test_nsfw_command_is_hidden_outside_nsfw_channels(server: FakeDiscord, scene: Scene) -> None:
    """An age-restricted command cannot be run in a channel that is not marked NSFW."""
    server.world.commands[None] = [{**COMMANDS[0], "id": "1", "nsfw": True}]
    spicy = server.create_text_channel(scene.guild, "spicy", nsfw=True)
    builder = CommandBuilder(server.world, scene.alice, scene.channel)

    with pytest.raises(DriverError, match="age-restricted"):
        builder.check_visible(builder.find("imagine"))
    CommandBuilder(server.world, scene.alice, spicy).check_visible(builder.find("imagine"))


async def test_components_must_exist_and_be_enabled(server: FakeDiscord, scene: Scene) -> None:
    """Clicking a button that is not on the message, or is disabled, is refused with the ids present."""
    row = {
        "type": 1,
        "components": [{"type": 2, "style": 1, "label": "U1", "custom_id": "job:1:u1", "disabled": True}],
    }
    message = server.world.create_message(
        scene.channel, server.bot, {"content": "grid", "components": [row]}, []
    )

    with pytest.raises(DriverError, match=r"custom ids are \['job:1:u1'\]"):
        await server.click(scene.alice, message, "job:1:u2")
    with pytest.raises(DriverError, match="disabled"):
        await server.click(scene.alice, message, "job:1:u1")
    assert message.button("U1").disabled


async def test_wait_for_timeout_says_what_was_awaited(server: FakeDiscord, scene: Scene) -> None:
    """A wait that times out names the condition and the last messages, to make failures readable."""
    await server.post_message(scene.alice, scene.channel, "is anyone there?")

    with pytest.raises(TimeoutError, match=r"the grid.*alice: 'is anyone there\?'"):
        await server.wait_for(lambda: False, timeout=0.05, description="the grid")
