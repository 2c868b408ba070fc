"""The PostgreSQL backend, on psycopg 3.

The store's statements and write logic are the ones SQLite runs (see
``eventmem.store.sql``); this package supplies PostgreSQL's side of the connection
interface (``connection``), the translation of its errors (``errors``), its migrations
(``schema``) and opening a store from a URL (``target``). As with SQLite, each operation
(a whole transaction) runs on a worker thread that owns the connection, so a save is one
thread hop and a caller cancelled while it waits cannot leave a transaction half-open.
Concurrent saves are committed in batches the same way. Two calls skip the hop while the
worker is idle, borrowing its connection from the loop (``loop_io``): a lone save whose
session's head the connection knows, sent in one round trip (``at_once``), and a cached
load's version check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import anyio
import psycopg

from eventmem.errors import ClosedError, EventmemError
from eventmem.messages import Message
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store import maintenance, reads
from eventmem.store.base import Backend, ExportPage, OpenOptions
from eventmem.store.batched import BatchedBackend
from eventmem.store.cache import ViewCache
from eventmem.store.postgres import loop_io
from eventmem.store.postgres.at_once import NotAtOnce
from eventmem.store.postgres.connection import PostgresConnection
from eventmem.store.postgres.errors import translated
from eventmem.store.postgres.target import Settings, Target, connect
from eventmem.store.worker import Worker
from eventmem.store.writes import WriteOp, finish_batch, run_batch

__all__ = ["PostgresBackend"]

T = TypeVar("T")


class PostgresBackend(BatchedBackend):
    """Event logs and buffer projections in one schema of a PostgreSQL database.

    The batching, the cache and every operation are shared with SQLite's backend; only
    the connection differs (how it is opened, run, snapshotted and closed).
    """

    def __init__(
        self,
        conn: PostgresConnection,
        target: Target,
        settings: Settings,
        cache_sessions: int,
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
        worker: Worker | None = None,
    ) -> None:
        super().__init__(target.display, cache_sessions, max_save_bytes, settings.read_only, worker)
        self._pg = conn
        self._target = target
        self._settings = settings
        # Set while a write on the loop uses the worker's connection (``_write_on_loop``).
        self._borrowed: anyio.Event | None = None

    @classmethod
    async def open(cls, url: str, options: OpenOptions) -> PostgresBackend:
        """Connect, and (if ``options.create``) create the store's schema or bring it up
        to date; ``options.triggers`` says what to do about a log whose triggers are not
        the schema's; with ``options.read_only``, open an existing store in read-only
        sessions."""
        target = Target(url)
        # lock_timeout 0 would mean "wait forever"; busy_timeout 0 means "do not wait".
        settings = Settings(max(1, options.busy_timeout_ms), options.durability, options.read_only)
        worker = Worker()
        try:
            raw = await worker.run(connect, target, settings, options.create)
        except BaseException:
            worker.stop()
            raise
        conn = PostgresConnection(raw, target.schema, max(options.cache_sessions, 64))
        backend = cls(
            conn, target, settings, options.cache_sessions, options.max_save_bytes, worker
        )
        await backend._finish_open(options.triggers, options.encryption)
        return backend

    async def _run(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run ``fn(connection, *args)`` on the worker thread, one call at a time;
        ``pipelined``: in a pipeline, where statements whose results are not read (the
        writes) are sent without waiting, and only reads and the commit wait for the
        server. (Verify, rebuild and export stream through a server-side cursor, which
        a pipeline cannot hold.)"""
        if self._closed:
            raise ClosedError("the store is closed")
        while self._borrowed is not None:  # a write on the loop holds the connection
            await self._borrowed.wait()

        def attempt() -> T:
            conn = self._pg
            if conn.raw.closed:
                # The server went away since the last call: reconnect.
                conn.raw = connect(self._target, self._settings, False)
            conn.start_call()
            if not pipelined:
                return fn(conn, *args)
            with conn.raw.pipeline():
                return fn(conn, *args)

        def call() -> T:
            conn = self._pg
            with translated(self._where, read_only=self._read_only):
                try:
                    try:
                        return attempt()
                    except psycopg.OperationalError:
                        if not conn.raw.closed or conn.commit_sent:
                            raise
                        # The connection died (a server restart, a failover) before this
                        # call sent a COMMIT, so nothing of it was committed: run it
                        # again once on a new connection, rather than fail it.
                        _abandon(conn)
                        return attempt()
                except BaseException:
                    _abandon(conn)  # no transaction outlives its call, whatever ended it
                    raise

        # Not cancellable while the thread runs: the call always ends in COMMIT or
        # ROLLBACK before the caller hears of its cancellation.
        return await self._worker.run(call)

    async def load_view_at(self, session_id: str) -> tuple[int, list[Message]]:
        """A cached buffer whose version is confirmed from the loop (one round trip on
        the worker's connection, borrowed while the worker is idle: no thread hop);
        anything else from the worker (which also prepares the version's statement)."""
        if self._closed:
            raise ClosedError("the store is closed")
        if (
            self._cache.holds(session_id)
            and not self._worker.busy
            and self._borrowed is None
            and loop_io.usable()
        ):
            version = await self._version_on_loop(session_id)
            if version is not None:
                cached = self._cache.get(session_id, version)
                if cached is not None:
                    return version, cached
        return await self._run(_load_view_at, self._cache, session_id)

    async def _version_on_loop(self, session_id: str) -> int | None:
        """The session's version read from the loop, or None (no such session, the
        statement not prepared yet, a connection that failed: the worker's path then
        answers, reconnecting and translating errors as every call does)."""
        conn = self._pg
        borrowed = self._borrowed = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # one round trip, never left half-way
                version = await conn.version_on_loop(session_id)
        finally:
            self._borrowed = None
            borrowed.set()
        return version

    async def _run_writes(self, ops: list[WriteOp]) -> list[int | EventmemError]:
        """A batch in one round trip when this connection knows its sessions' heads,
        else (or when that finds a head stale) in a pipeline: see ``_write_batch``. A
        lone write sent at once goes from the loop, when the worker is idle: no thread
        hop (``_write_on_loop``)."""
        if (
            len(ops) == 1
            and ops[0].rerunnable
            and not self._worker.busy
            and loop_io.usable()
            # A key store may block (a file, a KMS): only a key in memory is used here.
            and self._pg.content.holds_key(ops[0].session_id)
        ):
            results = await self._write_on_loop(ops)
            if results is not None:
                return results
        return await self._run(_write_batch, self._cache, ops)

    async def _write_on_loop(self, ops: list[WriteOp]) -> list[int | EventmemError] | None:
        """The batch composed on the loop's thread (as SQLite's lone writes run on the
        caller's) and sent through libpq on the loop, the worker's connection borrowed
        meanwhile (its calls wait for it); None when it cannot go that way (a head not
        known or found stale, a read it needs, a statement not prepared yet): nothing of
        it was committed, and the worker runs it."""
        conn, cache = self._pg, self._cache
        sessions = {op.session_id for op in ops}
        if self._closed or self._borrowed is not None or not conn.can_write_at_once(sessions):
            return None  # (closed: the worker's path says so)
        borrowed = self._borrowed = anyio.Event()
        try:
            with translated(self._where, read_only=self._read_only):
                conn.start_call()
                conn.start_at_once(send=False)
                try:
                    outcomes = run_batch(conn, cache, ops)
                except NotAtOnce:
                    return None
                finally:
                    conn.end_at_once()
                if conn.composed is None:  # nothing to commit (every write refused)
                    if any(not isinstance(o, EventmemError) for o in outcomes):
                        return None  # (not reached: a write that was not refused composes)
                    return finish_batch(cache, outcomes)
                with anyio.CancelScope(shield=True):  # it runs to COMMIT, as on the worker
                    if not await conn.send_composed():
                        return None
            return finish_batch(cache, outcomes)
        except BaseException:
            conn.forget(sessions)
            cache.forget(sessions)
            raise
        finally:
            self._borrowed = None
            borrowed.set()

    @asynccontextmanager
    async def export_snapshot(self) -> AsyncIterator[ExportPage]:
        """Pages read in one repeatable-read transaction on a connection of their own:
        writers in other transactions may commit a lower id after a higher one, so
        pages by id outside one snapshot could pass an event that commits later."""
        if self._closed:
            raise ClosedError("the store is closed")
        worker = Worker()
        try:
            raw = await worker.run(connect, self._target, self._settings, False)
        except BaseException:
            worker.stop()
            raise
        reader = PostgresConnection(raw, self._target.schema)

        def call(session_id: str | None, after_id: int, limit: int) -> tuple[int, list[bytes]]:
            with translated(self._where, read_only=self._read_only):
                if not reader.in_transaction:
                    reader.begin_read()
                return maintenance.export_page(reader, session_id, after_id, limit)

        async def page(
            session_id: str | None, after_id: int, limit: int
        ) -> tuple[int, list[bytes]]:
            return await worker.run(call, session_id, after_id, limit)

        try:
            yield page
        finally:
            with anyio.CancelScope(shield=True):
                await worker.run(raw.close)
                worker.stop()

    async def close(self) -> None:
        """Close the connection (idempotent). Shielded: a close that is cancelled still
        closes the connection (waiting for a call in progress to end) before the
        cancellation goes on."""
        if not self._closed:
            self._closed = True
            with anyio.CancelScope(shield=True):
                while self._borrowed is not None:
                    await self._borrowed.wait()
                await self._worker.run(self._pg.raw.close)
                self._worker.stop()


