"""The pure domain core: the typed head state and the decisions of a write.

``eventmem._decide`` chooses a write's events from the request and the session's head;
the live path and a ``MemoryBuffer`` fold call the very same functions, so replaying a
store's decisions over memory gives its events exactly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import eventmem
import eventmem.store.writes
from eventmem._decide import count_step, decide_clear, decide_step, decide_turn
from eventmem.errors import ConcurrencyError, InvalidInputError
from eventmem.events import Event, StepRecorded, TurnSaved
from eventmem.messages import Message, ToolCall
from eventmem.projection import HEAD_FIELDS, HeadState, MemoryBuffer, apply, fold
from eventmem.steps import Action
from eventmem.store.base import StepRequest, TurnRequest
from eventmem.store.head import HEAD_COLUMNS
from eventmem.tokens import OpenAIChatCounter, count_each

pytestmark = pytest.mark.anyio

GPT4O, GPT4 = OpenAIChatCounter("gpt-4o"), OpenAIChatCounter("gpt-4")
HUMAN, AI = Message(role="human", content="hi"), Message(role="ai", content="hello")
SHARED = Message(role="ai", content="", tool_calls=(ToolCall(name="t", args={}, id="c1"),))


def _step(call_id: str, observation: str) -> StepRequest:
    action = Action(tool="t", tool_call_id=call_id, kind="tool", message_log=(SHARED,))
    result = Message(role="tool", content=observation, tool_call_id=call_id)
    return StepRequest(action=action, observation=observation, messages=(SHARED, result))


def _turn(counter: Any = GPT4O, **changes: Any) -> TurnRequest:
    fields: dict[str, Any] = {"messages": (HUMAN, AI), "counter": counter, "max_token_limit": 500}
    return TurnRequest(**(fields | changes))


def _write(buffer: MemoryBuffer, events: list[Event]) -> list[int]:
    """Append decided events to an in-memory session, as the live path appends them."""
    positions = []
    for event in events:
        position = buffer.state.version + 1
        apply(buffer, event, position)
        buffer.state.chain(position, 0, b"")
        positions.append(position)
    return positions


def _save(buffer: MemoryBuffer, turn: TurnRequest) -> list[Event]:
    counted = [count_step(turn.counter, s) for s in turn.steps or ()]
    events = decide_turn(turn, count_each(turn.counter, turn.messages), counted, buffer)
    _write(buffer, events)
    return events


def _record(buffer: MemoryBuffer, step: StepRequest, run: str, counter: Any = GPT4O) -> None:
    events = decide_step(
        step,
        count_step(counter, step),
        buffer,
        counter=counter,
        as_tools=True,
        run=run,
        expected_version=None,
    )
    _write(buffer, events)


def test_head_columns_are_the_head_state_fields_and_the_tables_columns(tmp_path: Path) -> None:
    assert ", ".join(HEAD_FIELDS) == HEAD_COLUMNS
    eventmem.connect(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(sessions)"))
    assert columns == HEAD_FIELDS
    state = HeadState("s", version=3, head_hash=b"x" * 32, counter="c", pending_steps=1)
    assert HeadState.from_row(state.row()) == state


def test_a_save_with_live_steps_de_duplicates_and_abandons_another_runs() -> None:
    buffer = MemoryBuffer("s")
    _record(buffer, _step("c1", "one"), run="other")  # never saved by its run
    _record(buffer, _step("c1", "one"), run="me")
    steps = (_step("c1", "one"), _step("c2", "two"))
    step_event, turn = _save(buffer, _turn(steps=steps, as_tools=True, run="me"))
    assert isinstance(step_event, StepRecorded)
    assert isinstance(turn, TurnSaved)
    assert step_event.messages == (steps[1].messages[1],)  # the shared AI message is left out
    assert (turn.abandoned, turn.steps, turn.step_recount, turn.recount) == (
        (1,),
        (2, 3),
        None,
        None,
    )
    assert [m.content for m in buffer.messages] == ["hi", "", "one", "two", "hello"]
    assert (buffer.state.pending_steps, buffer.state.turn_position) == (0, 4)


def test_a_save_refuses_steps_that_do_not_match_the_live_ones() -> None:
    buffer = MemoryBuffer("s")
    _record(buffer, _step("c1", "one"), run="me")
    with pytest.raises(InvalidInputError, match="differs from the step recorded live"):
        _save(buffer, _turn(steps=(_step("c1", "other"),), run="me"))
    with pytest.raises(InvalidInputError, match="1 steps were recorded live"):
        _save(buffer, _turn(steps=(), run="me"))
    assert buffer.state.version == 1  # nothing was decided, so nothing was written


def test_a_new_counter_recounts_the_buffer_and_the_live_steps() -> None:
    buffer = MemoryBuffer("s")
    _save(buffer, _turn())
    _record(buffer, _step("c1", "one"), run="me")
    (turn,) = _save(buffer, _turn(GPT4, steps=None, run="me"))
    assert isinstance(turn, TurnSaved)
    assert turn.recount == count_each(GPT4, [HUMAN, AI])
    assert turn.step_recount == count_each(GPT4, _step("c1", "one").messages)


def test_a_stale_expected_version_is_refused() -> None:
    buffer = MemoryBuffer("s")
    with pytest.raises(ConcurrencyError):
        _save(buffer, _turn(expected_version=1))
    with pytest.raises(ConcurrencyError):
        decide_clear(buffer, 2)
    assert _write(buffer, decide_clear(buffer, 0)) == [1]


async def test_the_live_path_stores_what_deciding_over_memory_gives(
    store: eventmem.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each decision the live path made, made again over an in-memory fold."""
    # The decision made at each version: a batch tried at once from a known head
    # (PostgreSQL) may stop half-way, or find its head stale, and decide again, so the
    # last decision made from a version is the one its write committed.
    calls: dict[int, tuple[Any, tuple[Any, ...], dict[str, Any]]] = {}
    head_arg = {"decide_turn": 3, "decide_step": 2, "decide_clear": 0}
    for name in ("decide_turn", "decide_step", "decide_clear"):
        real = getattr(eventmem.store.writes, name)

        def spy(*args: Any, _real: Any = real, _at: int = head_arg[name], **kwargs: Any) -> Any:
            version = args[_at].version
            decided = _real(*args, **kwargs)
            calls.pop(version, None)
            calls[version] = (_real, args, kwargs)
            return decided

        monkeypatch.setattr(eventmem.store.writes, name, spy)
    memory = store.agent_token_buffer("s", max_token_limit=60, format_as_tools=True)
    other = store.agent_token_buffer("s", format_as_tools=True)
    action = _step("c1", "").action
    for i in range(4):
        await other.arecord_step(action, f"lost {i}")
        await memory.arecord_step(action, f"seen {i}")
        steps = [(action, f"seen {i}"), (action, {"n": i})]
        await memory.asave_context({"input": f"q{i}"}, {"output": "a", "intermediate_steps": steps})
        if i == 2:
            await memory.aclear()
    buffer = MemoryBuffer("s")
    decided: list[Event] = []
    for real, args, kwargs in calls.values():
        head_at = {decide_turn: 3, decide_step: 2, decide_clear: 0}[real]
        events = real(*args[:head_at], buffer, *args[head_at + 1 :], **kwargs)
        _write(buffer, events)
        decided.extend(events)
    stored = [e.data async for e in store.events("s")]
    assert decided == stored
    assert any(e.abandoned for e in stored if isinstance(e, TurnSaved))
    assert buffer.state.watermark > 0  # it pruned
    assert buffer.messages == fold(stored).messages == await store.messages("s")
