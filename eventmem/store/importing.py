"""Importing an export file: its lines checked on one thread, written on another.

Checking a line (its envelope, the event's rules and hash, the fold) is Python; writing
it is mostly the database's own code, which lets go of the GIL (SQLite while it steps a
statement, PostgreSQL while it waits on the server), so the two overlap: a reading
thread checks and folds the lines into batches, and the connection's thread inserts
each batch while the next is read. Everything still happens in one transaction, and
nothing the reader finds wrong is written: the rows read before a fault are inserted
and then rolled back with the rest when its error is raised on the connection's thread.
"""

from __future__ import annotations

import pickle
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

from eventmem.audit import ExportReader, Opener, SessionFold
from eventmem.errors import ImportRefusedError, InputTooLargeError, StorageError
from eventmem.store import checkpoints
from eventmem.store.cache import ViewCache
from eventmem.store.head import write_transaction
from eventmem.store.lineage import fold_history
from eventmem.store.maintenance import write_projections
from eventmem.store.sql import Connection

__all__ = ["import_lines"]

_Row = tuple[str, int, str, int, str, bytes, bytes | None]
# A batch ends at this many events or this many bytes of their JSON, whichever comes
# first; at most _AHEAD batches wait to be written, which bounds the memory an import
# holds whatever the size of its file (or of its events).
_BATCH_ROWS = 1000
_BATCH_BYTES = 4 * 1024 * 1024
_AHEAD = 3
_STOP_WAIT = 1.0  # seconds
# Folds kept in memory; those of sessions read longer ago wait, pickled, in a temporary
# file until their session comes back or the import ends: a file of any number of
# sessions costs at most this many folds' memory (each ~1.6 KiB with a short buffer).
_HOT_SESSIONS = 20_000
_FILTER_BITS = 1 << 24  # 2 MiB: ~1% false positives with 1,000,000 sessions on disk


class _Folds:
    """The import's session folds: the ``_HOT_SESSIONS`` read most recently in memory,
    the others pickled into a temporary database (deleted when closed)."""

    def __init__(self) -> None:
        self._hot: OrderedDict[str, SessionFold] = OrderedDict()
        self._cold: sqlite3.Connection | None = None
        # A Bloom filter of the sessions on disk: most new sessions skip the lookup.
        self._maybe_cold = bytearray(_FILTER_BITS // 8)
        self.count = 0

    def _probes(self, session_id: str) -> tuple[int, int]:
        h = hash(session_id)
        return h & (_FILTER_BITS - 1), (h >> 32) & (_FILTER_BITS - 1)

    def _may_be_cold(self, session_id: str) -> bool:
        bits = self._maybe_cold
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._probes(session_id))

    def get(self, session_id: str) -> SessionFold | None:
        """The session's fold, if it was seen."""
        fold = self._hot.get(session_id)
        if fold is not None:
            self._hot.move_to_end(session_id)
            return fold
        if self._cold is None or not self._may_be_cold(session_id):
            return None
        row = self._cold.execute(
            "SELECT fold FROM folds WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return None
        self._cold.execute("DELETE FROM folds WHERE session_id = ?", (session_id,))
        fold = pickle.loads(row[0])
        assert isinstance(fold, SessionFold)
        self._keep(session_id, fold)
        return fold

    def add(self, session_id: str, fold: SessionFold) -> None:
        """A new session's fold."""
        self.count += 1
        self._keep(session_id, fold)

    def _keep(self, session_id: str, fold: SessionFold) -> None:
        self._hot[session_id] = fold
        if len(self._hot) > _HOT_SESSIONS:
            if self._cold is None:
                # "": a private on-disk database of SQLite's, removed when closed
                self._cold = sqlite3.connect("", isolation_level=None, check_same_thread=False)
                self._cold.execute("CREATE TABLE folds (session_id TEXT PRIMARY KEY, fold BLOB)")
            oldest, cold = self._hot.popitem(last=False)
            for probe in self._probes(oldest):
                self._maybe_cold[probe >> 3] |= 1 << (probe & 7)
            self._cold.execute(
                "INSERT INTO folds VALUES (?, ?)",
                (oldest, pickle.dumps(cold, protocol=pickle.HIGHEST_PROTOCOL)),
            )

    def session_ids(self) -> list[str]:
        """Every session's id (none unpickled)."""
        ids = list(self._hot)
        if self._cold is not None:
            ids += [sid for (sid,) in self._cold.execute("SELECT session_id FROM folds")]
        return ids

    def items(self) -> Iterator[tuple[str, SessionFold]]:
        """Every fold (those on disk one at a time)."""
        yield from self._hot.items()
        if self._cold is not None:
            for session_id, data in self._cold.execute("SELECT session_id, fold FROM folds"):
                yield session_id, pickle.loads(data)

    def close(self) -> None:
        """Remove the temporary database."""
        if self._cold is not None:
            self._cold.close()
            self._cold = None


class _Batch(NamedTuple):
    rows: list[_Row]
    new_sessions: list[tuple[int, str]]  # (line, session) of each session first seen here


class _Failed(NamedTuple):
    error: BaseException


_DONE = object()


class _Reading(threading.Thread):
    """Reads, checks and folds the lines, handing batches of rows to the writer."""

    def __init__(self, reader: ExportReader, opened: Opener) -> None:
        super().__init__(name="eventmem-import-reader", daemon=True)
        self.folds = _Folds()
        self._reader = reader
        self._opened = opened
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_AHEAD)
        self._stopping = threading.Event()

    def run(self) -> None:
        batch = _Batch([], [])
        size = 0
        try:
            for number, item, data in self._reader.events():
                if self._stopping.is_set():
                    return
                session_id = item.session_id
                fold = self.folds.get(session_id)
                if fold is None:
                    fold = SessionFold(session_id, skeleton=True)
                    self.folds.add(session_id, fold)
                    batch.new_sessions.append((number, session_id))
                digest = bytes.fromhex(item.hash)
                content = None if item.sha256 is None else bytes.fromhex(item.sha256)
                problem = fold.add(
                    item.position, item.recorded_at, data, digest, item.kind, content, self._opened
                )
                if problem is not None:
                    raise ImportRefusedError(
                        f"line {number}: session {problem.session_id!r} position "
                        f"{problem.position}: {problem.kind}: {problem.detail}"
                    )
                # valid UTF-8: the event decoded, and re-encodes to these very bytes
                batch.rows.append(
                    (
                        session_id,
                        item.position,
                        item.kind,
                        item.recorded_at,
                        data.decode(),
                        digest,
                        content,
                    )
                )
                size += len(data)
                if len(batch.rows) >= _BATCH_ROWS or size >= _BATCH_BYTES:
                    self._put(batch)
                    batch, size = _Batch([], []), 0
            self._put(batch)
            self._put(_DONE)
        except BaseException as e:
            # What was read before the fault first: a session refused as existing on an
            # earlier line is the error to report, as when reading and writing alternate.
            self._put(batch)
            self._put(_Failed(e))

    def _put(self, item: object) -> None:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def batches(self) -> Iterator[_Batch]:
        """The batches in order; the reader's error, raised here, after those before it."""
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            assert isinstance(item, _Batch)
            yield item

    def stop(self) -> None:
        """Stop reading (the writer is done, or failed): the thread ends after the line
        it is reading (waited for a moment only: a line from a silent pipe may never
        come, and the writer's error should not wait for it)."""
        self._stopping.set()
        deadline = time.monotonic() + _STOP_WAIT
        while self.is_alive() and time.monotonic() < deadline:
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                continue


