"""LangGraph checkpoints in the log: their writes, their lookup rows and their reads.

A checkpoint write appends events to the thread's session like any other write (group
commit, the hash chain, the session's head) and keeps the ``lg_*`` lookup rows with
statements that mirror ``CheckpointIndex.apply``. Reads run on the connection's thread in
one snapshot: they find events through the lookup rows and hand back what the events
hold, still serialized (the saver in ``eventmem.integrations.langgraph`` owns the
serializer).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import msgspec

from eventmem.checkpoint_index import (
    BlobRow,
    CheckpointIndex,
    CheckpointRow,
    WriteRow,
    version_key,
)
from eventmem.errors import CorruptDatabaseError, EventmemError
from eventmem.events import (
    Blob,
    ChannelValue,
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWrite,
    CheckpointWritesSaved,
    Event,
    Version,
    decode_event,
    encode_event,
)
from eventmem.projection import apply
from eventmem.rules import check_save_bytes
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead, now_us
from eventmem.store.sql import Connection
from eventmem.store.writes import WriteOp

__all__ = [
    "ChannelData",
    "IndexRows",
    "ListCache",
    "StaleBaseError",
    "StoredCheckpoint",
    "check_bases",
    "checkpoint_op",
    "copied_events",
    "delete_index",
    "delete_indexes",
    "has_index",
    "index_rows",
    "insert_index_rows",
    "list_checkpoints",
    "read_checkpoints",
    "read_every_index",
    "read_index",
    "run_pairs",
    "runs_sessions",
    "thread_events",
    "visible_pairs",
    "write_index",
]

IndexRows = tuple[list[CheckpointRow], list[BlobRow], list[WriteRow]]

_INSERT_CHECKPOINT = (
    "INSERT INTO lg_checkpoints (session_id, ns, checkpoint_id, position, parent_id, run_id)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_VALUE = (
    "INSERT INTO lg_values (session_id, ns, channel, version, position) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_WRITE = (
    "INSERT INTO lg_writes (session_id, ns, checkpoint_id, task_id, idx, position, slot)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class StaleBaseError(EventmemError):
    """A delta names a base version the thread no longer holds (deleted meanwhile, or
    written by a process that has not seen this one's): the saver writes the whole value
    instead. Raised before anything is written."""


# -- the lookup rows ---------------------------------------------------------------------
def index_rows(index: CheckpointIndex) -> IndexRows:
    """The rows a fold says the tables hold for its session."""
    return index.checkpoint_rows(), index.blob_rows(), index.write_rows()


_INDEX_TABLES = (
    "SELECT session_id, ns, checkpoint_id, position, parent_id, run_id FROM lg_checkpoints",
    "SELECT session_id, ns, channel, version, position FROM lg_values",
    "SELECT session_id, ns, checkpoint_id, task_id, idx, position, slot FROM lg_writes",
)


def read_index(conn: Connection, session_id: str) -> IndexRows:
    """The rows the tables hold for ``session_id``, in the fold's order."""

    def rows(sql: str) -> list[Any]:
        return sorted(
            tuple(row) for row in conn.execute(f"{sql} WHERE session_id = ?", (session_id,))
        )

    checkpoint_rows, value_rows, write_rows = (rows(sql) for sql in _INDEX_TABLES)
    return checkpoint_rows, value_rows, write_rows


def read_every_index(conn: Connection) -> dict[str, IndexRows]:
    """`read_index` of every session that has index rows, in one scan of each table."""
    found: dict[str, IndexRows] = {}
    for table, sql in enumerate(_INDEX_TABLES):
        for row in conn.execute(sql):
            found.setdefault(row[0], ([], [], []))[table].append(tuple(row))
    for rows in found.values():
        for table_rows in rows:
            table_rows.sort()
    return found


def insert_index_rows(conn: Connection, rows: IndexRows) -> None:
    """Insert lookup rows (none of which exist)."""
    checkpoints, values, writes = rows
    if checkpoints:
        conn.executemany(_INSERT_CHECKPOINT, checkpoints)
    if values:
        conn.executemany(_INSERT_VALUE, values)
    if writes:
        conn.executemany(_INSERT_WRITE, writes)


def write_index(conn: Connection, index: CheckpointIndex) -> None:
    """Insert a fold's rows (rebuild and import, after ``delete_index``)."""
    insert_index_rows(conn, index_rows(index))


def delete_indexes(conn: Connection, session_ids: Sequence[str]) -> None:
    """`delete_index` of several sessions, a statement per table."""
    for table in ("lg_checkpoints", "lg_values", "lg_writes"):
        conn.executemany(f"DELETE FROM {table} WHERE session_id = ?", [(s,) for s in session_ids])


def delete_index(conn: Connection, session_id: str | None) -> None:
    """Delete the lookup rows of one session, or of every session."""
    for table in ("lg_checkpoints", "lg_values", "lg_writes"):
        if session_id is None:
            conn.execute(f"DELETE FROM {table}")
        else:
            conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))


