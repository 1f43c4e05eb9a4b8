"""Content safety: the prompt filter, image checks and review requests, for the Discord layer and the queue.

`Safety` is what `Services` holds. The cogs call `check_prompt` / `check_upload` before anything is queued
or charged; the queue calls `flag_reason` for each finished job before charging it, and returns the
credits of a job whose images were withheld. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.engine.types import GenerationRequest
from bot.errors import ImageRefused
from bot.safety.images import ImageChecker, Verdict
from bot.safety.store import FlaggedAction, Review, SafetyStore, TermsView
from bot.settings import SafetySettings
from bot.store import Database

log = logging.getLogger(__name__)


class Safety:
    def __init__(self, store: SafetyStore, checker: ImageChecker | None, settings: SafetySettings) -> None:
        self.store = store
        self.checker = checker
        self.settings = settings

    @classmethod
    async def open(cls, db: Database, settings: SafetySettings) -> Safety:
        """Load the image classifier, if one is configured, and say whether images will be checked."""
        checker = None
        if settings.image_classifier:
            checker = await asyncio.to_thread(
                ImageChecker.load,
                settings.image_classifier,
                labels=tuple(settings.flag_labels),
                threshold=settings.threshold,
                device=settings.device,
            )
            log.info(
                "Image checking is on: %s (flags %s)",
                settings.image_classifier,
                ", ".join(settings.flag_labels),
            )
        else:
            log.warning(
                "Image checking is off: no SAFETY__IMAGE_CLASSIFIER is configured, so generated and uploaded "
                "images are not classified (the prompt filter still applies)."
            )
        return cls(SafetyStore(db, reviews_per_day=settings.reviews_per_day), checker, settings)

    async def check_prompt(self, scope: int, request: GenerationRequest) -> None:
        """Raise `PromptRefused` when the prompt hits the scope's filter. The `--no` text is not checked:
        asking the model to keep something *out* of a picture is never a reason to refuse."""
        await self.store.check_prompt(scope, request.prompt)

    async def check_upload(self, image: Any) -> None:
        """Raise `ImageRefused` when an uploaded (PIL) image is flagged, whatever the channel."""
        if self.checker is None:
            return
        (verdict,) = await self.checker.acheck([image])
        if verdict.flagged:
            raise ImageRefused(
                f"Refused: the image check flagged your upload ({verdict.describe()}). Nothing was charged."
            )

    async def flag_reason(self, job: Any, result: Any) -> str | None:
        """Why `job`'s images must be withheld, or None. Jobs from age-restricted channels are not checked."""
        if self.checker is None or job.nsfw:
            return None
        verdicts: list[Verdict] = await self.checker.acheck(list(result.images))
        flagged = [(i, v) for i, v in enumerate(verdicts, start=1) if v.flagged]
        if not flagged:
            return None
        which = ", ".join(f"image {i} ({v.describe()})" for i, v in flagged)
        return f"the image check flagged {which}"

    async def flagged_action(self, scope: int) -> FlaggedAction:
        return await self.store.flagged_action(scope, self.settings.flagged_images)


__all__ = ["ImageChecker", "Review", "Safety", "SafetyStore", "TermsView", "Verdict"]
