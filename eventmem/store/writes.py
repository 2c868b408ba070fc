"""Writes: saves, live steps and clears, committed in batches (group commit).

A write is prepared on the connection's thread outside any transaction (token counting
must not hold the lock), then its body runs inside the batch's transaction. Each body
appends events through ``SessionHead`` and folds them with the
pure projection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from eventmem.errors import EventmemError, InvalidInputError
from eventmem.events import Event, MemoryCleared, StepRecorded, TurnSaved, encode_event
from eventmem.messages import Message
from eventmem.projection import apply, needs_recount
from eventmem.rules import check_save_bytes
from eventmem.store.base import StepRequest, TurnRequest
from eventmem.store.cache import ViewCache
from eventmem.store.head import SessionHead, check_expected, now_us, write_transaction
from eventmem.store.sql import Connection
from eventmem.tokens import TokenCounter, count_each

__all__ = ["WriteOp", "clear_op", "step_op", "turn_op", "write_batch"]


def _counted(counter: TokenCounter, step: StepRequest) -> tuple[tuple[Message, int], ...]:
    tokens = step.tokens or count_each(counter, step.messages)
    return tuple(zip(step.messages, tokens, strict=True))


def _new_step(
    step: StepRequest,
    counted: tuple[tuple[Message, int], ...],
    seen: list[Message],
    as_tools: bool,
    counter: TokenCounter,
    live: bool,
    run: str | None = None,
) -> StepRecorded:
    """The step event. In tools format a tool action's messages that this turn already
    carries (the AI message shared by parallel calls) are left out, as LangChain's
    ``format_to_tool_messages`` does; other actions' messages are always kept."""
    dedupe = as_tools and step.action.kind == "tool"
    kept = [(m, t) for m, t in counted if not (dedupe and m in seen)]
    seen.extend(m for m, _ in kept)
    return StepRecorded(
        action=step.action,
        observation=step.observation,
        messages=tuple(m for m, _ in kept),
        tokens=tuple(t for _, t in kept),
        counter=counter.name,
        live=live,
        run=run,
    )


def _match_live_steps(
    recorded: list[tuple[int, StepRecorded]], given: tuple[StepRequest, ...]
) -> None:
    if len(given) < len(recorded):
        raise InvalidInputError(
            f"{len(recorded)} steps were recorded live for this turn, but intermediate_steps "
            f"has {len(given)}; pass the run's full intermediate_steps or leave the key out"
        )
    for index, ((position, step), request) in enumerate(zip(recorded, given, strict=False)):
        if step.action != request.action or step.observation != request.observation:
            raise InvalidInputError(
                f"intermediate step {index} differs from the step recorded live at position "
                f"{position} (tool {step.action.tool!r}); live steps must be the first steps "
                "of the turn, in order"
            )


# Called on the connection's thread outside any transaction (to count tokens without
# holding a lock), it returns the body to run inside the batch's transaction.
Prepare = Callable[[Connection], Callable[[], SessionHead]]


class WriteOp(NamedTuple):
    """A write of one session, waiting for its batch."""

    session_id: str
    prepare: Prepare


def write_batch(
    conn: Connection, cache: ViewCache, ops: list[WriteOp]
) -> list[int | EventmemError]:
    """Run several writes in one transaction (group commit); each is all or nothing.

    A body refuses (raises an [`EventmemError`][eventmem.EventmemError]) only before its
    first write, so a refused write is reported alone and the others commit; anything
    failing after a
    body started writing (a storage error) fails the whole batch. Checking
    ``total_changes`` enforces that rule instead of trusting it.
    """
    bodies: list[Callable[[], SessionHead] | EventmemError] = []
    for op in ops:
        try:
            bodies.append(op.prepare(conn))
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
    results: list[int | EventmemError] = []
    for outcome in outcomes:
        if isinstance(outcome, SessionHead):
            outcome.update_cache(cache)
            results.append(outcome.version)
        else:
            results.append(outcome)
    return results


