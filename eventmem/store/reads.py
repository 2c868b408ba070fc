"""Reads: the buffer (through the cache), event pages, sessions, versions."""

from __future__ import annotations

from eventmem.events import StoredEvent, decode_event, micros_to_datetime
from eventmem.messages import Message
from eventmem.store.cache import ViewCache
from eventmem.store.head import decode_message
from eventmem.store.sql import Connection

__all__ = ["count_events", "load_view", "read_events", "session_ids", "version"]


def load_view(conn: Connection, cache: ViewCache, session_id: str) -> list[Message]:
    """The session's visible messages, from the cache when it holds this version."""
    conn.begin_read()  # version and rows from one snapshot, even while others write
    try:
        row = conn.execute(
            "SELECT version, watermark FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return []
        version, watermark = row
        cached = cache.get(session_id, version)
        if cached is not None:
            return cached
        messages = [
            decode_message(message)
            for (message,) in conn.execute(
                "SELECT message FROM view_messages WHERE session_id = ? AND seq >= ? ORDER BY seq",
                (session_id, watermark),
            )
        ]
    finally:
        conn.execute("COMMIT")
    cache.put(session_id, version, watermark, messages)
    return messages


def read_events(
    conn: Connection, session_id: str, after_position: int, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` of the session's events after ``after_position``."""
    rows = conn.execute(
        "SELECT position, id, recorded_at, data, hash FROM events"
        " WHERE session_id = ? AND position > ? ORDER BY position LIMIT ?",
        (session_id, after_position, limit),
    ).fetchall()
    return [
        StoredEvent(
            session_id=session_id,
            position=position,
            global_position=global_position,
            recorded_at=micros_to_datetime(recorded_at),
            data=decode_event(data, trusted=True),
            hash=bytes(digest).hex(),
        )
        for position, global_position, recorded_at, data, digest in rows
    ]


def session_ids(conn: Connection) -> list[str]:
    """Every session, in order of creation."""
    return [row[0] for row in conn.execute("SELECT session_id FROM sessions ORDER BY created_at")]


def version(conn: Connection, session_id: str) -> int:
    """Position of the session's last event (0 if it has none)."""
    row = conn.execute(
        "SELECT version FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def count_events(conn: Connection) -> int:
    """Number of events in the store."""
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
