"""Forks and rewinds as events, on both backends: a fork is one event chained to its
parent's history, a rewind one event carrying the view it restores; nothing is copied or
deleted, time travel stays exact, and verify, rebuild, export and import follow a fork's
line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventmem
from eventmem.events import GENESIS_HASH
from eventmem.messages import Message
from tests.backends import drop_target, new_target, raw_database, rehash
from tests.summarizers import answer_for

pytestmark = pytest.mark.anyio


async def _chat(store: eventmem.Store, session: str, turns: int, start: int = 0) -> None:
    memory = store.token_buffer(session, max_token_limit=60)
    for i in range(start, start + turns):
        await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})


def _texts(messages: list[Message]) -> list[str]:
    return [str(m.content) for m in messages]


async def _every_view(store: eventmem.Store, session: str) -> list[list[Message]]:
    version = await store.version(session)
    return [await store.messages(session, as_of=p) for p in range(version + 1)]


async def _event_rows(target: str) -> int:
    with raw_database(target) as raw:
        return int(raw.execute("SELECT count(*) FROM events")[0][0])


@pytest.fixture
def other_target(backend: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty store's location (for imports)."""
    (tmp_path / "other").mkdir()
    location = new_target(backend, tmp_path / "other")
    try:
        yield location
    finally:
        drop_target(location)


# -- fork ----------------------------------------------------------------------------------


async def test_a_fork_has_the_parents_view_and_history_then_diverges(
    store: eventmem.Store,
) -> None:
    await _chat(store, "main", 6)
    parent_views = await _every_view(store, "main")
    parent_events = [e async for e in store.events("main")]

    version = await store.fork("main", "branch", at=3)

    assert version == 4 == await store.version("branch")
    assert await store.messages("branch") == parent_views[3]
    for p in range(4):
        assert await store.messages("branch", as_of=p) == parent_views[p]
    history = [e async for e in store.events("branch")]
    assert history[:3] == parent_events[:3]  # the parent's own events, not copies
    assert [(e.session_id, e.position, e.kind) for e in history[3:]] == [("branch", 4, "fork")]
    fork = history[3].data
    assert isinstance(fork, eventmem.SessionForked)
    assert (fork.parent, fork.at, fork.parent_hash) == ("main", 3, parent_events[2].hash)

    await _chat(store, "branch", 2, start=100)
    assert _texts(await store.messages("branch"))[-4:] == [
        "question 100",
        "answer 100",
        "question 101",
        "answer 101",
    ]
    # The parent is untouched: its log, its views, its version.
    assert [e async for e in store.events("main")] == parent_events
    assert await _every_view(store, "main") == parent_views
    assert (await store.verify()).ok


async def test_a_fork_writes_one_small_event_whatever_the_history(
    store: eventmem.Store, target: str
) -> None:
    await _chat(store, "long", 300)
    before = await _event_rows(target)
    await store.fork("long", "copy")
    assert await _event_rows(target) == before + 1
    with raw_database(target) as raw:
        ((data,),) = raw.execute("SELECT data FROM events WHERE session_id = 'copy'")
    assert len(data) < 200  # names the parent, the position and a hash: nothing copied
    assert await store.messages("copy") == await store.messages("long")
    assert await store.version("copy") == 301


async def test_forks_of_forks_read_up_the_whole_line(store: eventmem.Store) -> None:
    await _chat(store, "a", 5)
    await store.fork("a", "b", at=4)
    await _chat(store, "b", 3, start=10)
    await store.fork("b", "c", at=6)  # b's positions 1-4 are a's, 5 its fork, 6 its own
    await _chat(store, "c", 2, start=20)
    a_views, b_views = await _every_view(store, "a"), await _every_view(store, "b")
    c_views = await _every_view(store, "c")
    assert c_views[:7] == b_views[:7]
    assert c_views[:5] == a_views[:5]
    holders = [(e.session_id, e.position) async for e in store.events("c")]
    assert holders == [("a", p) for p in range(1, 5)] + [("b", 5), ("b", 6), ("c", 7)] + [
        ("c", 8),
        ("c", 9),
    ]
    # A fork of a fork at a point its parent inherited goes back to the grandparent.
    await store.fork("c", "d", at=2)
    assert [(e.session_id, e.position) async for e in store.events("d")] == [
        ("a", 1),
        ("a", 2),
        ("d", 3),
    ]
    assert await store.messages("d") == a_views[2]
    report = await store.verify()
    assert report.ok, report.problems


