"""The event log and its projection, against each backend (a SQLite file and a
PostgreSQL schema); the tests at the end are about the SQLite file itself."""

from __future__ import annotations

import gc
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.lowlevel
import psycopg
import pytest

import eventmem
from eventmem.events import MemoryCleared, TurnSaved
from eventmem.messages import Message
from eventmem.projection import fold
from eventmem.store.batched import BatchedBackend
from eventmem.store.sqlite import SQLiteBackend
from eventmem.tokens import OpenAIChatCounter
from tests.backends import POSTGRES_URL, backend_of, raw_database
from tests.probes import local_tcp_ports, target_exists, traced_statements

pytestmark = pytest.mark.anyio


async def events_of(store: eventmem.Store, session: str) -> list[eventmem.StoredEvent]:
    return [e async for e in store.events(session)]


async def test_each_save_and_clear_is_one_event_in_order(store: eventmem.Store) -> None:
    mem = store.token_buffer("s", max_token_limit=1000)
    await mem.asave_context({"input": "one"}, {"output": "uno"})
    await mem.aclear()
    await mem.asave_context({"input": "two"}, {"output": "dos"})

    events = await events_of(store, "s")
    assert [e.position for e in events] == [1, 2, 3]
    assert [e.kind for e in events] == ["turn", "clear", "turn"]
    assert isinstance(events[1].data, MemoryCleared)
    first = events[0].data
    assert isinstance(first, TurnSaved)
    assert [(m.role, m.content) for m in first.messages] == [("human", "one"), ("ai", "uno")]
    assert all(e.recorded_at <= f.recorded_at for e, f in itertools.pairwise(events))
    assert len({e.hash for e in events}) == 3


async def test_events_record_their_token_counts_and_scheme(store: eventmem.Store) -> None:
    mem = store.token_buffer("s", max_token_limit=50, model="gpt-4")
    await mem.asave_context({"input": "héllo wörld"}, {"output": "こんにちは"})
    (event,) = await events_of(store, "s")
    assert isinstance(event.data, TurnSaved)
    counter = OpenAIChatCounter("gpt-4")
    assert event.data.tokens == tuple(counter.count_message(m) for m in event.data.messages)
    assert event.data.counter == "openai-chat:cl100k_base"
    assert event.data.overhead == 3
    assert event.data.max_token_limit == 50
    assert event.data.model == "gpt-4"


async def test_clear_keeps_the_log_and_empties_the_buffer(store: eventmem.Store) -> None:
    mem = store.token_buffer("s", return_messages=True)
    await mem.asave_context({"input": "remember 42"}, {"output": "ok"})
    await mem.aclear()
    assert await mem.aload_memory_variables({}) == {"history": []}
    turn = (await events_of(store, "s"))[0].data
    assert isinstance(turn, TurnSaved)
    assert turn.messages[0].content == "remember 42"


async def test_global_order_spans_sessions(store: eventmem.Store) -> None:
    for session in ["a", "b", "a", "c", "b"]:
        await store.token_buffer(session).asave_context({"in": "x"}, {"out": "y"})
    events = [e for s in ["a", "b", "c"] for e in await events_of(store, s)]
    by_global = sorted(events, key=lambda e: e.global_position)
    assert [(e.session_id, e.position) for e in by_global] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("c", 1),
        ("b", 2),
    ]
    assert await store.sessions() == ["a", "b", "c"]


async def test_sessions_are_isolated(store: eventmem.Store) -> None:
    a = store.token_buffer("a", max_token_limit=30)
    b = store.token_buffer("b", max_token_limit=30)
    for i in range(6):
        await a.asave_context({"input": f"a{i}"}, {"output": f"A{i}"})
        await b.asave_context({"input": f"b{i}"}, {"output": f"B{i}"})
    assert all(m.text.lower().startswith("a") for m in await store.messages("a"))
    assert all(m.text.lower().startswith("b") for m in await store.messages("b"))
    await a.aclear()
    assert await store.messages("a") == []
    assert len(await store.messages("b")) > 0


async def test_unknown_session_is_empty_not_an_error(store: eventmem.Store) -> None:
    assert await store.messages("nobody") == []
    assert await events_of(store, "nobody") == []
    assert await store.version("nobody") == 0
    assert await store.sessions() == []


async def test_events_are_paged_not_loaded_at_once(store: eventmem.Store) -> None:
    # 1,203 events (more than two pages of 500): one save of 1,202 steps, then its turn
    mem = store.agent_token_buffer("long", max_token_limit=40)
    steps = [({"tool": "t", "log": str(i), "message_log": []}, i) for i in range(1202)]
    await mem.asave_context({"input": "go"}, {"output": "k", "intermediate_steps": steps})
    positions = [e.position for e in await events_of(store, "long")]
    assert positions == list(range(1, 1204))


