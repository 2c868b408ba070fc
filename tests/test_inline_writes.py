"""A lone SQLite write runs on the caller's thread (no thread hop) when it can start at
once, and goes to the connection's thread otherwise; cached loads read the version on
the caller's thread. Either way the outcome is the same, and the event loop never waits
for another connection's lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import eventmem
import eventmem.store.sqlite.backend as sqlite_backend
from eventmem.store.writes import write_batch
from tests.probes import traced_statements

pytestmark = pytest.mark.anyio


def _record_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each batch of writes ran on, in order."""
    threads: list[str] = []

    def recorded(conn: Any, cache: Any, ops: list[Any]) -> Any:
        threads.append(threading.current_thread().name)
        return write_batch(conn, cache, ops)

    monkeypatch.setattr(sqlite_backend, "write_batch", recorded)
    monkeypatch.setattr(eventmem.store.batched, "write_batch", recorded)
    return threads


async def test_a_lone_save_runs_on_the_callers_thread(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _record_threads(monkeypatch)
    async with eventmem.open(db_path) as store:
        memory = store.token_buffer("chat", max_token_limit=60)
        for i in range(5):
            await memory.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
        assert threads == [threading.current_thread().name] * 5
        assert (await store.verify()).ok
    async with eventmem.open(db_path) as store:  # what it wrote is what a new store reads
        assert [m.text for m in await store.messages("chat")][-2:] == ["q4", "a4"]


async def test_concurrent_saves_still_share_a_batch_on_the_connection_thread(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _record_threads(monkeypatch)
    async with eventmem.open(db_path) as store:

        async def save(session: str) -> None:
            await store.token_buffer(session).asave_context({"input": "q"}, {"output": "a"})

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(save, f"s{n}")
        assert await store.count_events() == 20
        assert "eventmem-connection" in threads
        assert len(threads) < 20


async def test_a_save_behind_another_connections_lock_waits_off_the_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _record_threads(monkeypatch)
    async with eventmem.open(db_path) as store:
        memory = store.token_buffer("chat")
        await memory.asave_context({"input": "first"}, {"output": "one"})
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write lock
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            started = time.monotonic()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as saver:
                    saver.start_soon(memory.asave_context, {"input": "second"}, {"output": "two"})
                    await anyio.sleep(0.3)
                    ticks_then = ticks
                    (seen,) = other.execute("SELECT count(*) FROM events").fetchone()
                    other.execute("ROLLBACK")
            tg.cancel_scope.cancel()
        other.close()
        assert seen == 1  # it waited for the lock...
        assert ticks_then >= 10  # ...while the loop ran on
        assert time.monotonic() - started >= 0.3
        assert await store.version("chat") == 2
        assert threads[-1] == "eventmem-connection"
        assert (await store.verify()).ok


async def test_a_refused_inline_save_writes_nothing_and_the_next_one_works(db_path: Path) -> None:
    async with eventmem.open(db_path, max_save_bytes=10_000) as store:
        memory = store.token_buffer("chat")
        with pytest.raises(eventmem.InputTooLargeError):
            await memory.asave_context({"input": "x" * 20_000}, {"output": "y"})
        assert await store.count_events() == 0
        await memory.asave_context({"input": "q"}, {"output": "a"})
        assert await store.version("chat") == 1


async def test_a_cached_load_sees_another_connections_write(db_path: Path) -> None:
    async with eventmem.open(db_path) as first, eventmem.open(db_path) as second:
        await first.token_buffer("chat").asave_context({"input": "q1"}, {"output": "a1"})
        mine = first.token_buffer("chat")
        assert [m.text for m in await first.messages("chat")] == ["q1", "a1"]
        await second.token_buffer("chat").asave_context({"input": "q2"}, {"output": "a2"})
        loaded = await mine.aload_memory_variables({})
        assert "q2" in loaded["history"]
        assert "a2" in loaded["history"]


async def test_saves_back_to_back_send_no_pragma_and_prune_from_the_cached_counts(
    db_path: Path,
) -> None:
    # The busy timeout an inline write needs (0) stays set between inline writes, and
    # the counts of the messages a save prunes come from the cached view.
    async with eventmem.open(db_path) as store:
        memory = store.token_buffer("chat", max_token_limit=40)
        for i in range(3):
            await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
            await memory.aload_memory_variables({})
        async with traced_statements(store) as statements:
            for i in range(3, 8):
                await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
                await memory.aload_memory_variables({})
        assert any(s.startswith("DELETE FROM view_messages") for s in statements)  # it pruned
        # At most the switch after the probe's own call on the connection's thread and
        # back at its end: none per save (two a save before).
        assert len([s for s in statements if s.startswith("PRAGMA")]) <= 2
        assert not [s for s in statements if "SELECT tokens" in s]
        assert (await store.verify()).ok


async def test_a_write_on_the_connection_thread_after_inline_ones_waits_for_the_lock(
    db_path: Path,
) -> None:
    # Inline writes leave the busy timeout at 0; the connection's thread sets the
    # store's again before its statements, so a batch behind a lock waits, not fails.
    async with eventmem.open(db_path, busy_timeout=10) as store:
        memory = store.token_buffer("chat")
        await memory.asave_context({"input": "q"}, {"output": "a"})  # inline: timeout 0
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")

        async def release() -> None:
            await anyio.sleep(0.3)
            other.execute("ROLLBACK")

        async with anyio.create_task_group() as tg:
            tg.start_soon(release)
            await memory.asave_context({"input": "q2"}, {"output": "a2"})  # waits, then writes
        other.close()
        assert await store.version("chat") == 2


async def test_a_batch_of_saves_to_one_session_reads_no_count_it_wrote(db_path: Path) -> None:
    # Saves queued together on one session: each later one prunes messages an earlier
    # one of the same transaction added, by the counts that one wrote.
    async with eventmem.open(db_path) as store:
        memory = store.token_buffer("chat", max_token_limit=40)
        await memory.asave_context({"input": "q"}, {"output": "a"})
        async with traced_statements(store) as statements, anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(
                    memory.asave_context, {"input": f"question {i}"}, {"output": f"answer {i}"}
                )
        assert len([s for s in statements if s.startswith("INSERT INTO sessions")]) == 20
        assert len([s for s in statements if s == "COMMIT"]) < 20  # batched
        # Only the rows the save before the batch wrote are read (no view was loaded).
        assert len([s for s in statements if "SELECT tokens" in s]) <= 2
        assert (await store.verify()).ok
    async with eventmem.open(db_path, cache_sessions=0) as fresh:
        assert len(await fresh.messages("chat")) >= 2