async def test_a_fork_at_zero_is_an_empty_session_with_a_parent(store: eventmem.Store) -> None:
    await _chat(store, "a", 2)
    assert await store.fork("a", "fresh", at=0) == 1
    assert await store.messages("fresh") == []
    (only,) = [e async for e in store.events("fresh")]
    assert isinstance(only.data, eventmem.SessionForked)
    assert only.data.parent_hash == GENESIS_HASH.hex()
    await _chat(store, "fresh", 1)
    assert _texts(await store.messages("fresh")) == ["question 0", "answer 0"]
    assert (await store.verify()).ok


async def test_a_fork_is_refused_clearly_and_writes_nothing(
    store: eventmem.Store, target: str
) -> None:
    await _chat(store, "a", 2)
    await _chat(store, "taken", 1)
    before = await _event_rows(target)
    with pytest.raises(eventmem.SessionExistsError, match="'taken' already exists"):
        await store.fork("a", "taken")
    with pytest.raises(eventmem.UnknownSessionError, match="no session 'nobody'"):
        await store.fork("nobody", "new")
    with pytest.raises(eventmem.InvalidInputError, match="in its future"):
        await store.fork("a", "new", at=3)
    for bad in (-1, True, 1.0, "1"):
        with pytest.raises(eventmem.InvalidInputError, match="at must be a position"):
            await store.fork("a", "new", at=bad)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="session id"):
        await store.fork("a", "")
    assert await _event_rows(target) == before
    assert await store.version("new") == 0


async def test_a_fork_or_rewind_waits_for_live_steps_to_be_saved(
    store: eventmem.Store, target: str
) -> None:
    agent = store.agent_token_buffer("agent", max_token_limit=200)
    await agent.asave_context({"input": "hi"}, {"output": "hello"})
    action = {"tool": "search", "tool_input": "x", "log": "searching"}
    await agent.arecord_step(action, "found")
    before = await _event_rows(target)
    with pytest.raises(eventmem.InvalidInputError, match="save the turn first"):
        await store.rewind("agent", to=1)
    with pytest.raises(eventmem.InvalidInputError, match="starts after a turn"):
        await store.fork("agent", "branch")
    assert await _event_rows(target) == before
    await store.fork("agent", "branch", at=1)  # before the live step: fine
    await agent.asave_context({"input": "and?"}, {"output": "done"})
    await store.rewind("agent", to=1)
    assert _texts(await store.messages("agent")) == ["hi", "hello"]
    assert (await store.verify()).ok


# -- rewind --------------------------------------------------------------------------------


async def test_a_rewind_restores_an_earlier_view_and_deletes_nothing(
    store: eventmem.Store,
) -> None:
    await _chat(store, "s", 6)
    views = await _every_view(store, "s")
    events = [e async for e in store.events("s")]

    assert await store.rewind("s", to=2) == 7
    assert await store.messages("s") == views[2]
    assert [e async for e in store.events("s")][:6] == events  # all still there
    assert await _every_view(store, "s") == [*views, views[2]]
    (rewound,) = [e async for e in store.events("s", after=6)]
    rewind = rewound.data
    assert isinstance(rewind, eventmem.ViewRewound)
    assert rewind.to == 2
    assert len(rewind.view) == len(views[2])

    await _chat(store, "s", 1, start=50)
    assert _texts(await store.messages("s")) == [*_texts(views[2]), "question 50", "answer 50"]
    assert await store.rewind("s", to=0) == 9
    assert await store.messages("s") == []
    assert await store.rewind("s", to=9) == 10  # to its own last position: the same view
    assert await store.messages("s") == []
    assert (await store.verify()).ok


async def test_after_a_rewind_a_session_goes_on_as_a_fork_from_there_would(
    store: eventmem.Store,
) -> None:
    """Rewinding to p then writing equals forking at p and writing the same: pruning,
    the pinned system message and pair-safe pruning pick up exactly where p left them."""
    history = store.history("h", max_tokens=70)
    await history.append([Message("system", "be brief")])
    for i in range(5):
        await history.append(
            [
                Message("human", f"ask {i}"),
                Message("ai", "", tool_calls=(eventmem.ToolCall("look", {"q": i}, f"c{i}"),)),
                Message("tool", f"seen {i}", tool_call_id=f"c{i}"),
                Message("ai", f"said {i}"),
            ]
        )
    await store.fork("h", "twin", at=3)
    await store.rewind("h", to=3)
    for session in ("h", "twin"):
        more = store.history(session, max_tokens=70)
        await more.append([Message("human", "one more, rather long " * 3)])
        await more.pop()
        await more.append([Message("ai", "fine")])
    assert await store.messages("h") == await store.messages("twin")
    assert (await store.messages("h"))[0] == Message("system", "be brief")
    assert (await store.verify()).ok


