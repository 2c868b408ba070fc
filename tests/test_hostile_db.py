"""Hostile database files: each gives a clear error and leaves what was there intact."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import eventmem
from eventmem.store.sqlite import SQLiteBackend

pytestmark = pytest.mark.anyio


async def _make_store(path: Path, turns: int = 30) -> None:
    async with eventmem.open(path) as store:
        mem = store.token_buffer("s", max_token_limit=100)
        for i in range(turns):
            await mem.asave_context({"input": f"question {i} " * 20}, {"output": f"answer {i}"})
    # fold the WAL into the main file so the file on disk is the whole database
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def _read_everything(path: Path) -> None:
    async with eventmem.open(path) as store:
        for session in await store.sessions():
            [e async for e in store.events(session)]
            await store.messages(session)
        await store.verify()


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable, also for root (who ignores permission bits)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a file read-only")
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {made.stderr!r}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(stat.S_IRUSR)
        try:
            yield
        finally:
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)


async def test_a_truncated_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    await _make_store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    damaged = path.read_bytes()
    with pytest.raises((eventmem.CorruptDatabaseError, eventmem.NotAnEventmemDatabaseError)):
        await _read_everything(path)
    assert path.read_bytes() == damaged


async def test_a_file_with_garbage_pages_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    await _make_store(path, turns=200)
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):
        data[offset : offset + page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    with pytest.raises(eventmem.CorruptDatabaseError, match="corrupt"):
        await _read_everything(path)
    assert path.read_bytes() == bytes(data)


async def test_a_read_only_file_can_be_read_but_not_written(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    await _make_store(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    before = path.read_bytes()
    with read_only(path):
        async with eventmem.open(path) as store:
            assert len(await store.messages("s")) > 0
            with pytest.raises(eventmem.ReadOnlyDatabaseError):
                await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
            assert len(await store.messages("s")) > 0
    assert path.read_bytes() == before


async def test_a_full_disk_rolls_the_save_back_and_the_store_stays_usable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.db"
    async with eventmem.open(path) as store:
        mem = store.token_buffer("s", max_token_limit=10**6)
        await mem.asave_context({"input": "small"}, {"output": "fine"})
        backend = store._backend
        assert isinstance(backend, SQLiteBackend)
        pages = await backend._run(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await backend._run(
            lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 2}").fetchone()
        )
        with pytest.raises(eventmem.DiskFullError):
            await mem.asave_context({"input": "x" * 200_000}, {"output": "y"})
        assert await store.count_events() == 1
        assert [m.content for m in await store.messages("s")] == ["small", "fine"]
        await backend._run(
            lambda conn: conn.execute("PRAGMA max_page_count = 1073741823").fetchone()
        )
        await mem.asave_context({"input": "after"}, {"output": "ok"})
        assert (await store.verify()).ok


async def test_a_database_from_the_future_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    await _make_store(path, turns=3)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO eventmem_migrations VALUES (999, 'hover_boards', 'later')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(eventmem.SchemaVersionError, match="newer eventmem"):
        await eventmem.open(path)
    assert path.read_bytes() == before


async def test_copies_of_a_store_open_independently(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    await _make_store(path, turns=5)
    shutil.copyfile(path, tmp_path / "b.db")
    async with eventmem.open(tmp_path / "b.db") as copy:
        assert (await copy.verify()).ok
        assert len(await copy.messages("s")) > 0


def test_sqlite_errors_are_mapped_by_their_result_code() -> None:
    """The code SQLite reports decides the class, whatever the message says; an error
    without a code (Python 3.10, or raised by the sqlite3 module) falls back to the
    fixed text SQLite gives each code."""
    from eventmem.errors import (
        DatabaseLockedError,
        DiskFullError,
        NotAnEventmemDatabaseError,
        ReadOnlyStoreError,
        StorageError,
    )
    from eventmem.store.sqlite.errors import translate

    def coded(code: int, message: str) -> sqlite3.Error:
        error = sqlite3.OperationalError(message)
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
        return error

    assert type(translate(coded(13, "no words about it"), "f")) is DiskFullError
    assert type(translate(coded(5 | 2 << 8, "x"), "f")) is DatabaseLockedError  # extended
    assert type(translate(coded(1, "table locked_out has no column x"), "f")) is StorageError
    uncoded = sqlite3.OperationalError("attempt to write a readonly database")
    assert type(translate(uncoded, "f", read_only=True)) is ReadOnlyStoreError
    notadb = sqlite3.DatabaseError("file is not a database")
    assert type(translate(notadb, "f")) is NotAnEventmemDatabaseError


def test_a_real_sqlite_error_carries_the_code_it_is_mapped_by(tmp_path: Path) -> None:
    from eventmem.errors import NotAnEventmemDatabaseError
    from eventmem.store.sqlite.errors import translate

    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database at all, " * 100)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError) as raised:
            conn.execute("SELECT * FROM sqlite_master")
    finally:
        conn.close()
    assert type(translate(raised.value, str(path))) is NotAnEventmemDatabaseError
