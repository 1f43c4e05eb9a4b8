"""Member preferences (`/settings`) and per-scope Discord-facing configuration.

Preferences are defaults a member sets once (aspect, stylize, relax, private results); flags typed in a
prompt always win over them. Stored per scope, like credits: a member's defaults in one server do not
leak into another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosqlite

from bot.errors import InvalidPrompt
from bot.store import Database

STYLIZE_RANGE = (0, 1000)


@dataclass(frozen=True)
class Preferences:
    """A member's defaults in one scope."""

    aspect: str | None = None  #: default `--ar`, e.g. "16:9"
    stylize: int | None = None  #: default `--stylize`
    relax: bool = False  #: queue new jobs in relax mode by default
    private: bool = False  #: show results only to the member (ephemeral / DM)

    @classmethod
    def from_row(cls, row: aiosqlite.Row | None) -> Preferences:
        if row is None:
            return cls()
        return cls(row["aspect"], row["stylize"], bool(row["relax"]), bool(row["private"]))

    def prompt_flags(self) -> str:
        """The defaults as prompt flags, to put *before* the member's own flags (theirs win)."""
        flags = []
        if self.aspect:
            flags.append(f"--ar {self.aspect}")
        if self.stylize is not None:
            flags.append(f"--stylize {self.stylize}")
        return " ".join(flags)


GET_PREFERENCES = (
    "SELECT aspect, stylize, relax, private FROM member_preferences WHERE scope = ? AND user_id = ?"
)
UPSERT_PREFERENCES = """
INSERT INTO member_preferences (scope, user_id, aspect, stylize, relax, private, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, user_id) DO UPDATE SET
    aspect = excluded.aspect, stylize = excluded.stylize, relax = excluded.relax,
    private = excluded.private, updated_at = excluded.updated_at
"""
GET_MODERATOR_ROLE = "SELECT moderator_role_id FROM scope_config WHERE scope = ?"
UPSERT_MODERATOR_ROLE = """
INSERT INTO scope_config (scope, moderator_role_id, updated_at) VALUES (?, ?, ?)
ON CONFLICT (scope) DO UPDATE SET
    moderator_role_id = excluded.moderator_role_id, updated_at = excluded.updated_at
"""
DELETE_PREFERENCES = "DELETE FROM member_preferences WHERE scope = ? AND user_id = ?"


class MemberStore:
    """Reads and writes member preferences and scope configuration."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def preferences(self, scope: int, user: int) -> Preferences:
        return Preferences.from_row(await self._db.fetchone(GET_PREFERENCES, (scope, user)))

    async def set_preferences(
        self,
        scope: int,
        user: int,
        *,
        aspect: str | None = None,
        stylize: int | None = None,
        relax: bool | None = None,
        private: bool | None = None,
        clear: bool = False,
    ) -> Preferences:
        """Change the given fields (None keeps the current value); `clear` resets everything first."""
        if stylize is not None and not STYLIZE_RANGE[0] <= stylize <= STYLIZE_RANGE[1]:
            raise InvalidPrompt(f"stylize must be between {STYLIZE_RANGE[0]} and {STYLIZE_RANGE[1]}.")
        current = Preferences() if clear else await self.preferences(scope, user)
        updated = Preferences(
            aspect=current.aspect if aspect is None else aspect,
            stylize=current.stylize if stylize is None else stylize,
            relax=current.relax if relax is None else relax,
            private=current.private if private is None else private,
        )
        await self._db.execute(
            UPSERT_PREFERENCES,
            (scope, user, updated.aspect, updated.stylize, updated.relax, updated.private, time.time()),
        )
        return updated

    async def forget_preferences(self, scope: int, user: int) -> None:
        await self._db.execute(DELETE_PREFERENCES, (scope, user))

    async def moderator_role(self, scope: int) -> int | None:
        row = await self._db.fetchone(GET_MODERATOR_ROLE, (scope,))
        return None if row is None else row["moderator_role_id"]

    async def set_moderator_role(self, scope: int, role_id: int | None) -> None:
        await self._db.execute(UPSERT_MODERATOR_ROLE, (scope, role_id, time.time()))
