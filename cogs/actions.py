"""Starting jobs and acting on results, for slash commands, buttons and reactions alike.

An *origin* is where a request came from: an interaction (answer through it, refuse ephemerally) or a
reaction (answer in the channel, refuse by DM). Everything after that is the same code path, so a
button, a reaction and a slash command behave identically: the member who acted owns and pays for the
new job.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot import followups
from bot.engine.types import GenerationRequest, JobKind
from bot.errors import ImageRefused, ImagesGone, NotAllowed, PromptRefused
from bot.files import OutgoingFile, fit_for_upload
from cogs import render
from cogs.buttons import result_view

if TYPE_CHECKING:
    from cogs.client import AtelierBot

log = logging.getLogger(__name__)
DM_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


class Origin(Protocol):
    scope: int
    user: discord.abc.User
    channel_id: int
    upload_limit: int
    nsfw: bool  #: an age-restricted channel: image checks do not withhold results there

    async def post(
        self, content: str, *, file: discord.File | None = None, view: Any = None
    ) -> discord.Message: ...

    async def refuse(self, text: str, *, view: Any = None) -> None: ...

    async def note(self, text: str) -> None: ...


class InteractionOrigin:
    """A slash command or a button click: the first answer is the interaction's response."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.scope = interaction.guild_id or 0
        self.user = interaction.user
        self.channel_id = interaction.channel_id or 0
        self.upload_limit = interaction.filesize_limit
        self.nsfw = is_nsfw(interaction.channel)
        self._private_ack = False

    async def defer_privately(self) -> None:
        """Acknowledge now (slow work follows) so that a refusal can still be private.

        The first follow-up after a deferral inherits its visibility, so the deferral is ephemeral and
        `post` first resolves it before posting the public job message as a second follow-up.
        """
        await self.interaction.response.defer(ephemeral=True, thinking=True)
        self._private_ack = True

    async def post(
        self, content: str, *, file: discord.File | None = None, view: Any = None
    ) -> discord.Message:
        extra: dict[str, Any] = {"file": file} if file else {}
        if view is not None:
            extra["view"] = view
        if self._private_ack:
            self._private_ack = False
            await self.interaction.edit_original_response(content="Accepted: your job is below.")
        if not self.interaction.response.is_done():
            await self.interaction.response.send_message(content, **extra)
            return await self.interaction.original_response()
        return await self.interaction.followup.send(content, wait=True, **extra)

    async def refuse(self, text: str, *, view: Any = None) -> None:
        from cogs.errors import tell

        self._private_ack = False
        await tell(self.interaction, text, view=view)

    async def note(self, text: str) -> None:
        await self.refuse(text)


class ReactionOrigin:
    """A reaction on a result message (or a moderator's approval of a review): answers go to the
    channel, refusals to the member's DMs."""

    def __init__(
        self, channel: discord.abc.Messageable, user: discord.abc.User, scope: int, limit: int
    ) -> None:
        self.channel = channel
        self.user = user
        self.scope = scope
        self.channel_id = getattr(channel, "id", 0)
        self.upload_limit = limit
        self.nsfw = is_nsfw(channel)

    async def post(
        self, content: str, *, file: discord.File | None = None, view: Any = None
    ) -> discord.Message:
        extra: dict[str, Any] = {"file": file} if file else {}
        if view is not None:
            extra["view"] = view
        return await self.channel.send(content, **extra)

    async def refuse(self, text: str, *, view: Any = None) -> None:
        try:
            await self.user.send(text, **({"view": view} if view is not None else {}))
        except discord.HTTPException:
            await self.channel.send(f"{self.user.mention} {text}", delete_after=20)

    async def note(self, text: str) -> None:
        await self.refuse(text)


async def outgoing(path: str | Path, limit: int) -> OutgoingFile:
    """Read a result file and fit it under `limit` bytes, off the event loop."""

    def load() -> OutgoingFile:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:  # pruned after PRIVACY__RETENTION_DAYS, forgotten, or deleted by hand
            raise ImagesGone(
                f"`{Path(path).name}` is no longer stored on the server (Atelier deletes old images), "
                "so it cannot be sent."
            ) from None
        return fit_for_upload(data, Path(path).name, limit)

    return await asyncio.to_thread(load)


def is_nsfw(channel: Any) -> bool:
    """Whether a channel is age-restricted (threads follow their parent); DMs never are."""
    check = getattr(channel, "is_nsfw", None)
    return bool(check()) if callable(check) else False


