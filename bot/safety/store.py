"""Per-scope safety state: the prompt filter's terms, the mod-log channel, and review requests.

The filter of a scope is the built-in default list, minus the default terms its moderators removed, plus
the terms they added; it is compiled once and cached until a moderator changes it, so checking a prompt
costs no database round trip. The rule on sexual content involving minors sits outside the lists and is
always checked first (see `bot.safety.terms`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.engine.types import GenerationRequest
from bot.errors import InvalidRequest, NotAllowed, PromptRefused, ReviewError
from bot.safety.terms import (
    CATEGORY_DEFAULT,
    CATEGORY_SERVER,
    DEFAULT_TERMS,
    MINOR_SEXUAL_WORDS,
    MINOR_WORDS,
    TermList,
    minors_match,
    split_words,
)
from bot.store import Database

FlaggedAction = Literal["withhold", "spoiler"]
TERM_LENGTH = (2, 60)
MAX_TERMS = 500  #: per scope, so a script cannot grow a filter without bound
DAY_S = 86_400.0
OFFER_KEPT_S = DAY_S  #: a refusal nobody asked to review is forgotten after a day

INSERT_TERM = "INSERT INTO safety_terms (scope, term, change, changed_by, changed_at) VALUES (?, ?, ?, ?, ?)"
INSERT_REVIEW = """
INSERT INTO safety_reviews (scope, user_id, channel_id, request, parent_job_id, parent_index, reason, status,
                            created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 'offered', ?)