async def test_a_fork_can_rewind_to_before_it_forked(store: eventmem.Store) -> None:
    await _chat(store, "a", 4)
    a_views = await _every_view(store, "a")
    await store.fork("a", "b")
    await _chat(store, "b", 3, start=10)
    await store.rewind("b", to=1)
    assert await store.messages("b") == a_views[1]
    await _chat(store, "b", 1, start=20)
    assert _texts(await store.messages("b")) == [*_texts(a_views[1]), "question 20", "answer 20"]
    assert (await store.verify()).ok


async def test_a_rewind_is_refused_clearly_and_writes_nothing(
    store: eventmem.Store, target: str
) -> None:
    await _chat(store, "s", 3)
    before = await _event_rows(target)
    with pytest.raises(eventmem.UnknownSessionError):
        await store.rewind("nobody", to=0)
    with pytest.raises(eventmem.InvalidInputError, match="in its future"):
        await store.rewind("s", to=4)
    with pytest.raises(eventmem.ConcurrencyError, match="not the expected 2"):
        await store.rewind("s", to=1, expected_version=2)
    for bad in (-1, None, True, 2.5):
        with pytest.raises(eventmem.InvalidInputError, match="to must be a position"):
            await store.rewind("s", to=bad)  # type: ignore[arg-type]
    assert await _event_rows(target) == before
    assert await store.rewind("s", to=1, expected_version=3) == 4


async def test_a_rewind_brings_back_the_summary_in_force_then(store: eventmem.Store) -> None:
    memory = store.summary_buffer("s", llm=answer_for, max_token_limit=40)
    summaries, versions = [], []
    for i in range(6):
        await memory.asave_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
        summaries.append(await memory.amoving_summary_buffer())
        versions.append(await store.version("s"))
    assert summaries[2]
    assert summaries[2] != summaries[4]
    await store.rewind("s", to=versions[2])
    fresh = store.summary_buffer("s", llm=answer_for, max_token_limit=40)
    assert await fresh.amoving_summary_buffer() == summaries[2]
    assert await store.messages("s") == await store.messages("s", as_of=versions[2])
    await fresh.asave_context({"input": "after the rewind " * 3}, {"output": "ok"})
    await store.rewind("s", to=0)
    empty = store.summary_buffer("s", llm=answer_for, max_token_limit=40)
    assert await empty.amoving_summary_buffer() == ""
    assert (await store.verify()).ok


async def test_cached_and_fresh_loads_agree_after_forks_and_rewinds(target: str) -> None:
    async with await eventmem.open(target) as writer, await eventmem.open(target) as reader:
        await _chat(writer, "s", 5)
        assert await reader.messages("s") == await writer.messages("s")  # both cached now
        await writer.rewind("s", to=2)
        await writer.fork("s", "f", at=4)
        for session in ("s", "f"):
            assert await reader.messages(session) == await writer.messages(session)
        assert await writer.messages("s") == await writer.messages("s", as_of=2)
        assert await writer.messages("f") == await writer.messages("s", as_of=4)


def test_the_blocking_facade_forks_and_rewinds(target: str) -> None:
    with eventmem.connect(target) as store:
        memory = store.token_buffer("s", max_token_limit=60)
        for i in range(3):
            memory.save_context({"input": f"q{i}"}, {"output": f"a{i}"})
        assert store.fork("s", "f", at=2) == 3
        assert store.rewind("s", to=1) == 4
        assert store.messages("s") == store.messages("s", as_of=1)
        assert store.messages("f") == store.messages("s", as_of=2)


# -- audit -----------------------------------------------------------------------------------


async def _forked_store(store: eventmem.Store) -> None:
    await _chat(store, "a", 5)
    await store.fork("a", "b", at=3)
    await _chat(store, "b", 2, start=10)
    await store.rewind("b", to=2)
    await _chat(store, "b", 1, start=20)
    await store.rewind("a", to=4)
    await store.fork("b", "c", at=5)


async def test_rebuild_recomputes_forks_and_rewinds_exactly(store: eventmem.Store) -> None:
    await _forked_store(store)
    sessions = ("a", "b", "c")
    before = {s: (await store.version(s), await _every_view(store, s)) for s in sessions}
    assert (await store.verify()).ok
    assert await store.rebuild() == 3
    assert {s: (await store.version(s), await _every_view(store, s)) for s in sessions} == before
    assert (await store.verify()).ok
    for session in sessions:
        assert (await store.verify_session(session)).ok


