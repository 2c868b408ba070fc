"""PostgreSQL's side of the store's ``Connection`` interface, over psycopg 3.

Sessions are serialised with transaction-scoped advisory locks, taken for a whole batch
at once and in one fixed order, so writers on many hosts neither interleave within a
session nor deadlock across sessions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from eventmem.store.postgres import schema as pg_schema
from eventmem.store.sql import HEAD_COLUMNS, HEAD_OF_SESSION, StorageFigures

__all__ = ["SESSION_LOCK_CLASS", "PostgresConnection", "session_lock_key"]

SESSION_LOCK_CLASS = 0x45564D53  # "EVMS": the classid of every session's advisory lock
_STREAM_CHUNK = 5000
_COUNTS_AHEAD = 8  # oldest buffer rows whose counts a batch reads up front, per session
_WRITES = ("INSERT", "UPDATE", "DELETE")
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
            counts: dict[str, dict[int, int]] = {s: {} for s, row in heads.items() if row}
            for session_id, seq, tokens in count_rows:
                counts.setdefault(session_id, {})[seq] = tokens
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

    def bulk_cache(self) -> AbstractContextManager[None]:
        """Nothing: the server's shared buffers are the cache."""
        return nullcontext()

    def lock_store(self) -> None:
        """Keep writers out of every table until the transaction ends (reads go on)."""
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

    def storage_figures(self) -> StorageFigures:
        """The total size of the schema's relations; PostgreSQL has no pages to count."""
        row = self.raw.execute(_SCHEMA_BYTES).fetchone()
        assert row is not None
        return int(row[0]), None, None, None
