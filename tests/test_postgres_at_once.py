"""PostgreSQL's one-round-trip saves and loop-side version reads: a save to a session
the connection wrote last is one query, a stale head (another writer got in between)
is found by the log and the save lands once, values sent as literals read back as
they were, and a cached load's version is read from the loop, whose failures cost
nothing but its speed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import eventmem
from eventmem.projection import fold
from eventmem.store.postgres import PostgresBackend, loop_io
from eventmem.store.postgres import connection as pg_connection
from eventmem.store.postgres.loop_io import simple_query
from tests.backends import POSTGRES_URL, drop_target, new_target

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("_postgres_server")]


@pytest.fixture
def pg_target(tmp_path: Path) -> Iterator[str]:
    target = new_target("postgresql", tmp_path)
    yield target
    drop_target(target)


def _backend(store: eventmem.Store) -> PostgresBackend:
    backend = store._backend
    assert isinstance(backend, PostgresBackend)
    return backend


@contextmanager
def _queries(store: eventmem.Store) -> Iterator[list[str]]:
    """Every query the store's worker connection sends inside the block, from the
    worker's thread or from the loop (each one a round trip), as sent."""
    raw = _backend(store)._pg.raw
    sent: list[str] = []
    execute: Callable[..., Any] = raw.execute

    def traced(query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query.decode() if isinstance(query, bytes) else str(query))
        return execute(query, *args, **kwargs)

    async def traced_on_loop(pgconn: Any, query: bytes) -> Any:
        sent.append(query.decode())
        return await simple_query(pgconn, query)

    raw.execute = traced  # type: ignore[method-assign]
    pg_connection.simple_query = traced_on_loop  # type: ignore[attr-defined]
    try:
        yield sent
    finally:
        del raw.execute
        pg_connection.simple_query = simple_query  # type: ignore[attr-defined]


async def _assert_whole(store: eventmem.Store, session: str, events: int) -> None:
    stored = [e async for e in store.events(session)]
    assert [e.position for e in stored] == list(range(1, events + 1))
    assert fold([e.data for e in stored]).messages == await store.messages(session)
    report = await store.verify()
    assert report.ok, report.problems


async def test_a_save_to_a_session_it_wrote_last_is_one_query(pg_target: str) -> None:
    async with eventmem.open(pg_target) as store:
        mem = store.token_buffer("s", max_token_limit=80)
        for i in range(30):  # well past pruning: the counts it prunes are known
            await mem.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        await mem.aload_memory_variables({})  # the buffer is cached from here on
        for i in range(30, 40):
            with _queries(store) as sent:
                await mem.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
            assert len(sent) == 1, sent
            assert sent[0].startswith("BEGIN;\n")
            assert sent[0].endswith(";\nCOMMIT")
            with _queries(store) as sent:
                await mem.aload_memory_variables({})
            assert sent == []  # the version was read on the loop, the buffer cached
        await _assert_whole(store, "s", 40)


