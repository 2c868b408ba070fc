"""The connection interface the store's SQL is written against.

The store's statements (``head``, ``writes``,
``reads``, ``maintenance``) are plain SQL with
``?`` placeholders that both SQLite and PostgreSQL accept. What differs between the two
(how a write transaction starts, how sessions are locked, how the event JSON is read as
bytes) is a method of the connection, so those modules never ask which database it is.
Every call runs on the backend's worker thread, a whole transaction at a time. Each
database's package (``eventmem.store.sqlite``, ``eventmem.store.postgres``) implements it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from eventmem.projection import HEAD_FIELDS
from eventmem.store.content import Content

__all__ = [
    "HEAD_COLUMNS",
    "HEAD_OF_SESSION",
    "VIEW_START",
    "VISIBLE",
    "Connection",
    "Cursor",
    "StorageFigures",
]

# The columns of a session's projection row: the fields of ``HeadState``, in order.
HEAD_COLUMNS = ", ".join(HEAD_FIELDS)
HEAD_OF_SESSION = f"SELECT {HEAD_COLUMNS} FROM sessions WHERE session_id = ?"
# Over ``sessions AS s``: the seq of the oldest visible row (the pinned one when it is
# below the watermark: rows between it and the watermark are gone), and how many there are.
_PINNED_BELOW = "s.pinned >= 0 AND s.pinned < s.watermark"
VIEW_START = f"(CASE WHEN {_PINNED_BELOW} THEN s.pinned ELSE s.watermark END)"
VISIBLE = f"(s.next_seq - s.watermark + CASE WHEN {_PINNED_BELOW} THEN 1 ELSE 0 END)"


# (storage bytes, page size, page count, free pages): the page figures are None where
# the database has no pages of its own to count (PostgreSQL).
StorageFigures = tuple[int, int | None, int | None, int | None]


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection of either dialect, used from one thread at a time."""

    # The SQL expression reading an event's ``data`` as the bytes its hash covers.
    data_bytes: str
    # How event content is kept: every ``data`` read is opened by it before it is
    # decoded (see `eventmem.store.content`).
    content: Content

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

    def bulk_cache(self) -> AbstractContextManager[None]:
        """A larger page cache while one big transaction (an import) runs, so its index
        lookups and inserts stay in memory; where the server owns the cache, nothing."""
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

    def storage_figures(self) -> StorageFigures:
        """What the store occupies, for ``stats`` (inside its read transaction)."""
        ...

    def zero_freed(self, on: bool) -> None:
        """Inside a write transaction: whether what its statements free from now on is
        overwritten (SQLite's ``secure_delete``, for an erasure's statements only: it
        costs every save ~5%); PostgreSQL has nothing of the kind (see
        ``purge_copies``)."""
        ...

    def purge_copies(self) -> bool:
        """After an erasure committed, outside any transaction: remove the copies of old
        content the database keeps outside its live rows, where it can (SQLite: the
        write-ahead log, checkpointed and truncated); whether none is left."""
        ...