async def start_job(
    bot: AtelierBot,
    origin: Origin,
    request: GenerationRequest,
    *,
    parent: tuple[int, int] | None = None,
    upload: Any = None,
    reviewed: bool = False,
) -> Any:
    """Queue `request` for the origin's member and post its job message (in DMs for private members).

    The content checks come first, before anything is reserved: the prompt filter (also for variations
    and re-rolls, whose prompt is the parent's) and, for an uploaded image (`upload`, a PIL image), the
    image check. A refusal offers a review instead (see `cogs.review`) and returns None. `reviewed` is set
    only when a moderator approved this very request.
    """
    services = bot.services
    if not reviewed:
        try:
            await services.safety.check_prompt(origin.scope, request)
            if upload is not None:
                await services.safety.check_upload(upload)
        except (PromptRefused, ImageRefused) as refusal:
            from cogs.review import refuse_with_review

            await refuse_with_review(bot, origin, request, refusal, parent=parent)
            return None
    preferences = await services.members.preferences(origin.scope, origin.user.id)
    job = await services.queue.submit(
        origin.scope, origin.user.id, request, channel_id=origin.channel_id, parent=parent, nsfw=origin.nsfw
    )
    position, eta = await services.queue.position(job.id)
    text = render.waiting(job, position, eta)
    try:
        if preferences.private:
            message = await origin.user.send(text)
            await origin.note(f"Queued job {job.id} privately: progress and results come to your DMs.")
        else:
            message = await origin.post(text)
    except BaseException:
        # No message means nobody would ever see the result: give the credits back now.
        await services.queue.cancel(job.id, by=origin.user.id, moderator=True)
        raise
    await bot.presenter.track(job.id, message.channel.id, message.id)
    return job


def _job_scope(origin: Origin, parent: Any) -> int:
    """The scope a follow-up job is charged in; refuses acting on another server's job."""
    if origin.scope == parent.scope:
        return parent.scope
    if origin.scope == 0 and parent.owner == origin.user.id:
        return parent.scope  # the owner acting on their private (DM-delivered) result
    raise NotAllowed("That image belongs to another server's Atelier; use the buttons there.")


async def perform(bot: AtelierBot, origin: Origin, job_id: int, action: str) -> None:
    """Run one result action (`u1`…`u4`, `v1`…`v4`, `rr`, `vs`, `vx`, `us`, `uc`) for the origin's member."""
    queue = bot.services.queue
    parent = await queue.get(job_id)
    origin.scope = _job_scope(origin, parent)
    if parent.flagged:
        raise NotAllowed(
            f"Job {parent.id}'s images were withheld by the image check, so they cannot be reused."
        )
    if action.startswith("u") and action[1:].isdigit():
        await deliver_select(bot, origin, parent, int(action[1]))
        return
    if action.startswith("v") and action[1:].isdigit():
        index = int(action[1])
        request = followups.variation(parent, index, "strong")
    elif action == "rr":
        index = 0
        request = followups.reroll(parent)
    elif action in ("vs", "vx"):
        index = 1
        request = followups.variation(parent, 1, "subtle" if action == "vs" else "strong")
    elif action in ("us", "uc"):
        index = 1
        request = followups.upscale(parent, 1, "subtle" if action == "us" else "creative")
    else:  # the custom-id template admits nothing else
        raise ValueError(f"unknown action {action!r}")
    await start_job(bot, origin, request, parent=(parent.id, index) if index else None)


async def deliver_select(bot: AtelierBot, origin: Origin, parent: Any, index: int) -> None:
    """U1–U4: hand out one image of a grid at full resolution (free), with the single-image buttons."""
    services = bot.services
    job = await services.queue.select(origin.scope, origin.user.id, parent.id, index)
    preferences = await services.members.preferences(origin.scope, origin.user.id)
    limit = DM_UPLOAD_LIMIT if preferences.private else origin.upload_limit
    upload = await outgoing(job.result_paths[0], limit)
    text = render.done(job, upload.note)
    file = discord.File(fp=_bytes_io(upload.data), filename=upload.filename)
    view = result_view(job.id, grid=False)
    if preferences.private:
        message = await origin.user.send(text, file=file, view=view)
        await origin.note(f"Image {index} of job {parent.id} is in your DMs.")
    else:
        message = await origin.post(text, file=file, view=view)
    await services.queue.set_message(job.id, message.channel.id, message.id)  # so reactions find it


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def is_grid(job: Any) -> bool:
    return job.request.kind in (JobKind.IMAGINE, JobKind.VARY) and len(job.result_paths) > 1