def _apply_live(conn: Connection, session_id: str, event: Event, position: int) -> None:
    """``CheckpointIndex.apply`` on the tables."""
    if isinstance(event, CheckpointSaved):
        conn.execute(
            _INSERT_CHECKPOINT + " ON CONFLICT (session_id, ns, checkpoint_id) DO UPDATE SET"
            " position = excluded.position, parent_id = excluded.parent_id,"
            " run_id = excluded.run_id",
            (session_id, event.ns, event.checkpoint_id, position, event.parent_id, event.run_id),
        )
        if event.values:
            conn.executemany(
                _INSERT_VALUE + " ON CONFLICT (session_id, ns, channel, version)"
                " DO UPDATE SET position = excluded.position",
                [
                    (session_id, event.ns, v.channel, version_key(v.version), position)
                    for v in event.values
                ],
            )
    elif isinstance(event, CheckpointWritesSaved):
        conflict = " ON CONFLICT (session_id, ns, checkpoint_id, task_id, idx)"
        for slot, write in enumerate(event.writes):
            row = (
                session_id,
                event.ns,
                event.checkpoint_id,
                event.task_id,
                write.idx,
                position,
                slot,
            )
            if write.idx < 0:  # a special write (error, interrupt, ...): the last one counts
                conn.execute(
                    _INSERT_WRITE + conflict + " DO UPDATE SET position = excluded.position,"
                    " slot = excluded.slot",
                    row,
                )
            else:
                conn.execute(_INSERT_WRITE + conflict + " DO NOTHING", row)
    elif isinstance(event, CheckpointsDeleted):
        if event.everything:
            delete_index(conn, session_id)
            return
        for ns, checkpoint_id in event.checkpoints:
            for table in ("lg_checkpoints", "lg_writes"):
                conn.execute(
                    f"DELETE FROM {table} WHERE session_id = ? AND ns = ? AND checkpoint_id = ?",
                    (session_id, ns, checkpoint_id),
                )


# -- writes ------------------------------------------------------------------------------
# Called inside the write's transaction with the connection and the session's head: the
# events to append (none: nothing to do). It may read the lookup rows, and refuse (raise
# an EventmemError) before anything is written.
Decide = Callable[[Connection, SessionHead], list[Event]]


