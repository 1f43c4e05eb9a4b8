"""/vary and /upscale with an uploaded image: good images are queued, bad ones refused before any charge."""

from __future__ import annotations

import pytest

from bot.engine.types import JobKind
from tests.cogs.helpers import png_bytes, refusals, until


@pytest.fixture
def world(simcord_env):
    guild = simcord_env.create_guild()
    channel = guild.create_text_channel("art")
    alice = guild.add_member(simcord_env.create_user("alice"))
    return guild, channel, alice


def _message(channel, message_id):
    return next(m for m in channel.history() if m.id == message_id)


async def test_vary_an_upload_makes_a_grid_of_variations(simcord_env, services, world):
    """/vary with a PNG queues four variations at the model's size, in the image's aspect."""
    _guild, channel, alice = world
    result = await alice.slash(
        channel, "vary", image=("photo.png", png_bytes((300, 200))), prompt="a red door", strength="strong"
    )
    message = await until(simcord_env, lambda: next((m for m in channel.history() if m.attachments), None))
    job = await services.queue.job_for_message(message.id)
    assert job.kind is JobKind.VARY and job.request.prompt == "a red door"
    assert job.request.width > job.request.height
    assert job.request.strength == pytest.approx(0.7)
    assert "Accepted" in result.response.content and result.ephemeral


async def test_upscale_an_upload_doubles_its_size(simcord_env, services, world):
    """/upscale scale 2 makes an image twice as wide and tall."""
    _guild, channel, alice = world
    await alice.slash(channel, "upscale", image=("small.png", png_bytes((120, 80))), scale=2, mode="creative")
    message = await until(simcord_env, lambda: next((m for m in channel.history() if m.attachments), None))
    job = await services.queue.job_for_message(message.id)
    assert (job.request.width, job.request.height) == (240, 160)
    assert job.request.upscale_mode == "creative"


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        (("notes.txt", b"just some text, not a picture"), "not an image"),
        (("broken.png", png_bytes()[:60]), "image"),
    ],
)
async def test_bad_upload_is_refused_privately_and_costs_nothing(
    simcord_env, services, world, upload, expected
):
    """A non-image or a truncated file gets a private explanation; nothing is queued or charged."""
    guild, channel, alice = world
    result = await alice.slash(channel, "vary", image=upload)
    texts = [result.response.content if result.response else ""] + [f.content for f in result.followups]
    assert any(expected in text for text in texts), texts
    assert all(getattr(f, "ephemeral", True) for f in result.followups)
    assert len(refusals(simcord_env)) == 1
    assert not [m for m in channel.history() if m.attachments]
    balance = await services.credits.balance(guild.id, alice.id)
    assert balance.available == balance.allowance


async def test_oversized_upload_is_refused_before_download(simcord_env, services, settings, world):
    """An upload over the size limit is refused with the limit in the message."""
    _guild, channel, alice = world
    settings.engine.max_upload_bytes = 1000
    result = await alice.slash(
        channel, "upscale", image=("big.png", png_bytes((400, 400), (1, 2, 3)) + b"\0" * 2000)
    )
    texts = [result.response.content if result.response else ""] + [f.content for f in result.followups]
    assert any("the limit is" in text for text in texts), texts
    refusals(simcord_env)


async def test_upscale_past_the_size_cap_is_refused(simcord_env, services, settings, world):
    """A 4× upscale that would exceed the largest allowed side says so and suggests 2×."""
    _guild, channel, alice = world
    settings.engine.max_output_side = 1024
    result = await alice.slash(channel, "upscale", image=("wide.png", png_bytes((400, 300))), scale=4)
    texts = [result.response.content if result.response else ""] + [f.content for f in result.followups]
    assert any("1600×1200" in text and "scale 2" in text for text in texts), texts
    refusals(simcord_env)