def _rewrite(target: str, session: str, position: int, change: Any) -> None:
    """Replace the event's JSON by ``change(data)`` and re-chain it and the session's
    later events, as someone who knows the hash rule would (the chain alone then holds)."""
    with raw_database(target) as raw:
        raw.allow_tampering()
        rows = raw.execute(
            "SELECT position, recorded_at, data, hash FROM events WHERE session_id = ?"
            " AND position >= ? ORDER BY position",
            (session, position - 1),
        )  # (every event here was written under the chain since schema 7)
        previous = bytes(rows[0][3]) if rows[0][0] == position - 1 else None
        if previous is None:  # the fork's own first event: it chains to the parent hash
            first = rows[0][2]
            first = first.encode() if isinstance(first, str) else bytes(first)
            fork = eventmem.events.decode_event(change(first))
            assert isinstance(fork, eventmem.SessionForked)
            previous = bytes.fromhex(fork.parent_hash)
        else:
            rows = rows[1:]
        for at, recorded_at, data, _ in rows:
            text = data.encode() if isinstance(data, str) else bytes(data)
            if at == position:
                text = change(text)
            previous, content = rehash(previous, session, at, recorded_at, text)
            raw.execute(
                "UPDATE events SET data = ?, hash = ?, digest = ?"
                " WHERE session_id = ? AND position = ?",
                (text.decode(), previous, content, session, at),
            )
        raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = ?", (previous, session))
        raw.restore_triggers()


async def _problems(target: str) -> list[eventmem.Problem]:
    async with await eventmem.open(target) as store:
        return (await store.verify()).problems


async def test_verify_finds_a_rewind_that_restores_another_view(target: str) -> None:
    async with await eventmem.open(target) as store:
        await _chat(store, "s", 5)
        await store.rewind("s", to=3)
    # The forged rewind says "to 3" but restores position 2's messages.
    forged = eventmem.ViewRewound(
        3,
        tuple(
            eventmem.ViewRef(p, i, t) for p, i, t in [(1, 0, 6), (1, 1, 6), (2, 0, 6), (2, 1, 6)]
        ),
        overhead=3,
        counter="openai-chat:o200k_base",
    )
    _rewrite(target, "s", 6, lambda _: eventmem.events.encode_event(forged))
    problems = await _problems(target)
    assert [(p.session_id, p.position) for p in problems] == [("s", 6)]
    assert "not the one after position 3" in problems[0].detail


async def test_verify_finds_a_fork_that_names_another_parent_hash(target: str) -> None:
    async with await eventmem.open(target) as store:
        await _chat(store, "a", 3)
        await store.fork("a", "b", at=2)
    other = "ab" * 32
    _rewrite(
        target,
        "b",
        3,
        lambda data: data.replace(data[data.index(b'"parent_hash":"') + 15 :][:64], other.encode()),
    )
    problems = await _problems(target)
    assert [(p.session_id, p.position, p.kind) for p in problems] == [("b", 3, "fork_mismatch")]


async def test_a_changed_parent_breaks_its_forks_too(target: str) -> None:
    async with await eventmem.open(target) as store:
        await _chat(store, "a", 3)
        await store.fork("a", "b", at=2)
    _rewrite(target, "a", 2, lambda data: data.replace(b"question 1", b"question X"))
    problems = await _problems(target)
    # The parent re-chained cleanly, but the fork names the hash it had before.
    assert ("b", 3, "fork_mismatch") in [(p.session_id, p.position, p.kind) for p in problems]


async def test_the_gapless_rule_still_holds_for_everything_but_a_forks_first_event(
    target: str,
) -> None:
    async with await eventmem.open(target) as store:
        await _chat(store, "a", 2)
        await store.fork("a", "b", at=1)
    with raw_database(target) as raw:
        for session, position, kind in [("a", 5, "turn"), ("b", 9, "fork"), ("new", 3, "turn")]:
            with pytest.raises(Exception, match="gapless"):
                raw.execute(
                    "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
                    " VALUES (?, ?, ?, 0, '{}', ?)",
                    (session, position, kind, bytes(32)),
                )
    assert await _problems(target) == []


# -- export and import ------------------------------------------------------------------------