def checkpoint_op(session_id: str, decide: Decide, max_save_bytes: int) -> WriteOp:
    """A write of checkpoint events to ``session_id`` (the thread), all or nothing."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            events = decide(conn, head)
            if not events:
                return head
            encoded = [encode_event(e) for e in events]
            check_save_bytes(sum(len(data) for data in encoded), max_save_bytes)
            now = now_us()
            for event, data in zip(events, encoded, strict=True):
                position = head.append_event(event, now, data)
                apply(head, event, position)
                _apply_live(conn, session_id, event, position)
            head.flush()
            return head

        return body

    return WriteOp(session_id, prepare, rerunnable=False)  # its decision reads the tables


def check_bases(conn: Connection, session_id: str, event: CheckpointSaved) -> None:
    """Refuse (``StaleBaseError``) a put whose deltas extend versions the thread does not
    hold."""
    for value in event.values:
        if value.extends is None:
            continue
        row = conn.execute(
            "SELECT 1 FROM lg_values WHERE session_id = ? AND ns = ? AND channel = ?"
            " AND version = ?",
            (session_id, event.ns, value.channel, version_key(value.extends)),
        ).fetchone()
        if row is None:
            raise StaleBaseError(
                f"channel {value.channel!r} extends version {value.extends!r}, which the "
                "thread does not hold"
            )


def visible_pairs(conn: Connection, session_id: str) -> list[tuple[str, str]]:
    """The ``(ns, checkpoint_id)`` of every visible checkpoint of the thread."""
    return sorted(
        (ns, cid)
        for ns, cid in conn.execute(
            "SELECT ns, checkpoint_id FROM lg_checkpoints WHERE session_id = ?", (session_id,)
        )
    )


def run_pairs(conn: Connection, session_id: str, run_ids: Sequence[str]) -> list[tuple[str, str]]:
    """The visible checkpoints of the thread that belong to one of ``run_ids``."""
    found: set[tuple[str, str]] = set()
    for run_id in run_ids:
        found.update(
            (ns, cid)
            for ns, cid in conn.execute(
                "SELECT ns, checkpoint_id FROM lg_checkpoints WHERE session_id = ? AND run_id = ?",
                (session_id, run_id),
            )
        )
    return sorted(found)


def runs_sessions(conn: Connection, run_ids: Sequence[str]) -> list[str]:
    """Every thread with a visible checkpoint of one of ``run_ids``."""
    found: set[str] = set()
    for run_id in run_ids:
        found.update(
            sid
            for (sid,) in conn.execute(
                "SELECT DISTINCT session_id FROM lg_checkpoints WHERE run_id = ?", (run_id,)
            )
        )
    return sorted(found)


# -- reads -------------------------------------------------------------------------------
class ChannelData(NamedTuple):
    """A channel's stored value: ``value`` (a whole value) or ``items`` (a list, oldest
    first); ``delta_items`` of the items came from deltas (the rest from the last whole
    list)."""

    value: Blob | None
    items: tuple[Blob, ...] | None
    delta_items: int = 0


class StoredCheckpoint(NamedTuple):
    """One visible checkpoint as stored: its event, its values and its pending writes
    ``(task_id, channel, value, task_path, idx)``, in LangGraph's order."""

    session_id: str
    event: CheckpointSaved
    values: dict[str, ChannelData]
    writes: list[tuple[str, str, Blob, str, int]]


