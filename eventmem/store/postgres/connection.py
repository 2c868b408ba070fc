"""PostgreSQL's side of the store's ``Connection`` interface, over psycopg 3.

Sessions are serialised with transaction-scoped advisory locks, taken for a whole batch
at once and in one fixed order, so writers on many hosts neither interleave within a
session nor deadlock across sessions.
"""

from __future__ import annotations

import hashlib
import select
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Any, cast

import psycopg
from psycopg import errors as pg
from psycopg import pq, sql
from psycopg.pq import TransactionStatus

from eventmem.store.content import PLAIN, Content
from eventmem.store.postgres import schema as pg_schema
from eventmem.store.postgres.at_once import (
    NotAtOnce,
    conflicts,
    dollar_placeholders,
    parameters,
)
from eventmem.store.postgres.loop_io import prepared_query, simple_query
from eventmem.store.sql import HEAD_COLUMNS, HEAD_OF_SESSION, StorageFigures

__all__ = ["SESSION_LOCK_CLASS", "PostgresConnection", "session_lock_key"]

SESSION_LOCK_CLASS = 0x45564D53  # "EVMS": the classid of every session's advisory lock
_STREAM_CHUNK = 5000
_COUNTS_AHEAD = 8  # oldest buffer rows whose counts a batch reads up front, per session
_WRITES = ("INSERT", "UPDATE", "DELETE")
_VERSION_OF_SESSION = "SELECT version FROM sessions WHERE session_id = ?"
_MAX_DEALLOCATIONS = 3
_CONTENDED_S = 1.0  # how long a session found written by another writer skips going at once
# The schema's tables with their indexes and TOAST, and its sequences. The schema is
# found by name: a cast to regnamespace would fold a name like "Chat" to "chat".
_SCHEMA_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S')
"""


def session_lock_key(schema: str, session_id: str) -> int:
    """The advisory lock of a session (a signed 32-bit objid; collisions only serialise)."""
    digest = hashlib.blake2b(f"{schema}\0{session_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class _NoRows:
    """What a write queued for a batch sent at once returns: nothing to read."""

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


_NO_ROWS = _NoRows()


class PostgresConnection:
    """PostgreSQL's side of ``Connection``, over psycopg.

    Statements arrive with ``?`` placeholders and are rewritten once to psycopg's
    ``%s``; psycopg prepares those it sees repeatedly.

    A write batch whose sessions all have known heads (see ``eventmem.store.postgres.
    at_once``) can instead be composed on the client and sent in one round trip:
    between ``start_at_once`` and the batch's COMMIT, writes are queued, not sent, and
    anything that would need a reply first raises ``NotAtOnce``.
    """

    data_bytes = "convert_to(data, 'UTF8')"  # the stored TEXT's UTF-8 bytes
    content: Content = PLAIN  # the store's, set when it opens

    def __init__(
        self, raw: psycopg.Connection[Any], schema: str, known_sessions: int = 1024
    ) -> None:
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
        # The heads (and known counts of visible rows) this connection committed last,
        # per session, least recently written first: what a batch sent at once starts
        # from. A head another writer has moved on from is found out by the log itself.
        self._known: OrderedDict[str, tuple[Sequence[Any], dict[int, int]]] = OrderedDict()
        self._max_known = known_sessions
        # Sessions another writer got in first on lately, and until when (monotonic).
        self._contended: dict[str, float] = {}
        self._deallocations = 0  # in a row, with no batch sent at once between them
        self._at_once_off = False
        # A transaction's heads and counts waiting for its COMMIT to be confirmed.
        self._committing: tuple[dict[str, Sequence[Any] | None], dict[str, dict[int, int]]] | None
        self._committing = None
        # While a batch is composed to be sent at once: its locks' keys and its writes
        # ((statement, parameters)), and the sessions whose events it appends.
        self._queued: list[tuple[str, Sequence[Any]]] | None = None
        self._queued_keys: list[int] = []
        self._appending: set[str] = set()
        self._prepared: dict[str, str] = {}  # statement -> its name on ``_prepared_on``
        self._prepared_on: psycopg.Connection[Any] | None = None
        self._names_made = 0
        self.sent_at_once = False  # whether the batch composed at once was committed
        self._send_now = True
        # With send=False: the batch's query, waiting to be sent on the loop.
        self.composed: bytes | None = None
        self._heads_sent: list[str] = []

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

    def execute(self, query: str, values: Sequence[Any] = (), /) -> Any:
        """Run one statement (queue it, in a batch sent at once)."""
        text, writes = self._statement(query)
        if self._queued is not None:
            return self._queue(query, values, writes)
        if query in ("COMMIT", "ROLLBACK"):
            self.commit_sent = self.commit_sent or query == "COMMIT"
            if query == "COMMIT" and self._heads is not None:
                self._committing = (self._heads, self._counts)
            self._heads, self._counts = None, {}
        cursor = self.raw.execute(cast("sql.SQL", text), tuple(values))
        self._changes += writes
        return cursor

    def executemany(self, query: str, values: Iterable[Sequence[Any]], /) -> None:
        """Run one statement per row (psycopg pipelines them)."""
        text, writes = self._statement(query)
        rows = [tuple(row) for row in values]
        if not rows:
            return
        if self._queued is not None:
            for row in rows:
                self._queue(query, row, writes)
            return
        with self.raw.cursor() as cursor:
            cursor.executemany(cast("sql.SQL", text), rows)
        self._changes += writes

    def begin_write(self) -> None:
        """Open a read-committed transaction; sessions are locked explicitly. (A batch
        sent at once opens its transaction with everything else, on COMMIT.)"""
        if self._queued is None:
            self.raw.execute("BEGIN")

    # -- a batch sent at once ----------------------------------------------------------
    def can_write_at_once(self, session_ids: Iterable[str]) -> bool:
        """Whether a batch of these sessions may be composed without reading first:
        every head known, no transaction open, and nothing waiting on the socket (a
        server that ended the connection says so there; the usual path then finds out
        before it sends a COMMIT, and reconnects)."""
        raw = self.raw
        known, contended = self._known, self._contended
        sessions = list(session_ids)
        if self._at_once_off or raw.closed or self.in_transaction:
            return False
        if not all(s in known for s in sessions):
            return False
        if contended and any(s in contended for s in sessions):
            now = time.monotonic()
            for s in [s for s in sessions if contended.get(s, now) < now]:
                del contended[s]
            if any(s in contended for s in sessions):
                return False
        try:
            readable, _, _ = select.select([raw.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def start_at_once(self, *, send: bool = True) -> None:
        """Queue the writes from here to the batch's COMMIT, to send them together;
        ``send=False``: COMMIT only composes the query (``composed``), for the caller to
        send on the loop (statements not yet prepared make it ``NotAtOnce``: preparing
        is a round trip of its own)."""
        self._queued, self._queued_keys, self._appending = [], [], set()
        self.sent_at_once = False
        self._send_now = send
        self.composed = None

    def end_at_once(self) -> None:
        """Back to sending each statement (after the batch, however it ended)."""
        self._queued = None
        self._queued_keys = []
        self._appending = set()

    def _queue(self, query: str, values: Sequence[Any], writes: bool) -> Any:
        if query == "COMMIT":
            self._send_at_once()
            return _NO_ROWS
        if query == "ROLLBACK":
            self._heads, self._counts = None, {}
            if self.in_transaction:  # the batch was sent and failed
                self._rollback_quietly()
            return _NO_ROWS
        if not writes:
            raise NotAtOnce("a read")
        if query.startswith("INSERT INTO events "):
            self._appending.add(values[0])
        assert self._queued is not None
        self._queued.append((query, values))
        self._changes += 1
        return _NO_ROWS

    def _name(self, query: str, prepare: bool = True) -> str:
        """The name ``query`` is prepared under on this connection (prepared now, once,
        outside any transaction, if it is not yet). Names are never reused: psycopg
        deallocates every prepared statement after a rollback it sees, and a name
        prepared again must not meet one the server still holds."""
        if self._prepared_on is not self.raw:  # a new connection knows none
            self._prepared, self._prepared_on = {}, self.raw
        name = self._prepared.get(query)
        if name is None:
            if not prepare:  # (a round trip of its own, on the worker's thread)
                raise NotAtOnce("a statement not prepared yet")
            self._names_made += 1
            name = f"eventmem_{self._names_made}"
            try:
                self.raw.execute(f"PREPARE {name} AS {dollar_placeholders(query)}".encode())
            except psycopg.ProgrammingError as e:  # a statement PREPARE cannot type
                raise NotAtOnce(str(e)) from e
            self._prepared[query] = name
        return name

    def _compose(self) -> bytes:
        """The queued batch as one query: its locks, its writes, and COMMIT."""
        assert self._queued is not None
        send = self._send_now
        statements = [f"EXECUTE {self._name(q, send)}({parameters(v)})" for q, v in self._queued]
        keys = self._queued_keys
        if len(keys) == 1:
            lock = f"SELECT pg_advisory_xact_lock({SESSION_LOCK_CLASS}, {keys[0]})"
        else:
            lock = (
                f"SELECT pg_advisory_xact_lock({SESSION_LOCK_CLASS}, key) FROM"
                f" unnest('{{{','.join(map(str, keys))}}}'::integer[]) WITH ORDINALITY"
                " AS t(key, n) ORDER BY n"
            )
        try:
            return ";\n".join(["BEGIN", lock, *statements, "COMMIT"]).encode()
        except UnicodeEncodeError as e:  # a lone surrogate: psycopg's binding says so
            raise NotAtOnce(str(e)) from e

    def _rollback_quietly(self) -> None:
        """ROLLBACK through libpq itself: psycopg, seeing one, would deallocate every
        prepared statement (the ones named here too)."""
        result = self.raw.pgconn.exec_(b"ROLLBACK")
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.OperationalError(
                (result.error_message or b"ROLLBACK failed").decode(errors="replace")
            )

    def _send_at_once(self) -> None:
        """Send the queued batch with its locks and COMMIT as one query; on success the
        heads it wrote become the known ones."""
        heads, counts = self._heads, self._counts
        assert heads is not None
        if set(heads) - self._appending:
            # A session locked but appended nothing: a refusal (or an empty write)
            # decided from a head nobody checked. The usual path decides it again.
            raise NotAtOnce("a session without a new event")
        query = self._compose()
        if not self._send_now:
            self.composed = query
            self._heads_sent = list(heads)
            self._heads, self._counts = None, {}
            self._committing = (heads, counts)
            return
        self.commit_sent = True
        try:
            self.raw.execute(query, prepare=False)
        except psycopg.Error as e:
            deallocated = isinstance(e, pg.InvalidSqlStatementName)
            if not (deallocated or conflicts(e)):
                raise
            # Nothing of this batch was committed: it goes the usual way.
            self._rollback_quietly()
            self.commit_sent = False
            if deallocated:
                self._deallocated()
                raise NotAtOnce("its statements were deallocated") from e
            self._contend(heads)  # another writer appended first
            raise NotAtOnce("a head was stale") from e
        self._deallocations = 0
        self._heads, self._counts = None, {}
        self._committing = (heads, counts)
        self.committed()
        self.sent_at_once = True

    async def send_composed(self) -> bool:
        """Send the ``composed`` batch on the loop (see ``loop_io``): True once it
        committed (its heads then known), False if a head was stale or its statements
        were deallocated (rolled back, nothing of it committed: the worker runs it).
        Any other failure is raised, with the transaction rolled back if the
        connection still works."""
        query, self.composed = self.composed, None
        assert query is not None
        pgconn = self.raw.pgconn
        try:
            await simple_query(pgconn, query)
        except psycopg.Error as e:
            self._committing = None
            if pgconn.status == pq.ConnStatus.OK and self.in_transaction:
                await simple_query(pgconn, b"ROLLBACK")
            if conflicts(e):
                self._contend(self._heads_sent)
                return False
            if isinstance(e, pg.InvalidSqlStatementName):
                self._deallocated()
                return False
            raise
        self._deallocations = 0
        self.committed()
        return True

    def prepare_version(self) -> None:
        """Prepare the statement ``version_on_loop`` runs (once per connection; on the
        worker's thread, outside any transaction)."""
        if not self.in_transaction:
            with suppress(NotAtOnce):
                self._name(_VERSION_OF_SESSION)

    async def version_on_loop(self, session_id: str) -> int | None:
        """The session's version, read from the loop through libpq (see ``loop_io``);
        None when there is none, the statement is not prepared (yet, or any more), or
        the connection is not idle or fails (psycopg then sees it closed, and the next
        call reconnects)."""
        raw = self.raw
        name = self._prepared.get(_VERSION_OF_SESSION) if self._prepared_on is raw else None
        if name is None or raw.closed or self.in_transaction:
            return None
        try:
            results = await prepared_query(raw.pgconn, name.encode(), [session_id.encode()])
        except psycopg.Error as e:
            if isinstance(e, pg.InvalidSqlStatementName):
                self._deallocated()
            return None
        self._deallocations = 0
        for result in results:
            if result.status == pq.ExecStatus.TUPLES_OK and result.ntuples:
                value = result.get_value(0, 0)
                return None if value is None else int(value)
        return None

    def committed(self) -> None:
        """The last write transaction's COMMIT is confirmed: its heads are known."""
        if self._committing is None:
            return
        heads, counts = self._committing
        self._committing = None
        known = self._known
        for session_id, row in heads.items():
            if row is None:
                continue
            known[session_id] = (row, counts.get(session_id, {}))
            known.move_to_end(session_id)
        while len(known) > self._max_known:
            known.popitem(last=False)

    def forget(self, session_ids: Iterable[str]) -> None:
        """A write to these sessions failed (or may have): their heads are unknown."""
        self._committing = None
        for session_id in session_ids:
            self._known.pop(session_id, None)

    def _deallocated(self) -> None:
        """The server no longer holds the statements prepared here: psycopg deallocates
        every prepared statement after a rollback it sees, and a pooler in transaction
        mode hands out another server connection. They are prepared again on the next
        batch; after ``_MAX_DEALLOCATIONS`` in a row with no batch sent at once between
        them (or a version read), this connection stops sending batches at once."""
        self._prepared = {}
        self._deallocations += 1
        if self._deallocations >= _MAX_DEALLOCATIONS:
            self._at_once_off = True

    def _contend(self, session_ids: Iterable[str]) -> None:
        """Another writer got in first: these sessions' heads are forgotten, and for a
        moment their writes take the usual way (a session several processes write in
        turn would otherwise cost each of them a refused round trip per write)."""
        until = time.monotonic() + _CONTENDED_S
        for session_id in session_ids:
            self._known.pop(session_id, None)
            self._contended[session_id] = until
        while len(self._contended) > self._max_known:
            del self._contended[next(iter(self._contended))]

    def begin_read(self) -> None:
        """A repeatable-read transaction: every read sees one snapshot."""
        self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock_sessions(self, session_ids: Iterable[str]) -> None:
        """Take the sessions' advisory locks in one statement, in ascending key order:
        every writer takes locks in that order, so two batches never deadlock."""
        sessions = sorted(set(session_ids))
        keys = sorted({session_lock_key(self.schema, s) for s in sessions})
        if self._queued is not None:
            # Sent with the batch; the heads are the known ones (copies: a batch that
            # stops before it is sent leaves them as they were, one that commits
            # replaces them, one that fails forgets them).
            known = self._known
            if not all(s in known for s in sessions):
                raise NotAtOnce("a session with no known head")
            self._heads = {s: known[s][0] for s in sessions}
            self._counts = {s: dict(known[s][1]) for s in sessions}
            self._queued_keys = keys
            return
        if keys:
            self.raw.execute(
                # PostgreSQL evaluates a volatile select list after ORDER BY: row by row.
                "SELECT pg_advisory_xact_lock(%s, key)"
                " FROM unnest(%s::integer[]) WITH ORDINALITY AS t(key, n) ORDER BY n",
                (SESSION_LOCK_CLASS, keys),
            )
            # Their heads and the counts of their oldest rows (what a save prunes), now
            # that no one else can change them: both statements sent before either is
            # read, so in a pipeline the locks, heads and counts cost one round trip
            # (each statement still sees what was committed before its locks were held).
            head_rows = self.raw.execute(
                f"SELECT {HEAD_COLUMNS} FROM sessions WHERE session_id = ANY(%s)", (sessions,)
            )
            count_rows = self.raw.execute(
                "SELECT v.session_id, v.seq, v.tokens FROM sessions AS s"
                " JOIN view_messages AS v ON v.session_id = s.session_id"
                " AND v.seq >= s.watermark AND v.seq < s.watermark + %s"
                " WHERE s.session_id = ANY(%s)",
                (_COUNTS_AHEAD, sessions),
            )
            heads: dict[str, Sequence[Any] | None] = dict.fromkeys(sessions)
            for row in head_rows:
                heads[row[0]] = row
            self._heads = heads
            counts: dict[str, dict[int, int]] = {s: {} for s in heads}
            for session_id, seq, tokens in count_rows:
                counts.setdefault(session_id, {})[seq] = tokens
            self._counts = counts

    def start_call(self) -> None:
        """Forget what the previous call sent and read."""
        self.commit_sent = False
        self._heads = None
        self._counts = {}
        self._committing = None

    def read_head(self, session_id: str) -> Sequence[Any] | None:
        """The head read with the session's lock, or (outside a batch) from the table."""
        if self._heads is not None and session_id in self._heads:
            return self._heads[session_id]
        if self._queued is not None:
            raise NotAtOnce("a head not locked")
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
            if self._queued is not None:
                raise NotAtOnce("a count not known")
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

    def bulk_cache(self) -> AbstractContextManager[None]:
        """Nothing: the server's shared buffers are the cache."""
        return nullcontext()

    def lock_store(self) -> None:
        """Keep writers out of every table until the transaction ends (reads go on).
        (A rebuild or an import: the known heads are forgotten.)"""
        self._known.clear()
        self.raw.execute(
            "LOCK TABLE events, sessions, view_messages, lg_checkpoints, lg_values, lg_writes"
            " IN SHARE ROW EXCLUSIVE MODE"
        )

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

    def zero_freed(self, on: bool) -> None:
        """Nothing: PostgreSQL keeps replaced row versions until a vacuum."""

    def purge_copies(self) -> bool:
        """False: PostgreSQL keeps the row versions an erasure replaced in the table's
        files until a ``VACUUM FULL`` of ``events`` rewrites them (see docs/operations.md)."""
        return False

    def storage_figures(self) -> StorageFigures:
        """The total size of the schema's relations; PostgreSQL has no pages to count."""
        row = self.raw.execute(_SCHEMA_BYTES).fetchone()
        assert row is not None
        return int(row[0]), None, None, None
