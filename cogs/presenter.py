"""Keeps every job message in step with the queue, edited in place and never flooding Discord.

The queue announces every change; the presenter keeps only the *latest* state per job and one owned
task per job that applies it, waiting `preview_edit_interval_s` between intermediate edits (Discord
allows about five edits per five seconds per channel; one every 2–3 s per job stays well inside that).
Final states (done, failed, cancelled) are applied as soon as the edit in flight finishes. If the job
message is gone, the result is posted as a new message in the same channel, so a job that waited longer
than an interaction token lives (15 minutes) still arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.queue import EventType, JobEvent
from cogs import modlog, render
from cogs.actions import DM_UPLOAD_LIMIT, is_grid, outgoing
from cogs.buttons import result_view

if TYPE_CHECKING:
    from cogs.client import AtelierBot

log = logging.getLogger(__name__)
FINAL = {EventType.DONE, EventType.FAILED, EventType.CANCELLED}


@dataclass
class Pending:
    event: JobEvent
    job: Any


class Presenter:
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        self.interval = bot.services.settings.discord.preview_edit_interval_s
        self._where: dict[int, tuple[int, int]] = {}
        self._pending: dict[int, Pending] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._last_edit: dict[int, float] = {}
        self._finished: dict[int, asyncio.Event] = {}  #: set when a final state arrives: skip the wait

    async def track(self, job_id: int, channel_id: int, message_id: int) -> None:
        """Remember (and store) where a job's message is, then show its current state."""
        queue = self.bot.services.queue
        await queue.set_message(job_id, channel_id, message_id)
        self._where[job_id] = (channel_id, message_id)
        job = await queue.get(job_id)
        if job.status.value in ("done", "failed", "cancelled"):
            kind = {"done": EventType.DONE, "failed": EventType.FAILED, "cancelled": EventType.CANCELLED}
            self._offer(JobEvent(job_id=job_id, type=kind[job.status.value], job=job, reason=job.error))

    async def on_event(self, event: JobEvent) -> None:
        """Queue listener: remember the newest state and make sure someone will show it."""
        if event.type in (EventType.QUEUED,):
            return  # the job message is posted by whoever submitted the job
        if event.job_id not in self._where:
            job = event.job
            if job is None or not job.message_id or not job.channel_id:
                return  # a select job, or a job whose message is not posted yet (track() catches up)
            self._where[event.job_id] = (job.channel_id, job.message_id)
        self._offer(event)

    def _offer(self, event: JobEvent) -> None:
        pending = self._pending.get(event.job_id)
        if pending is not None and pending.event.type in FINAL:
            return  # nothing replaces a final state
        keep_preview = pending is not None and pending.event.preview_png is not None
        if keep_preview and event.type == EventType.PROGRESS and event.preview_png is None:
            # keep the last preview we have not shown yet
            event = JobEvent(**{**event.__dict__, "preview_png": pending.event.preview_png})
        self._pending[event.job_id] = Pending(event, event.job)
        if event.type in FINAL:
            self._finished.setdefault(event.job_id, asyncio.Event()).set()
        task = self._tasks.get(event.job_id)
        if task is None or task.done():
            self._tasks[event.job_id] = asyncio.create_task(
                self._apply_loop(event.job_id), name=f"job-{event.job_id}"
            )

    async def _apply_loop(self, job_id: int) -> None:
        while job_id in self._pending:
            pending = self._pending[job_id]
            final = pending.event.type in FINAL
            if not final:
                wait = self.interval - (time.monotonic() - self._last_edit.get(job_id, 0.0))
                if wait > 0:
                    finished = self._finished.setdefault(job_id, asyncio.Event())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), wait)
                    pending = self._pending[job_id]
                    final = pending.event.type in FINAL
            del self._pending[job_id]
            try:
                await self._apply(job_id, pending.event)
            except Exception:
                log.exception("Could not update the message of job %s", job_id)
            self._last_edit[job_id] = time.monotonic()
            if final:
                self._where.pop(job_id, None)
                self._last_edit.pop(job_id, None)
                self._pending.pop(job_id, None)
                self._finished.pop(job_id, None)
                break
        self._tasks.pop(job_id, None)

    async def _apply(self, job_id: int, event: JobEvent) -> None:
        queue = self.bot.services.queue
        job = event.job if event.job is not None else await queue.get(job_id)
        channel_id, message_id = self._where[job_id]
        channel = self.bot.get_channel(channel_id) or self.bot.get_partial_messageable(channel_id)
        message = channel.get_partial_message(message_id)  # type: ignore[union-attr]
        if event.type == EventType.DONE:
            job = await queue.get(job_id)
            await self._deliver(job, channel, message)
            return
        kwargs: dict[str, Any] = {}
        if event.type == EventType.POSITION:
            content = render.waiting(job, event.position, event.eta_s)
        elif event.type == EventType.STARTED:
            content = render.starting(job)
        elif event.type == EventType.PROGRESS:
            content = render.progress(job, event.step or 0, event.total or 1)
            if event.preview_png:
                kwargs["attachments"] = [discord.File(io.BytesIO(event.preview_png), filename="preview.png")]
        elif event.type == EventType.FAILED:
            content = render.failed(job, event.reason)
            kwargs["attachments"] = []
        elif event.type == EventType.CANCELLED:
            content = render.cancelled(job, event.reason)
            kwargs["attachments"] = []
        else:
            return
        await message.edit(content=content, **kwargs)

    async def _deliver(self, job: Any, channel: Any, message: Any) -> None:
        if job.flagged:
            await self._withhold(job, channel, message)
            return
        grid = is_grid(job)
        path = job.grid_path if grid else job.result_paths[0]
        guild = getattr(channel, "guild", None)
        limit = guild.filesize_limit if guild is not None else DM_UPLOAD_LIMIT
        upload = await outgoing(path, limit)
        content = render.done(job, upload.note)
        view = result_view(job.id, grid=grid)
        file = discord.File(io.BytesIO(upload.data), filename=upload.filename)
        try:
            await message.edit(content=content, attachments=[file], view=view)
        except discord.NotFound:
            # The job message was deleted (or is unreachable): deliver in a new message instead.
            file = discord.File(io.BytesIO(upload.data), filename=upload.filename)
            new = await channel.send(content, file=file, view=view)
            await self.bot.services.queue.set_message(job.id, new.channel.id, new.id)

    async def _withhold(self, job: Any, channel: Any, message: Any) -> None:
        """A result the image check flagged: not posted (or only as a spoiler), no buttons; refunded."""
        spoiler = await self.bot.services.safety.flagged_action(job.scope) == "spoiler"
        path = job.grid_path if is_grid(job) else job.result_paths[0]
        edit: dict[str, Any] = {
            "content": render.withheld(job, spoiler=spoiler),
            "view": None,
            "attachments": [],
        }
        if spoiler:
            guild = getattr(channel, "guild", None)
            upload = await outgoing(path, guild.filesize_limit if guild is not None else DM_UPLOAD_LIMIT)
            edit["attachments"] = [
                discord.File(io.BytesIO(upload.data), filename=upload.filename, spoiler=True)
            ]
        try:
            await message.edit(**edit)
        except discord.NotFound:
            await channel.send(edit["content"], files=edit["attachments"])
        where = f"<#{job.channel_id}>" if job.scope else "DMs"
        await modlog.post(
            self.bot,
            job.scope,
            f"⚠️ Job {job.id} by <@{job.owner}> in {where} ({modlog.quote(job.request.prompt)}): "
            f"{job.flagged}. {'Posted as a spoiler' if spoiler else 'Withheld'}; its credits were returned.",
            file=await modlog.spoiler_file(path),
        )

    async def flush(self, grace_s: float = 10.0) -> None:
        """Wait (a bounded time) for the edits in flight, so a shutdown still shows final states."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
