"""The one SQLite connection every part of Atelier shares, and its migrations.

Why one connection behind one lock: SQLite allows a single writer anyway, and serialising every
transaction in-process means two concurrent reserves can never both read the same balance. Reads take
the lock too, so nobody sees another task's half-finished transaction. WAL with `synchronous=NORMAL`
survives a killed process (SIGKILL) without losing a committed transaction; only a power cut can lose
the last few, which is the trade every SQLite-backed service makes for speed.

Migrations are `migrations/NNNN_name.sql`, applied in order at open, each in its own transaction
together with `PRAGMA user_version = NNNN`, so the recorded version always matches the schema.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import StoreError

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every bundled migration, in order."""
    found = []
    for entry in resources.files("bot.store.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"Migration files are not numbered 0001, 0002, ... without gaps: {versions}")
    return found


class Database:
    """An open Atelier database. Use `await Database.open(path)` and `await db.close()`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> Database:
        """Open (creating if needed) and migrate the database at `path`."""
        path = Path(path)
        if str(path) != ":memory:":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"Cannot create the data directory {path.parent}: {exc.strerror}") from None
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the database {path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await db._migrate()
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise StoreError(_explain(exc, path)) from None
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        known = migrations()
        current = await self._user_version()
        newest = known[-1][0] if known else 0
        if current > newest:
            raise StoreError(
                f"The database {self.path} has schema version {current}, but this Atelier only knows up to "
                f"{newest}: it was written by a newer Atelier. Upgrade Atelier, or point DATA_DIR elsewhere."
            )
        for version, name, sql in known:
            if version <= current:
                continue
            try:
                await self._conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {version};\nCOMMIT;")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                raise StoreError(f"Migration {name} failed on {self.path}: {exc}") from None

    async def _user_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0])

    async def schema_version(self) -> int:
        async with self._lock:
            return await self._user_version()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block as one write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.rollback()
                raise
            else:
                await self._conn.commit()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in its own transaction; returns the affected-row count."""
        async with self.transaction() as conn, conn.execute(sql, tuple(params)) as cursor:
            return cursor.rowcount


def _explain(exc: sqlite3.DatabaseError, path: Path) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"The database {path} is read-only: give the bot write access to it and to its folder."
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"The database {path} is corrupt or not a SQLite file ({text}). Restore a backup or move it away."
    return f"Cannot use the database {path}: {text}"
