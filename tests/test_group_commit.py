"""Group commit (both backends): who commits the queue, and callers cancelled while queued.

A batch is held on the connection thread (``write_batch`` wrapped to wait for a signal)
so that callers queue behind it deterministically.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import eventmem
import eventmem.store.batched
from eventmem.projection import fold
from eventmem.store.postgres import backend as pg_backend
from eventmem.store.sqlite.backend import SQLiteBackend
from eventmem.store.writes import write_batch

pytestmark = pytest.mark.anyio


def _held_batches(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[int]]:
    """Make each batch wait for ``release`` on the connection thread; record batch sizes.
    (A lone SQLite write would run on the caller's thread: here every batch goes to the
    connection thread, the path under test; tests/test_inline_writes.py has the other.)"""
    monkeypatch.setattr(SQLiteBackend, "_write_inline", lambda self, ops: None)
    release = threading.Event()
    sizes: list[int] = []

    def holding(write: Callable[..., Any]) -> Callable[..., Any]:
        def held(conn: Any, cache: Any, ops: list[Any]) -> Any:
            sizes.append(len(ops))
            release.wait(10)
            return write(conn, cache, ops)

        return held

    monkeypatch.setattr(eventmem.store.batched, "write_batch", holding(write_batch))
    # PostgreSQL runs its batches through a function of its own (sent at once or
    # pipelined, see eventmem.store.postgres.at_once).
    monkeypatch.setattr(pg_backend, "_write_batch", holding(pg_backend._write_batch))
    return release, sizes


async def _until(condition: Callable[[], bool]) -> None:
    # polled: some conditions change on the connection thread
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


def _assert_idle(backend: Any) -> None:
    """Nobody holds the turn to commit and nothing is queued."""
    assert not backend._committing
    assert backend._queue == []


async def _said(store: eventmem.Store, session: str) -> list[str]:
    return [m.text for m in await store.messages(session)]


async def _assert_consistent(store: eventmem.Store) -> None:
    report = await store.verify()
    assert report.ok, report.problems
    for session in await store.sessions():
        events = [e async for e in store.events(session)]
        assert [e.position for e in events] == list(range(1, len(events) + 1))
        assert fold([e.data for e in events]).messages == await store.messages(session)


async def test_writes_queued_behind_a_batch_share_the_next_one(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with eventmem.open(target) as store:
        release, sizes = _held_batches(monkeypatch)
        backend: Any = store._backend  # private: the queue is what is under test

        async def save(session: str) -> None:
            await store.token_buffer(session).asave_context({"input": "q"}, {"output": "a"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(save, "first")
            await _until(lambda: sizes == [1])  # the first save's batch is on the thread
            for n in range(5):
                tg.start_soon(save, f"queued{n}")
            await _until(lambda: len(backend._queue) == 5)
            release.set()
        assert sizes == [1, 5]
        assert await store.count_events() == 6
        _assert_idle(backend)


async def test_callers_cancelled_while_queued_never_write_nor_stall_the_rest(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with eventmem.open(target) as store:
        release, sizes = _held_batches(monkeypatch)
        backend: Any = store._backend
        scopes = {n: anyio.CancelScope() for n in range(4)}
        done: list[int] = []

        async def save(n: int) -> None:
            with scopes[n]:
                await store.token_buffer(f"s{n}").asave_context({"input": "q"}, {"output": "a"})
                done.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(save, 0)
            await _until(lambda: sizes == [1])
            for n in (1, 2, 3):
                tg.start_soon(save, n)
            await _until(lambda: len(backend._queue) == 3)
            scopes[1].cancel()  # the first in the queue: the one the turn would pass to
            scopes[3].cancel()
            await _until(lambda: len(backend._queue) == 1)
            release.set()
        assert sorted(done) == [0, 2]
        assert sizes == [1, 1]
        assert await _said(store, "s1") == []
        assert await _said(store, "s3") == []
        assert await _said(store, "s2") == ["q", "a"]
        _assert_idle(backend)
        await _assert_consistent(store)


async def test_a_caller_cancelled_after_being_handed_the_turn_passes_it_on(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with eventmem.open(target) as store:
        release, sizes = _held_batches(monkeypatch)
        backend: Any = store._backend
        queued: list[asyncio.Future[None]] = []
        pass_turn = backend._pass_turn

        def pass_turn_then_cancel() -> None:
            pass_turn()
            if not queued[0].done():
                # handed the turn, and cancelled before it could run
                queued[0].cancel()

        monkeypatch.setattr(backend, "_pass_turn", pass_turn_then_cancel)

        async def save(n: int) -> None:
            await store.token_buffer(f"s{n}").asave_context({"input": "q"}, {"output": "a"})

        first = asyncio.ensure_future(save(0))
        await _until(lambda: sizes == [1])
        queued.extend(asyncio.ensure_future(save(n)) for n in (1, 2, 3))
        await _until(lambda: len(backend._queue) == 3)
        release.set()
        with anyio.fail_after(10):  # a lost turn would leave them waiting for ever
            await first
            results = await asyncio.gather(*queued, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [None, None]
        assert sizes == [1, 2]
        assert await _said(store, "s1") == []
        assert await _said(store, "s2") == await _said(store, "s3") == ["q", "a"]
        _assert_idle(backend)
        await _assert_consistent(store)


async def test_a_failed_batch_reaches_every_caller_in_it_and_the_next_batch_runs(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with eventmem.open(target) as store:
        backend: Any = store._backend
        release = threading.Event()
        calls: list[int] = []

        def second_fails(write: Any) -> Any:
            def batch(conn: Any, cache: Any, ops: list[Any]) -> Any:
                calls.append(len(ops))
                if len(calls) == 1:
                    release.wait(10)
                elif len(calls) == 2:
                    raise eventmem.StorageError("simulated failure of the whole batch")
                return write(conn, cache, ops)

            return batch

        monkeypatch.setattr(eventmem.store.batched, "write_batch", second_fails(write_batch))
        monkeypatch.setattr(pg_backend, "_write_batch", second_fails(pg_backend._write_batch))
        monkeypatch.setattr(SQLiteBackend, "_write_inline", lambda self, ops: None)
        outcomes: dict[int, str] = {}

        async def save(n: int) -> None:
            try:
                await store.token_buffer(f"s{n}").asave_context({"input": "q"}, {"output": "a"})
                outcomes[n] = "ok"
            except eventmem.StorageError:
                outcomes[n] = "failed"

        async with anyio.create_task_group() as tg:
            tg.start_soon(save, 0)
            await _until(lambda: calls == [1])
            for n in (1, 2):
                tg.start_soon(save, n)
            await _until(lambda: len(backend._queue) == 2)
            release.set()
        assert outcomes == {0: "ok", 1: "failed", 2: "failed"}
        assert calls == [1, 2]
        await save(3)
        assert outcomes[3] == "ok"
        assert await store.count_events() == 2
        _assert_idle(backend)
        await _assert_consistent(store)
