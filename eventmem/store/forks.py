"""Forks and rewinds: writes that make a view from an earlier point of a history.

Both fold the history up to that point with the pure projection (a fork at a session's
last position reads its stored view instead) and append one event, never a copy:

* a fork begins a new session with a [`SessionForked`][eventmem.SessionForked] chained
  to the parent's event at the fork point; the fork's head and view rows are the
  parent's there, the rows pointing at the parent's events;
* a rewind appends a [`ViewRewound`][eventmem.ViewRewound] carrying the view it
  restores, which the fold applies like any other event.
"""

from __future__ import annotations

from collections.abc import Callable

from eventmem._decide import check_expected
from eventmem.errors import (
    ErasedSessionError,
    InvalidInputError,
    SessionExistsError,
    UnknownSessionError,
)
from eventmem.events import SessionForked, ViewRef, ViewRewound
from eventmem.projection import HeadState, MemoryBuffer, fold, rewind_point
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead
from eventmem.store.lineage import hash_at, history, last_seal
from eventmem.store.sql import Connection
from eventmem.store.summaries import current_buffer
from eventmem.store.writes import WriteOp, append_events

__all__ = ["fork_op", "rewind_op"]


def fork_op(parent: str, session_id: str, at: int | None) -> WriteOp:
    """The write of one fork: ``session_id`` begins as ``parent`` after position ``at``
    (None: its last)."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            if head.exists or _has_events(conn, session_id):
                raise SessionExistsError(
                    f"session {session_id!r} already exists; a fork begins a new session"
                )
            row = conn.read_head(parent)
            if row is None:
                raise UnknownSessionError(f"there is no session {parent!r} to fork")
            parent_state = HeadState.from_row(row)
            if parent_state.erased:
                raise ErasedSessionError(f"session {parent!r} was erased: there is nothing to fork")
            version = int(parent_state.version)
            point = version if at is None else at
            if point > version:
                raise InvalidInputError(
                    f"session {parent!r} has {version} events; a fork at {point} is in its future"
                )
            if last_seal(conn, parent):
                raise InvalidInputError(
                    f"session {parent!r} was sealed (retention): a fork would inherit "
                    "history whose content is gone"
                )
            buffer = (
                current_buffer(conn, parent) if point == version else _folded(conn, parent, point)
            )
            _refuse_pending(buffer, parent, point, "fork")
            parent_hash = hash_at(conn, parent, point)
            head.adopt(buffer, point, parent_hash)
            # Begun when its history began (at 0: with its own first event).
            head.state.created_at = parent_state.created_at if point else None
            append_events(head, [SessionForked(parent, point, parent_hash.hex())], None)
            return head

        return body

    return WriteOp(session_id, prepare)


def rewind_op(
    session_id: str, to: int, expected_version: int | None, max_save_bytes: int
) -> WriteOp:
    """The write of one rewind: the view becomes what it was after position ``to``."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            if not head.exists:
                raise UnknownSessionError(f"there is no session {session_id!r} to rewind")
            check_expected(head.state, expected_version)
            version = head.version
            if to > version:
                raise InvalidInputError(
                    f"session {session_id!r} has {version} events; a rewind to {to} is in "
                    "its future"
                )
            if head.state.pending_steps:
                raise InvalidInputError(
                    f"session {session_id!r} has {head.state.pending_steps} agent steps "
                    "recorded live and not yet saved with their turn; save the turn first"
                )
            sealed = last_seal(conn, session_id)
            if to < sealed:
                raise InvalidInputError(
                    f"session {session_id!r} was sealed at position {sealed}: the history "
                    f"before it is gone, so a rewind goes back to {sealed} at most"
                )
            buffer = _folded(conn, session_id, to)
            view, pinned, overhead, counter, summary = rewind_point(buffer, buffer.entries)
            head.recalled = {(e.position, e.index): e.message for e in buffer.entries}
            head.recalled_summary = buffer.summary
            event = ViewRewound(
                to,
                tuple(ViewRef(*ref) for ref in view),
                pinned=pinned,
                overhead=overhead,
                counter=counter,
                summary=summary,
            )
            append_events(head, [event], max_save_bytes)
            return head

        return body

    return WriteOp(session_id, prepare)


def _folded(conn: Connection, session_id: str, upto: int) -> MemoryBuffer:
    """The session's buffer right after position ``upto``: its history folded."""
    return fold(history(conn, session_id, upto))


def _refuse_pending(buffer: MemoryBuffer, session_id: str, at: int, what: str) -> None:
    if buffer.state.pending_steps:
        raise InvalidInputError(
            f"session {session_id!r} has agent steps recorded live and not yet saved with "
            f"their turn at position {at}; a {what} starts after a turn"
        )


def _has_events(conn: Connection, session_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM events WHERE session_id = ? LIMIT 1", (session_id,))
    return row.fetchone() is not None
