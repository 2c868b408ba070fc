"""What a write appends: the events a save, a live step or a clear emits. Pure, no I/O.

The live path reads the session's head, calls one of these and appends what it returns,
folding each event with `eventmem.projection.apply`; replay and tests can call them over
a `eventmem.projection.MemoryBuffer`. A decision reads the session through ``Head``
only, and refuses (raises an [`EventmemError`][eventmem.EventmemError]) before anything
is written.

The rules of a save, in order:

1. a stale ``expected_version`` is refused;
2. if the counting scheme changed, the visible messages are re-counted under the new one;
3. steps another run recorded live and never saved are abandoned (kept in the log as
   evidence, left out of the buffer);
4. this run's live steps must be the first of the turn's steps, in order; the rest
   become new step events, at the positions after the log's end;
5. in tools format a tool action's messages that the turn already carries are left out;
6. steps counted under another scheme are re-counted under the turn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from eventmem.errors import ConcurrencyError, InvalidInputError
from eventmem.events import (
    Event,
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    StepRecorded,
    TurnSaved,
)
from eventmem.messages import Message, stored_tuple
from eventmem.projection import HeadState, needs_recount, visible_count
from eventmem.tokens import TokenCounter, count_each

if TYPE_CHECKING:
    from eventmem.store.base import AppendRequest, StepRequest, TurnRequest

__all__ = [
    "Counted",
    "Head",
    "check_expected",
    "count_step",
    "decide_append",
    "decide_clear",
    "decide_retract",
    "decide_step",
    "decide_turn",
]

# A step's formatted messages with their token counts.
Counted = tuple[tuple[Message, int], ...]
Held = list[tuple[int, StepRecorded]]


class Head(Protocol):
    """What a decision reads of the session it writes to."""

    state: HeadState

    def held(self) -> list[tuple[int, StepRecorded]]:
        """The steps recorded since the last turn, with their positions, in order."""
        ...

    def visible(self) -> list[Message]:
        """The visible messages, oldest first."""
        ...


def check_expected(state: HeadState, expected_version: int | None) -> None:
    """Raise [`ConcurrencyError`][eventmem.ConcurrencyError] unless the session is at
    ``expected_version``."""
    if expected_version is not None and expected_version != state.version:
        raise ConcurrencyError(
            f"session {state.session_id!r} is at version {state.version}, "
            f"not the expected {expected_version}"
        )


def count_step(counter: TokenCounter, step: StepRequest) -> Counted:
    """The step's messages with their counts (the caller's, if it counted them)."""
    tokens = step.tokens or count_each(counter, step.messages)
    return tuple(zip(step.messages, tokens, strict=True))


def decide_turn(
    turn: TurnRequest, tokens: tuple[int, ...], step_counts: Sequence[Counted], head: Head
) -> list[Event]:
    """The events of one ``save_context``: its new steps, then the turn. ``tokens`` are
    the counts of ``turn.messages``, ``step_counts`` those of ``turn.steps``."""
    state, counter = head.state, turn.counter
    check_expected(state, turn.expected_version)
    recount = None
    if needs_recount(state, counter.name):
        recount = count_each(counter, head.visible())
    held = head.held()
    abandoned = stored_tuple(p for p, step in held if step.run != turn.run)
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
    first = state.version + 1  # the new steps' positions follow the log's end
    steps = [*live, *((first + i, step) for i, step in enumerate(step_events))]
    event = TurnSaved(
        messages=turn.messages,
        tokens=tokens,
        counter=counter.name,
        overhead=counter.overhead,
        max_token_limit=turn.max_token_limit,
        model=turn.model,
        recount=recount,
        steps=stored_tuple(position for position, _ in steps),
        step_recount=_step_recount(steps, counter),
        prune=turn.prune,
        abandoned=abandoned,
    )
    return [*step_events, event]


def decide_step(
    step: StepRequest,
    counted: Counted,
    head: Head,
    *,
    counter: TokenCounter,
    as_tools: bool,
    run: str | None,
    expected_version: int | None,
) -> list[Event]:
    """The event of one step recorded live by ``run``."""
    check_expected(head.state, expected_version)
    seen = [m for _, recorded in head.held() if recorded.run == run for m in recorded.messages]
    return [_new_step(step, counted, seen, as_tools, counter, live=True, run=run)]


def decide_append(request: AppendRequest, tokens: tuple[int, ...], head: Head) -> list[Event]:
    """The event of one general append; ``tokens`` are the counts of its messages."""
    state, counter = head.state, request.counter
    check_expected(state, request.expected_version)
    recount = None
    if needs_recount(state, counter.name):
        recount = count_each(counter, head.visible())
    return [
        MessagesAppended(
            messages=request.messages,
            tokens=tokens,
            counter=counter.name,
            overhead=counter.overhead,
            max_tokens=request.max_tokens,
            model=request.model,
            recount=recount,
            prune=request.prune,
            keep_system=request.keep_system,
        )
    ]


def decide_retract(head: Head, count: int, expected_version: int | None) -> list[Event]:
    """The event of one pop of the newest ``count`` messages (fewer if the view holds
    fewer; none, and no event, from an empty view)."""
    check_expected(head.state, expected_version)
    count = min(count, visible_count(head.state))
    return [MessagesRetracted(count)] if count else []


def decide_clear(head: Head, expected_version: int | None) -> list[Event]:
    """The event of one ``clear``."""
    check_expected(head.state, expected_version)
    return [MemoryCleared()]


def _new_step(
    step: StepRequest,
    counted: Counted,
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


def _match_live_steps(recorded: Held, given: tuple[StepRequest, ...]) -> None:
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


def _step_recount(steps: Held, counter: TokenCounter) -> tuple[int, ...] | None:
    """The counts of the turn's steps under ``counter``, if any was counted otherwise
    (recorded live under another scheme); else None: their own counts stand."""
    if all(step.counter == counter.name for _, step in steps):
        return None
    return tuple(
        t
        for _, step in steps
        for t in (
            step.tokens if step.counter == counter.name else count_each(counter, step.messages)
        )
    )
