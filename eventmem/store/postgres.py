"""The PostgreSQL backend, on psycopg 3.

The store's statements and write logic are the ones SQLite runs (see
``eventmem.store.sql``); this module supplies PostgreSQL's side of the connection
interface, the translation of its errors, and opening a store from a URL. As with
SQLite, each operation (a whole transaction) runs on a worker thread that owns the
connection, so a save is one thread hop and a caller cancelled while it waits cannot
leave a transaction half-open. Concurrent saves are committed in batches the same way.

Sessions are serialised with transaction-scoped advisory locks, taken for a whole batch
at once and in one fixed order, so writers on many hosts neither interleave within a
session nor deadlock across sessions.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, NamedTuple, TypeVar, cast

import anyio
import psycopg
from psycopg import errors as pg
from psycopg import sql
from psycopg.pq import TransactionStatus

from eventmem.errors import (
    ClosedError,
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    InvalidInputError,
    ReadOnlyDatabaseError,
    ReadOnlyStoreError,
    StorageError,
)
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store import maintenance, pg_schema
from eventmem.store.base import Backend, Durability, ExportPage, TriggerMode
from eventmem.store.batched import BatchedBackend
from eventmem.store.pg_schema import apply_migrations
from eventmem.store.sql import HEAD_COLUMNS, HEAD_OF_SESSION
from eventmem.store.writes import write_batch

__all__ = ["DEFAULT_SCHEMA", "PostgresBackend", "PostgresConnection"]

T = TypeVar("T")
DEFAULT_SCHEMA = "eventmem"
SESSION_LOCK_CLASS = 0x45564D53  # "EVMS": the classid of every session's advisory lock
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_STREAM_CHUNK = 5000
_COUNTS_AHEAD = 8  # oldest buffer rows whose counts a batch reads up front, per session
_WRITES = ("INSERT", "UPDATE", "DELETE")


def session_lock_key(schema: str, session_id: str) -> int:
    """The advisory lock of a session (a signed 32-bit objid; collisions only serialise)."""
    digest = hashlib.blake2b(f"{schema}\0{session_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresConnection:
    """PostgreSQL's side of ``Connection``, over psycopg.

    Statements arrive with ``?`` placeholders and are rewritten once to psycopg's
    ``%s``; psycopg prepares those it sees repeatedly.
    """

    data_bytes = "convert_to(data, 'UTF8')"  # the stored TEXT's UTF-8 bytes

    def __init__(self, raw: psycopg.Connection[Any], schema: str) -> None:
        self.raw = raw
        self.schema = schema
        self.commit_sent = False  # whether this call sent COMMIT (its outcome may be known)
        # The heads of the sessions a write transaction locked, read with their locks
        # (None for a new session), and the counts of their oldest buffer rows (seq ->
        # count); gone when the transaction ends.
        self._heads: dict[str, Sequence[Any] | None] | None = None
        self._counts: dict[str, dict[int, int]] = {}
        self._changes = 0
        self._statements: dict[str, tuple[str, bool]] = {}

    def _statement(self, query: str) -> tuple[str, bool]:
        known = self._statements.get(query)
        if known is None:
            text = query.replace("%", "%%").replace("?", "%s")
            known = self._statements[query] = (text, query.lstrip().upper().startswith(_WRITES))
        return known

    @property
    def total_changes(self) -> int:
        """Write statements sent so far (rows are not known until a pipeline syncs)."""
        return self._changes

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or failed and not yet rolled back)."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, query: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        """Run one statement."""
        text, writes = self._statement(query)
        if query in ("COMMIT", "ROLLBACK"):
            self.commit_sent = self.commit_sent or query == "COMMIT"
            self._heads, self._counts = None, {}
        cursor = self.raw.execute(cast("sql.SQL", text), tuple(parameters))
        self._changes += writes
        return cursor

    def executemany(self, query: str, parameters: Iterable[Sequence[Any]], /) -> None:
        """Run one statement per row (psycopg pipelines them)."""
        text, writes = self._statement(query)
        rows = [tuple(row) for row in parameters]
        if not rows:
            return
        with self.raw.cursor() as cursor:
            cursor.executemany(cast("sql.SQL", text), rows)
        self._changes += writes

    def begin_write(self) -> None:
        """Open a read-committed transaction; sessions are locked explicitly."""
        self.raw.execute("BEGIN")

    def begin_read(self) -> None:
        """A repeatable-read transaction: every read sees one snapshot."""
        self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock_sessions(self, session_ids: Iterable[str]) -> None:
        """Take the sessions' advisory locks in one statement, in ascending key order:
        every writer takes locks in that order, so two batches never deadlock."""
        sessions = sorted(set(session_ids))
        keys = sorted({session_lock_key(self.schema, s) for s in sessions})
        if keys:
            self.raw.execute(
                # PostgreSQL evaluates a volatile select list after ORDER BY: row by row.
                "SELECT pg_advisory_xact_lock(%s, key)"
                " FROM unnest(%s::integer[]) WITH ORDINALITY AS t(key, n) ORDER BY n",
                (SESSION_LOCK_CLASS, keys),
            )
            # Their heads and the counts of their oldest rows (what a save prunes), now
            # that no one else can change them: one round trip for the batch instead of
            # two per write.
            heads: dict[str, Sequence[Any] | None] = dict.fromkeys(sessions)
            for row in self.raw.execute(
                f"SELECT {HEAD_COLUMNS} FROM sessions WHERE session_id = ANY(%s)", (sessions,)
            ):
                heads[row[0]] = row
            self._heads = heads
            counts: dict[str, dict[int, int]] = {s: {} for s, row in heads.items() if row}
            for session_id, seq, tokens in self.raw.execute(
                "SELECT v.session_id, v.seq, v.tokens FROM sessions AS s"
                " JOIN view_messages AS v ON v.session_id = s.session_id"
                " AND v.seq >= s.watermark AND v.seq < s.watermark + %s"
                " WHERE s.session_id = ANY(%s)",
                (_COUNTS_AHEAD, sessions),
            ):
                counts[session_id][seq] = tokens
            self._counts = counts

    def start_call(self) -> None:
        """Forget what the previous call sent and read."""
        self.commit_sent = False
        self._heads = None
        self._counts = {}

    def read_head(self, session_id: str) -> Sequence[Any] | None:
        """The head read with the session's lock, or (outside a batch) from the table."""
        if self._heads is not None and session_id in self._heads:
            return self._heads[session_id]
        row: Sequence[Any] | None = self.execute(HEAD_OF_SESSION, (session_id,)).fetchone()
        return row

    def remember_head(self, row: Sequence[Any]) -> None:
        """Keep the row just written, for the next write to the session in this batch."""
        if self._heads is not None:
            self._heads[row[0]] = row

    def stored_count(self, session_id: str, seq: int) -> int:
        """From the counts read with the batch's locks; past them, every remaining
        visible count of the session in one read."""
        known = self._counts.setdefault(session_id, {})
        if seq not in known:
            known.update(
                self.execute(
                    "SELECT seq, tokens FROM view_messages WHERE session_id = ? AND seq >= ?",
                    (session_id, seq),
                ).fetchall()
            )
        return known[seq]

    def counts_changed(
        self,
        session_id: str,
        watermark: int | None = None,
        added: Iterable[tuple[int, int]] = (),
    ) -> None:
        """Follow a write's changes to the session's rows (or forget them)."""
        known = self._counts.get(session_id)
        if known is None:
            return
        if watermark is None:
            del self._counts[session_id]
            return
        for seq in [seq for seq in known if seq < watermark]:
            del known[seq]
        known.update(added)

    def lock_store(self) -> None:
        """Keep writers out of every table until the transaction ends (reads go on)."""
        self.raw.execute("LOCK TABLE events, sessions, view_messages IN SHARE ROW EXCLUSIVE MODE")

    def trigger_findings(self) -> list[str]:
        """From ``pg_trigger`` (disabled ones included), against the migrations'."""
        return pg_schema.trigger_findings(self.raw, self.schema)

    def restore_triggers(self) -> list[str]:
        """Re-create the schema's trigger functions and triggers, enabled."""
        return pg_schema.restore_triggers(self.raw, self.schema)

    def stream(self, query: str, parameters: Sequence[Any] = ()) -> Iterator[list[Any]]:
        """The rows through a server-side cursor, in chunks (inside a transaction)."""
        text, _ = self._statement(query)
        with self.raw.cursor(name="eventmem_stream") as cursor:
            cursor.execute(cast("sql.SQL", text), tuple(parameters))
            while rows := cursor.fetchmany(_STREAM_CHUNK):
                yield rows


