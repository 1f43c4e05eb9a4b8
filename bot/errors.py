"""Domain errors. Each carries the sentence a member or operator should read.

Cogs never compose refusal texts themselves: the error funnel in `cogs/` shows `str(error)`
ephemerally for any `AtelierError`, and logs everything else as unexpected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class AtelierError(Exception):
    """Base for every error whose message is meant for a person, not a traceback."""


class SettingsError(AtelierError):
    """A setting is missing or malformed (raised once, at start-up)."""


class StoreError(AtelierError):
    """The database cannot be opened or is newer than this code."""


class InvalidPrompt(AtelierError, ValueError):
    """A prompt or one of its `--flags` is malformed; the message names the flag and its allowed values."""


class InvalidImage(AtelierError, ValueError):
    """An uploaded or stored image cannot be used (not an image, too big, animated, truncated...)."""


class InvalidRequest(AtelierError, ValueError):
    """A generation request the engine cannot run as asked (bad size, strength, scale...)."""


class GenerationCancelled(AtelierError):
    """The job was cancelled between two denoising steps."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)


class OutOfMemory(AtelierError):
    """The device ran out of memory for this batch (the cache has been freed)."""


class CreditError(AtelierError):
    """Base for credit-store refusals."""


class InvalidAmount(CreditError, ValueError):
    """An amount that is negative, zero where that means nothing, or beyond ±10⁹."""


class UnknownAccount(CreditError, LookupError):
    """No such member in that scope (or no such hold)."""


class Blocked(CreditError):
    """A moderator blocked this member from generating in this scope."""

    def __init__(self, message: str = "A moderator has blocked you from generating images here.") -> None:
        super().__init__(message)


@dataclass
class InsufficientCredits(CreditError):
    """A reserve that would take the balance below zero."""

    needed: int
    available: int
    refills_at: datetime | None
    relax_allowed: bool = False

    def __str__(self) -> str:
        text = f"This costs {self.needed} credits but you have {self.available}."
        if self.refills_at is not None:
            text += f" Your free credits refill <t:{int(self.refills_at.timestamp())}:R>."
        if self.relax_allowed:
            text += " Add `--relax` to queue it for free at the lowest priority."
        return text


class QueueError(AtelierError):
    """Base for queue refusals."""


class QueueFull(QueueError):
    """A per-member or global queue limit; the message names the limit and the member's waiting jobs."""


class QueuePaused(QueueError):
    """Moderators paused the queue."""


class JobNotFound(QueueError, LookupError):
    """No job with that id (in this scope)."""


class NotAllowed(AtelierError, PermissionError):
    """The caller may not do this (not the owner, not a moderator, another scope)."""


class InvalidCreditInput(CreditError, ValueError):
    """A credit argument that is not an amount is malformed: a period name, a job kind, a reason, an id."""


class JobFinished(QueueError):
    """The job already finished (done, failed or cancelled), so it can no longer be cancelled."""


class InvalidLimit(QueueError, ValueError):
    """A queue limit outside its allowed range; the message names the limit and the range."""


class ImagesGone(QueueError, LookupError):
    """A job's image files are no longer stored (retention pruning, /forget, or deleted by hand)."""


class PromptRefused(AtelierError):
    """A prompt hit the scope's content filter; nothing was queued or charged."""

    def __init__(self, match: Any) -> None:
        self.match = match
        self.reviewable = match.category != "minors"
        if match.category == "minors":
            text = (
                "Refused: Atelier never makes sexual content involving minors "
                f"(`{match.found}`). This rule cannot be turned off or reviewed."
            )
        else:
            where = "the built-in list" if match.category == "default" else "this server's list"
            text = (
                f"Refused: your prompt contains `{match.found}`, which is blocked here ({where}). "
                "Nothing was charged."
            )
        super().__init__(text)


class ImageRefused(AtelierError):
    """An uploaded image was flagged by the image check; nothing was queued or charged."""

    reviewable = True


class ReviewError(AtelierError):
    """A review request or decision that cannot be made (expired, already decided, daily limit)."""