async def test_stored_projection_equals_fold_of_all_events(store: eventmem.Store) -> None:
    plan = [("gpt-4o", 60), ("gpt-4o", 25), ("gpt-4", 25), ("gpt-3.5-turbo-0301", 200)]
    step = 0
    for model, limit in plan:
        mem = store.token_buffer("s", max_token_limit=limit, model=model)
        for _ in range(7):
            step += 1
            if step % 9 == 0:
                await mem.aclear()
            else:
                await mem.asave_context({"input": "word " * step}, {"output": f"reply {step}"})
            folded = fold([e.data for e in await events_of(store, "s")])
            assert folded.messages == await store.messages("s")


async def test_counting_scheme_change_recounts_the_buffer_once(store: eventmem.Store) -> None:
    await store.token_buffer("s", model="gpt-4o").asave_context({"input": "a b"}, {"output": "c"})
    calls: list[Message] = []

    class Spy:
        name = "spy"
        overhead = 0

        def count_message(self, message: Message) -> int:
            calls.append(message)
            return 1

    await store.token_buffer("s", token_counter=Spy()).asave_context(
        {"input": "d"}, {"output": "e"}
    )
    last = (await events_of(store, "s"))[-1].data
    assert isinstance(last, TurnSaved)
    assert last.recount == (1, 1)
    assert last.counter == "spy"
    assert len(calls) == 4  # 2 new + 2 re-counted, once
    calls.clear()
    await store.token_buffer("s", token_counter=Spy()).asave_context(
        {"input": "f"}, {"output": "g"}
    )
    assert len(calls) == 2  # same scheme: only the new messages


async def test_limit_below_the_reply_primer_empties_the_buffer(store: eventmem.Store) -> None:
    # LangChain raises IndexError here (it pops from an empty list); eventmem keeps nothing.
    mem = store.token_buffer("s", max_token_limit=0)
    await mem.asave_context({"input": "hi"}, {"output": "hello"})
    assert await store.messages("s") == []
    assert len(await events_of(store, "s")) == 1


# -- invariant 1: immutability is enforced by the database --------------------------------

INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


@pytest.mark.postgres_sample(2)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}' WHERE position = 1",
        "UPDATE events SET session_id = 'other'",
        "DELETE FROM events WHERE position = 1",
        "DELETE FROM events",
    ],
)
async def test_the_database_refuses_to_change_events(target: str, statement: str) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    with raw_database(target) as db:
        with pytest.raises(INTEGRITY_ERRORS, match="immutable"):
            db.execute(statement)
        assert db.execute("SELECT count(*) FROM events") == [(1,)]
        assert db.execute("SELECT session_id, data FROM events")[0][0] == "s"


async def test_the_database_refuses_a_gap_in_positions(target: str) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    insert = (
        "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
        " VALUES ('s', ?, 'clear', 0, '{}', ?)"
    )
    with raw_database(target) as db:
        with pytest.raises(INTEGRITY_ERRORS, match="gapless"):
            db.execute(insert, (3, bytes(32)))
        with pytest.raises(INTEGRITY_ERRORS):
            db.execute(insert, (1, bytes(32)))
        assert db.execute("SELECT count(*) FROM events") == [(1,)]


# -- persistence ------------------------------------------------------------------------


