"""Concurrent writers in one process, on each backend: group commit, gapless positions,
cancellation."""

from __future__ import annotations

import random

import anyio
import pytest

import eventmem
from eventmem.projection import fold
from tests.probes import traced_statements

pytestmark = [pytest.mark.anyio, pytest.mark.reuses_schema]


async def _assert_consistent(store: eventmem.Store) -> None:
    report = await store.verify()
    assert report.ok, report.problems
    for session in await store.sessions():
        events = [e async for e in store.events(session)]
        assert [e.position for e in events] == list(range(1, len(events) + 1))
        assert fold([e.data for e in events]).messages == await store.messages(session)


async def test_many_tasks_saving_to_one_session_are_all_recorded(target: str) -> None:
    async with eventmem.open(target) as store:
        mem = store.token_buffer("shared", max_token_limit=200)

        async def worker(w: int) -> None:
            for i in range(20):
                await mem.asave_context({"input": f"w{w} q{i}"}, {"output": f"w{w} a{i}"})

        async with anyio.create_task_group() as tg:
            for w in range(25):
                tg.start_soon(worker, w)
        events = [e async for e in store.events("shared")]
        assert len(events) == 500
        said = {m.content for e in events for m in e.data.messages}  # type: ignore[union-attr]
        assert said == {f"w{w} {k}{i}" for w in range(25) for i in range(20) for k in "qa"}
        await _assert_consistent(store)


async def test_many_sessions_saving_at_once_share_commits(target: str) -> None:
    async with eventmem.open(target) as store:

        async def session(s: int) -> None:
            mem = store.token_buffer(f"s{s}", max_token_limit=60)
            for i in range(4):
                await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})

        async with traced_statements(store) as statements, anyio.create_task_group() as tg:
            for s in range(200):
                tg.start_soon(session, s)
        commits = statements.count("COMMIT")
        assert await store.count_events() == 800
        assert commits < 800 / 4  # saves were coalesced into shared transactions
        await _assert_consistent(store)


async def test_a_failing_save_in_a_batch_does_not_sink_the_others(target: str) -> None:
    async with eventmem.open(target) as store:
        good = store.token_buffer("good")
        agent = store.agent_token_buffer("agent")
        action = {"tool": "t", "log": "l", "message_log": []}
        await agent.arecord_step(action, "seen")
        outcomes: list[str] = []

        async def save_good(i: int) -> None:
            await good.asave_context({"input": f"q{i}"}, {"output": "a"})
            outcomes.append("ok")

        async def save_mismatched() -> None:
            try:
                await agent.asave_context(
                    {"input": "x"}, {"output": "y", "intermediate_steps": [(action, "other")]}
                )
            except eventmem.InvalidInputError:
                outcomes.append("refused")

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(save_good, i)
            tg.start_soon(save_mismatched)
            for i in range(10, 20):
                tg.start_soon(save_good, i)
        assert sorted(outcomes) == ["ok"] * 20 + ["refused"]
        assert await store.count_events() == 21  # 20 turns + the live step
        await _assert_consistent(store)


async def test_expected_version_detects_a_moved_session(target: str) -> None:
    async with eventmem.open(target) as store:
        mem = store.agent_token_buffer("s")
        await mem.asave_context({"input": "x"}, {"output": "y"}, expected_version=0)
        assert await mem.aversion() == 1
        writes = [
            mem.asave_context({"input": "x"}, {"output": "y"}, expected_version=0),
            mem.aclear(expected_version=0),
            mem.arecord_step({"tool": "t", "log": ""}, "o", expected_version=0),
        ]
        for write in writes:
            with pytest.raises(eventmem.ConcurrencyError, match="version 1"):
                await write
        assert await store.count_events() == 1
        await mem.arecord_step({"tool": "t", "log": ""}, "o", expected_version=1)
        await mem.aclear(expected_version=2)
        assert await mem.aversion() == 3
        with pytest.raises(eventmem.InvalidInputError):
            await mem.aclear(expected_version=-1)


async def test_racing_writers_with_expected_versions_one_wins(target: str) -> None:
    async with eventmem.open(target) as store:
        mem = store.token_buffer("s")
        outcomes: list[str] = []

        async def attempt(i: int) -> None:
            try:
                await mem.asave_context({"input": f"{i}"}, {"output": "y"}, expected_version=0)
                outcomes.append("won")
            except eventmem.ConcurrencyError:
                outcomes.append("lost")

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(attempt, i)
        assert sorted(outcomes) == ["lost"] * 19 + ["won"]
        assert await store.count_events() == 1


async def test_cancellation_leaves_every_save_whole(target: str) -> None:
    rng = random.Random(7)
    async with eventmem.open(target) as store:

        async def worker(w: int) -> None:
            mem = store.agent_token_buffer(f"s{w % 5}", max_token_limit=120)
            for i in range(30):
                steps = [
                    ({"tool": "t", "log": f"{w}-{i}-{k}", "message_log": []}, k)
                    for k in range(rng.randrange(3))
                ]
                with anyio.move_on_after(rng.choice([0, 0.0001, 0.001, 1])):
                    await mem.asave_context(
                        {"input": f"{w}/{i}"}, {"output": "ok", "intermediate_steps": steps}
                    )
                with anyio.move_on_after(rng.choice([0, 0.0005, 1])):
                    await mem.aload_memory_variables({})
                if i % 7 == 3:
                    with anyio.move_on_after(rng.choice([0, 0.0002, 1])):
                        await mem.aclear()

        async with anyio.create_task_group() as tg:
            for w in range(20):
                tg.start_soon(worker, w)
        # every turn is whole: each turn event names exactly the step events before it
        for session in await store.sessions():
            events = [e async for e in store.events(session)]
            pending: list[int] = []
            for e in events:
                if e.kind == "step":
                    pending.append(e.position)
                elif e.kind == "turn":
                    assert list(e.data.steps) == pending  # type: ignore[union-attr]
                    assert e.data.abandoned == ()  # type: ignore[union-attr]
                    pending = []
            assert pending == []
        await _assert_consistent(store)
        # the connection is still usable
        await store.token_buffer("after").asave_context({"input": "x"}, {"output": "y"})
        assert len(await store.messages("after")) == 2


async def test_two_stores_writing_one_session_at_once_interleave_whole_saves(
    target: str,
) -> None:
    async with eventmem.open(target) as a, eventmem.open(target) as b:

        async def worker(store: eventmem.Store, w: int) -> None:
            mem = store.agent_token_buffer("shared", max_token_limit=150)
            for i in range(15):
                step = ({"tool": "t", "log": f"{w}-{i}", "message_log": []}, i)
                await mem.asave_context(
                    {"input": f"w{w} q{i}"}, {"output": f"w{w} a{i}", "intermediate_steps": [step]}
                )

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(worker, (a, b)[w % 2], w)
        assert await a.count_events() == 8 * 15 * 2
        assert await a.messages("shared") == await b.messages("shared")
        await _assert_consistent(a)
