"""Reads: the buffer (through the cache), event pages, sessions, versions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventmem.errors import ErasedSessionError
from eventmem.events import StoredEvent, decode_event
from eventmem.messages import Message
from eventmem.rules import event_time, stored_time
from eventmem.store.base import SessionSummary, StoreStats
from eventmem.store.cache import ViewCache
from eventmem.store.content import opened_in
from eventmem.store.lineage import holders, inheriting
from eventmem.store.sql import VIEW_START, VISIBLE, Connection
from eventmem.store.view_rows import resolve

__all__ = [
    "count_events",
    "load_view",
    "load_view_at",
    "read_events",
    "session_ids",
    "session_page",
    "session_summaries",
    "stats",
    "version",
]


def load_view(conn: Connection, cache: ViewCache, session_id: str) -> list[Message]:
    """The session's visible messages, from the cache when it holds this version.

    Each path is one statement, so it reads one snapshot without a transaction (and,
    over a network, costs one round trip when the cache is current).
    """
    return load_view_at(conn, cache, session_id)[1]


def load_view_at(conn: Connection, cache: ViewCache, session_id: str) -> tuple[int, list[Message]]:
    """`load_view`, with the session's version the view is the one after (0: none)."""
    row = conn.execute(
        "SELECT version, erased FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    if row is None:
        return 0, []
    if row[1]:
        raise ErasedSessionError(
            f"session {session_id!r} was erased (its tombstone is at position {row[1]}): "
            "there is no view to read"
        )
    cached = cache.get(session_id, row[0])
    if cached is not None:
        return int(row[0]), cached
    rows = conn.execute(
        "SELECT s.version, v.tokens, v.seq, v.position, v.idx, v.message, e.data"
        " FROM sessions AS s"
        " LEFT JOIN view_messages AS v ON v.session_id = s.session_id"
        f" AND v.seq >= {VIEW_START}"
        " LEFT JOIN events AS e ON e.session_id = v.session_id AND e.position = v.position"
        " WHERE s.session_id = ? ORDER BY v.seq",
        (session_id,),
    ).fetchall()
    if not rows:
        return 0, []  # gone since the first read (a rebuild in between)
    version = rows[0][0]
    items = resolve(
        (row[2:] for row in rows if row[2] is not None),
        inheriting(conn, session_id),
        opened_in(conn.content, session_id),
    )
    cache.put(session_id, version, items, {row[2]: row[1] for row in rows if row[2] is not None})
    return int(version), [message for _, message in items]


def read_events(
    conn: Connection, session_id: str, after_position: int, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` of the session's events after ``after_position`` (a fork's
    positions up to its fork point are its parent's events: each is read from the
    session that holds it, and says so in its ``session_id``)."""
    events: list[StoredEvent] = []
    for holder, first, last in holders(conn, session_id):
        if (last is not None and last <= after_position) or len(events) >= limit:
            continue
        rows = conn.execute(
            "SELECT position, id, recorded_at, data, hash FROM events"
            " WHERE session_id = ? AND position > ? AND position <= ? ORDER BY position LIMIT ?",
            (
                holder,
                max(after_position, first - 1),
                _LAST if last is None else last,
                limit - len(events),
            ),
        ).fetchall()
        for position, global_position, recorded_at, data, digest in rows:
            moment, micros = event_time(recorded_at)
            events.append(
                StoredEvent(
                    session_id=holder,
                    position=position,
                    global_position=global_position,
                    recorded_at=moment,
                    data=decode_event(conn.content.open(holder, position, data), trusted=True),
                    hash=bytes(digest).hex(),
                    recorded_at_us=micros,
                )
            )
    return events


_LAST = (1 << 63) - 1  # past any position


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


def _datetime(micros: object) -> datetime | int | None:
    return None if micros is None else stored_time(micros)


_SUMMARY_COLUMNS = f"""
SELECT s.session_id, s.version, {VISIBLE}, s.total_tokens, s.overhead,
       s.counter, s.created_at, e.recorded_at
FROM sessions AS s
LEFT JOIN events AS e ON e.session_id = s.session_id AND e.position = s.version
"""
_SUMMARIES_SQL = _SUMMARY_COLUMNS + "ORDER BY s.created_at, s.session_id"


def _summary(row: Sequence[Any]) -> SessionSummary:
    """A row of ``_SUMMARY_COLUMNS`` as a summary."""
    session_id, events, visible, tokens, overhead, counter, created, last = row
    return SessionSummary(
        session_id=session_id,
        events=int(events),
        visible_messages=int(visible),
        tokens=int(tokens) + int(overhead),  # added here: in SQL it could overflow
        counter=counter,
        created_at=_datetime(created),
        last_activity=_datetime(last),
    )


def session_summaries(conn: Connection) -> list[SessionSummary]:
    """Every session's summary from its head row (and its last event's time), oldest first."""
    return [_summary(row) for row in conn.execute(_SUMMARIES_SQL)]


SESSION_ORDERS = {
    "created": "s.created_at {d}, s.session_id {d}",
    "id": "s.session_id {d}",
    "events": "s.version {d}, s.created_at, s.session_id",
    "tokens": "s.total_tokens {d}, s.overhead {d}, s.created_at, s.session_id",
    # a session without events (no time) last, either way
    "last": "(e.recorded_at IS NULL), e.recorded_at {d}, s.created_at, s.session_id",
}
"""The orders `session_page` sorts by, and their SQL (``{d}``: ASC or DESC)."""


def _like_pattern(search: str) -> str:
    """A LIKE pattern matching ``search`` anywhere, its wildcards taken literally."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.translate(_ASCII_LOWER)}%"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def session_page(
    conn: Connection, search: str, order: str, descending: bool, offset: int, limit: int
) -> tuple[int, list[SessionSummary]]:
    """How many sessions' ids contain ``search`` (ignoring ASCII case), and ``limit`` of
    their summaries after the first ``offset`` in ``order``, from one snapshot: sorted,
    filtered and cut in SQL, so a page costs its rows, not the store's."""
    direction = "DESC" if descending else "ASC"
    where = " WHERE lower(s.session_id) LIKE ? ESCAPE '\\'" if search else ""
    parameters = (_like_pattern(search),) if search else ()
    conn.begin_read()
    try:
        total = conn.execute("SELECT count(*) FROM sessions AS s" + where, parameters).fetchone()[0]
        rows = conn.execute(
            f"{_SUMMARY_COLUMNS}{where} ORDER BY {SESSION_ORDERS[order].format(d=direction)}"
            " LIMIT ? OFFSET ?",
            (*parameters, limit, offset),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return int(total), [_summary(row) for row in rows]


def stats(conn: Connection) -> StoreStats:
    """Figures about the whole store, from one snapshot."""
    conn.begin_read()
    try:
        schema_version = conn.execute("SELECT max(version) FROM eventmem_migrations").fetchone()[0]
        sessions, entered, visible = conn.execute(
            "SELECT count(*), coalesce(sum(s.next_seq), 0), coalesce(sum(" + VISIBLE + "), 0)"
            " FROM sessions AS s"
        ).fetchone()
        by_kind = {
            str(kind): int(count)
            for kind, count in conn.execute(
                "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind"
            )
        }
        first, last = conn.execute(
            "SELECT min(recorded_at), max(recorded_at) FROM events"
        ).fetchone()
        storage, page_size, page_count, free = conn.storage_figures()
        setting = conn.execute(
            "SELECT value FROM eventmem_settings WHERE name = 'encryption'"
        ).fetchone()
    finally:
        conn.execute("COMMIT")
    return StoreStats(
        schema_version=int(schema_version),
        sessions=int(sessions),
        events_by_kind=by_kind,
        messages_entered=int(entered),
        visible_messages=int(visible),
        first_event=_datetime(first),
        last_event=_datetime(last),
        storage_bytes=storage,
        page_size=page_size,
        page_count=page_count,
        freelist_pages=free,
        encryption=None if setting is None else str(setting[0]),
    )
