"""`eventmem.timeline`: where each event's messages went, and the buffer at a position.

The placement is checked against the store's own answers: the messages it says are
visible, put in ``seq`` order, are exactly what a load returns, and every message that
entered the buffer belongs to exactly one event.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

import eventmem
from eventmem import timeline
from eventmem.errors import CorruptDatabaseError, InvalidInputError
from eventmem.events import MemoryCleared, StepRecorded, TurnSaved
from eventmem.messages import Message
from eventmem.projection import MemoryBuffer
from eventmem.steps import Action
from tests.sample_sessions import SAMPLE_SESSIONS, save_samples

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]

SESSIONS = (*SAMPLE_SESSIONS, "tools")


def _tool_steps(i: int) -> list[tuple[Any, Any]]:
    """Two parallel tool calls sharing one AI message."""
    calls = [
        {"name": "search", "args": {"q": i}, "id": f"call-{i}-a"},
        {"name": "calc", "args": {"q": i}, "id": f"call-{i}-b"},
    ]
    log = [AIMessage(content="", tool_calls=calls)]
    return [
        (
            {"tool": call["name"], "tool_input": call["args"], "log": "", "message_log": log,
             "tool_call_id": call["id"]},
            f"result {i}",
        )
        for call in calls
    ]  # fmt: skip


async def _populate(store: eventmem.Store) -> None:
    await save_samples(store)
    tools = store.agent_token_buffer(
        "tools", max_token_limit=90, format_as_tools=True, prune="pair_safe"
    )
    for i in range(4):
        await tools.asave_context(
            {"input": f"Tools {i}?"}, {"output": f"Done {i}.", "intermediate_steps": _tool_steps(i)}
        )


@pytest.fixture
async def populated(store: eventmem.Store) -> eventmem.Store:
    await _populate(store)
    return store


async def test_the_visible_messages_placed_are_what_a_load_returns(
    populated: eventmem.Store,
) -> None:
    for session in SESSIONS:
        placed = await timeline.placement(populated, session)
        events = [e async for e in populated.events(session)]
        assert placed.version == len(events)
        by_seq: dict[int, Message] = {}
        for stored in events:
            event, seqs = stored.data, placed.seqs.get(stored.position)
            if seqs is None or not isinstance(
                event, (eventmem.TurnSaved, eventmem.StepRecorded, eventmem.MessagesAppended)
            ):
                continue
            for seq, message in zip(seqs, event.messages, strict=True):
                assert seq not in by_seq, "two events claim one message"
                by_seq[seq] = message
        # Every message that ever entered the buffer came from exactly one event.
        assert sorted(by_seq) == list(range(placed.next_seq))
        visible = [by_seq[seq] for seq in range(placed.watermark, placed.next_seq)]
        assert visible == await populated.messages(session)
        assert placed.visible == len(visible)


async def test_markers_name_pruned_pending_and_abandoned_events(
    populated: eventmem.Store,
) -> None:
    def markers(placed: timeline.Placement, events: list[eventmem.StoredEvent]) -> list[str]:
        return [placed.visibility(e.position, e.data)[0] for e in events]

    chat = [e async for e in populated.events("chat")]
    assert markers(await timeline.placement(populated, "chat"), chat) == [
        "pruned",
        "1/2 visible",
        "visible",
    ]
    restart = [e async for e in populated.events("restart")]
    placed = await timeline.placement(populated, "restart")
    assert markers(placed, restart) == ["pruned", "-", "visible"]
    assert placed.visibility(2, restart[1].data) == ("-", [])
    agent = [e async for e in populated.events("agent")]
    assert [e.kind for e in agent] == ["step", "step", "turn", "step", "turn", "step"]
    placed = await timeline.placement(populated, "agent")
    assert markers(placed, agent) == [
        "visible",
        "visible",
        "visible",
        "abandoned",
        "visible",
        "pending",
    ]
    assert placed.abandoned == {4}
    pending = agent[5].data
    assert isinstance(pending, StepRecorded)
    assert placed.visibility(6, pending)[1] == [False] * len(pending.messages)


async def test_place_over_plain_events_matches_the_store(populated: eventmem.Store) -> None:
    for session in SESSIONS:
        events = [e.data async for e in populated.events(session)]
        assert timeline.place(events, session) == await timeline.placement(populated, session)


async def test_buffer_view_now_and_at_every_position(populated: eventmem.Store) -> None:
    summaries = {s.session_id: s for s in await populated.session_summaries()}
    for session in SESSIONS:
        view = await timeline.buffer_view(populated, session)
        version = await populated.version(session)
        assert (view.position, view.version, view.what_if, view.damaged) == (
            version,
            version,
            False,
            False,
        )
        assert view.messages == await populated.messages(session)
        assert view.tokens == summaries[session].tokens
        assert view.counter == summaries[session].counter
        for at in range(version + 1):
            past = await timeline.buffer_view(populated, session, at=at)
            assert past.position == at
            assert past.messages == await populated.messages(session, as_of=at)
    first = await timeline.buffer_view(populated, "chat", at=1)
    assert (first.max_token_limit, first.model) == (60, "gpt-4o")
    empty = await timeline.buffer_view(populated, "chat", at=0)
    assert (empty.messages, empty.tokens, empty.max_token_limit, empty.counter) == (
        [],
        0,
        None,
        None,
    )
    with pytest.raises(InvalidInputError, match="in its future"):
        await timeline.buffer_view(populated, "chat", at=4)


async def test_buffer_view_what_if_is_a_replay(populated: eventmem.Store) -> None:
    for session in SESSIONS:
        for limit, model in ((20, None), (None, "gpt-4"), (500, "gpt-3.5-turbo-0301")):
            view = await timeline.buffer_view(
                populated, session, max_token_limit=limit, model=model
            )
            assert view.what_if
            assert view.messages == await populated.replay(
                session, max_token_limit=limit, model=model
            )
            if limit is not None:
                assert view.max_token_limit == limit
            if model is not None:
                assert view.model == model
                assert view.counter == eventmem.OpenAIChatCounter(model).name
                assert view.tokens == eventmem.count_tokens(view.messages, model=model)


async def test_a_session_without_events(store: eventmem.Store) -> None:
    view = await timeline.buffer_view(store, "nobody")
    assert (view.version, view.messages, view.tokens) == (0, [], 0)
    assert await timeline.placement(store, "nobody") == timeline.Placement()


async def test_a_stored_buffer_that_differs_from_the_fold_is_damaged(db_path: Path) -> None:
    async with eventmem.open(db_path) as store:
        await _populate(store)
        folded = await store.messages("chat")
    with sqlite3.connect(db_path) as conn:
        # each row now names its turn's other message (a turn holds a human and an ai one)
        conn.execute("UPDATE view_messages SET idx = 1 - idx")
    conn.close()
    async with eventmem.open(db_path, read_only=True) as store:
        view = await timeline.buffer_view(store, "chat")
        assert view.damaged
        assert view.messages == await store.messages("chat") != folded
        assert not (await timeline.buffer_view(store, "chat", at=3)).damaged


class _Refusing(MemoryBuffer):
    def append(self, message: Message, tokens: int, position: int = 0, index: int = 0) -> None:
        raise ValueError("no room")


def test_an_event_the_fold_refuses_raises_fold_error() -> None:
    message = Message(role="human", content="hi")
    turn = TurnSaved(messages=(message,), tokens=(5,), counter="c", overhead=3, max_token_limit=100)
    with pytest.raises(timeline.FoldError) as raised:
        timeline.fold_event(_Refusing(), turn, 7, "s")
    assert isinstance(raised.value, CorruptDatabaseError)
    assert str(raised.value) == "session 's' position 7 does not fold (no room)"
    assert (raised.value.session_id, raised.value.position, raised.value.reason) == (
        "s",
        7,
        "no room",
    )


def test_event_tokens() -> None:
    message = Message(role="human", content="hi")
    turn = TurnSaved(
        messages=(message, message), tokens=(5, 6), counter="c", overhead=3, max_token_limit=9
    )
    assert timeline.event_tokens(turn) == 11
    assert timeline.event_tokens(MemoryCleared()) == 0
    step = StepRecorded(
        action=Action(tool="t", tool_input="x"),
        observation="o",
        messages=(message,),
        tokens=(4,),
        counter="c",
    )
    assert timeline.event_tokens(step) == 4
