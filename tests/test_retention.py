"""Retention on both backends: ``Store.seal`` removes the content of a session's earliest
events while keeping their hashes, so the rest of the chain verifies, and never changes
the view (it refuses to seal what the view, the summary in force or a fork still holds)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

import eventmem
from eventmem import Message
from tests.backends import drop_target, new_target

pytestmark = pytest.mark.anyio

OLD = "old-secret-5521"


async def _session(store: eventmem.Store, session: str = "s", turns: int = 6) -> None:
    memory = store.token_buffer(session, max_token_limit=40)
    for i in range(turns):
        await memory.asave_context({"input": f"{OLD} question {i}"}, {"output": f"answer {i}"})


async def test_a_seal_drops_old_content_and_keeps_the_chain_and_the_view(
    store: eventmem.Store,
) -> None:
    await _session(store)
    view = await store.messages("s")
    before = [e async for e in store.events("s")]
    [result] = await store.seal("s", before=4)
    assert (result.session_id, result.before, result.events) == ("s", 4, 3)
    after = [e async for e in store.events("s")]
    assert [e.hash for e in after[:-1]] == [e.hash for e in before]
    assert [type(e.data).__name__ for e in after[:3]] == ["ContentErased"] * 3
    assert after[3:-1] == before[3:]  # the rest untouched
    seal = after[-1]
    assert isinstance(seal.data, eventmem.SessionSealed)
    assert (seal.position, seal.data.before, seal.data.events) == (result.position, 4, 3)
    assert await store.messages("s") == view
    assert await store.messages("s", as_of=seal.position) == view
    with pytest.raises(eventmem.ErasedSessionError, match="erased or sealed"):
        await store.messages("s", as_of=3)

    await store.token_buffer("s", max_token_limit=40).asave_context(
        {"input": "after the seal"}, {"output": "fine"}
    )
    assert [m.text for m in await store.messages("s")][-2:] == ["after the seal", "fine"]
    assert (await store.verify()).ok
    versions = await store.version("s"), await store.messages("s")
    assert await store.rebuild() == 1
    assert (await store.version("s"), await store.messages("s")) == versions
    assert (await store.verify_session("s")).ok


async def test_a_seal_never_takes_what_the_view_still_holds(
    store: eventmem.Store, target: str
) -> None:
    await _session(store)
    version = await store.version("s")
    with pytest.raises(eventmem.InvalidInputError, match="the view still holds"):
        await store.seal("s", before=version)
    [again] = await store.seal("s", before=3)
    assert again.events == 2
    [nothing] = await store.seal("s", before=3)  # sealed already: nothing written
    assert (nothing.events, nothing.position) == (0, 0)
    assert await store.version("s") == version + 1
    with pytest.raises(eventmem.UnknownSessionError):
        await store.seal("nobody", before=2)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(eventmem.InvalidInputError, match="before must be"):
            await store.seal("s", before=bad)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="one of them"):
        await store.seal("s")
    with pytest.raises(eventmem.InvalidInputError, match="one of them"):
        await store.seal("s", before=2, older_than=timedelta(days=1))
    with pytest.raises(eventmem.InvalidInputError, match="names the session"):
        await store.seal(before=2)
    with pytest.raises(eventmem.InvalidInputError, match="timedelta"):
        await store.seal(older_than=3)  # type: ignore[arg-type]


async def test_the_summary_in_force_and_forks_are_kept_too(store: eventmem.Store) -> None:
    from tests.summarizers import answer_for

    memory = store.summary_buffer("summed", llm=answer_for, max_token_limit=40)
    for i in range(5):
        await memory.asave_context({"input": f"question {i} " * 3}, {"output": f"answer {i}"})
    summary = await memory.amoving_summary_buffer()
    (position, *_) = [e.position async for e in store.events("summed") if e.kind == "summary"][::-1]
    with pytest.raises(eventmem.InvalidInputError, match="still holds"):
        await store.seal("summed", before=position + 1)
    [sealed] = await store.seal("summed", older_than=timedelta(0))
    assert 1 < sealed.before <= position
    assert await memory.amoving_summary_buffer() == summary
    assert (await memory.amessages())[0].text == summary
    await _session(store, "parent", 4)
    await store.fork("parent", "child", at=2)
    with pytest.raises(eventmem.InvalidInputError, match="a fork of it"):
        await store.seal("parent", before=2)
    assert (await store.verify()).ok


async def test_live_steps_and_sealed_histories_are_refused_where_they_must_be(
    store: eventmem.Store,
) -> None:
    agent = store.agent_token_buffer("agent", max_token_limit=40)
    for i in range(4):
        await agent.asave_context({"input": f"question {i} " * 3}, {"output": "ok"})
    await agent.arecord_step({"tool": "t", "tool_input": "x", "log": "l"}, "seen")
    with pytest.raises(eventmem.InvalidInputError, match="save the turn first"):
        await store.seal("agent", before=2)
    await agent.asave_context({"input": "done"}, {"output": "ok"})
    [sealed] = await store.seal("agent", before=2)
    with pytest.raises(eventmem.InvalidInputError, match="sealed"):
        await store.fork("agent", "copy")
    with pytest.raises(eventmem.InvalidInputError, match="goes back to"):
        await store.rewind("agent", to=sealed.position - 1)
    await store.rewind("agent", to=sealed.position)
    assert (await store.verify()).ok
    await store.erase("agent", reason="and then erased")
    assert (await store.verify()).ok


async def test_a_store_wide_policy_seals_what_is_older(store: eventmem.Store) -> None:
    await _session(store, "old", 6)
    time.sleep(0.05)
    cutoff = time.time()
    # more than the seal's own clock can run past the age computed below
    time.sleep(0.4)
    await _session(store, "new", 6)
    history = store.history("unbounded")
    await history.append([Message("human", "kept: an unbounded view holds it all")])
    views = {s: await store.messages(s) for s in ("old", "new", "unbounded")}
    age = timedelta(seconds=time.time() - cutoff)
    results = await store.seal(older_than=age)
    assert [r.session_id for r in results] == ["old"]  # the others: nothing to seal
    assert results[0].events > 0
    assert {s: await store.messages(s) for s in views} == views
    assert await store.seal(older_than=age) == []  # sealed as far as it goes
    assert (await store.verify()).ok


async def test_no_sealed_content_is_left_in_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await eventmem.open(path) as store:
        await _session(store)
        await store.seal("s", before=5)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    # positions 1 to 4 held questions 0 to 3; 4 and 5 are in the view, kept
    assert [f"{OLD} question {i}".encode() in data for i in range(6)] == [False] * 4 + [True] * 2


async def test_export_and_import_carry_a_sealed_session(
    store: eventmem.Store, backend: str, tmp_path: Path
) -> None:
    await _session(store)
    await store.seal("s", before=4)
    await store.token_buffer("s", max_token_limit=40).asave_context({"input": "x"}, {"output": "y"})
    lines = [line async for line in store.export()]
    (tmp_path / "copy").mkdir()
    target = new_target(backend, tmp_path / "copy")
    try:
        async with await eventmem.open(target) as copy:
            await copy.import_events(lines)
            assert await copy.messages("s") == await store.messages("s")
            assert (await copy.verify()).ok
    finally:
        drop_target(target)


def test_the_blocking_facade_seals(target: str) -> None:
    with eventmem.connect(target) as store:
        memory = store.token_buffer("s", max_token_limit=40)
        for i in range(5):
            memory.save_context({"input": f"question {i} " * 2}, {"output": "ok"})
        [result] = store.seal("s", before=2)
        assert result.events == 1
        assert store.verify().ok


async def test_the_log_and_the_buffer_read_sealed_and_erased_sessions(
    store: eventmem.Store,
) -> None:
    from eventmem import timeline

    await _session(store)
    view = await store.messages("s")
    await store.seal("s", before=4)
    placed = await timeline.placement(store, "s")
    events = [e async for e in store.events("s")]
    markers = [placed.visibility(e.position, e.data)[0] for e in events]
    assert markers[:3] == ["erased"] * 3
    assert markers[-1] == "-"
    assert (await timeline.buffer_view(store, "s")).messages == view
    await store.token_buffer("e").asave_context({"input": "x"}, {"output": "y"})
    await store.erase("e", reason="asked")
    placed = await timeline.placement(store, "e")
    assert [placed.visibility(e.position, e.data)[0] async for e in store.events("e")] == [
        "erased",
        "-",
    ]
