"""The one SQLite connection every part of Atelier shares, and its migrations.

Why one connection behind one lock: SQLite allows a single writer anyway, and serialising every
transaction in-process means two concurrent reserves can never both read the same balance. Reads take
the lock too, so nobody sees another task's half-finished transaction. WAL with `synchronous=NORMAL`
survives a killed process (SIGKILL) without losing a committed transaction; only a power cut can lose
the last few, which is the trade every SQLite-backed service makes for speed. One bot process owns a
database file: a second one waits `busy_timeout_ms` at start-up and then refuses, naming the file.

Migrations are `migrations/NNNN_name.sql`, applied in order at open, each in its own transaction
together with `PRAGMA user_version = NNNN`, so the recorded version always matches the schema.

Every call hops to aiosqlite's worker thread and back (~40 µs), so the helpers below cost one hop each
where they can: a single statement needs no BEGIN/COMMIT, because SQLite makes each one atomic.
Checkpoints (copying the WAL back into the file, with an fsync) are the other big cost on slow disks:
`wal_autocheckpoint = 10000` pages does them ten times less often than SQLite's default, for a WAL of
up to ~40 MB.

At open the file is checked (`quick_check`, which reads each page once: about a second per GB) and
proven writable, so a corrupt, read-only or locked database stops the bot at start-up with a message
naming the file, instead of failing at the first generation.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import StoreError

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
Params = Iterable[Any] | Mapping[str, Any]  #: `?` values in order, or `:name` values by name


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
        self._owner: asyncio.Task[Any] | None = None
        self.path = path

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000) -> Database:
        """Open (creating if needed), check and migrate the database at `path`.

        Refuses with a `StoreError` naming the file when it is corrupt, read-only, locked by another
        process, or written by a newer Atelier.
        """
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
            await conn.execute("PRAGMA wal_autocheckpoint = 10000")
            await conn.execute("PRAGMA foreign_keys = ON")
            await db._check_integrity()
            await db._migrate()
            await db._check_writable()
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

    async def _check_writable(self) -> None:
        """Fail now, not at the first generation hours later, if the file cannot be written.

        BEGIN IMMEDIATE alone succeeds on a read-only file in WAL mode; rewriting the header does not.
        """
        version = await self._user_version()
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.execute(f"PRAGMA user_version = {version}")
        finally:
            await self._conn.rollback()

    async def _check_integrity(self) -> None:
        rows = await self._conn.execute_fetchall("PRAGMA quick_check(1)")
        verdict = str(rows[0][0]) if rows else "no answer"
        if verdict != "ok":
            raise StoreError(
                f"The database {self.path} is corrupt ({verdict}). Restore a backup or move the file away."
            )

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
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {version};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                if isinstance(exc, sqlite3.OperationalError) and _is_environmental(exc):
                    raise  # read-only or locked: explained by open(), not a broken migration
                raise StoreError(f"Migration {name} failed on {self.path}: {exc}") from None

    async def _user_version(self) -> int:
        rows = await self._conn.execute_fetchall("PRAGMA user_version")
        return int(rows[0][0])

    async def schema_version(self) -> int:
        async with self._exclusive():
            return await self._user_version()

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the connection; a task that already holds it gets an error instead of a deadlock."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            raise RuntimeError(
                "This task is already inside db.transaction(): pass its connection (conn=...) "
                "instead of starting another operation on the database."
            )
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block as one write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error).

        Inside the block use the yielded connection only (`await conn.execute_fetchall(...)` costs one
        hop); calling the Database's own methods from the same task raises instead of deadlocking.
        """
        async with self._exclusive():
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.rollback()
                raise
            else:
                await self._conn.commit()

    async def fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        """The rows of one statement, atomic on its own (no BEGIN needed), in one hop."""
        async with self._exclusive():
            return list(await self._conn.execute_fetchall(sql, _bind(params)))

    async def fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def write(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
        """One write statement, atomic on its own, in one hop; returns its RETURNING rows."""
        return await self.fetchall(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement, atomic on its own; returns the affected-row count (`write` for RETURNING)."""
        async with self._exclusive():
            cursor = await self._conn.execute(sql, _bind(params))
            try:
                return cursor.rowcount
            finally:
                await cursor.close()


def _bind(params: Params) -> tuple[Any, ...] | Mapping[str, Any]:
    return params if isinstance(params, Mapping) else tuple(params)


def _is_environmental(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "readonly" in text or "read-only" in text or "locked" in text or "unable to open" in text


def _explain(exc: sqlite3.DatabaseError, path: Path) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"The database {path} is read-only: give the bot write access to it and to its folder."
    if "locked" in text:
        return f"The database {path} is locked by another process: is another Atelier using this DATA_DIR?"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"The database {path} is corrupt or not a SQLite file ({text}): restore a backup or move it."
    if "unable to open" in text:
        return f"Cannot open the database {path}: check that the file and its folder exist and are writable."
    return f"Cannot use the database {path}: {text}"