async def test_a_head_another_writer_moved_on_from_is_found_and_the_save_lands_once(
    pg_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session found written by another writer skips going at once for a moment.
    monkeypatch.setattr(pg_connection, "_CONTENDED_S", 0.0)
    async with eventmem.open(pg_target) as a, eventmem.open(pg_target) as b:
        mem_a = a.token_buffer("s", max_token_limit=60)
        mem_b = b.token_buffer("s", max_token_limit=60)
        events = 0
        for i in range(6):
            for _ in range(3):
                await mem_a.asave_context({"input": f"a{i}"}, {"output": f"x{events}"})
                events += 1
            await mem_b.asave_context({"input": f"b{i}"}, {"output": f"y{events}"})
            events += 1
            with _queries(a) as sent:  # a's known head is stale now
                await mem_a.asave_context({"input": f"a{i}!"}, {"output": f"z{events}"})
            events += 1
            assert len(sent) > 1  # refused at once, then written the usual way
        monkeypatch.setattr(pg_connection, "_CONTENDED_S", 60.0)
        await mem_b.asave_context({"input": "b"}, {"output": "once more"})
        await mem_a.asave_context({"input": "a"}, {"output": "found stale"})
        with _queries(a) as sent:
            await mem_a.asave_context({"input": "a"}, {"output": "the usual way"})
        assert len(sent) > 1  # its own head is known again, but the session is contended
        events += 3
        await _assert_whole(a, "s", events)
        loaded = (await mem_b.aload_memory_variables({}))["history"]
        assert loaded == (await mem_a.aload_memory_variables({}))["history"]
        assert loaded.endswith("the usual way")


TEXTS = [
    "it's a quote: ' and '' and '''",
    "backslashes \\ \\\\ \\x41 \\' E'\\n' \\0",
    "dollars $$ $1 $tag$ ? %s %% {} {{}}",
    "statements; COMMIT; ROLLBACK; -- a comment /* and this */\n;\nSELECT 1",
    "ünïcödé 🙂 \u2028 \u00a0 \t tabs \r\n newlines \x7f \x01",
    "a NUL \x00 inside",
    "x" * 20_000,
]


async def test_texts_sent_as_literals_read_back_as_they_were(pg_target: str) -> None:
    async with eventmem.open(pg_target) as store:
        history = store.history("h", max_tokens=100_000)
        await history.append([eventmem.Message(role="system", content="start")])
        for text in TEXTS:  # each append after the first goes at once
            with _queries(store) as sent:
                await history.append(
                    [eventmem.Message(role="human", content=text, name="n'ame\\")],
                )
            assert [q for q in sent if not q.startswith("PREPARE ")] == sent[-1:]
            assert sent[-1].startswith("BEGIN;\n")
        expected = ["start", *TEXTS]
        assert [m.content for m in await history.view()] == expected
        await _assert_whole(store, "h", len(expected))
    async with eventmem.open(pg_target) as fresh:  # no cache: read from the tables
        messages = await fresh.messages("h")
        assert [m.content for m in messages] == expected
        assert {m.name for m in messages[1:]} == {"n'ame\\"}


async def test_statements_deallocated_behind_its_back_are_prepared_again(
    pg_target: str,
) -> None:
    async with eventmem.open(pg_target) as store:
        mem = store.token_buffer("s", max_token_limit=80)
        for i in range(20):
            await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
        await backend_deallocates(store)
        await mem.asave_context({"input": "after"}, {"output": "deallocation"})
        with _queries(store) as sent:
            await mem.asave_context({"input": "and"}, {"output": "again"})
        assert len(sent) == 1
        # Deallocated before every save (a pooler handing out another server
        # connection each time): every save still lands, once.
        for i in range(6):
            await backend_deallocates(store)
            await mem.asave_context({"input": f"pooled {i}"}, {"output": f"a{i}"})
        assert (await mem.aload_memory_variables({}))["history"].endswith("AI: a5")
        await _assert_whole(store, "s", 28)


def _terminate(pid: int) -> None:
    """End one server connection, as a restart or a network failure would."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        [(ended,)] = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchall()
        assert ended
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.01)


async def test_a_cached_load_reads_its_version_from_the_loop(pg_target: str) -> None:
    async with eventmem.open(pg_target) as store, eventmem.open(pg_target) as other:
        mem = store.token_buffer("s", max_token_limit=200)
        await mem.asave_context({"input": "q0"}, {"output": "a0"})
        await mem.aload_memory_variables({})  # cached (and the version's statement ready)
        with _queries(store) as sent:
            assert (await mem.aload_memory_variables({}))["history"] == "Human: q0\nAI: a0"
        assert sent == []
        await other.token_buffer("s", max_token_limit=200).asave_context(
            {"input": "q1"}, {"output": "a1"}
        )  # another connection's write: the version read from the loop sees it
        loaded = (await mem.aload_memory_variables({}))["history"]
        assert loaded == "Human: q0\nAI: a0\nHuman: q1\nAI: a1"


async def test_a_connection_lost_before_a_cached_load_costs_it_a_hop_only(
    pg_target: str,
) -> None:
    async with eventmem.open(pg_target) as store, eventmem.open(pg_target) as other:
        mem = store.token_buffer("s", max_token_limit=200)
        await mem.asave_context({"input": "q0"}, {"output": "a0"})
        await mem.aload_memory_variables({})
        _terminate(_backend(store)._pg.raw.info.backend_pid)
        await other.token_buffer("s", max_token_limit=200).asave_context(
            {"input": "q1"}, {"output": "a1"}
        )
        loaded = (await mem.aload_memory_variables({}))["history"]
        assert loaded == "Human: q0\nAI: a0\nHuman: q1\nAI: a1"
        await mem.asave_context({"input": "q2"}, {"output": "a2"})
        assert (await mem.aload_memory_variables({}))["history"].endswith("AI: a2")
        await backend_deallocates(store)
        assert (await mem.aload_memory_variables({}))["history"].endswith("AI: a2")
        await mem.asave_context({"input": "q3"}, {"output": "a3"})
        assert (await mem.aload_memory_variables({}))["history"].endswith("AI: a3")
        await _assert_whole(store, "s", 4)


async def backend_deallocates(store: eventmem.Store) -> None:
    """eventmem's prepared statements go behind its back, as psycopg's DEALLOCATE ALL
    after a rollback does (psycopg's own statements are kept: psycopg forgets those
    itself then)."""

    def deallocate(conn: Any) -> None:
        for (name,) in conn.raw.execute(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'eventmem%'"
        ).fetchall():
            conn.raw.execute(f"DEALLOCATE {name}")

    await _backend(store)._run(deallocate)


async def test_a_loop_that_cannot_watch_sockets_leaves_every_call_to_the_worker(
    pg_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows' ProactorEventLoop has no add_reader: nothing may be tried on the loop.
    monkeypatch.setattr(loop_io, "_NO_READERS", (asyncio.AbstractEventLoop,))
    tried: list[bytes] = []

    async def refused(pgconn: Any, query: bytes) -> Any:
        tried.append(query)
        raise AssertionError("a query from the loop")

    monkeypatch.setattr(pg_connection, "simple_query", refused)
    monkeypatch.setattr(pg_connection, "prepared_query", refused)
    async with eventmem.open(pg_target) as store:
        mem = store.token_buffer("s", max_token_limit=60)
        for i in range(12):
            await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
            assert (await mem.aload_memory_variables({}))["history"].endswith(f"AI: a{i}")
        await _assert_whole(store, "s", 12)
    assert tried == []