class ListCache:
    """Lists rebuilt from their deltas, by the event that stores their last item: an event
    never changes, so an entry never goes stale. Used on the connection's thread only."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str, str, int], ChannelData] = OrderedDict()

    def get(self, key: tuple[str, str, str, int]) -> ChannelData | None:
        """The list stored under ``key`` (session, ns, channel, position), if known."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, str, str, int], data: ChannelData) -> None:
        """Remember a rebuilt list."""
        self._entries[key] = data
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (the log was replaced: an import, a rebuild)."""
        self._entries.clear()


class _Reader:
    """The reads of one snapshot: events decoded once each."""

    def __init__(self, conn: Connection, lists: ListCache) -> None:
        self.conn = conn
        self.lists = lists
        self._events: dict[tuple[str, int], Event] = {}

    def event(self, session_id: str, position: int) -> Event:
        key = (session_id, position)
        found = self._events.get(key)
        if found is None:
            row = self.conn.execute(
                "SELECT data FROM events WHERE session_id = ? AND position = ?", key
            ).fetchone()
            if row is None:
                raise CorruptDatabaseError(
                    f"session {session_id!r}: the checkpoint index names position {position}, "
                    "which the log does not hold; run 'eventmem verify'"
                )
            data = self.conn.content.open(session_id, position, row[0])
            found = self._events[key] = decode_event(data, trusted=True)
        return found

    def _value_event(
        self, session_id: str, ns: str, channel: str, version: Version
    ) -> tuple[int, ChannelValue] | None:
        row = self.conn.execute(
            "SELECT position FROM lg_values WHERE session_id = ? AND ns = ? AND channel = ?"
            " AND version = ?",
            (session_id, ns, channel, version_key(version)),
        ).fetchone()
        if row is None:
            return None
        event = self.event(session_id, row[0])
        if isinstance(event, CheckpointSaved):
            for value in event.values:
                if value.channel == channel and value.version == version:
                    return row[0], value
        raise CorruptDatabaseError(
            f"session {session_id!r}: position {row[0]} does not hold channel {channel!r} "
            f"at version {version!r}; run 'eventmem verify'"
        )

    def channel(self, session_id: str, ns: str, channel: str, version: Version) -> ChannelData:
        """The value of ``channel`` at ``version`` (``value`` and ``items`` None: none)."""
        found = self._value_event(session_id, ns, channel, version)
        if found is None:
            return ChannelData(None, None)
        position, value = found
        if value.items is None:
            return ChannelData(value.value, None)
        key = (session_id, ns, channel, position)
        cached = self.lists.get(key)
        if cached is not None:
            return cached
        # Walk back to the whole list, then add the deltas oldest first.
        chain = [value]
        seen = {position}
        while chain[-1].extends is not None:
            base = self._value_event(session_id, ns, channel, chain[-1].extends)
            if base is not None and base[0] in seen:
                raise CorruptDatabaseError(
                    f"session {session_id!r}: channel {channel!r} extends itself through "
                    f"position {base[0]}; run 'eventmem verify'"
                )
            if base is not None:
                seen.add(base[0])
            if base is None or base[1].items is None:
                raise CorruptDatabaseError(
                    f"session {session_id!r}: channel {channel!r} extends version "
                    f"{chain[-1].extends!r}, which the thread does not hold as a list"
                )
            cached = self.lists.get((session_id, ns, channel, base[0]))
            if cached is not None:
                break
            chain.append(base[1])
        items: list[Blob] = []
        delta_items = 0
        if cached is not None:
            assert cached.items is not None
            items.extend(cached.items)
            delta_items = cached.delta_items
        for link in reversed(chain):
            assert link.items is not None
            if link.extends is None:
                items, delta_items = list(link.items), 0
            else:
                items.extend(link.items)
                delta_items += len(link.items)
        data = ChannelData(None, tuple(items), delta_items)
        self.lists.put(key, data)
        return data

    def writes(
        self, session_id: str, ns: str, checkpoint_id: str
    ) -> list[tuple[str, str, Blob, str, int]]:
        found = []
        for position, slot in self.conn.execute(
            "SELECT position, slot FROM lg_writes WHERE session_id = ? AND ns = ?"
            " AND checkpoint_id = ?",
            (session_id, ns, checkpoint_id),
        ):
            event = self.event(session_id, position)
            if not isinstance(event, CheckpointWritesSaved) or slot >= len(event.writes):
                raise CorruptDatabaseError(
                    f"session {session_id!r}: the write index names position {position} "
                    f"slot {slot}, which holds no write; run 'eventmem verify'"
                )
            write = event.writes[slot]
            found.append((event.task_id, write.channel, write.value, event.task_path, write.idx))
        # LangGraph's order within a checkpoint: (task_path, task_id, idx)
        found.sort(key=lambda w: (w[3], w[0], w[4]))
        return found

    def checkpoint(self, session_id: str, position: int) -> StoredCheckpoint:
        event = self.event(session_id, position)
        if not isinstance(event, CheckpointSaved):
            raise CorruptDatabaseError(
                f"session {session_id!r}: the checkpoint index names position {position}, "
                "which is not a checkpoint; run 'eventmem verify'"
            )
        values = {
            channel: self.channel(session_id, event.ns, channel, version)
            for channel, version in event.versions.items()
        }
        return StoredCheckpoint(
            session_id,
            event,
            values,
            self.writes(session_id, event.ns, event.checkpoint_id),
        )


def _in_snapshot(conn: Connection, body: Callable[[], Any]) -> Any:
    conn.begin_read()
    try:
        return body()
    finally:
        conn.execute("COMMIT")


def read_checkpoints(
    conn: Connection,
    lists: ListCache,
    session_id: str,
    ns: str,
    checkpoint_id: str | None,
) -> StoredCheckpoint | None:
    """The thread's checkpoint ``checkpoint_id`` of ``ns`` (None: its newest), or None."""

    def body() -> StoredCheckpoint | None:
        if checkpoint_id is None:
            # checkpoint ids sort in time order (byte order in both databases)
            row = conn.execute(
                "SELECT position FROM lg_checkpoints WHERE session_id = ? AND ns = ?"
                " ORDER BY checkpoint_id DESC LIMIT 1",
                (session_id, ns),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT position FROM lg_checkpoints WHERE session_id = ? AND ns = ?"
                " AND checkpoint_id = ?",
                (session_id, ns, checkpoint_id),
            ).fetchone()
        if row is None:
            return None
        position = row[0]
        found: StoredCheckpoint = _Reader(conn, lists).checkpoint(session_id, position)
        return found

    found: StoredCheckpoint | None = _in_snapshot(conn, body)
    return found


