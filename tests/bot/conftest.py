"""Shared fixtures for tests of `bot/`: a fresh database, a clock you can move, a credit store.

    async def test_something(db, credits, clock):
        clock.advance(days=7)

`db` is a migrated Database in its own temporary DATA_DIR; `credits` is a CreditStore on it with the
default CreditSettings (40 free credits a week, relax off) unless a test overrides the
`credit_settings` fixture, and the `clock` fixture as its clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.credits import CreditStore
from bot.settings import CreditSettings
from bot.store import Database

#: a Wednesday, mid-month, mid-day: far from every period edge unless a test moves the clock
START = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return moment


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "data" / "atelier.sqlite3")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def credit_settings() -> CreditSettings:
    return CreditSettings()


@pytest.fixture
def credits(db: Database, credit_settings: CreditSettings, clock: FakeClock) -> CreditStore:
    return CreditStore(db, credit_settings, clock=clock)
