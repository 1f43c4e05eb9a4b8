"""Reactions on Atelier's own result messages, Midjourney style.

1️⃣–4️⃣ on a grid pick an image (like U1–U4), 🔄 re-rolls, ⬆️ upscales and 🔀 varies a single image,
✉️ sends the owner the images with their recipes by DM, ❌ (owner or moderator) cancels a job that is
still waiting or running, or deletes a finished result. The reactor pays, as with buttons. The emoji
map is `DISCORD__REACTIONS`.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.engine.png import parameters_text
from bot.errors import AtelierError, JobNotFound
from cogs import modlog
from cogs.actions import DM_UPLOAD_LIMIT, ReactionOrigin, is_grid, outgoing, perform
from cogs.errors import user_message
from cogs.permissions import member_is_moderator

if TYPE_CHECKING:
    from cogs.client import AtelierBot

log = logging.getLogger(__name__)
GRID_ONLY = {"u1", "u2", "u3", "u4"}
SINGLE_ONLY = {"us", "vx"}


class Reactions(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.bot.user is None or payload.user_id == self.bot.user.id:
            return
        action = self.bot.services.settings.discord.reactions.get(str(payload.emoji))
        if action is None:
            return
        try:
            job = await self.bot.services.queue.job_for_message(payload.message_id)
        except JobNotFound:
            return  # not one of our job messages: ignore, like any other reaction
        channel = self.bot.get_channel(payload.channel_id) or await self.bot.fetch_channel(payload.channel_id)
        user = payload.member or await self.bot.fetch_user(payload.user_id)
        guild = getattr(channel, "guild", None)
        limit = guild.filesize_limit if guild is not None else DM_UPLOAD_LIMIT
        origin = ReactionOrigin(channel, user, payload.guild_id or 0, limit)  # type: ignore[arg-type]
        try:
            await self._act(origin, channel, payload.message_id, job, action)
        except AtelierError as error:
            await origin.refuse(str(error))
        except Exception as error:
            await origin.refuse(user_message(error, job_id=job.id))

    async def _act(
        self, origin: ReactionOrigin, channel: discord.abc.Messageable, message_id: int, job, action: str
    ) -> None:
        grid = is_grid(job)
        if (action in GRID_ONLY and not grid) or (action in SINGLE_ONLY and grid):
            return  # the emoji means nothing on this kind of message
        if action == "dm":
            await self._send_recipes(job)
        elif action == "cancel":
            await self._cancel_or_delete(origin, channel, message_id, job)
        else:
            await perform(self.bot, origin, job.id, action)

    async def _send_recipes(self, job) -> None:
        """✉️: the owner gets the images and their recipes, whoever reacted."""
        owner = self.bot.get_user(job.owner) or await self.bot.fetch_user(job.owner)
        if job.status.value != "done":
            return
        files, texts = [], []
        for n, (path, recipe) in enumerate(zip(job.result_paths, job.recipes, strict=False), start=1):
            upload = await outgoing(path, DM_UPLOAD_LIMIT // max(1, len(job.result_paths)))
            files.append(discord.File(io.BytesIO(upload.data), filename=upload.filename))
            texts.append(f"**Image {n}**\n```\n{parameters_text(recipe)}\n```")
        await owner.send(f"Job {job.id}:\n" + "\n".join(texts)[:1900], files=files[:10])

    async def _cancel_or_delete(self, origin: ReactionOrigin, channel, message_id: int, job) -> None:
        """❌ by the owner or a moderator: cancel a live job, or delete a finished result message."""
        moderator = await member_is_moderator(self.bot, origin.user, origin.scope)
        if origin.user.id != job.owner and not moderator:
            return  # other members' ❌ are just reactions
        if job.status.value in ("queued", "running"):
            await self.bot.services.queue.cancel(job.id, by=origin.user.id, moderator=moderator)
            what = f"cancelled job {job.id}"
        else:
            await channel.get_partial_message(message_id).delete()
            what = f"deleted the result message of job {job.id}"
        if origin.user.id != job.owner:
            await modlog.post(
                self.bot, origin.scope, f"🛡️ <@{origin.user.id}> {what} of <@{job.owner}> with ❌."
            )


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Reactions(bot))
