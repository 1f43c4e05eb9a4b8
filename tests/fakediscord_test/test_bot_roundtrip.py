"""A real discord.py bot, in process, round-tripping through the fake's REST API and gateway."""

from __future__ import annotations

import io

import discord
import pytest
from PIL import Image

from tests.fakediscord import DriverError, FakeDiscord
from tests.fakediscord_test.conftest import Scene, StartBot


async def test_slash_command_reply_is_posted_and_seen_by_the_bot(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """A member runs /hello and sees the bot's public reply; the bot's cache got it through the gateway."""
    bot = await start_bot()
    await server.wait_for_commands("hello")

    interaction = await server.invoke(scene.alice, scene.channel, "hello", {"name": "Bob"})

    reply = interaction.original
    assert reply is not None and reply.content == "hello Bob" and not reply.ephemeral
    assert server.messages(scene.channel) == [reply]
    seen = await server.wait_for(lambda: [m for m in bot.seen_messages if m.id == reply.id])
    assert seen[0].interaction_metadata is not None
    assert seen[0].interaction_metadata.user.id == scene.alice.id


async def test_ephemeral_reply_never_reaches_the_gateway(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """An ephemeral answer is seen by its member only: flagged 64 and absent from the bot's gateway feed."""
    bot = await start_bot()
    interaction = await server.invoke(scene.alice, scene.channel, "secret")
    await server.invoke(scene.alice, scene.channel, "hello", {"name": "after"})
    await server.wait_for(lambda: [m for m in bot.seen_messages if m.content == "hello after"])

    assert interaction.ephemeral and interaction.original is not None
    assert interaction.original.content == "only you can see this"
    assert interaction.original.attachments[0].data == b"private"
    assert all(m.id != interaction.original.id for m in bot.seen_messages)
    assert server.messages(scene.channel, include_ephemeral=False)[0].content == "hello after"


async def test_command_in_dm_has_a_user_and_no_guild(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """A member can run a global command in the bot's DMs and gets the reply there."""
    await start_bot()
    dm = server.dm_channel(scene.alice)

    interaction = await server.invoke(scene.alice, dm, "hello", {"name": "dm"})

    assert "member" not in interaction.payload and interaction.payload["user"]["id"] == str(scene.alice.id)
    assert [m.content for m in server.messages(dm)] == ["hello dm"]


async def test_attachment_option_is_downloaded_and_answered_with_a_file(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """The bot reads the uploaded image and fills its "thinking" placeholder with a file in reply."""
    await start_bot()
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buffer, format="PNG")
    image = buffer.getvalue()

    interaction = await server.invoke(scene.alice, scene.channel, "echo", {"image": ("fox.png", image)})
    reply = await server.wait_for_reply(interaction)

    # The followup filled the deferred placeholder instead of posting a second message.
    assert interaction.response_type == 5 and interaction.followups == []
    assert reply is interaction.original and not reply.loading
    assert reply.content == f"{len(image)} bytes from fox.png"
    assert reply.attachments[0].data == image[::-1]
    uploaded = interaction.payload["data"]["resolved"]["attachments"]
    (attachment_id,) = uploaded
    assert uploaded[attachment_id]["width"] == 8
    assert server.attachment_downloads(int(attachment_id)) == 1


async def test_dynamic_button_works_across_client_restarts(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """A persistent button still answers after the bot restarts: the new instance edits the message."""
    first = await start_bot(instance=1)
    interaction = await server.invoke(scene.alice, scene.channel, "counter")
    message = interaction.original
    assert message is not None and message.custom_ids == ["counter:0"]

    await server.click(scene.alice, message, "counter:0")
    assert message.content == "count 1 (instance 1)" and message.custom_ids == ["counter:1"]

    await first.close()
    await start_bot(instance=2)
    assert server.gateway.identify_count == 2

    click = await server.click(scene.alice, message, "counter:1")

    assert click.response_type == 7 and click.original is message
    assert message.content == "count 2 (instance 2)"
    assert [version.content for version in message.history] == ["count 0", "count 1 (instance 1)"]


async def test_reaction_reaches_the_listener(server: FakeDiscord, scene: Scene, start_bot: StartBot) -> None:
    """A member's reaction makes the bot answer, and the bot's own reaction is recorded on the message."""
    await start_bot()
    interaction = await server.invoke(scene.alice, scene.channel, "hello", {"name": "react to me"})
    assert interaction.original is not None

    await server.react(scene.alice, interaction.original, "👍")
    answer = await server.wait_for_message(scene.channel, lambda m: m.content.endswith("(noted)"))

    assert answer.content == "saw 👍 from alice (noted)"
    assert [a.data for a in answer.attachments] == [b"receipt"]  # an edit without attachments keeps them
    assert interaction.original.reactions == {"👍": [scene.alice.id], "✅": [server.bot.id]}


async def test_subcommand_respects_default_and_runtime_permissions(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """Only a member with Manage Server sees /quota grant; an override still meets the bot's own check."""
    await start_bot()
    schema = server.command("quota")
    assert schema is not None and schema["default_member_permissions"] == str(1 << 5)

    granted = await server.invoke(
        scene.moderator, scene.channel, "quota grant", {"member": scene.alice, "amount": 5}
    )
    assert granted.original is not None and granted.original.content == "granted 5 to alice"

    with pytest.raises(DriverError, match="cannot see /quota"):
        await server.invoke(scene.alice, scene.channel, "quota grant", {"member": scene.alice, "amount": 5})
    refused = await server.invoke(
        scene.alice,
        scene.channel,
        "quota grant",
        {"member": scene.alice, "amount": 5},
        check_permissions=False,
    )
    assert refused.ephemeral and refused.original is not None
    assert refused.original.content == "You need Manage Server to grant credits."


async def test_modal_is_shown_and_submitted(server: FakeDiscord, scene: Scene, start_bot: StartBot) -> None:
    """A member opens the feedback form, types into it, and gets a private thank-you."""
    await start_bot()
    opened = await server.invoke(scene.alice, scene.channel, "feedback")
    assert opened.modal is not None and opened.modal["title"] == "Feedback"

    submitted = await server.submit_modal(scene.alice, opened, {"feedback:text": "lovely"})

    assert submitted.original is not None and submitted.original.content == "thanks for: lovely"
    assert submitted.ephemeral


async def test_edits_keep_and_replace_attachments(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """Progress edits keep the listed attachments and drop the unlisted ones, like a finished render."""
    bot = await start_bot()
    interaction = await server.invoke(scene.alice, scene.channel, "render")
    message = await server.wait_for_reply(interaction, lambda m: m.edit_count == 3)
    fetched = await server.wait_for(lambda: bot.fetched)

    assert [[a.filename for a in version.attachments] for version in message.history] == [
        [],
        ["preview.png"],
        ["preview.png", "final.png"],
    ]
    assert [a.filename for a in message.attachments] == ["final.png"]
    assert message.attachments[0].data == b"final" and message.content == "done"
    (note,) = interaction.followups
    assert note.ephemeral and note.deleted and note.content == "temporary note"
    assert isinstance(fetched[0], discord.InteractionMessage) and fetched[0].id == message.id


async def test_autocomplete_and_select_menu(server: FakeDiscord, scene: Scene, start_bot: StartBot) -> None:
    """Typing in an option shows the bot's suggestions; choosing in a select menu gets an answer."""
    await start_bot()

    choices = await server.autocomplete(scene.alice, scene.channel, "style", {"style": "v"}, focused="style")
    interaction = await server.invoke(scene.alice, scene.channel, "style", {"style": "vivid"})
    assert interaction.original is not None
    picked = await server.select(scene.alice, interaction.original, "style:pick", ["raw"])

    assert choices == [{"name": "Vivid", "value": "vivid"}]
    assert interaction.original.content == "style vivid"
    assert picked.original is not None and picked.original.content == "picked raw"


async def test_fetch_routes_build_discord_objects(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """The bot can fetch the guild, channel, member and user, and discord.py parses what it gets."""
    bot = await start_bot()

    guild = await bot.fetch_guild(scene.guild.id)
    channel = await bot.fetch_channel(scene.channel.id)
    member = await guild.fetch_member(scene.moderator.id)
    user = await bot.fetch_user(scene.alice.id)

    assert (guild.name, getattr(channel, "name", None), user.name) == ("Atelier Test", "art", "alice")
    assert [role.name for role in member.roles] == ["@everyone", "mod-role"]


async def test_late_acknowledgement_fails_the_interaction(
    scene: Scene, server: FakeDiscord, start_bot: StartBot
) -> None:
    """A bot slower than the acknowledgement window gets "Unknown interaction", as on Discord."""
    server.responder.ack_timeout_s = 0.2
    bot = await start_bot()

    interaction = await server.invoke(scene.alice, scene.channel, "slow", {"seconds": 0.5})
    await server.wait_for(lambda: bot.errors)

    assert interaction.failed and interaction.original is None
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062


async def test_resume_replays_events_missed_while_disconnected(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """After a dropped connection the bot resumes its session and still sees a message posted meanwhile."""
    bot = await start_bot(intents=discord.Intents.default() | discord.Intents(message_content=True))
    session_ids = set(server.gateway.sessions)

    await server.drop_connections(4000)
    posted = await server.post_message(scene.alice, scene.channel, "while you were away")
    seen = await server.wait_for(lambda: [m for m in bot.seen_messages if m.id == posted.id])

    assert seen[0].content == "while you were away"
    assert server.gateway.resume_count == 1 and set(server.gateway.sessions) == session_ids


async def test_message_content_is_stripped_without_the_intent(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """Without the message-content intent the bot sees members' messages empty, unless it is mentioned."""
    bot = await start_bot()

    plain = await server.post_message(scene.alice, scene.channel, "hello there")
    mention = await server.post_message(scene.alice, scene.channel, f"{server.bot.mention} hi")
    await server.wait_for(lambda: len(bot.seen_messages) == 2)

    assert [(m.id, m.content) for m in bot.seen_messages] == [
        (plain.id, ""),
        (mention.id, f"<@{server.bot.id}> hi"),
    ]


async def test_reconnect_request_resumes_and_commands_keep_working(
    server: FakeDiscord, scene: Scene, start_bot: StartBot
) -> None:
    """When Discord asks the bot to reconnect (op 7), it resumes and members notice nothing."""
    await start_bot()

    await server.request_reconnect()
    await server.wait_for(lambda: server.gateway.resume_count == 1, description="the bot to resume")
    interaction = await server.invoke(scene.alice, scene.channel, "hello", {"name": "still here"})

    assert interaction.original is not None and interaction.original.content == "hello still here"
    assert server.gateway.identify_count == 1
