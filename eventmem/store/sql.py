"""The connection interface the store's SQL is written against, and its SQLite side.

The store's statements (``head``, ``writes``,
``reads``, ``maintenance``) are plain SQL with
``?`` placeholders that both SQLite and PostgreSQL accept. What differs between the two
(how a write transaction starts, how sessions are locked, how the event JSON is read as
bytes) is a method of the connection, so those modules never ask which database it is.
Every call runs on the backend's worker thread, a whole transaction at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from eventmem.projection import HEAD_FIELDS
from eventmem.store import migrate

__all__ = ["HEAD_COLUMNS", "HEAD_OF_SESSION", "Connection", "Cursor", "SQLiteConnection"]

# The columns of a session's projection row: the fields of ``HeadState``, in order.
HEAD_COLUMNS = ", ".join(HEAD_FIELDS)
HEAD_OF_SESSION = f"SELECT {HEAD_COLUMNS} FROM sessions WHERE session_id = ?"


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection of either dialect, used from one thread at a time."""

    # The SQL expression reading an event's ``data`` as the bytes its hash covers.
    data_bytes: str

    @property
    def total_changes(self) -> int:
        """A count that grows with every write (SQLite: rows changed; PostgreSQL: write
        statements sent), to tell whether anything was written in between."""
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor:
        """Run one statement (``?`` placeholders)."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object:
        """Run one statement once per parameter row."""
        ...

    def begin_write(self) -> None:
        """Open a write transaction (SQLite takes the database's write lock here)."""
        ...

    def begin_read(self) -> None:
        """Open a transaction whose reads all see one snapshot."""
        ...

    def lock_sessions(self, session_ids: Iterable[str]) -> None:
        """Inside a write transaction: hold these sessions until it ends (a no-op where
        the transaction already holds the whole database)."""
        ...

    def lock_store(self) -> None:
        """Inside a write transaction: keep every other writer out until it ends."""
        ...

    def read_head(self, session_id: str) -> Sequence[Any] | None:
        """The session's projection row (``HEAD_COLUMNS``), or None for a new session."""
        ...

    def remember_head(self, row: Sequence[Any]) -> None:
        """The row a write just stored for its session (for later reads in its batch)."""
        ...

    def stored_count(self, session_id: str, seq: int) -> int:
        """The token count stored with the session's buffer row ``seq``."""
        ...

    def counts_changed(
        self,
        session_id: str,
        watermark: int | None = None,
        added: Iterable[tuple[int, int]] = (),
    ) -> None:
        """A write changed the session's stored rows: those below ``watermark`` went and
        ``added`` ``(seq, count)`` came (no watermark: every count may have changed)."""
        ...

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[list[Any]]:
        """The rows of a large query, in chunks rather than all at once."""
        ...

    def trigger_findings(self) -> list[str]:
        """How the triggers on the store's tables differ from the schema's (missing,
        disabled, changed or foreign), one sentence each; empty when none does."""
        ...

    def restore_triggers(self) -> list[str]:
        """Inside a write transaction: make the triggers the schema's again; return the
        findings that were repaired."""
        ...


_STREAM_CHUNK = 5000


class SQLiteConnection(sqlite3.Connection):
    """``sqlite3.Connection`` with the store's dialect methods (used as its factory).

    A write transaction is ``BEGIN IMMEDIATE``: it takes the file's single write lock,
    so sessions need no locks of their own.
    """

    data_bytes = "CAST(data AS BLOB)"  # the stored TEXT's UTF-8 bytes, without a decode

    def begin_write(self) -> None:
        """``BEGIN IMMEDIATE``: the write lock now, not at the first write."""
        self.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        """A deferred transaction: in WAL mode its reads share one snapshot."""
        self.execute("BEGIN")

    def lock_sessions(self, session_ids: Iterable[str]) -> None:
        """Nothing to do: the write transaction holds the whole file."""

    def lock_store(self) -> None:
        """Nothing to do: the write transaction holds the whole file."""

    def read_head(self, session_id: str) -> Sequence[Any] | None:
        """One indexed lookup (in-process: cheaper than keeping rows aside)."""
        row: Sequence[Any] | None = self.execute(HEAD_OF_SESSION, (session_id,)).fetchone()
        return row

    def remember_head(self, row: Sequence[Any]) -> None:
        """Nothing to keep: ``read_head`` reads the table."""

    def stored_count(self, session_id: str, seq: int) -> int:
        """One indexed lookup."""
        count: int = self.execute(
            "SELECT tokens FROM view_messages WHERE session_id = ? AND seq = ?",
            (session_id, seq),
        ).fetchone()[0]
        return count

    def counts_changed(
        self,
        session_id: str,
        watermark: int | None = None,
        added: Iterable[tuple[int, int]] = (),
    ) -> None:
        """Nothing to keep: ``stored_count`` reads the table."""

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[list[Any]]:
        """The rows, in chunks."""
        cursor = self.execute(sql, parameters)
        while rows := cursor.fetchmany(_STREAM_CHUNK):
            yield rows

    def trigger_findings(self) -> list[str]:
        """From ``sqlite_master``, against the triggers the migrations create."""
        return migrate.trigger_findings(self)

    def restore_triggers(self) -> list[str]:
        """Drop the file's triggers and create the schema's."""
        return migrate.restore_triggers(self)