"""
REOPEN_REVIEW = (
    "UPDATE safety_reviews SET status = 'pending', decided_by = NULL, decided_at = NULL WHERE id = ?"
)


@dataclass(frozen=True)
class TermsView:
    """What `/moderation terms list` shows."""

    added: list[str]
    removed_defaults: list[str]
    active_defaults: list[str]


@dataclass(frozen=True)
class Review:
    id: int
    scope: int
    user_id: int
    channel_id: int | None
    request: GenerationRequest
    parent: tuple[int, int] | None
    reason: str
    status: str
    decided_by: int | None = None
    job_id: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Review:
        parent = (row["parent_job_id"], row["parent_index"]) if row["parent_job_id"] else None
        request = GenerationRequest.from_dict(json.loads(row["request"]))
        return cls(
            row["id"], row["scope"], row["user_id"], row["channel_id"], request, parent, row["reason"],
            row["status"], row["decided_by"], row["job_id"],
        )  # fmt: skip


def normalise_term(term: str) -> str:
    """A term as stored: lower case, single spaces; refuses what cannot be matched."""
    cleaned = " ".join(term.casefold().split())
    low, high = TERM_LENGTH
    if not low <= len(cleaned) <= high:
        raise InvalidRequest(f"A term must be {low}–{high} characters long; `{term[:80]}` is {len(cleaned)}.")
    words, _ = split_words(cleaned)
    if not words:
        raise InvalidRequest(f"`{cleaned}` has no letters to match; a term must contain a word.")
    return cleaned


class SafetyStore:
    """The safety tables, with the compiled filter of each scope cached."""

    def __init__(self, db: Database, *, reviews_per_day: int = 5, clock: Callable[[], float] = time.time):
        self._db = db
        self._reviews_per_day = reviews_per_day
        self._clock = clock
        self._filters: dict[int, TermList] = {}

    # -- the prompt filter --------------------------------------------------------------------------------

    async def _changes(self, scope: int) -> dict[str, str]:
        rows = await self._db.fetchall("SELECT term, change FROM safety_terms WHERE scope = ?", (scope,))
        return {row["term"]: row["change"] for row in rows}

    async def filter(self, scope: int) -> TermList:
        cached = self._filters.get(scope)
        if cached is None:
            changes = await self._changes(scope)
            terms = {t: CATEGORY_DEFAULT for t in DEFAULT_TERMS if changes.get(t) != "removed"}
            terms |= {t: CATEGORY_SERVER for t, change in changes.items() if change == "added"}
            cached = self._filters[scope] = TermList(terms)
        return cached

    async def check_prompt(self, scope: int, *texts: str | None) -> None:
        """Raise `PromptRefused` if any of `texts` (prompt, negative prompt) hits the scope's filter."""
        text = "\n".join(t for t in texts if t)
        match = minors_match(text)
        if match is None:
            match = (await self.filter(scope)).find(text)
        if match is not None:
            raise PromptRefused(match)

    async def add_term(self, scope: int, term: str, by: int) -> str:
        cleaned = normalise_term(term)
        changes = await self._changes(scope)
        if changes.get(cleaned) == "added" or (cleaned in DEFAULT_TERMS and cleaned not in changes):
            raise InvalidRequest(f"`{cleaned}` is already blocked here.")
        if sum(1 for c in changes.values() if c == "added") >= MAX_TERMS:
            raise InvalidRequest(f"This server already has {MAX_TERMS} terms of its own; remove some first.")
        if changes.get(cleaned) == "removed":  # a default term coming back
            await self._db.execute("DELETE FROM safety_terms WHERE scope = ? AND term = ?", (scope, cleaned))
        else:
            await self._db.execute(
                INSERT_TERM,
                (scope, cleaned, "added", by, self._clock()),
            )
        self._filters.pop(scope, None)
        return cleaned

    async def remove_term(self, scope: int, term: str, by: int) -> str:
        cleaned = " ".join(term.casefold().split())
        if cleaned in MINOR_WORDS or cleaned in MINOR_SEXUAL_WORDS:
            raise NotAllowed(
                f"`{cleaned}` belongs to the built-in rule against sexual content involving minors, "
                "which cannot be turned off."
            )
        changes = await self._changes(scope)
        if changes.get(cleaned) == "added":
            await self._db.execute("DELETE FROM safety_terms WHERE scope = ? AND term = ?", (scope, cleaned))
        elif cleaned in DEFAULT_TERMS and cleaned not in changes:
            await self._db.execute(
                INSERT_TERM,
                (scope, cleaned, "removed", by, self._clock()),
            )
        else:
            raise InvalidRequest(
                f"`{cleaned}` is not on this server's list; `/moderation terms list` shows it."
            )
        self._filters.pop(scope, None)
        return cleaned

    async def terms(self, scope: int) -> TermsView:
        changes = await self._changes(scope)
        return TermsView(
            added=sorted(t for t, c in changes.items() if c == "added"),
            removed_defaults=sorted(t for t, c in changes.items() if c == "removed"),
            active_defaults=[t for t in DEFAULT_TERMS if changes.get(t) != "removed"],
        )

    # -- per-scope configuration ---------------------------------------------------------------------------

    async def _config(self, scope: int) -> Any:
        return await self._db.fetchone(
            "SELECT modlog_channel_id, flagged_images FROM safety_config WHERE scope = ?", (scope,)
        )

    async def modlog_channel(self, scope: int) -> int | None:
        row = await self._config(scope)
        return row["modlog_channel_id"] if row else None

    async def flagged_action(self, scope: int, default: FlaggedAction) -> FlaggedAction:
        row = await self._config(scope)
        return (row["flagged_images"] if row else None) or default

    async def configure(self, scope: int, **changes: Any) -> None:
        """Set `modlog_channel_id` and/or `flagged_images` for a scope (None clears)."""
        columns = {"modlog_channel_id", "flagged_images"}
        if not changes or set(changes) - columns:
            raise ValueError(f"configure() takes {sorted(columns)}")
        names = ", ".join(changes)
        marks = ", ".join("?" * len(changes))
        updates = ", ".join(f"{name} = excluded.{name}" for name in changes)
        await self._db.execute(
            f"INSERT INTO safety_config (scope, {names}, updated_at) VALUES (?, {marks}, ?) "
            f"ON CONFLICT (scope) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
            (scope, *changes.values(), self._clock()),
        )

    # -- reviews -------------------------------------------------------------------------------------------

    async def offer(
        self,
        scope: int,
        user_id: int,
        channel_id: int | None,
        request: GenerationRequest,
        reason: str,
        parent: tuple[int, int] | None = None,
    ) -> int:
        """Keep a refused request for a day, so its member can ask for a review; returns the review id."""
        now = self._clock()
        async with self._db.transaction() as conn:
            await conn.execute(
                "DELETE FROM safety_reviews WHERE status = 'offered' AND created_at < ?",
                (now - OFFER_KEPT_S,),
            )
            cursor = await conn.execute(
                INSERT_REVIEW,
                (
                    scope, user_id, channel_id, json.dumps(request.to_dict()), parent[0] if parent else None,
                    parent[1] if parent else None, reason, now,
                ),
            )  # fmt: skip
            return cursor.lastrowid or 0

    async def get_review(self, review_id: int) -> Review:
        row = await self._db.fetchone("SELECT * FROM safety_reviews WHERE id = ?", (review_id,))
        if row is None:
            raise ReviewError("That review request has expired; run the command again to get a new one.")
        return Review.from_row(row)

    async def request_review(self, review_id: int, user_id: int) -> Review:
        """The member asks for a review: counts toward their daily limit. Raises `ReviewError` otherwise."""
        now = self._clock()
        async with self._db.transaction() as conn:
            cursor = await conn.execute("SELECT * FROM safety_reviews WHERE id = ?", (review_id,))
            row = await cursor.fetchone()
            if row is None:
                raise ReviewError("That review request has expired; run the command again to get a new one.")
            if row["user_id"] != user_id:
                raise NotAllowed("Only the member whose request was refused can ask for its review.")
            if row["status"] != "offered":
                raise ReviewError("You already asked for a review of this request; moderators will decide.")
            cursor = await conn.execute(
                "SELECT count(*) FROM safety_reviews WHERE scope = ? AND user_id = ? AND requested_at > ?",
                (row["scope"], user_id, now - DAY_S),
            )
            (used,) = await cursor.fetchone()
            if used >= self._reviews_per_day:
                raise ReviewError(
                    f"You can ask for {self._reviews_per_day} reviews a day here and have used them all; "
                    "try again tomorrow."
                )
            await conn.execute(
                "UPDATE safety_reviews SET status = 'pending', requested_at = ? WHERE id = ?",
                (now, review_id),
            )
        return await self.get_review(review_id)

    async def withdraw_request(self, review_id: int) -> None:
        """Undo `request_review` when the request could not be delivered, so it costs no daily request."""
        await self._db.execute(
            "UPDATE safety_reviews SET status = 'offered', requested_at = NULL "
            "WHERE id = ? AND status = 'pending'",
            (review_id,),
        )

    async def decide(self, review_id: int, moderator: int, *, approve: bool) -> Review:
        """Approve or deny a pending review exactly once (two moderators clicking at once: one wins)."""
        status = "approved" if approve else "denied"
        row = await self._db.fetchone(
            "UPDATE safety_reviews SET status = ?, decided_by = ?, decided_at = ? "
            "WHERE id = ? AND status = 'pending' RETURNING *",
            (status, moderator, self._clock(), review_id),
        )
        if row is None:
            review = await self.get_review(review_id)
            who = f" by <@{review.decided_by}>" if review.decided_by else ""
            raise ReviewError(f"This review was already {review.status}{who}.")
        return Review.from_row(row)

    async def set_review_job(self, review_id: int, job_id: int | None, *, reopen: bool = False) -> None:
        """Record the job an approval ran as; `reopen` makes it pending again when the job could not start."""
        if reopen:
            await self._db.execute(REOPEN_REVIEW, (review_id,))
        else:
            await self._db.execute("UPDATE safety_reviews SET job_id = ? WHERE id = ?", (job_id, review_id))