def list_checkpoints(
    conn: Connection,
    lists: ListCache,
    session_id: str | None,
    ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
    after: tuple[str, str, str] | None,
    limit: int,
) -> list[StoredCheckpoint]:
    """Up to ``limit`` visible checkpoints, newest id first (then by thread and
    namespace), of one thread or of all, after the key ``after``
    ``(checkpoint_id, session_id, ns)`` of the previous page."""

    def body() -> list[StoredCheckpoint]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("session_id", session_id),
            ("ns", ns),
            ("checkpoint_id", checkpoint_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("checkpoint_id < ?")
            args.append(before)
        if after is not None:
            # keyset paging, in the order below (text compares byte by byte in both)
            where.append(
                "(checkpoint_id < ? OR (checkpoint_id = ? AND (session_id > ?"
                " OR (session_id = ? AND ns > ?))))"
            )
            args += [after[0], after[0], after[1], after[1], after[2]]
        sql = "SELECT session_id, position FROM lg_checkpoints"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY checkpoint_id DESC, session_id, ns LIMIT ?"
        rows = conn.execute(sql, [*args, limit]).fetchall()
        reader = _Reader(conn, lists)
        return [reader.checkpoint(sid, position) for sid, position in rows]

    found: list[StoredCheckpoint] = _in_snapshot(conn, body)
    return found


def thread_events(conn: Connection, session_id: str) -> list[StoredCheckpoint]:
    """Every visible checkpoint of the thread, oldest event first (what a copy copies)."""

    def body() -> list[StoredCheckpoint]:
        positions = sorted(
            position
            for (position,) in conn.execute(
                "SELECT position FROM lg_checkpoints WHERE session_id = ?", (session_id,)
            )
        )
        reader = _Reader(conn, ListCache(0))
        return [reader.checkpoint(session_id, p) for p in positions]

    found: list[StoredCheckpoint] = _in_snapshot(conn, body)
    return found


def copied_events(source: Iterable[StoredCheckpoint]) -> list[Event]:
    """The events that give a new thread the visible checkpoints of ``source`` (in order)
    with their values and writes. Each value is stored once, a list as a delta on the
    copy's previous list of that channel when it extends it."""
    events: list[Event] = []
    stored: set[tuple[str, str, str]] = set()
    last_list: dict[tuple[str, str], tuple[Version, tuple[Blob, ...]]] = {}
    for checkpoint in source:
        event = checkpoint.event
        values = []
        for channel, version in event.versions.items():
            key = (event.ns, channel, version_key(version))
            data = checkpoint.values[channel]
            if key in stored or (data.value is None and data.items is None):
                continue
            stored.add(key)
            if data.items is None:
                values.append(ChannelValue(channel, version, value=data.value))
                continue
            previous = last_list.get((event.ns, channel))
            if previous is not None and data.items[: len(previous[1])] == previous[1]:
                new = data.items[len(previous[1]) :]
                values.append(ChannelValue(channel, version, items=new, extends=previous[0]))
            else:
                values.append(ChannelValue(channel, version, items=data.items))
            last_list[(event.ns, channel)] = (version, data.items)
        events.append(_replace_values(event, tuple(values)))
        by_task: dict[tuple[str, str], list[tuple[str, Blob, int]]] = {}
        for task_id, channel, value, task_path, idx in checkpoint.writes:
            by_task.setdefault((task_id, task_path), []).append((channel, value, idx))
        for (task_id, task_path), writes in by_task.items():
            events.append(
                CheckpointWritesSaved(
                    ns=event.ns,
                    checkpoint_id=event.checkpoint_id,
                    task_id=task_id,
                    task_path=task_path,
                    writes=tuple(_write(idx, channel, value) for channel, value, idx in writes),
                )
            )
    return events


def _replace_values(event: CheckpointSaved, values: tuple[ChannelValue, ...]) -> CheckpointSaved:
    replaced: CheckpointSaved = msgspec.structs.replace(event, values=values)
    return replaced


def _write(idx: int, channel: str, value: Blob) -> CheckpointWrite:
    return CheckpointWrite(idx, channel, value)


def has_index(conn: Connection, session_id: str) -> bool:
    """Whether the thread has any lookup row (a checkpoint, value or write to hide)."""
    return any(
        conn.execute(
            f"SELECT 1 FROM {table} WHERE session_id = ? LIMIT 1", (session_id,)
        ).fetchone()
        is not None
        for table in ("lg_checkpoints", "lg_values", "lg_writes")
    )