@pytest.mark.postgres_slow
async def test_a_new_process_sees_the_same_buffers(target: str) -> None:
    async with eventmem.open(target) as store:
        for session in ["alpha", "beta"]:
            mem = store.token_buffer(session, max_token_limit=40)
            for i in range(5):
                await mem.asave_context({"input": f"{session} {i}"}, {"output": f"ok {i}"})
        expected = {s: await store.token_buffer(s).abuffer_as_str() for s in ["alpha", "beta"]}

    script = textwrap.dedent(
        f"""
        import json, eventmem
        with eventmem.connect({target!r}) as store:
            out = {{s: store.token_buffer(s).load_memory_variables({{}})["history"]
                   for s in store.sessions()}}
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == expected


# -- invariant 6: a save costs O(new + pruned), a load O(view) ---------------------------


class CountingCounter:
    """OpenAI counting that records how many messages it was asked to count."""

    def __init__(self) -> None:
        self._inner = OpenAIChatCounter("gpt-4o")
        self.name = self._inner.name
        self.overhead = self._inner.overhead
        self.calls = 0

    def count_message(self, message: Message) -> int:
        self.calls += 1
        return self._inner.count_message(message)


async def test_a_save_counts_only_its_new_messages(store: eventmem.Store, depth: str) -> None:
    counter = CountingCounter()
    mem = store.token_buffer("s", max_token_limit=500, token_counter=counter)
    for i in range(300 if depth == "full" else 60):
        before = counter.calls
        await mem.asave_context({"input": f"message {i} " * 5}, {"output": "fine"})
        assert counter.calls - before == 2


async def test_statements_per_save_do_not_grow_with_history(
    store: eventmem.Store, depth: str
) -> None:
    mem = store.token_buffer("s", max_token_limit=120)
    last = 600 if depth == "full" else 150

    async def traced_save(i: int) -> list[str]:
        async with traced_statements(store) as statements:
            await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
        assert statements  # the tracing saw the save
        return [s for s in statements if not s.startswith("PRAGMA")]

    for i in range(20):
        await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
    early = await traced_save(20)
    for i in range(21, last):
        await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
    late = await traced_save(last)
    assert len(late) == len(early)
    assert not any("FROM events" in s for s in early + late)  # the history is never read


async def test_pruning_deletes_a_bounded_range_of_rows(store: eventmem.Store) -> None:
    # A delete open below would walk every dead row PostgreSQL has not vacuumed yet:
    # per-save cost would grow with the history while autovacuum is off or behind.
    mem = store.token_buffer("s", max_token_limit=60)
    history = store.history("h", max_tokens=60)
    await history.append([eventmem.Message(role="system", content="Be brief.")])
    deletes: list[str] = []
    for i in range(12):
        async with traced_statements(store) as statements:
            await mem.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
            await history.append([eventmem.Message(role="human", content=f"question {i}")])
        deletes += [s for s in statements if s.startswith("DELETE FROM view_messages")]
    assert deletes  # the saves pruned
    assert all("seq >= " in s and "seq < " in s for s in deletes), deletes


async def test_the_projection_keeps_only_the_visible_rows(
    store: eventmem.Store, target: str, depth: str
) -> None:
    mem = store.token_buffer("s", max_token_limit=60, return_messages=True)
    for i in range(500 if depth == "full" else 100):
        await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
    loaded = (await mem.aload_memory_variables({}))["history"]
    with raw_database(target) as db:
        [(rows,)] = db.execute("SELECT count(*) FROM view_messages")
    assert rows == len(loaded) < 20


# -- the buffer cache never serves a stale buffer -----------------------------------------


async def test_a_save_under_a_new_counter_prunes_by_the_new_counts(
    store: eventmem.Store, target: str
) -> None:
    # The cached view knows the old counts; the save recounts the buffer and must prune
    # by what it recounted (verify folds the events and compares the stored head).
    mem = store.token_buffer("s", max_token_limit=60, model="gpt-4o")
    for i in range(3):
        await mem.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        await mem.aload_memory_variables({})  # the view, with its counts, is cached
    other = store.token_buffer("s", max_token_limit=60, model="gpt-3.5-turbo-0301")
    await other.asave_context({"input": "a longer question " * 3}, {"output": "and answer"})
    assert (await store.verify()).ok
    async with eventmem.open(target, cache_sessions=0) as fresh:
        assert await fresh.messages("s") == await store.messages("s")


async def test_writes_from_another_connection_are_seen(target: str) -> None:
    async with eventmem.open(target) as a, eventmem.open(target) as b:
        mem_a = a.token_buffer("s", max_token_limit=40, return_messages=True)
        mem_b = b.token_buffer("s", max_token_limit=40, return_messages=True)
        for i in range(6):
            writer, reader = (mem_a, mem_b) if i % 2 else (mem_b, mem_a)
            await writer.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
            await reader.aload_memory_variables({})  # warms the reader's cache
            assert await a.messages("s") == await b.messages("s")
            assert (await a.messages("s"))[-1].content == f"a{i}"
        await mem_b.aclear()
        assert await a.messages("s") == []


async def test_cached_loads_equal_uncached_loads(target: str) -> None:
    async with eventmem.open(target) as cached, eventmem.open(target, cache_sessions=0) as raw:
        mem = cached.agent_token_buffer("s", max_token_limit=60, format_as_tools=True)
        for i in range(30):
            action = {
                "tool": "t",
                "tool_input": {},
                "log": "",
                "tool_call_id": f"c{i}",
                "message_log": [Message(role="ai", content="")],
            }
            if i % 4 == 0:
                await mem.arecord_step(action, i)
            await mem.asave_context(
                {"input": f"q{i}"},
                {"output": f"a{i}", "intermediate_steps": [(action, i)]}
                if i % 4 == 0
                else {"output": f"a{i}", "intermediate_steps": []},
            )
            if i % 7 == 6:
                await mem.aclear()
            assert await cached.messages("s") == await raw.messages("s")


async def test_the_cache_is_bounded(target: str) -> None:
    async with eventmem.open(target, cache_sessions=5) as store:
        for i in range(50):
            await store.token_buffer(f"s{i}").asave_context({"input": "x"}, {"output": "y"})
            await store.messages(f"s{i}")
        backend = store._backend
        assert isinstance(backend, BatchedBackend)  # both backends share the cache
        assert len(backend._cache) == 5


async def test_live_steps_left_by_a_dead_run_are_kept_but_abandoned(
    store: eventmem.Store,
) -> None:
    action = {"tool": "search", "log": "looking", "message_log": []}
    crashed = store.agent_token_buffer("run")
    await crashed.arecord_step(action, "half-done")  # then the process died
    fresh = store.agent_token_buffer("run")
    await fresh.arecord_step(action, "done")
    await fresh.asave_context(
        {"input": "go"}, {"output": "ok", "intermediate_steps": [(action, "done")]}
    )
    events = await events_of(store, "run")
    turn = events[-1].data
    assert isinstance(turn, TurnSaved)
    assert (turn.steps, turn.abandoned) == ((2,), (1,))
    contents = [m.content for m in await store.messages("run")]
    assert contents == ["go", "done", "ok"]
    assert "half-done" in {m.content for e in events for m in getattr(e.data, "messages", ())}


@pytest.mark.parametrize(
    "options",
    [
        {"durability": "fast"},
        {"busy_timeout": -1},
        {"cache_sessions": "many"},
        {"cache_sessions": 1.5},
        {"read_only": "yes"},
    ],
)
async def test_bad_open_options_are_refused(target: str, options: dict[str, Any]) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        await eventmem.open(target, **options)
    assert not target_exists(target)


def _open_connections(target: str) -> int:
    """The connections open to the store: this process's descriptors of the SQLite file,
    or the server's backends of this process's eventmem connections (other processes, a
    second test worker say, share the server)."""
    if backend_of(target) == "sqlite":
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _points_to(fd, target))
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventmem'"
            " AND datname = current_database() AND client_port = ANY(%s)",
            (local_tcp_ports(),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _points_to(fd: Path, target: str) -> bool:
    try:
        return os.readlink(fd) == str(Path(target).resolve())
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
async def test_a_cancelled_close_still_closes_the_connection(target: str) -> None:
    # The report: `with anyio.move_on_after(0): await store.aclose()` left the connection
    # open (10 rounds, 10 idle backends) and psycopg warned when it was collected.
    async with eventmem.open(target):
        pass
    before = _open_connections(target)
    stores = []
    for _ in range(10):
        store = await eventmem.open(target)
        assert await store.count_events() == 0
        with anyio.move_on_after(0):
            await store.aclose()
        assert store.closed
        stores.append(store)  # kept: nothing may close them behind the test's back
    for _ in range(100):  # a server notices a closed connection a moment later
        if _open_connections(target) == before:
            break
        await anyio.sleep(0.05)
    assert _open_connections(target) == before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        stores.clear()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_a_close_cancelled_while_a_call_runs_still_closes(target: str) -> None:
    async with eventmem.open(target):
        pass
    before = _open_connections(target)
    store = await eventmem.open(target)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(store.verify)
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.aclose()
    assert store.closed
    for _ in range(100):
        if _open_connections(target) == before:
            break
        await anyio.sleep(0.05)
    assert _open_connections(target) == before


# -- the SQLite file itself (PostgreSQL's counterparts are in test_postgres.py) -----------


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
async def test_sqlite_durability_sets_the_sync_pragma(
    db_path: Path, durability: Literal["normal", "full"], level: int
) -> None:
    async with eventmem.open(db_path, durability=durability) as store:
        backend = store._backend
        assert isinstance(backend, SQLiteBackend)
        mode, sync = await backend._run(
            lambda conn: (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
            )
        )
    assert (mode, sync) == ("wal", level)


async def test_the_worker_runs_calls_in_order_and_finishes_a_cancelled_one() -> None:
    import threading
    import time

    from eventmem.store.worker import Worker

    worker = Worker()
    try:
        seen: list[int] = []

        def slow() -> None:
            time.sleep(0.2)
            seen.append(1)

        threads = {await worker.run(threading.get_ident) for _ in range(3)}
        assert len(threads) == 1
        assert threading.get_ident() not in threads
        with anyio.move_on_after(0.01):
            await worker.run(slow)
        assert seen == [1]  # the caller heard of its cancellation after the call ended
        with pytest.raises(ZeroDivisionError):
            await worker.run(lambda: 1 // 0)
        assert await worker.run(sum, [1, 2]) == 3
    finally:
        worker.stop()
