"""Erasure: a session's content removed from the store for good, every hash kept.

One transaction appends the tombstone ([`SessionErased`][eventmem.SessionErased]), then
replaces the content of each earlier event of the session (a fork's own events after
its fork event; a parent's events are the parent's) by ``{"kind":"erased"}``, the one
change to an event the immutability trigger lets through, and only once the tombstone
is there. Each event keeps its content digest and chain hash (the chain since schema 7
covers the digest, not the content), so the chain still verifies. The session's head
starts over, empty and marked erased, and its buffer and checkpoint index rows go.
What the database keeps outside its live rows is purged after the commit where it can
be (`Connection.purge_copies`); SQLite zeroes what a write frees (``secure_delete``).
"""

from __future__ import annotations

from collections.abc import Callable

from eventmem.errors import ErasedSessionError, InvalidInputError, UnknownSessionError
from eventmem.events import ERASED_DATA, SessionErased, SessionForked, decode_event
from eventmem.messages import check_text
from eventmem.rules import event_time
from eventmem.store import checkpoints
from eventmem.store.base import ErasureReceipt
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead
from eventmem.store.lineage import fork_of
from eventmem.store.sql import Connection
from eventmem.store.writes import WriteOp, append_events

__all__ = ["check_reason", "erase_op", "forks_of"]


def erase_op(
    session_id: str, reason: str, by: str | None, receipts: list[ErasureReceipt]
) -> WriteOp:
    """The write of one erasure; its receipt is put in ``receipts``."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            if not head.exists:
                raise UnknownSessionError(f"there is no session {session_id!r} to erase")
            if head.state.erased:
                raise ErasedSessionError(
                    f"session {session_id!r} was erased already (its tombstone is at "
                    f"position {head.state.erased})"
                )
            forks = forks_of(conn, session_id)
            if forks:
                shown = ", ".join(repr(f) for f in forks[:5]) + (", ..." if forks[5:] else "")
                raise InvalidInputError(
                    f"session {session_id!r} has forks ({shown}), whose history is its "
                    "events: erase them first"
                )
            fork = fork_of(conn, session_id)
            kept = 0 if fork is None else fork.at + 1  # a fork keeps its fork event
            last_hash = head.state.head_hash
            tombstone = SessionErased(
                reason, events=head.version - kept, last_hash=last_hash.hex(), by=by
            )
            append_events(head, [tombstone], None)
            conn.execute(
                "UPDATE events SET data = ? WHERE session_id = ? AND position > ? AND position < ?",
                (ERASED_DATA.decode(), session_id, kept, head.version),
            )
            conn.execute("DELETE FROM view_messages WHERE session_id = ?", (session_id,))
            checkpoints.delete_indexes(conn, [session_id])
            conn.counts_changed(session_id)
            head.forget_cached()
            receipts[:] = [
                ErasureReceipt(
                    session_id=session_id,
                    position=head.version,
                    hash=head.state.head_hash.hex(),
                    erased_at=event_time(head.appended_at)[0],
                    reason=reason,
                    by=by,
                    events=tombstone.events,
                    last_hash=last_hash.hex(),
                )
            ]
            return head

        return body

    return WriteOp(session_id, prepare)


def forks_of(conn: Connection, session_id: str) -> list[str]:
    """The sessions forked from ``session_id`` that are not erased (a scan of the log's
    fork events)."""
    found = []
    for fork_session, data, erased in conn.execute(
        "SELECT e.session_id, e.data, s.erased FROM events AS e"
        " LEFT JOIN sessions AS s ON s.session_id = e.session_id"
        " WHERE e.kind = 'fork' ORDER BY e.id"
    ):
        event = decode_event(data, trusted=True)
        if isinstance(event, SessionForked) and event.parent == session_id and not erased:
            found.append(str(fork_session))
    return found


def check_reason(reason: object, what: str = "reason") -> str:
    """``reason`` (or ``by``) if it is text an event can hold, else raise."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError(f"{what} must be a non-empty str, got {reason!r}")
    check_text(reason, what)
    return str.__str__(reason)