def translate(error: psycopg.Error, where: str) -> EventmemError:
    """The one place psycopg errors become eventmem errors."""
    text = str(error).strip()
    if isinstance(error, (pg.LockNotAvailable, pg.DeadlockDetected)) or (
        isinstance(error, pg.QueryCanceled) and "lock timeout" in text
    ):
        return DatabaseLockedError(
            f"{where}: another connection held a lock past the busy timeout ({text})"
        )
    if isinstance(error, (pg.ReadOnlySqlTransaction, pg.InsufficientPrivilege)):
        return ReadOnlyDatabaseError(f"{where} cannot be written: {text}")
    if isinstance(error, pg.DiskFull):
        return DiskFullError(f"{where}: no space left, the write was rolled back ({text})")
    if isinstance(error, (pg.DataCorrupted, pg.IndexCorrupted)):
        return CorruptDatabaseError(f"{where} is corrupt: {text}")
    if isinstance(error, psycopg.OperationalError):
        return StorageError(f"{where}: the connection failed: {text}")
    return StorageError(f"{where}: PostgreSQL error: {text}")


class _Target:
    """Where a URL points: what psycopg connects to, the schema, and a printable name."""

    def __init__(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            port = f":{parts.port}" if parts.port else ""
        except ValueError as e:  # a bad port or IPv6 address; the message has no password
            raise InvalidInputError(f"not a valid PostgreSQL URL: {e}") from None
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        self.schema = schemas[-1] if schemas else DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(self.schema):
            raise InvalidInputError(
                f"schema must be a plain SQL name (letters, digits, _), got {self.schema!r}"
            )
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
        self.conninfo = urllib.parse.urlunsplit(parts._replace(query=rest))
        host = parts.hostname or "localhost"
        user = f"{parts.username}@" if parts.username else ""
        self.display = f"postgresql://{user}{host}{port}{parts.path}?schema={self.schema}"


class PostgresBackend(BatchedBackend):
    """Event logs and buffer projections in one schema of a PostgreSQL database.

    The batching, the cache and every operation are shared with SQLite's backend; only
    the connection differs (how it is opened, run, snapshotted and closed).
    """

    def __init__(
        self,
        conn: PostgresConnection,
        target: _Target,
        settings: _Settings,
        cache_sessions: int,
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
    ) -> None:
        super().__init__(target.display, cache_sessions, max_save_bytes, settings.read_only)
        self._pg = conn
        self._target = target
        self._settings = settings
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool = True,
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        cache_sessions: int = 1024,
        triggers: TriggerMode = "require",
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
        read_only: bool = False,
    ) -> PostgresBackend:
        """Connect, and (if ``create``) create the store's schema or bring it up to date;
        ``triggers`` says what to do about a log whose triggers are not the schema's; with
        ``read_only``, open an existing store in read-only sessions."""
        target = _Target(url)
        # lock_timeout 0 would mean "wait forever"; busy_timeout 0 means "do not wait".
        settings = _Settings(max(1, int(busy_timeout * 1000)), durability, read_only)
        raw = await anyio.to_thread.run_sync(_connect, target, settings, create)
        conn = PostgresConnection(raw, target.schema)
        backend = cls(conn, target, settings, cache_sessions, max_save_bytes)
        await backend._finish_open(triggers)
        return backend

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` on the worker thread, one call at a time."""
        if self._closed:
            raise ClosedError("the store is closed")

        def attempt() -> T:
            conn = self._pg
            if conn.raw.closed:
                # The server went away since the last call: reconnect.
                conn.raw = _connect(self._target, self._settings, False)
            conn.start_call()
            if fn not in _PIPELINED:
                return fn(conn, *args)
            # Statements whose results are not read (the writes) are sent without
            # waiting; only reads and the commit wait for the server.
            with conn.raw.pipeline():
                return fn(conn, *args)

        def call() -> T:
            conn = self._pg
            try:
                try:
                    return attempt()
                except psycopg.OperationalError:
                    if not conn.raw.closed or conn.commit_sent:
                        raise
                    # The connection died (a server restart, a failover) before this
                    # call sent a COMMIT, so nothing of it was committed: run it again
                    # once on a new connection, rather than fail it.
                    _abandon(conn)
                    return attempt()
            except psycopg.Error as e:
                _abandon(conn)
                raise self._translate(e) from e
            except BaseException:
                _abandon(conn)  # no transaction outlives its call, whatever ended it
                raise

        # Not cancellable while the thread runs: the call always ends in COMMIT or
        # ROLLBACK before the caller hears of its cancellation.
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    @asynccontextmanager
    async def export_snapshot(self) -> AsyncIterator[ExportPage]:
        """Pages read in one repeatable-read transaction on a connection of their own:
        writers in other transactions may commit a lower id after a higher one, so
        pages by id outside one snapshot could pass an event that commits later."""
        if self._closed:
            raise ClosedError("the store is closed")
        raw = await anyio.to_thread.run_sync(_connect, self._target, self._settings, False)
        reader = PostgresConnection(raw, self._target.schema)
        limiter = anyio.CapacityLimiter(1)

        def call(session_id: str | None, after_id: int, limit: int) -> tuple[int, list[bytes]]:
            try:
                if not reader.in_transaction:
                    reader.begin_read()
                return maintenance.export_page(reader, session_id, after_id, limit)
            except psycopg.Error as e:
                raise self._translate(e) from e

        async def page(
            session_id: str | None, after_id: int, limit: int
        ) -> tuple[int, list[bytes]]:
            return await anyio.to_thread.run_sync(
                call, session_id, after_id, limit, limiter=limiter
            )

        try:
            yield page
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(raw.close, limiter=limiter)

    def _translate(self, error: psycopg.Error) -> EventmemError:
        translated = translate(error, self._where)
        if self._read_only and isinstance(error, pg.ReadOnlySqlTransaction):
            return ReadOnlyStoreError(f"{self._where} was opened read-only: {str(error).strip()}")
        return translated

    async def close(self) -> None:
        """Close the connection (idempotent). Shielded: a close that is cancelled still
        closes the connection (waiting for a call in progress to end) before the
        cancellation goes on."""
        if not self._closed:
            self._closed = True
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._pg.raw.close, limiter=self._limiter)


# Writes: most of their statements' results are never read. (Verify, rebuild and
# export stream through a server-side cursor, which a pipeline cannot hold.)
_PIPELINED: frozenset[Callable[..., Any]] = frozenset({write_batch})


def _abandon(conn: PostgresConnection) -> None:
    """Roll back a transaction a failed call left open. A rollback that fails too means
    the connection is gone: the next call reconnects, and the caller hears of the first
    error, not of this one."""
    if conn.in_transaction and not conn.raw.closed:
        with suppress(psycopg.Error):
            conn.raw.rollback()
    conn.start_call()  # nothing read in the failed transaction is kept


class _Settings(NamedTuple):
    """What every connection of a store is opened with (also on reconnecting)."""

    lock_timeout_ms: int
    durability: Durability
    read_only: bool = False


def _connect(target: _Target, settings: _Settings, create: bool) -> psycopg.Connection[Any]:
    lock_timeout_ms, durability, read_only = settings
    try:
        raw = psycopg.connect(
            target.conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="eventmem",
            client_encoding="UTF8",  # whatever the URL or PGCLIENTENCODING say
        )
    except psycopg.Error as e:
        raise StorageError(f"cannot connect to {target.display}: {str(e).strip()}") from e
    try:
        # Text is hashed as its UTF-8 bytes and must read back as it was written: another
        # server encoding refuses some characters (LATIN1) or hands back bytes (SQL_ASCII).
        encoding = raw.info.parameter_status("server_encoding")
        if encoding != "UTF8":
            raise StorageError(
                f"{target.display}: the database's encoding is {encoding}; eventmem needs a "
                "UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
            )
        raw.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target.schema)))
        raw.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(lock_timeout_ms)))
        if durability == "full":
            raw.execute("SET synchronous_commit = on")
        if read_only:
            # Every transaction of the session is READ ONLY: the server refuses any
            # write, whatever eventmem's own refusal would have missed.
            raw.execute("SET default_transaction_read_only = on")
        apply_migrations(raw, target.schema, create=create and not read_only, migrate=not read_only)
    except BaseException as e:
        raw.close()
        if isinstance(e, psycopg.Error):
            raise translate(e, target.display) from e
        raise
    return raw


# The class implements the interface the memories and the store are written against.
_: type[Backend] = PostgresBackend
