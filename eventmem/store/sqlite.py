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
    ReadOnlyStoreError,
    StorageError,
)
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store.base import Backend, Durability, ExportPage, Progress, TriggerMode
from eventmem.store.batched import BatchedBackend
from eventmem.store.migrate import apply_migrations
from eventmem.store.sql import SQLiteConnection
from eventmem.store.sqlite_files import OpenPlan, check_wal, plan_open, remove_created

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
        plan: OpenPlan | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(where, cache_sessions, max_save_bytes, read_only)
        self._conn = conn
        self._plan = plan

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
        read_only: bool = False,
    ) -> SQLiteBackend:
        """Open (and, if ``create``, create) the database and bring its schema up to date;
        ``triggers`` says what to do about a log whose triggers are not the schema's; with
        ``read_only``, open an existing store that nothing will be written to."""
        where = os.fspath(path)
        busy_ms = int(busy_timeout * 1000)
        try:
            plan = await anyio.to_thread.run_sync(_prepare, where, create, read_only, busy_ms)
        except sqlite3.Error as e:
            raise _translate(e, where) from e
        synchronous = {"normal": "NORMAL", "full": "FULL"}[durability]
        conn = aiosqlite.connect(plan.uri, uri=True, isolation_level=None, factory=SQLiteConnection)
        try:
            await conn
        except sqlite3.Error as e:
            # aiosqlite stops its thread on a failed connect; let it finish while the loop
            # still runs, or it reports to a closed loop later.
            await anyio.to_thread.run_sync(conn._thread.join, 5.0)
            raise _with_hint(_translate(e, where), where, read_only) from e
        backend = cls(conn, where, cache_sessions, max_save_bytes, plan, read_only)
        try:
            await backend._run(_configure, busy_ms, synchronous, create, read_only)
        except StorageError as e:
            await backend.close()
            raise _with_hint(e, where, read_only) from e.__cause__
        except BaseException:
            await backend.close()
            raise
        await backend._finish_open(triggers)
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
                error = _translate(e, self._where)
                if self._read_only and isinstance(error, ReadOnlyDatabaseError):
                    error = ReadOnlyStoreError(f"{self._where} was opened read-only: {e}")
                raise error from e

        result: T = await conn._execute(call)  # type: ignore[no-untyped-call]
        return result

    @asynccontextmanager
    async def export_snapshot(self) -> AsyncIterator[ExportPage]:
        """``export_page`` itself: with one writer at a time, ids are assigned in
        commit order, so paging by id never passes an event that commits later."""
        yield self.export_page

    async def close(self) -> None:
        """Close the connection (idempotent). Shielded: a close that is cancelled still
        closes the connection before the cancellation goes on."""
        if not self._closed:
            self._closed = True
            with anyio.CancelScope(shield=True):
                await self._conn.close()
                if self._plan is not None and self._plan.absent:
                    await anyio.to_thread.run_sync(remove_created, _target(self._where), self._plan)


def _with_hint(error: EventmemError, where: str, read_only: bool) -> EventmemError:
    """A store that cannot be opened for writing because its directory cannot be written
    (read-only media): say that it can be read."""
    if read_only or where == ":memory:" or not isinstance(error, StorageError):
        return error
    if isinstance(error, NotAnEventmemDatabaseError):
        return error
    target = _target(where).resolve()
    if not target.is_file() or os.access(target.parent, os.W_OK):
        return error
    return type(error)(
        f"{error} (its directory cannot be written, so SQLite cannot make the -wal and -shm "
        "files a writer needs; eventmem.open(path, read_only=True) reads it)"
    )


def _target(where: str) -> Path:
    return Path(where).expanduser().absolute()


def _prepare(where: str, create: bool, read_only: bool, busy_timeout_ms: int) -> OpenPlan:
    """Check the files before connecting (see `eventmem.store.sqlite_files`)."""
    if where == ":memory:":
        if read_only:
            raise StorageError("cannot open :memory: read-only: it has no store to read")
        return OpenPlan("file::memory:")
    target = _target(where)
    plan = plan_open(target, where, create=create, read_only=read_only)
    check_wal(target.resolve(), where, busy_timeout_ms)
    return plan


def _configure(
    conn: sqlite3.Connection, busy_timeout_ms: int, synchronous: str, create: bool, read_only: bool
) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    # refuses foreign files before anything below writes to them
    apply_migrations(conn, create=create and not read_only, migrate=not read_only)
    if read_only:
        return  # the file is read as it is, in whichever journal mode
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")


# The class implements the interface the memories and the store are written against.
_: type[Backend] = SQLiteBackend
