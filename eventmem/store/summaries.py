"""A summary buffer's storage: the plan of a save, its write, and the summary in force.

A save of [`SummaryBufferMemory`][eventmem.SummaryBufferMemory] is two steps with the
model called in between, outside any transaction:

1. ``plan_turn`` reads the session in one snapshot (head, buffer rows with their counts,
   the summary in force) and folds the turn over a copy of the buffer with the pure
   projection, so it knows which messages the turn will prune;
2. ``summary_turn_op`` appends the turn and, if it prunes, the new summary
   ([`SummaryRecorded`][eventmem.SummaryRecorded]), refused before it writes anything
   unless the session is still at the planned version: the same state, so the same
   fold prunes the same messages (the summary's fold checks it does).

The summary in force is the newest ``summary`` event after the session's last
``clear``: an index walk back from the end of the log, which stops at the first of
either (a summary buffer writes one each time it prunes). A ``rewind`` names the summary
it brings back; a fork with none of these since it forked has its parent's.
"""

from __future__ import annotations

from collections.abc import Callable

from eventmem._decide import Head, check_expected, decide_append, decide_turn
from eventmem.errors import CorruptDatabaseError
from eventmem.events import (
    Event,
    SummaryRecorded,
    ViewRewound,
    decode_event,
    encode_event,
)
from eventmem.messages import Message
from eventmem.projection import BufferEntry, HeadState, MemoryBuffer, apply, fold
from eventmem.rules import check_save_bytes
from eventmem.store.base import AppendRequest, SummaryPlan, SummaryText, TurnRequest
from eventmem.store.cache import ViewCache
from eventmem.store.content import opened_in
from eventmem.store.head import SessionHead, now_us
from eventmem.store.lineage import hash_at, history, holders, inherited_data, inheriting
from eventmem.store.reads import load_view_at
from eventmem.store.sql import HEAD_OF_SESSION, Connection
from eventmem.store.view_rows import resolve
from eventmem.store.writes import WriteOp

__all__ = ["current_buffer", "latest_summary", "load_summary_view", "plan_turn", "summary_turn_op"]

_LATEST = (
    "SELECT position, kind, data FROM events WHERE session_id = ? AND position >= ?"
    " AND position <= ? AND kind IN ('summary', 'clear', 'rewind', 'fork')"
    " ORDER BY position DESC LIMIT 1"
)
_PAST_ANY = (1 << 63) - 1


def latest_summary(conn: Connection, session_id: str) -> tuple[int, str]:
    """The session's summary in force and the position of its event ((0, ""): none):
    the newest summary since the last clear, or the one a rewind brought back; a fork
    looks on in its parent's history."""
    for holder, first, last in reversed(holders(conn, session_id)):
        row = conn.execute(_LATEST, (holder, first, _PAST_ANY if last is None else last)).fetchone()
        if row is None or row[1] == "fork":
            continue  # nothing here: the summary in force is the parent's at the fork
        if row[1] == "clear":
            return 0, ""
        event = decode_event(conn.content.open(holder, row[0], row[2]), trusted=True)
        if isinstance(event, ViewRewound):
            if event.summary == 0:
                return 0, ""
            return event.summary, _summary_at(conn, session_id, event.summary)
        if not isinstance(event, SummaryRecorded):
            raise CorruptDatabaseError(
                f"the event at position {row[0]} of session {holder!r} is not the "
                f"{row[1]} its kind column says; run verify"
            )
        return int(row[0]), event.summary
    return 0, ""


def _summary_at(conn: Connection, session_id: str, position: int) -> str:
    """The summary of the event at ``position`` of the session's history."""
    data = inherited_data(conn, session_id, [position]).get(position)
    event = None if data is None else decode_event(data, trusted=True)
    if not isinstance(event, SummaryRecorded):
        raise CorruptDatabaseError(
            f"a rewind of session {session_id!r} names a summary at position {position}, "
            "which is not one; run verify"
        )
    return event.summary


def load_summary_view(
    conn: Connection, cache: ViewCache, session_id: str
) -> tuple[int, str, list[Message]]:
    """The session's version, summary in force and visible messages, in one snapshot."""
    conn.begin_read()
    try:
        version, messages = load_view_at(conn, cache, session_id)
        _, summary = latest_summary(conn, session_id) if version else (0, "")
    finally:
        conn.execute("COMMIT")
    return version, summary, messages


# The event a summarised write appends before its summary, chosen from the session's
# head (a summary buffer's turn, or a summarising history's append).
Decide = Callable[[Head], list[Event]]


def decide_summarised(request: TurnRequest | AppendRequest) -> Decide:
    """How a summarised write of ``request`` (already counted) chooses its event."""
    assert request.tokens is not None
    tokens = request.tokens
    if isinstance(request, TurnRequest):
        return lambda head: decide_turn(request, tokens, (), head)
    return lambda head: decide_append(request, tokens, head)


