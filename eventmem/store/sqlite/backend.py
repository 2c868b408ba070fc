"""The SQLite backend: a ``sqlite3`` connection run on a worker thread.

Each operation is one plain function run on the connection's own thread (see
``eventmem.store.worker``), one at a time, so a whole transaction (BEGIN IMMEDIATE ... COMMIT) is a
single thread hop. That keeps a save to one round trip, and means a caller cancelled
while it awaits cannot leave a transaction half-open on the shared connection: the
function runs to COMMIT or ROLLBACK before the caller hears of its cancellation.
Concurrent writes are queued and committed together (see ``BatchedBackend._submit``).

``sqlite3`` errors are translated into eventmem's in ``eventmem.store.sqlite.errors``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import anyio

from eventmem.errors import ClosedError, EventmemError, NotAnEventmemDatabaseError, StorageError
from eventmem.messages import Message
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store import maintenance
from eventmem.store.base import Backend, ExportPage, OpenOptions
from eventmem.store.batched import BatchedBackend
from eventmem.store.content import EncryptedContent
from eventmem.store.partition import FoldSpread
from eventmem.store.sqlite.connection import SQLiteConnection, WouldWait
from eventmem.store.sqlite.errors import translated
from eventmem.store.sqlite.files import OpenPlan, check_wal, plan_open, remove_created
from eventmem.store.sqlite.fold_worker import SubprocessSpread
from eventmem.store.sqlite.migrations import apply_migrations
from eventmem.store.sqlite.wal import WRITES_PER_CHECKPOINT, WalCheckpointer
from eventmem.store.worker import Worker
from eventmem.store.writes import WriteOp, write_batch

__all__ = ["SQLiteBackend"]

T = TypeVar("T")


class SQLiteBackend(BatchedBackend):
    """Event logs and buffer projections in one SQLite file (WAL mode)."""

    def __init__(
        self,
        conn: SQLiteConnection,
        where: str,
        cache_sessions: int = 1024,
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
        plan: OpenPlan | None = None,
        read_only: bool = False,
        worker: Worker | None = None,
    ) -> None:
        super().__init__(where, cache_sessions, max_save_bytes, read_only, worker)
        self._conn = conn
        self._plan = plan
        # Checkpoints out of the callers' saves (see eventmem.store.sqlite.wal); the
        # writes since the last one asked for.
        self._checkpointer = (
            None
            if read_only or plan is None or plan.uri.startswith("file::memory:")
            else WalCheckpointer(plan.uri)
        )
        self._unchecked_writes = 0
        # A second connection, used on the caller's thread only to read a session's
        # version: a load whose view is cached then costs no thread hop (see
        # _cached_view). None for :memory: (a second connection would be another
        # database) and until the store is open.
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], options: OpenOptions) -> SQLiteBackend:
        """Open (and, if ``options.create``, create) the database and bring its schema up
        to date; ``options.triggers`` says what to do about a log whose triggers are not
        the schema's; with ``options.read_only``, open an existing store that nothing
        will be written to."""
        where, read_only, busy_ms = os.fspath(path), options.read_only, options.busy_timeout_ms
        plan = await anyio.to_thread.run_sync(_prepare, where, options.create, read_only, busy_ms)
        synchronous = {"normal": "NORMAL", "full": "FULL"}[options.durability]
        worker = Worker()
        try:
            conn = await worker.run(_connect, plan.uri, where)
        except BaseException as e:
            worker.stop()
            if isinstance(e, StorageError):
                raise _with_hint(e, where, read_only) from e.__cause__
            raise
        backend = cls(
            conn, where, options.cache_sessions, options.max_save_bytes, plan, read_only, worker
        )
        try:
            await backend._run(_configure, busy_ms, synchronous, options.create, read_only)
        except StorageError as e:
            await backend.close()
            raise _with_hint(e, where, read_only) from e.__cause__
        except BaseException:
            await backend.close()
            raise
        await backend._finish_open(options.triggers, options.encryption)
        if not plan.uri.startswith("file::memory:"):
            try:
                backend._reader = await worker.run(_connect_reader, plan.uri)
            except sqlite3.Error:
                backend._reader = None  # loads take the worker, as they always can
        return backend

    def _cached_view(self, session_id: str) -> tuple[int, list[Message]] | None:
        """The session's version read on the caller's thread (one indexed lookup, a few
        µs, never waiting: the reader's busy timeout is 0) and, if the cache holds that
        version, the view from it. Anything else (no reader, a busy or failing read, a
        cache miss) returns None and the worker answers, with its errors translated."""
        reader = self._reader
        if reader is None:
            return None
        try:
            rows = reader.execute(_VERSION_OF_SESSION, (session_id,)).fetchall()
        except sqlite3.Error:
            return None
        if not rows:
            return None  # no session (or none yet): the worker says so
        version = int(rows[0][0])
        cached = self._cache.get(session_id, version)
        return None if cached is None else (version, cached)

    async def _run(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run ``fn(connection, *args)`` on the worker thread, one call at a time
        (``pipelined`` means nothing to SQLite: its statements do not wait on a network)."""
        if self._closed:
            raise ClosedError("the store is closed")
        conn, where, read_only = self._conn, self._where, self._read_only

        def call() -> T:
            with translated(where, read_only=read_only):
                conn.wait_for_locks(conn.busy_timeout_ms)  # an inline write left it at 0
                try:
                    return fn(conn, *args)
                except BaseException:
                    if conn.in_transaction:  # no transaction outlives its call
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise

        # Not cancellable while the thread runs: the call always ends in COMMIT or
        # ROLLBACK before the caller hears of its cancellation.
        return await self._worker.run(call)

    def _write_here(self, ops: list[WriteOp]) -> Sequence[int | BaseException] | None:
        """A lone write runs on the caller's thread when the worker is idle and the
        write lock is free at once: a save then costs no thread hop (~60 µs here, more
        after an idle spell). Batches, and writes that would wait for the lock, go to
        the worker, which waits with the busy timeout and lets the loop run meanwhile."""
        if (
            len(ops) == 1
            and self._reader is not None
            and not self._worker.busy
            # A key store may block (a file, a KMS): only a key in memory is used here.
            and self._conn.content.holds_key(ops[0].session_id)
        ):
            return self._write_inline(ops)
        return None

    def _write_inline(self, ops: list[WriteOp]) -> list[int | EventmemError] | None:
        """``write_batch`` on this thread; None when it would have waited for the lock
        (nothing was written then)."""
        conn = self._conn
        with translated(self._where, read_only=self._read_only):
            conn.inline = True
            try:
                return write_batch(conn, self._cache, ops)
            except WouldWait:
                return None
            except BaseException:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            finally:
                conn.inline = False

    def _spread(self, processes: int | None) -> FoldSpread | None:
        """Child processes that fold parts of the file (not of an in-memory database:
        another process cannot open it). An encrypted store's children are handed the
        data keys of their parts' sessions through their pipes."""
        plan = self._plan
        if plan is None or plan.uri.startswith("file::memory:") or processes == 1:
            return None
        content = self._content if isinstance(self._content, EncryptedContent) else None
        return SubprocessSpread(plan.uri, processes, content)

    def _after_writes(self, count: int) -> None:
        """Ask for a WAL checkpoint every ``WRITES_PER_CHECKPOINT`` writes."""
        if self._checkpointer is None:
            return
        self._unchecked_writes += count
        if self._unchecked_writes >= WRITES_PER_CHECKPOINT:
            self._unchecked_writes = 0
            self._checkpointer.request()

    @asynccontextmanager
    async def export_snapshot(self) -> AsyncIterator[ExportPage]:
        """Pages of the events committed when the export started: with one writer at a
        time, ids are assigned in commit order, so every event up to the highest id then
        is committed, and paging by id up to it reads the log as it was (an export under
        writers that never pause still ends)."""
        last = await self._run(maintenance.last_event_id)

        async def page(
            session_id: str | None, after_id: int, limit: int
        ) -> tuple[int, list[bytes]]:
            return await self._run(maintenance.export_page, session_id, after_id, limit, last)

        yield page

    async def close(self) -> None:
        """Close the connection (idempotent). Shielded: a close that is cancelled still
        closes the connection before the cancellation goes on."""
        if not self._closed:
            self._closed = True
            with anyio.CancelScope(shield=True):
                if self._checkpointer is not None:
                    # Its connection closes first, so the store's own is the last one:
                    # that one checkpoints the WAL a final time and removes it.
                    await anyio.to_thread.run_sync(self._checkpointer.stop)
                reader, self._reader = self._reader, None
                if reader is not None:
                    await self._worker.run(reader.close)
                # After the calls already submitted: the worker runs them in order.
                await self._worker.run(self._conn.close)
                self._worker.stop()
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
    """Check the files before connecting (see `eventmem.store.sqlite.files`)."""
    if where == ":memory:":
        if read_only:
            raise StorageError("cannot open :memory: read-only: it has no store to read")
        return OpenPlan("file::memory:")
    target = _target(where)
    with translated(where):
        plan = plan_open(target, where, create=create, read_only=read_only)
        check_wal(target.resolve(), where, busy_timeout_ms)
    return plan


def _connect(uri: str, where: str) -> SQLiteConnection:
    """The connection, in autocommit mode (the store's functions open transactions
    themselves), used from one worker thread at a time."""
    with translated(where):
        conn = sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            factory=SQLiteConnection,
        )
    assert isinstance(conn, SQLiteConnection)
    return conn


# fetchall, not fetchone: the statement runs to its end, so no read transaction stays
# open on the reader (it would hold back WAL checkpoints).
_VERSION_OF_SESSION = "SELECT version FROM sessions WHERE session_id = ?"


def _connect_reader(uri: str) -> sqlite3.Connection:
    """The caller-thread reader: autocommit, read-only, never waiting for a lock."""
    reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        reader.execute("PRAGMA busy_timeout = 0")
        reader.execute("PRAGMA query_only = 1")
    except BaseException:
        reader.close()
        raise
    return reader


def _configure(
    conn: SQLiteConnection, busy_timeout_ms: int, synchronous: str, create: bool, read_only: bool
) -> None:
    conn.busy_timeout_ms = busy_timeout_ms
    conn.wait_for_locks(busy_timeout_ms)
    # refuses foreign files before anything below writes to them
    apply_migrations(conn, create=create and not read_only, migrate=not read_only)
    if read_only:
        return  # the file is read as it is, in whichever journal mode
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Checkpoints run on a thread of their own (eventmem.store.sqlite.wal), not in a save.
    conn.execute("PRAGMA wal_autocheckpoint = 0")


# The class implements the interface the memories and the store are written against.
_: type[Backend] = SQLiteBackend
