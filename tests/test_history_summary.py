"""A general history that summarises what it prunes (``summarize=``): each summary is an
event with its append, verify checks what it covers, time travel and rewinds bring back
the summary in force then, on both backends."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import eventmem
from eventmem import Message
from tests.backends import raw_database, rehash

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]


class Recorder:
    """A summariser that remembers what it was asked and answers deterministically."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Message]]] = []

    def __call__(self, summary: str, pruned: list[Message]) -> str:
        self.calls.append((summary, list(pruned)))
        said = "; ".join(f"{m.role}: {m.content}" for m in pruned)
        return f"{summary} + [{said}]" if summary else f"[{said}]"


def _exchange(i: int) -> list[Message]:
    return [Message("human", f"question number {i}"), Message("ai", f"answer number {i}")]


async def test_pruned_messages_become_a_running_summary(store: eventmem.Store) -> None:
    summarize = Recorder()
    history = store.history("h", max_tokens=60, summarize=summarize)
    plain = store.history("plain", max_tokens=60)
    for i in range(6):
        before = await plain.view()
        await plain.append(_exchange(i))
        await history.append(_exchange(i))
        after = await plain.view()
        left = [m for m in [*before, *_exchange(i)] if m not in after]
        if left:  # the summariser got exactly what left the view, oldest first
            assert summarize.calls[-1][1] == left
        if summarize.calls:
            assert (await history.view())[1:] == after
    assert len(summarize.calls) >= 2
    summary = await history.summary()
    assert summary.count("[") == len(summarize.calls)
    view = await history.view()
    assert view[0] == Message("system", summary)
    assert view[1:] == await store.messages("h")  # the projection itself stays the messages
    kinds = [e.kind async for e in store.events("h")]
    assert kinds.count("summary") == len(summarize.calls)
    report = await store.verify()
    assert report.ok, report.problems


async def test_each_summary_names_what_it_covers(store: eventmem.Store) -> None:
    history = store.history("h", max_tokens=50, summarize=Recorder())
    for i in range(4):
        await history.append(_exchange(i))
    events = [e async for e in store.events("h")]
    by_position = {e.position: e for e in events}
    summaries = [e for e in events if isinstance(e.data, eventmem.SummaryRecorded)]
    assert summaries
    for stored in summaries:
        summary = stored.data
        assert isinstance(summary, eventmem.SummaryRecorded)
        assert summary.model.endswith("Recorder")
        assert summary.first_hash == by_position[summary.first_position].hash
        assert summary.last_hash == by_position[summary.last_position].hash
        assert summary.first_position <= summary.last_position < stored.position


async def test_time_travel_and_rewind_bring_back_the_summary_in_force(
    store: eventmem.Store,
) -> None:
    history = store.history("h", max_tokens=60, summarize=Recorder())
    views = {}
    for i in range(7):
        await history.append(_exchange(i))
        views[await history.version()] = await history.view()
    for position, view in views.items():
        assert await history.messages(as_of=position) == view
    unsummarised = min(p for p, v in views.items() if v[0].role == "human")
    assert unsummarised < max(views)
    await store.rewind("h", to=unsummarised)  # past every summary: none in force
    assert await history.view() == views[unsummarised]
    assert await history.summary() == ""
    summarised = sorted(views)[-2]
    await store.rewind("h", to=summarised)
    assert await history.view() == views[summarised]
    await history.append(_exchange(99))  # and it summarises on from there
    assert (await history.summary()).startswith(views[summarised][0].text)
    assert (await store.verify()).ok
    assert await store.rebuild() == 1
    assert await history.view() == (await history.messages(as_of=await history.version()))


async def test_an_async_summariser_and_a_blocking_one_alike(store: eventmem.Store) -> None:
    recorder = Recorder()

    async def summarize_async(summary: str, pruned: list[Message]) -> str:
        await anyio.lowlevel.checkpoint()
        return recorder(summary, pruned)

    for session, summarize in (("a", summarize_async), ("b", Recorder())):
        history = store.history(session, max_tokens=50, summarize=summarize)
        for i in range(4):
            await history.append(_exchange(i))
    assert await store.history("a", max_tokens=50, summarize=Recorder()).summary() == (
        await store.history("b", max_tokens=50, summarize=Recorder()).summary()
    )


async def test_a_failing_summariser_writes_nothing(store: eventmem.Store) -> None:
    def broken(summary: str, pruned: list[Message]) -> str:
        raise RuntimeError("model down")

    def wrong(summary: str, pruned: list[Message]) -> Any:
        return 42

    for summarize, match in ((broken, "RuntimeError: model down"), (wrong, "not text")):
        history = store.history("h", max_tokens=20, summarize=summarize)
        await store.history("h", max_tokens=20).append(_exchange(0))
        version = await history.version()
        with pytest.raises(eventmem.SummarizerError, match=match):
            await history.append(_exchange(1))
        assert await history.version() == version