def plan_turn(
    conn: Connection, session_id: str, request: TurnRequest | AppendRequest
) -> SummaryPlan:
    """What writing ``request`` (already counted: a summary buffer's turn or a
    summarising history's append) would prune, read in one snapshot and folded over a
    copy of the buffer; nothing is written. Raises `ConcurrencyError` if
    ``request.expected_version`` is stale."""
    conn.begin_read()
    try:
        buffer = current_buffer(conn, session_id)
        check_expected(buffer.state, request.expected_version)
        version = buffer.state.version
        if version:
            buffer.summary_position, buffer.summary = latest_summary(conn, session_id)
        held = {e.seq: e for e in buffer.entries}
        (event,) = decide_summarised(request)(buffer)
        next_seq = buffer.state.next_seq
        for index, message in enumerate(request.messages):
            held[next_seq + index] = BufferEntry(next_seq + index, message, 0, version + 1, index)
        apply(buffer, event, version + 1)
        assert buffer.last_prune is not None
        _, first, end = buffer.last_prune
        if first == end:
            return SummaryPlan(version, buffer.summary_position, buffer.summary)
        pruned = [held[seq] for seq in range(first, end)]
        first_position, last_position = pruned[0].position, pruned[-1].position
        hashes = _hashes(conn, session_id, {first_position, last_position} - {version + 1})
    finally:
        conn.execute("COMMIT")
    return SummaryPlan(
        version,
        buffer.summary_position,
        buffer.summary,
        pruned=tuple(e.message for e in pruned),
        first_seq=first,
        end_seq=end,
        first_position=first_position,
        last_position=last_position,
        first_hash=hashes.get(first_position),
        last_hash=hashes.get(last_position),
    )


def current_buffer(conn: Connection, session_id: str) -> MemoryBuffer:
    """The session's buffer as its stored rows hold it (each entry knowing the event
    that holds its message), with its held steps (not its summary)."""
    buffer = MemoryBuffer(session_id)
    row = conn.execute(HEAD_OF_SESSION, (session_id,)).fetchone()
    if row is None:
        return buffer
    state = HeadState.from_row(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in row)
    pinned = state.pinned if 0 <= state.pinned < state.watermark else state.watermark
    rows = conn.execute(
        "SELECT v.seq, v.tokens, v.position, v.idx, v.message, e.data FROM view_messages AS v"
        " LEFT JOIN events AS e ON e.session_id = v.session_id AND e.position = v.position"
        " WHERE v.session_id = ? AND (v.seq >= ? OR v.seq = ?) AND v.seq < ? ORDER BY v.seq",
        (session_id, state.watermark, pinned, state.next_seq),
    ).fetchall()
    if any(r[2] is None for r in rows):
        # A row from before schema 5 does not say which event holds its message: the
        # fold of the log does (once: the watermark passes such rows for good). The
        # head's chain fields are the row's (the fold keeps the buffer's only).
        folded = _folded(conn, session_id, state.version)
        folded.state = state
        return folded
    counts = [r[1] for r in rows]
    messages = resolve(
        ((r[0], r[2], r[3], r[4], r[5]) for r in rows),
        inheriting(conn, session_id),
        opened_in(conn.content, session_id),
    )
    buffer.state = state
    buffer.entries.extend(
        BufferEntry(seq, message, tokens, r[2], r[3])
        for (seq, message), tokens, r in zip(messages, counts, rows, strict=True)
    )
    if state.pending_steps:
        head = SessionHead(conn, session_id)  # reads the held steps only
        buffer.pending = head.held()
    return buffer


def _folded(conn: Connection, session_id: str, version: int) -> MemoryBuffer:
    return fold(history(conn, session_id, version))


def _hashes(conn: Connection, session_id: str, positions: set[int]) -> dict[int, str]:
    """The chain hashes of the events at ``positions`` of the session's history."""
    return {position: hash_at(conn, session_id, position).hex() for position in positions}


def summary_turn_op(
    session_id: str,
    request: TurnRequest | AppendRequest,
    plan: SummaryPlan,
    summary: SummaryText | None,
    max_save_bytes: int,
) -> WriteOp:
    """The write of one summarised save (a summary buffer's turn, a summarising
    history's append), then its summary if it prunes."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            check_expected(head.state, plan.version)  # before anything is written
            head.summary_position, head.summary = plan.previous, plan.summary
            (event,) = decide_summarised(request)(head)
            encoded = encode_event(event)
            size = len(encoded)
            if plan.pruned:
                if summary is None:
                    raise CorruptDatabaseError("a save that prunes needs its summary")
                # Its size before anything is written: the turn's hash, which it names,
                # is known only once the turn is appended, and is always 64 hex digits.
                size += len(encode_event(_summary_event(plan, summary, "0" * 64)))
            check_save_bytes(size, max_save_bytes)
            now = now_us()
            appended = head.append_event(event, now, encoded)
            apply(head, event, appended)
            _check_pruned(head, plan, appended)
            if plan.pruned:
                assert summary is not None
                recorded = _summary_event(plan, summary, head.state.head_hash.hex())
                apply(head, recorded, head.append_event(recorded, now))
            head.flush()
            return head

        return body

    return WriteOp(session_id, prepare)


def _summary_event(plan: SummaryPlan, summary: SummaryText, turn_hash: str) -> SummaryRecorded:
    return SummaryRecorded(
        summary=summary.summary,
        first_seq=plan.first_seq,
        end_seq=plan.end_seq,
        first_position=plan.first_position,
        last_position=plan.last_position,
        first_hash=plan.first_hash or turn_hash,
        last_hash=plan.last_hash or turn_hash,
        model=summary.model,
        prompt_sha256=summary.prompt_sha256,
        previous=plan.previous,
    )


def _check_pruned(head: SessionHead, plan: SummaryPlan, position: int) -> None:
    """The turn pruned what its plan said (the same state folds the same way)."""
    expected = (position, plan.first_seq, plan.end_seq) if plan.pruned else None
    pruned = head.last_prune
    if pruned is not None and pruned[1] == pruned[2]:
        pruned = None
    if pruned != expected:
        raise CorruptDatabaseError(
            f"the turn at {position} pruned {pruned}, not the planned {expected}; run verify"
        )