async def test_export_and_import_keep_the_lineage(store: eventmem.Store, other_target: str) -> None:
    await _forked_store(store)
    lines = [line async for line in store.export()]
    sessions = ("a", "b", "c")
    expected = {s: await _every_view(store, s) for s in sessions}
    async with await eventmem.open(other_target) as other:
        assert await other.import_events(lines) == (3, await store.count_events())
        assert {s: await _every_view(other, s) for s in sessions} == expected
        assert [e.session_id async for e in other.events("c")][:3] == ["a", "a", "a"]
        assert (await other.verify()).ok


async def test_a_fork_is_imported_with_its_parent_or_into_a_store_that_has_it(
    store: eventmem.Store, other_target: str
) -> None:
    await _chat(store, "a", 3)
    await store.fork("a", "b", at=2)
    await _chat(store, "b", 1, start=10)
    fork_only = [line async for line in store.export("b")]
    parent_only = [line async for line in store.export("a")]
    async with await eventmem.open(other_target) as other:
        with pytest.raises(eventmem.ImportRefusedError, match=r"fork of 'a'.*no events of 'a'"):
            await other.import_events(fork_only)
        assert await other.count_events() == 0
        await other.import_events(parent_only)
        assert await other.import_events(fork_only) == (1, 2)
        assert await other.messages("b") == await store.messages("b")
        assert (await other.verify()).ok


async def test_an_import_refuses_a_forged_rewind(store: eventmem.Store, other_target: str) -> None:
    await _chat(store, "s", 4)
    await store.rewind("s", to=2)
    lines = [line async for line in store.export()]
    rewind = next(i for i, line in enumerate(lines) if b'"kind":"rewind"' in line)
    # A rewind claiming position 1's view: consistent in itself, re-hashed, but false.
    forged_view = b'"view":[[1,0,6],[1,1,6]]'
    start = lines[rewind].index(b'"view":[')
    end = lines[rewind].index(b"]]", start) + 2
    data_line = lines[rewind][:start] + forged_view + lines[rewind][end:]
    lines[rewind] = _rehashed(lines, rewind, data_line)
    async with await eventmem.open(other_target) as other:
        with pytest.raises(eventmem.ImportRefusedError, match="not the one after position 2"):
            await other.import_events(lines)
        assert await other.count_events() == 0


def _rehashed(lines: list[bytes], index: int, line: bytes) -> bytes:
    """``line`` (the export line at ``index``) with the hash its changed data gives."""
    import json

    item = json.loads(line)
    previous = json.loads(lines[index - 1])["hash"]
    data = line[line.index(b'"data":') + 7 : line.rindex(b"}")]
    digest, content = rehash(
        bytes.fromhex(previous), item["session_id"], item["position"], item["recorded_at"], data
    )
    assert content is not None
    line = line.replace(item["sha256"].encode(), content.hex().encode())
    return line.replace(item["hash"].encode(), digest.hex().encode())


async def test_a_replay_under_another_limit_rewinds_to_its_own_earlier_views(
    store: eventmem.Store,
) -> None:
    """A what-if replay rewinds to the view the replay had there: the same as living the
    session under that limit, rewinds included."""
    for session, limit in (("lived-60", 60), ("lived-30", 30)):
        memory = store.token_buffer(session, max_token_limit=limit)
        for i in range(5):
            await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        await store.rewind(session, to=3)
        for i in range(5, 7):
            await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
    assert await store.replay("lived-60", max_token_limit=30) == await store.messages("lived-30")
    assert await store.replay("lived-60") == await store.messages("lived-60")
    await store.fork("lived-60", "forked", at=4)
    assert await store.replay("forked", max_token_limit=30) == await store.messages(
        "lived-30", as_of=4
    )


async def test_a_what_if_replay_passes_over_summaries_and_pops_it_cannot_redo(
    store: eventmem.Store,
) -> None:
    """A summary is not asked for again under a what-if, and a pop takes at most what
    the replayed view holds."""
    memory = store.summary_buffer("summarised", llm=answer_for, max_token_limit=40)
    for i in range(5):
        await memory.asave_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
    plain = store.token_buffer("plain", max_token_limit=40)
    for i in range(5):
        await plain.asave_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
    assert await store.replay("summarised", max_token_limit=25) == await store.replay(
        "plain", max_token_limit=25
    )
    history = store.history("popped", max_tokens=20)
    await history.append([Message("human", "hello there")])
    await history.pop()
    await history.append([Message("human", "again")])
    assert _texts(await store.replay("popped", max_token_limit=0)) == []
    assert _texts(await store.replay("popped", max_token_limit=1000)) == ["again"]
