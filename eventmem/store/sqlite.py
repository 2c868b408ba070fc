"""The SQLite backend, on aiosqlite.

Each operation is one plain function run on aiosqlite's worker thread: a whole
transaction (BEGIN IMMEDIATE ... COMMIT) is a single thread hop. That keeps a save to
one round trip, and means a caller cancelled while it awaits cannot leave a transaction
half-open on the shared connection: the function runs to COMMIT or ROLLBACK regardless.
Concurrent writes are queued and committed together (see
``_submit``).

``sqlite3`` errors are translated into eventmem's in exactly one place, ``_translate``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import anyio

from eventmem.errors import (
    ClosedError,
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    NotAnEventmemDatabaseError,
    ReadOnlyDatabaseError,
    StorageError,
)
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store.base import Backend, Durability, ExportPage, Progress, TriggerMode
from eventmem.store.batched import BatchedBackend
from eventmem.store.migrate import apply_migrations
from eventmem.store.sql import SQLiteConnection

__all__ = ["Durability", "Progress", "SQLiteBackend"]

T = TypeVar("T")


def _translate(error: sqlite3.Error, where: str) -> EventmemError:
    """The one place sqlite3 errors become eventmem errors."""
    text = str(error)
    lowered = text.lower()
    if "file is not a database" in lowered:
        return NotAnEventmemDatabaseError(f"{where} is not a SQLite database ({text})")
    if "malformed" in lowered or "corrupt" in lowered:
        return CorruptDatabaseError(f"{where} is corrupt: {text}")
    if "locked" in lowered or "busy" in lowered:
        return DatabaseLockedError(
            f"{where}: another connection held the write lock past the busy timeout ({text})"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return ReadOnlyDatabaseError(f"{where} cannot be written: {text}")
    if "full" in lowered:
        return DiskFullError(f"{where}: no space left, the write was rolled back ({text})")
    if "unable to open" in lowered:
        return StorageError(f"cannot open {where}: {text}")
    return StorageError(f"{where}: SQLite error: {text}")


class SQLiteBackend(BatchedBackend):
    """Event logs and buffer projections in one SQLite file (WAL mode)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        where: str,
        cache_sessions: int = 1024,
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
    ) -> None:
        super().__init__(where, cache_sessions, max_save_bytes)
        self._conn = conn

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        cache_sessions: int = 1024,
        triggers: TriggerMode = "require",
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
    ) -> SQLiteBackend:
        """Open (and, if ``create``, create) the database and bring its schema up to date;
        ``triggers`` says what to do about a log whose triggers are not the schema's."""
        where = os.fspath(path)
        database = await anyio.to_thread.run_sync(_database_uri, where, create)
        synchronous = {"normal": "NORMAL", "full": "FULL"}[durability]
        conn = aiosqlite.connect(database, uri=True, isolation_level=None, factory=SQLiteConnection)
        try:
            await conn
        except sqlite3.Error as e:
            # aiosqlite stops its thread on a failed connect; let it finish while the loop
            # still runs, or it reports to a closed loop later.
            await anyio.to_thread.run_sync(conn._thread.join, 5.0)
            raise _translate(e, where) from e
        backend = cls(conn, where, cache_sessions, max_save_bytes)
        try:
            await backend._run(_configure, int(busy_timeout * 1000), synchronous, create)
            await backend._check_triggers(triggers)
        except BaseException:
            await conn.close()
            raise
        return backend

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the connection's thread."""
        if self._closed:
            raise ClosedError("the store is closed")
        conn = self._conn

        def call() -> T:
            raw = conn._conn  # a SQLiteConnection, kept by aiosqlite for its own thread
            try:
                return fn(raw, *args)
            except sqlite3.Error as e:
                raise _translate(e, self._where) from e

        result: T = await conn._execute(call)  # type: ignore[no-untyped-call]
        return result

    @asynccontextmanager
    async def export_snapshot(self) -> AsyncIterator[ExportPage]:
        """``export_page`` itself: with one writer at a time, ids are assigned in
        commit order, so paging by id never passes an event that commits later."""
        yield self.export_page

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            await self._conn.close()


def _database_uri(target: str, create: bool) -> str:
    if target == ":memory:":
        return "file::memory:"
    resolved = Path(target).expanduser().absolute()
    if resolved.is_dir():
        raise StorageError(f"cannot open {target}: it is a directory")
    if not create and not resolved.exists():
        raise StorageError(f"cannot open {target}: no such database file")
    return resolved.as_uri() + ("" if create else "?mode=rw")


def _configure(
    conn: sqlite3.Connection, busy_timeout_ms: int, synchronous: str, create: bool
) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    # refuses foreign files before anything below writes to them
    apply_migrations(conn, create=create)
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")


# The class implements the interface the memories and the store are written against.
_: type[Backend] = SQLiteBackend
