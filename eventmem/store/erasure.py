"""Erasure: a session's content removed from the store for good, every hash kept.

One transaction appends the tombstone ([`SessionErased`][eventmem.SessionErased]), then
replaces the content of each earlier event of the session (a fork's own events after
its fork event; a parent's events are the parent's) by ``{"kind":"erased"}``, the one
change to an event the immutability trigger lets through, and only once the tombstone
is there. Each event keeps its content digest and chain hash (the chain since schema 7
covers the digest, not the content), so the chain still verifies. The session's head
starts over, empty and marked erased, and its buffer and checkpoint index rows go.
What the database keeps outside its live rows is purged after the commit where it can
be (`Connection.purge_copies`); on SQLite the erasure's statements zero what they free
(``secure_delete``, `Connection.zero_freed`).
"""

from __future__ import annotations

from collections.abc import Callable

from eventmem.errors import ErasedSessionError, InvalidInputError, UnknownSessionError
from eventmem.events import (
    ERASED_DATA,
    SessionErased,
    SessionForked,
    SessionSealed,
    ViewRef,
    decode_event,
)
from eventmem.messages import check_text
from eventmem.projection import rewind_point
from eventmem.rules import event_time
from eventmem.store import checkpoints
from eventmem.store.base import ErasureReceipt, SealResult
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead
from eventmem.store.lineage import fork_of
from eventmem.store.sql import Connection
from eventmem.store.summaries import current_buffer, latest_summary
from eventmem.store.writes import WriteOp, append_events

__all__ = ["FORK_EVENTS", "check_reason", "erase_op", "forks_of", "seal_op"]


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
            forks = [fork for fork, _ in forks_of(conn, session_id)]
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
            _replace_content(conn, session_id, kept, head.version, erasing=True)
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


def seal_op(
    session_id: str, before: int | None, older_than_us: int | None, results: list[SealResult]
) -> WriteOp:
    """The write of one seal: the content of the session's events before ``before`` (or
    recorded before ``older_than_us``) goes, as far as the view, the summary in force
    and the session's forks hold none of it; its result is put in ``results``."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            if not head.exists:
                raise UnknownSessionError(f"there is no session {session_id!r} to seal")
            if head.state.erased:
                raise ErasedSessionError(f"session {session_id!r} was erased already")
            if head.state.pending_steps:
                raise InvalidInputError(
                    f"session {session_id!r} has agent steps recorded live and not yet saved "
                    "with their turn; save the turn first"
                )
            if checkpoints.has_index(conn, session_id):
                raise InvalidInputError(
                    f"session {session_id!r} holds LangGraph checkpoints: prune them with "
                    "the checkpointer (its delete and prune), not by sealing"
                )
            version = head.version
            fork = fork_of(conn, session_id)
            first = 1 if fork is None else fork.at + 2  # a fork keeps its fork event
            buffer = current_buffer(conn, session_id)
            summary_position, summary = latest_summary(conn, session_id)
            keeps = {"the view": min((e.position for e in buffer.entries), default=version + 1)}
            keeps["the summary in force"] = summary_position or version + 1
            # A fork's history is this session's events up to its fork point, from 1.
            forked = any(at > 0 for _, at in forks_of(conn, session_id))
            keeps["a fork of it"] = 1 if forked else version + 1
            allowed = min(keeps.values())
            if before is not None:
                if before > allowed:
                    what = next(k for k, v in keeps.items() if v == allowed)
                    raise InvalidInputError(
                        f"sealing session {session_id!r} before {before} would remove "
                        f"content {what} still holds (at position {allowed}); seal before "
                        f"{allowed} at most"
                    )
                target = before
            else:
                assert older_than_us is not None
                row = conn.execute(
                    "SELECT min(position) FROM events WHERE session_id = ? AND recorded_at >= ?",
                    (session_id, older_than_us),
                ).fetchone()
                target = min(allowed, version + 1 if row[0] is None else int(row[0]))
            start = max(first, _sealed_before(conn, session_id))
            if target <= start:
                results[:] = [SealResult(session_id, max(target, start), 0, 0)]
                return head  # nothing left to seal: nothing written
            view, pinned, overhead, counter, _ = rewind_point(buffer, buffer.entries)
            seal = SessionSealed(
                target,
                tuple(ViewRef(*ref) for ref in view),
                pinned=pinned,
                overhead=overhead,
                counter=counter,
                summary=summary_position,
                events=target - start,
                next_seq=head.state.next_seq,
                turn_position=head.state.turn_position,
            )
            head.recalled = {(e.position, e.index): e.message for e in buffer.entries}
            head.recalled_summary = summary
            append_events(head, [seal], None)
            _replace_content(conn, session_id, start - 1, target, erasing=False)
            results[:] = [SealResult(session_id, target, seal.events, head.version)]
            return head

        return body

    return WriteOp(session_id, prepare)


def _replace_content(
    conn: Connection, session_id: str, after: int, before: int, *, erasing: bool
) -> None:
    """Replace the content of the session's events after ``after`` and before
    ``before`` by the erased marker (those emptied already stay as they are), zeroing
    what that frees; an erasure also removes the session's buffer rows (rows from before
    schema 5 hold their message's text)."""
    conn.zero_freed(True)
    try:
        conn.execute(
            "UPDATE events SET data = ? WHERE session_id = ? AND position > ?"
            " AND position < ? AND data <> ?",
            (ERASED_DATA.decode(), session_id, after, before, ERASED_DATA.decode()),
        )
        if erasing:
            conn.execute("DELETE FROM view_messages WHERE session_id = ?", (session_id,))
    finally:
        conn.zero_freed(False)


def _sealed_before(conn: Connection, session_id: str) -> int:
    """The position before which the session's last seal emptied its events (0: none)."""
    row = conn.execute(
        "SELECT data FROM events WHERE session_id = ? AND kind = 'seal'"
        " ORDER BY position DESC LIMIT 1",
        (session_id,),
    ).fetchone()
    if row is None:
        return 0
    seal = decode_event(row[0], trusted=True)
    return seal.before if isinstance(seal, SessionSealed) else 0


# Every fork event (the partial index events_forks holds them: no scan of the log).
FORK_EVENTS = (
    "SELECT e.session_id, e.data, s.erased FROM events AS e"
    " LEFT JOIN sessions AS s ON s.session_id = e.session_id"
    " WHERE e.kind = 'fork' ORDER BY e.id"
)


def forks_of(conn: Connection, session_id: str) -> list[tuple[str, int]]:
    """The sessions forked from ``session_id`` that are not erased, with the position
    each was forked at (a scan of the log's fork events)."""
    found = []
    for fork_session, data, erased in conn.execute(FORK_EVENTS):
        event = decode_event(data, trusted=True)
        if isinstance(event, SessionForked) and event.parent == session_id and not erased:
            found.append((str(fork_session), event.at))
    return found


def check_reason(reason: object, what: str = "reason") -> str:
    """``reason`` (or ``by``) if it is text an event can hold, else raise."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError(f"{what} must be a non-empty str, got {reason!r}")
    check_text(reason, what)
    return str.__str__(reason)