def _write_batch(
    conn: PostgresConnection, cache: ViewCache, ops: list[WriteOp]
) -> list[int | EventmemError]:
    """``write_batch``, first composed at once from the known heads (one round trip; see
    ``eventmem.store.postgres.at_once``), else with its heads read under its locks and
    its writes pipelined (two round trips). A batch that fails, or may have, leaves its
    sessions' heads and cached buffers unknown."""
    sessions = {op.session_id for op in ops}
    try:
        if all(op.rerunnable for op in ops) and conn.can_write_at_once(sessions):
            conn.start_at_once()
            try:
                outcomes = run_batch(conn, cache, ops)
                if conn.sent_at_once:
                    return finish_batch(cache, outcomes)
            except NotAtOnce:
                pass  # nothing of it was committed: the usual way
            finally:
                conn.end_at_once()
        with conn.raw.pipeline():
            outcomes = run_batch(conn, cache, ops)
        # The pipeline ends when the server answered the COMMIT: only then does the
        # cache follow the writes (a COMMIT that failed leaves it as it was).
        conn.committed()
        return finish_batch(cache, outcomes)
    except BaseException:
        conn.forget(sessions)
        cache.forget(sessions)
        raise


def _load_view_at(
    conn: PostgresConnection, cache: ViewCache, session_id: str
) -> tuple[int, list[Message]]:
    """``reads.load_view_at``; the statement a load reads its version with from the loop
    is prepared first, if it is not yet."""
    conn.prepare_version()
    return reads.load_view_at(conn, cache, session_id)


def _abandon(conn: PostgresConnection) -> None:
    """Roll back a transaction a failed call left open. A rollback that fails too means
    the connection is gone: the next call reconnects, and the caller hears of the first
    error, not of this one."""
    if conn.in_transaction and not conn.raw.closed:
        with suppress(psycopg.Error):
            conn.raw.rollback()
    conn.start_call()  # nothing read in the failed transaction is kept


# The class implements the interface the memories and the store are written against.
_: type[Backend] = PostgresBackend