def import_lines(conn: Connection, cache: ViewCache, reader: ExportReader) -> tuple[int, int]:
    """Import an export file in one transaction, reading it line by line."""
    if reader.started:
        # A backend runs a call again when its connection was lost before the commit;
        # the lines read then are gone, so the import cannot resume.
        raise StorageError(
            "the connection was lost during the import; nothing was written: run it again"
        )
    cache.clear()

    def body() -> tuple[int, int]:
        conn.lock_store()
        reading = _Reading(reader, _bounded_opener(conn, reader.max_save_bytes))
        reading.start()
        try:
            written = 0
            for batch in reading.batches():
                _refuse_existing(conn, batch.new_sessions)
                written += _insert_events(conn, batch.rows)
            _clear_projections(conn, reading.folds.session_ids())
            write_projections(conn, _settled(conn, reading.folds.items()))
        finally:
            reading.stop()
            if not reading.is_alive():  # (else it goes with the thread, which may use it)
                reading.folds.close()
        return reading.folds.count, written

    with conn.bulk_cache():
        return write_transaction(conn, body)


def _bounded_opener(conn: Connection, max_save_bytes: int) -> Opener:
    """The import's `Opener`: an encrypted event's JSON, which must be within what a save
    may store (its line was allowed the ciphertext's larger size)."""

    def opened(session_id: str, position: int, data: bytes) -> bytes:
        event = conn.content.open(session_id, position, data)
        if event is not data and len(event) > max_save_bytes:
            raise InputTooLargeError(
                f"the event is {len(event)} bytes once decrypted, more than a save may store "
                f"in this store ({max_save_bytes} bytes)"
            )
        return bytes(event)

    return opened


def _settled(conn: Connection, folds: Iterator[tuple[str, SessionFold]]) -> Iterator[SessionFold]:
    """The folds, a fork's or a rewound session's folded again over its whole history
    (its events, and its parent's, are in the store by now): refused if that finds a
    problem, as a problem in a line is."""
    for session_id, fold in folds:
        if fold.deferred:
            fold, problem = fold_history(conn, session_id)
            if problem is not None:
                raise ImportRefusedError(
                    f"session {problem.session_id!r} position {problem.position}: "
                    f"{problem.kind}: {problem.detail}"
                )
        yield fold


def _refuse_existing(conn: Connection, sessions: list[tuple[int, str]]) -> None:
    """Refuse the first of ``sessions`` (line, session) that the store has events of."""
    for start in range(0, len(sessions), _IDS_PER_QUERY):
        chunk = sessions[start : start + _IDS_PER_QUERY]
        found = {
            session_id
            for (session_id,) in conn.execute(
                "SELECT DISTINCT session_id FROM events WHERE session_id IN"
                f" ({', '.join('?' * len(chunk))})",
                [session_id for _, session_id in chunk],
            )
        }
        for number, session_id in chunk:
            if session_id in found:
                raise ImportRefusedError(
                    f"line {number}: session {session_id!r} already exists in this "
                    "store; an import never merges into or duplicates a session"
                )


_IDS_PER_QUERY = 500  # bound parameters per query, well under SQLite's limit


def _clear_projections(conn: Connection, session_ids: list[str]) -> None:
    """Remove what projection rows the imported sessions had without events (rows put
    there around eventmem; the fold's are written next)."""
    for start in range(0, len(session_ids), _IDS_PER_QUERY):
        chunk = [(s,) for s in session_ids[start : start + _IDS_PER_QUERY]]
        conn.executemany("DELETE FROM view_messages WHERE session_id = ?", chunk)
        conn.executemany("DELETE FROM sessions WHERE session_id = ?", chunk)
    checkpoints.delete_indexes(conn, session_ids)


def _insert_events(conn: Connection, rows: list[_Row]) -> int:
    if rows:
        conn.executemany(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)
