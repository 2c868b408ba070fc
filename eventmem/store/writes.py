"""Writes: saves, live steps and clears, committed in batches (group commit).

A write is prepared on the connection's thread outside any transaction (token counting
must not hold the lock), then its body runs inside the batch's transaction. Each body
reads the session's head (``SessionHead``), lets the pure `eventmem._decide` choose the
events, then encodes and size-checks them, appends them, folds each with the pure
projection and writes the head back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from eventmem._decide import (
    count_step,
    decide_append,
    decide_clear,
    decide_retract,
    decide_step,
    decide_turn,
)
from eventmem.errors import EventmemError
from eventmem.events import Event, encode_event
from eventmem.messages import Message
from eventmem.projection import apply
from eventmem.rules import check_save_bytes
from eventmem.store.base import AppendRequest, StepRequest, TurnRequest
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead, now_us, write_transaction
from eventmem.store.sql import Connection
from eventmem.tokens import TokenCounter, count_each

__all__ = [
    "WriteOp",
    "append_events",
    "append_op",
    "clear_op",
    "finish_batch",
    "retract_op",
    "run_batch",
    "step_op",
    "turn_op",
    "write_batch",
]


# Called on the connection's thread outside any transaction (to count tokens without
# holding a lock), it returns the body to run inside the batch's transaction. The cache
# lets a body read the session's visible messages without reading their rows.
Prepare = Callable[[Connection, ViewCache], Callable[[], SessionHead]]


class WriteOp(NamedTuple):
    """A write of one session, waiting for its batch. ``rerunnable``: its body may run
    again after a first run that was rolled back (it reads nothing but the session's
    head and keeps nothing from a run that did not commit), so a backend may try the
    batch optimistically first."""

    session_id: str
    prepare: Prepare
    rerunnable: bool = True


def write_batch(
    conn: Connection, cache: ViewCache, ops: list[WriteOp]
) -> list[int | EventmemError]:
    """Run several writes in one transaction (group commit); each is all or nothing.
    (``run_batch``, then ``finish_batch`` once it committed.)"""
    return finish_batch(cache, run_batch(conn, cache, ops))


def run_batch(
    conn: Connection, cache: ViewCache, ops: list[WriteOp]
) -> list[SessionHead | EventmemError]:
    """The transaction of ``write_batch``: each write's head, or why it was refused.

    A body refuses (raises an [`EventmemError`][eventmem.EventmemError]) only before its
    first write, so a refused write is reported alone and the others commit; anything
    failing after a
    body started writing (a storage error) fails the whole batch. Checking
    ``total_changes`` enforces that rule instead of trusting it.
    """
    bodies: list[Callable[[], SessionHead] | EventmemError] = []
    for op in ops:
        try:
            bodies.append(op.prepare(conn, cache))
        except EventmemError as e:
            bodies.append(e)
    outcomes: list[SessionHead | EventmemError] = []

    def run_all() -> None:
        # Every session of the batch at once, before any is read: taking them one by one
        # could deadlock with another process's batch (PostgreSQL; SQLite's transaction
        # already holds the whole file).
        conn.lock_sessions(
            op.session_id
            for op, body in zip(ops, bodies, strict=True)
            if not isinstance(body, EventmemError)
        )
        for body in bodies:
            if isinstance(body, EventmemError):
                outcomes.append(body)
                continue
            changes = conn.total_changes
            try:
                outcomes.append(body())
            except EventmemError as e:
                if conn.total_changes != changes:
                    raise  # it had written: the batch cannot keep a partial write
                outcomes.append(e)

    if any(not isinstance(body, EventmemError) for body in bodies):
        try:
            write_transaction(conn, run_all)
        except EventmemError as e:
            # rolled back: nothing of the batch was written
            outcomes = [b if isinstance(b, EventmemError) else e for b in bodies]
    else:
        outcomes = list(bodies)  # type: ignore[arg-type]
    return outcomes


def finish_batch(
    cache: ViewCache, outcomes: list[SessionHead | EventmemError]
) -> list[int | EventmemError]:
    """After a batch committed: the cache follows each write; each caller's version or
    refusal."""
    results: list[int | EventmemError] = []
    for outcome in outcomes:
        if isinstance(outcome, SessionHead):
            outcome.update_cache(cache)
            results.append(outcome.version)
        else:
            results.append(outcome)
    return results


def append_events(head: SessionHead, events: list[Event], max_save_bytes: int | None) -> None:
    """Append the events a decision chose, fold each, and write the head back."""
    # Every event encoded and measured before the first is written: a save too large is
    # refused whole, and alone.
    if not events:
        return  # nothing to write (a pop from an empty view)
    encoded = [encode_event(e) for e in events]
    if max_save_bytes is not None:
        check_save_bytes(sum([len(data) for data in encoded]), max_save_bytes)
    now = now_us()
    for event, data in zip(events, encoded, strict=True):
        position = head.append_event(event, now, data)
        apply(head, event, position)
    head.flush()


def turn_op(session_id: str, turn: TurnRequest, max_save_bytes: int) -> WriteOp:
    """The write of one ``save_context`` (its new steps as events of their own)."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        # Counted here, outside the transaction: counting must not hold the lock.
        tokens = turn.tokens or count_each(turn.counter, turn.messages)
        step_counts = [count_step(turn.counter, step) for step in turn.steps or ()]

        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            append_events(head, decide_turn(turn, tokens, step_counts, head), max_save_bytes)
            return head

        return body

    return WriteOp(session_id, prepare)


def step_op(
    session_id: str,
    step: StepRequest,
    counter: TokenCounter,
    as_tools: bool,
    run: str | None,
    expected_version: int | None,
    max_save_bytes: int,
) -> WriteOp:
    """The write of one step recorded live."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        counted = count_step(counter, step)

        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            events = decide_step(
                step,
                counted,
                head,
                counter=counter,
                as_tools=as_tools,
                run=run,
                expected_version=expected_version,
            )
            append_events(head, events, max_save_bytes)
            return head

        return body

    return WriteOp(session_id, prepare)


def clear_op(session_id: str, expected_version: int | None) -> WriteOp:
    """The write of one ``clear``."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            append_events(head, decide_clear(head, expected_version), None)  # a clear is tiny
            return head

        return body

    return WriteOp(session_id, prepare)


def append_op(session_id: str, request: AppendRequest, max_save_bytes: int) -> WriteOp:
    """The write of one general append."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        tokens = request.tokens or count_each(request.counter, request.messages)

        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            append_events(head, decide_append(request, tokens, head), max_save_bytes)
            return head

        return body

    return WriteOp(session_id, prepare)


def retract_op(
    session_id: str, count: int, expected_version: int | None, retracted: list[Message]
) -> WriteOp:
    """The write of one pop; the messages it retracts are put in ``retracted``."""

    def prepare(conn: Connection, cache: ViewCache) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id, cache)
            events = decide_retract(head, count, expected_version)
            taken = head.visible()[-count:] if events else []
            append_events(head, events, None)  # a retraction is tiny
            retracted[:] = taken
            return head

        return body

    return WriteOp(session_id, prepare)
