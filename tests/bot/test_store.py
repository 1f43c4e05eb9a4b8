"""The database file: created on first start, migrated in order, refused with a clear reason when unusable."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Database
from bot.store import db as db_module
from bot.store.db import migrations


def query(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def schema_version(path: Path) -> int:
    return query(path, "PRAGMA user_version")[0][0]


def tables(path: Path) -> set[str]:
    return {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_a_fresh_data_dir_needs_no_manual_step(tmp_path):
    """Pointing DATA_DIR at a folder that does not exist yet just works: folder, file and schema appear."""
    path = tmp_path / "new" / "data" / "atelier.sqlite3"
    async with await Database.open(path) as db:
        assert await db.schema_version() == len(migrations())
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1
        assert (await db.fetchone("PRAGMA busy_timeout"))[0] > 0
    assert {"credit_accounts", "credit_ledger", "credit_holds"} <= tables(path)


async def test_reopening_keeps_the_data_and_applies_nothing_twice(tmp_path):
    """A restart finds yesterday's data; migrations that already ran are not run again."""
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path) as db:
        await db.execute("INSERT INTO credit_policies (scope, allowance, updated_at) VALUES (1, 7, 0)")
    async with await Database.open(path) as db:
        assert (await db.fetchone("SELECT allowance FROM credit_policies WHERE scope = ?", (1,)))[0] == 7
        assert await db.schema_version() == len(migrations())


async def test_a_database_from_a_newer_atelier_is_refused(tmp_path):
    """Downgrading Atelier over a newer database stops with the versions and the file, and changes nothing."""
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path):
        pass
    newer = len(migrations()) + 5
    query(path, f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError) as refused:
        await Database.open(path)
    message = str(refused.value)
    assert str(path) in message and f"version {newer}" in message and "newer Atelier" in message
    assert schema_version(path) == newer


def write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, just some text " * 200)


def damage_a_page(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE filler (x)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(100)])
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'filler'").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages must be in the file, not only in the WAL
    conn.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * page_size)


@pytest.mark.parametrize("damage", [write_garbage, damage_a_page])
async def test_a_corrupt_file_is_refused_at_start_up(tmp_path, damage):
    """A damaged database stops the bot at start-up with "corrupt" and the file's path, not a traceback."""
    path = tmp_path / "atelier.sqlite3"
    if damage is damage_a_page:
        async with await Database.open(path):
            pass
    damage(path)
    with pytest.raises(StoreError, match="corrupt") as refused:
        await Database.open(path)
    assert str(path) in str(refused.value)


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file read-only even for root (who ignores permission bits), or skip the test."""
    undo: list[Callable[[], object]] = []

    def make(path: Path) -> None:
        path.chmod(0o444)
        undo.append(lambda: path.chmod(0o644))
        if not os.access(path, os.W_OK):
            return
        chattr = shutil.which("chattr")
        if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
            undo.append(lambda: subprocess.run([chattr, "-i", str(path)], check=True))
            return
        pytest.skip("cannot make a file read-only for this user (root without chattr)")

    yield make
    for step in reversed(undo):
        step()


async def test_a_read_only_file_is_refused_at_start_up(tmp_path, read_only):
    """A database the bot cannot write is reported at start-up as read-only, with its path."""
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path):
        pass
    read_only(path)
    with pytest.raises(StoreError, match="read-only") as refused:
        await Database.open(path)
    assert str(path) in str(refused.value)


async def test_a_database_locked_by_another_process_is_refused(tmp_path):
    """A second bot on the same DATA_DIR is told another process holds the file."""
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path):
        pass
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked by another process") as refused:
            await Database.open(path, busy_timeout_ms=50)
        assert str(path) in str(refused.value)
    finally:
        other.close()


def use_migrations(monkeypatch, folder: Path, files: dict[str, str]) -> None:
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(sql)
    monkeypatch.setattr(db_module, "resources", types.SimpleNamespace(files=lambda _package: folder))


async def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    """If an upgrade's migration fails halfway, the database stays at the old version with no half tables."""
    folder = tmp_path / "migrations"
    use_migrations(monkeypatch, folder, {"0001_first.sql": "CREATE TABLE first (x);"})
    path = tmp_path / "atelier.sqlite3"
    async with await Database.open(path):
        pass
    (folder / "0002_broken.sql").write_text("CREATE TABLE half (x);\nINSERT INTO missing VALUES (1);")
    with pytest.raises(StoreError, match=r"0002_broken\.sql failed") as refused:
        await Database.open(path)
    assert str(path) in str(refused.value)
    assert schema_version(path) == 1
    assert tables(path) == {"first"}


async def test_migrations_must_be_numbered_without_gaps(tmp_path, monkeypatch):
    """A missing migration number is caught before anything is applied."""
    use_migrations(monkeypatch, tmp_path / "migrations", {"0001_a.sql": "", "0003_c.sql": ""})
    with pytest.raises(StoreError, match=r"without gaps: \[1, 3\]"):
        await Database.open(tmp_path / "atelier.sqlite3")
    assert not (tmp_path / "atelier.sqlite3").exists() or tables(tmp_path / "atelier.sqlite3") == set()


async def test_a_transaction_is_all_or_nothing(db):
    """An error inside `db.transaction()` undoes every write made in it."""
    await db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(ValueError, match="boom"):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
            raise ValueError("boom")
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO t VALUES (2)")
    assert [row[0] for row in await db.fetchall("SELECT x FROM t")] == [2]


async def test_using_the_database_inside_its_own_transaction_fails_fast(db):
    """Calling a Database method from inside a transaction raises instead of hanging the bot forever."""
    with pytest.raises(RuntimeError, match="pass its connection"):
        async with asyncio.timeout(5), db.transaction():
            await db.fetchall("SELECT 1")


async def test_helpers_take_positional_or_named_parameters(db):
    """`execute` counts affected rows and `write` returns RETURNING rows, with ? or :name parameters."""
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
    rows = await db.write("INSERT INTO t (x) VALUES (:x), (:x) RETURNING id", {"x": 5})
    assert [row["id"] for row in rows] == [1, 2]
    assert await db.execute("UPDATE t SET x = ? WHERE x = ?", (6, 5)) == 2
    assert (await db.fetchone("SELECT count(*) AS n FROM t WHERE x = :x", {"x": 6}))["n"] == 2
    assert await db.fetchone("SELECT * FROM t WHERE x = 99") is None


async def test_concurrent_transactions_never_interleave(db):
    """Many tasks incrementing one counter through read-then-write transactions lose no update."""
    await db.execute("CREATE TABLE counter (n INTEGER)")
    await db.execute("INSERT INTO counter VALUES (0)")

    async def bump() -> None:
        async with db.transaction() as conn:
            (n,) = (await conn.execute_fetchall("SELECT n FROM counter"))[0]
            await asyncio.sleep(0)
            await conn.execute("UPDATE counter SET n = ?", (n + 1,))

    await asyncio.gather(*(bump() for _ in range(200)))
    assert (await db.fetchone("SELECT n FROM counter"))[0] == 200
