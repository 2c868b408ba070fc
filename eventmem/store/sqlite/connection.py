"""``sqlite3.Connection`` with the store's dialect methods."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventmem.store.content import PLAIN, Content
from eventmem.store.sql import HEAD_OF_SESSION, StorageFigures
from eventmem.store.sqlite import migrations

__all__ = ["SQLiteConnection", "WouldWait"]

_STREAM_CHUNK = 5000
# An import's page cache: with SQLite's default 2 MiB, each insert into the events'
# (session_id, position) index and the gapless trigger's lookup read their pages back
# from the OS (raw inserts of 1,000,000 events: 2 MiB 39 s, 100 MiB 18 s). 32 MiB keeps
# most of that and the import's peak memory well under 200 MiB.
BULK_CACHE_KIB = 32 * 1024
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


class WouldWait(Exception):
    """An inline write found the write lock taken: it runs on the worker instead."""


_PURGE_WAIT_MS = 200


class SQLiteConnection(sqlite3.Connection):
    """``sqlite3.Connection`` with the store's dialect methods (used as its factory).

    A write transaction is ``BEGIN IMMEDIATE``: it takes the file's single write lock,
    so sessions need no locks of their own.
    """

    data_bytes = "CAST(data AS BLOB)"  # the stored TEXT's UTF-8 bytes, without a decode
    content: Content = PLAIN  # the store's, set when it opens
    # Set while a write runs on the caller's thread (SQLiteBackend._write_inline): then
    # a write lock that is not free at once raises WouldWait instead of waiting.
    inline = False
    busy_timeout_ms = 0  # the store's: how long the worker's statements wait for a lock
    _waits_ms = -1  # the busy timeout in force on the connection now (-1: unknown)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The counts of the buffer rows the open write transaction wrote, by session: a
        # batch of saves to one session prunes what its earlier saves added unread.
        self._written: dict[str, dict[int, int]] = {}

    def wait_for_locks(self, ms: int) -> None:
        """Make ``ms`` the connection's busy timeout, with a statement only when it
        changes: inline writes want 0 and the worker the store's, and a session saving
        back to back stays inline (two ``PRAGMA``s a save cost ~5-10 µs)."""
        if ms != self._waits_ms:
            self.execute(f"PRAGMA busy_timeout = {int(ms)}")
            self._waits_ms = ms

    def begin_write(self) -> None:
        """``BEGIN IMMEDIATE``: the write lock now, not at the first write."""
        self._written = {}  # another process may have written since the last transaction
        if not self.inline:
            self.execute("BEGIN IMMEDIATE")
            return
        self.wait_for_locks(0)
        try:
            self.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise WouldWait from e
            raise

    def begin_read(self) -> None:
        """A deferred transaction: in WAL mode its reads share one snapshot."""
        self.execute("BEGIN")

    def lock_sessions(self, session_ids: Iterable[str]) -> None:
        """Nothing to do: the write transaction holds the whole file."""

    def lock_store(self) -> None:
        """Nothing to do: the write transaction holds the whole file."""

    @contextmanager
    def bulk_cache(self) -> Iterator[None]:
        """``cache_size`` of ``BULK_CACHE_KIB`` for the block, then the one before."""
        before = self.execute("PRAGMA cache_size").fetchone()[0]
        self.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            yield
        finally:
            self.execute(f"PRAGMA cache_size = {int(before)}")

    def read_head(self, session_id: str) -> Sequence[Any] | None:
        """One indexed lookup (in-process: cheaper than keeping rows aside)."""
        row: Sequence[Any] | None = self.execute(HEAD_OF_SESSION, (session_id,)).fetchone()
        return row

    def remember_head(self, row: Sequence[Any]) -> None:
        """Nothing to keep: ``read_head`` reads the table."""

    def stored_count(self, session_id: str, seq: int) -> int:
        """From the rows this transaction wrote, else one indexed lookup."""
        known = self._written.get(session_id)
        if known is not None and seq in known:
            return known[seq]
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
        """Follow the rows this transaction wrote (or forget the session's)."""
        if watermark is None:
            self._written.pop(session_id, None)
            return
        known = self._written.setdefault(session_id, {})
        for seq in [seq for seq in known if seq < watermark]:
            del known[seq]
        known.update(added)

    def stream(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[list[Any]]:
        """The rows, in chunks."""
        cursor = self.execute(sql, parameters)
        while rows := cursor.fetchmany(_STREAM_CHUNK):
            yield rows

    def trigger_findings(self) -> list[str]:
        """From ``sqlite_master``, against the triggers the migrations create."""
        return migrations.trigger_findings(self)

    def restore_triggers(self) -> list[str]:
        """Drop the file's triggers and create the schema's."""
        return migrations.restore_triggers(self)

    def zero_freed(self, on: bool) -> None:
        """Switch ``secure_delete`` on (zero what is freed: an erasure's old content) or
        off."""
        self.execute(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")

    def purge_copies(self) -> bool:
        """Checkpoint the write-ahead log into the file and truncate it (its frames hold
        pages as they were before an erasure); False if a reader kept it from finishing
        (the log is truncated at a later checkpoint, and removed when the store closes)."""
        # A reader holding the log would make the checkpoint wait out the busy timeout:
        # a moment, then the next checkpoint does it.
        self.wait_for_locks(_PURGE_WAIT_MS)
        try:
            busy, _, _ = self.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.wait_for_locks(self.busy_timeout_ms)
        return not busy

    def storage_figures(self) -> StorageFigures:
        """The file's pages (its WAL not included)."""
        size, count, free = (
            int(self.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_size", "page_count", "freelist_count")
        )
        return size * count, size, count, free