def turn_op(session_id: str, turn: TurnRequest, max_save_bytes: int) -> WriteOp:
    """The write of one ``save_context`` (its new steps as events of their own)."""

    def prepare(conn: Connection) -> Callable[[], SessionHead]:
        counter = turn.counter
        tokens = turn.tokens or count_each(counter, turn.messages)
        step_counts = [_counted(counter, step) for step in turn.steps or ()]

        def body() -> SessionHead:
            head = SessionHead(conn, session_id)
            check_expected(head, turn.expected_version)
            recount = None
            if needs_recount(head, counter.name):
                recount = count_each(counter, head.visible_messages())
            held = head.pending()
            # Steps another run recorded live and never saved (it crashed, or raised):
            # kept in the log as evidence, left out of the buffer.
            abandoned = tuple(p for p, step in held if step.run != turn.run)
            live = [(p, step) for p, step in held if step.run == turn.run]
            new_steps: tuple[StepRequest, ...] = ()
            if turn.steps is not None:
                _match_live_steps(live, turn.steps)
                new_steps = turn.steps[len(live) :]
            seen = [m for _, step in live for m in step.messages]
            step_events = [
                _new_step(request, counted, seen, turn.as_tools, counter, live=False)
                for request, counted in zip(new_steps, step_counts[len(live) :], strict=True)
            ]
            first = head.version + 1  # the new steps' positions follow the log's end
            steps = [*live, *((first + i, step) for i, step in enumerate(step_events))]
            step_recount = None
            if any(step.counter != counter.name for _, step in steps):
                # Steps recorded live under another counting scheme: count them under this one.
                step_recount = tuple(
                    t
                    for _, step in steps
                    for t in (
                        step.tokens
                        if step.counter == counter.name
                        else count_each(counter, step.messages)
                    )
                )
            event = TurnSaved(
                messages=turn.messages,
                tokens=tokens,
                counter=counter.name,
                overhead=counter.overhead,
                max_token_limit=turn.max_token_limit,
                model=turn.model,
                recount=recount,
                steps=tuple(position for position, _ in steps),
                step_recount=step_recount,
                prune=turn.prune,
                abandoned=abandoned,
            )
            # Every event encoded and measured before the first is written: a save too
            # large is refused whole, and alone.
            events: list[Event] = [*step_events, event]
            encoded = [encode_event(e) for e in events]
            check_save_bytes(sum([len(data) for data in encoded]), max_save_bytes)
            now = now_us()
            for step_event, data in zip(step_events, encoded, strict=False):
                position = head.append_event(step_event, now, data)
                apply(head, step_event, position)
            position = head.append_event(event, now, encoded[-1])
            apply(head, event, position)
            head.flush()
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

    def prepare(conn: Connection) -> Callable[[], SessionHead]:
        counted = _counted(counter, step)

        def body() -> SessionHead:
            head = SessionHead(conn, session_id)
            check_expected(head, expected_version)
            seen = [
                m
                for _, recorded in head.pending()
                if recorded.run == run
                for m in recorded.messages
            ]
            event = _new_step(step, counted, seen, as_tools, counter, live=True, run=run)
            data = encode_event(event)
            check_save_bytes(len(data), max_save_bytes)
            position = head.append_event(event, now_us(), data)
            apply(head, event, position)
            head.flush()
            return head

        return body

    return WriteOp(session_id, prepare)


def clear_op(session_id: str, expected_version: int | None) -> WriteOp:
    """The write of one ``clear``."""

    def prepare(conn: Connection) -> Callable[[], SessionHead]:
        def body() -> SessionHead:
            head = SessionHead(conn, session_id)
            check_expected(head, expected_version)
            event = MemoryCleared()
            position = head.append_event(event, now_us())
            apply(head, event, position)
            head.flush()
            return head

        return body

    return WriteOp(session_id, prepare)