async def test_summarising_options_are_checked(store: eventmem.Store) -> None:
    with pytest.raises(eventmem.InvalidInputError, match="summarize needs max_tokens"):
        store.history("h", summarize=Recorder())
    with pytest.raises(eventmem.InvalidInputError, match="summarize must be a function"):
        store.history("h", max_tokens=10, summarize="summarise please")  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="summary_role"):
        store.history("h", max_tokens=10, summarize=Recorder(), summary_role="tool")
    with pytest.raises(eventmem.InvalidInputError, match="summarizer_name"):
        store.history("h", max_tokens=10, summarize=Recorder(), summarizer_name="")
    named = store.history("h", max_tokens=30, summarize=Recorder(), summarizer_name="my-llm:v2")
    for i in range(3):
        await named.append(_exchange(i))
    models = [
        e.data.model
        async for e in store.events("h")
        if isinstance(e.data, eventmem.SummaryRecorded)
    ]
    assert models
    assert set(models) == {"my-llm:v2"}


async def test_a_pinned_system_message_is_kept_and_never_summarised(
    store: eventmem.Store,
) -> None:
    summarize = Recorder()
    history = store.history("h", max_tokens=70, summarize=summarize)
    await history.append([Message("system", "you are terse")])
    for i in range(6):
        await history.append(
            [
                Message("human", f"look up {i}"),
                Message("ai", "", tool_calls=(eventmem.ToolCall("find", {"i": i}, f"c{i}"),)),
                Message("tool", f"found {i}", tool_call_id=f"c{i}"),
            ]
        )
    pruned = [m for _, messages in summarize.calls for m in messages]
    assert pruned
    assert Message("system", "you are terse") not in pruned
    view = await history.view()
    assert view[1] == Message("system", "you are terse")
    assert view[2].role != "tool"  # pair-safe: no orphan result after the summary
    assert (await store.verify()).ok


async def test_verify_finds_a_summary_that_claims_another_range(target: str) -> None:
    async with await eventmem.open(target) as store:
        history = store.history("h", max_tokens=50, summarize=Recorder())
        for i in range(4):
            await history.append(_exchange(i))
        (position, *_) = [e.position async for e in store.events("h") if e.kind == "summary"]
    with raw_database(target) as raw:
        raw.allow_tampering()
        rows = raw.execute(
            "SELECT position, recorded_at, data, hash FROM events WHERE session_id = 'h'"
            " ORDER BY position"
        )
        previous = bytes(rows[position - 2][3])
        for at, recorded_at, data, _ in rows[position - 1 :]:
            if at == position:
                summary = json.loads(data)
                summary["end_seq"] -= 1  # claims one message fewer than was pruned
                data = json.dumps(summary, separators=(",", ":"), ensure_ascii=False)
            previous, content = rehash(previous, "h", at, recorded_at, data.encode())
            raw.execute(
                "UPDATE events SET data = ?, hash = ?, digest = ?"
                " WHERE session_id = 'h' AND position = ?",
                (data, previous, content, at),
            )
        raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = 'h'", (previous,))
        raw.restore_triggers()
    async with await eventmem.open(target) as store:
        problems = (await store.verify()).problems
    assert [(p.session_id, p.position) for p in problems] == [("h", position)]


def test_the_blocking_facade_summarises(target: str) -> None:
    with eventmem.connect(target) as store:
        history = store.history("h", max_tokens=50, summarize=Recorder())
        for i in range(4):
            history.append(_exchange(i))
        assert history.summary()
        assert history.view()[0] == Message("system", history.summary())


async def test_a_summary_buffer_travels_in_time_with_its_summary(store: eventmem.Store) -> None:
    from tests.summarizers import answer_for

    memory = store.summary_buffer("s", llm=answer_for, max_token_limit=40)
    seen = {}
    for i in range(6):
        await memory.asave_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
        seen[await memory.aversion()] = (await memory.amessages(), await store.summary("s"))
    for position, (messages, summary) in seen.items():
        assert await memory.amessages(as_of=position) == messages
        assert await store.summary("s", as_of=position) == summary
    assert any(summary for _, summary in seen.values())


def test_the_blocking_summary_buffer_travels_in_time(target: str) -> None:
    from tests.summarizers import answer_for

    with eventmem.connect(target) as store:
        memory = store.summary_buffer("s", llm=answer_for, max_token_limit=40)
        seen = {}
        for i in range(5):
            memory.save_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
            seen[memory.version()] = (memory.messages(), store.summary("s"))
        for position, (messages, summary) in seen.items():
            assert memory.messages(as_of=position) == messages
            assert store.summary("s", as_of=position) == summary
