"""Review instead of silence: a refused request can be sent to the moderators, who approve or deny it.

1. `refuse_with_review` tells the member why their request was refused (nothing was charged), posts the
   refusal to the mod-log, and, where the server has a mod-log channel and the refusal is reviewable
   (never for the rule on minors), keeps the request for a day behind a *Request review* button.
2. *Request review* (the member, at most `SAFETY__REVIEWS_PER_DAY` a day) posts the prompt, and the image
   if there is one, to the mod-log with *Approve* / *Deny*.
3. *Approve* (a moderator) runs the request as the member's job in the channel they asked in, charged to
   them like any job; the decision is one guarded UPDATE, so two moderators clicking at once start it
   once. If the job cannot start (no credits left, queue full) the review goes back to pending and the
   moderator is told why. The member hears the decision by DM.

The buttons are `DynamicItem`s (`atelier:review:<id>:<ask|approve|deny>`), so they work after a restart.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.engine.types import GenerationRequest
from bot.errors import AtelierError, NotAllowed, ReviewError
from cogs import modlog
from cogs.errors import report_error, tell
from cogs.permissions import REFUSAL, is_moderator

if TYPE_CHECKING:
    from cogs.client import AtelierBot

LABELS = {"ask": "Request review", "approve": "Approve", "deny": "Deny"}
STYLES = {
    "ask": discord.ButtonStyle.secondary,
    "approve": discord.ButtonStyle.success,
    "deny": discord.ButtonStyle.danger,
}


class ReviewButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"atelier:review:(?P<review>\d+):(?P<action>ask|approve|deny)",
):
    def __init__(self, review_id: int, action: str) -> None:
        self.review_id = review_id
        self.action = action
        super().__init__(
            discord.ui.Button(
                label=LABELS[action], style=STYLES[action], custom_id=f"atelier:review:{review_id}:{action}"
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> ReviewButton:
        return cls(int(match["review"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            if self.action == "ask":
                await ask_for_review(interaction, self.review_id)
            else:
                await decide(interaction, self.review_id, approve=self.action == "approve")
        except Exception as error:
            await report_error(interaction, error)


def review_view(review_id: int, *actions: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(ReviewButton(review_id, action))
    return view


def _what(request: GenerationRequest) -> str:
    kind = request.kind.value
    return f"/{kind} " + modlog.quote(request.prompt) if request.prompt else f"/{kind} (no prompt)"


async def refuse_with_review(
    bot: AtelierBot,
    origin: Any,
    request: GenerationRequest,
    refusal: AtelierError,
    *,
    parent: tuple[int, int] | None = None,
) -> None:
    """Tell the member why, log it for the moderators, and offer a review where one can be had."""
    safety = bot.services.safety
    where = f"<#{origin.channel_id}>" if origin.scope else "DMs"
    await modlog.post(
        bot,
        origin.scope,
        f"🚫 Refused {_what(request)} from <@{origin.user.id}> in {where}: {refusal}",
    )
    reviewable = getattr(refusal, "reviewable", False) and safety.settings.reviews_per_day > 0
    if not reviewable or not origin.scope or await safety.store.modlog_channel(origin.scope) is None:
        await origin.refuse(str(refusal))
        return
    review_id = await safety.store.offer(
        origin.scope, origin.user.id, origin.channel_id, request, str(refusal), parent=parent
    )
    text = f"{refusal}\nIf you think this is a mistake, you can ask the moderators to review it."
    await origin.refuse(text, view=review_view(review_id, "ask"))


async def ask_for_review(interaction: discord.Interaction, review_id: int) -> None:
    """The member's click: send the refused request to the mod-log with Approve / Deny."""
    bot: AtelierBot = interaction.client  # type: ignore[assignment]
    store = bot.services.safety.store
    review = await store.get_review(review_id)
    if review.user_id != interaction.user.id:
        raise NotAllowed("Only the member whose request was refused can ask for its review.")
    if await store.modlog_channel(review.scope) is None:
        raise ReviewError("This server no longer has a mod-log channel, so there is nobody to review it.")
    review = await store.request_review(review_id, interaction.user.id)
    image = review.request.init_image
    posted = await modlog.post(
        bot,
        review.scope,
        f"📝 Review requested by <@{review.user_id}> in <#{review.channel_id}>: {_what(review.request)}\n"
        f"Refused because: {review.reason}\nApprove to run it as their job (charged to them).",
        file=await modlog.spoiler_file(image),
        view=review_view(review.id, "approve", "deny"),
    )
    if posted is None:
        await store.withdraw_request(review.id)
        raise ReviewError("The mod-log channel cannot be reached right now, so the review was not sent.")
    await interaction.response.edit_message(
        content=f"{review.reason}\nSent to the moderators for review; you will hear from Atelier by DM.",
        view=None,
    )


async def decide(interaction: discord.Interaction, review_id: int, *, approve: bool) -> None:
    """A moderator's click in the mod-log: approve (run the job once) or deny."""
    from cogs.actions import ReactionOrigin, start_job

    bot: AtelierBot = interaction.client  # type: ignore[assignment]
    store = bot.services.safety.store
    review = await store.get_review(review_id)
    if interaction.guild_id != review.scope or not await is_moderator(interaction):
        raise NotAllowed(REFUSAL)
    review = await store.decide(review_id, interaction.user.id, approve=approve)
    member = bot.get_user(review.user_id) or await bot.fetch_user(review.user_id)
    if not approve:
        await interaction.response.edit_message(
            content=f"{interaction.message.content if interaction.message else ''}\n"
            f"❌ Denied by <@{interaction.user.id}>.",
            view=None,
            allowed_mentions=modlog.NO_MENTIONS,
        )
        await _dm(member, f"The moderators reviewed your request {_what(review.request)} and denied it.")
        return
    await interaction.response.defer()
    channel = bot.get_channel(review.channel_id) or bot.get_partial_messageable(review.channel_id or 0)
    guild = interaction.guild
    limit = guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    origin = ReactionOrigin(channel, member, review.scope, limit)
    try:
        job = await start_job(bot, origin, review.request, parent=review.parent, reviewed=True)
    except AtelierError as error:
        await store.set_review_job(review.id, None, reopen=True)
        await tell(
            interaction, f"Approved, but the job could not start: {error} The review is pending again."
        )
        return
    await store.set_review_job(review.id, job.id)
    await interaction.edit_original_response(
        content=f"{interaction.message.content if interaction.message else ''}\n"
        f"✅ Approved by <@{interaction.user.id}>: job {job.id}.",
        view=None,
        allowed_mentions=modlog.NO_MENTIONS,
    )
    await _dm(member, f"The moderators approved your request {_what(review.request)}: it is job {job.id}.")


async def _dm(user: discord.abc.User, text: str) -> None:
    with contextlib.suppress(discord.HTTPException):  # DMs closed: the job message still shows the outcome
        await user.send(text)
