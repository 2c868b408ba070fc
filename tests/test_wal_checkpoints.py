"""WAL checkpoints run on a thread of their own (eventmem.store.sqlite.wal), not inside a
caller's save: the WAL still stays bounded, and closing still leaves no -wal behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import eventmem
from eventmem.store.sqlite.backend import SQLiteBackend
from eventmem.store.sqlite.wal import RESTART_FRAMES, WRITES_PER_CHECKPOINT, WalCheckpointer

pytestmark = pytest.mark.anyio

_TEXT = "a message long enough to fill a few pages of the write-ahead log " * 20


def _checkpointer(store: eventmem.Store) -> WalCheckpointer:
    backend = store._backend
    assert isinstance(backend, SQLiteBackend)
    assert backend._checkpointer is not None
    return backend._checkpointer


async def _autocheckpoint(store: eventmem.Store) -> int:
    backend = store._backend
    assert isinstance(backend, SQLiteBackend)
    pages: int = await backend._run(
        lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    return pages


@pytest.mark.slow
async def test_saves_with_pauses_keep_the_wal_small(db_path: Path) -> None:
    """An agent's saves come with pauses: each checkpoint catches up, and the next save
    starts the WAL over, so it never holds much more than one interval's pages."""
    async with eventmem.open(db_path) as store:
        assert await _autocheckpoint(store) == 0  # a commit never copies the WAL itself
        memory = store.token_buffer("s", max_token_limit=500)
        sizes = []
        for interval in range(6):
            for i in range(WRITES_PER_CHECKPOINT):
                await memory.asave_context({"input": f"{interval}.{i} {_TEXT}"}, {"output": _TEXT})
            time.sleep(0.3)  # the checkpoint runs while nothing is written
            sizes.append(Path(f"{db_path}-wal").stat().st_size)
        assert _checkpointer(store).checkpoints >= 5
        assert _checkpointer(store).restarts == 0
        # The WAL is reused from its start: its size is that of one interval, not six.
        assert sizes[-1] < 2 * sizes[0]
        assert (await store.verify()).ok
    assert not Path(f"{db_path}-wal").exists()  # the last close checkpointed and removed it
    async with eventmem.open(db_path, read_only=True) as store:
        assert await store.version("s") == 6 * WRITES_PER_CHECKPOINT


@pytest.mark.slow
async def test_saves_that_never_pause_still_keep_the_wal_bounded(db_path: Path) -> None:
    async with eventmem.open(db_path) as store:
        memory = store.token_buffer("s", max_token_limit=500)
        page_size = await store._backend._run(  # type: ignore[attr-defined]
            lambda conn: conn.execute("PRAGMA page_size").fetchone()[0]
        )
        # About 10 pages a save: three times the restart threshold in all, back to back.
        for i in range(3 * RESTART_FRAMES // 10):
            await memory.asave_context({"input": f"{i} {_TEXT}"}, {"output": _TEXT})
        assert _checkpointer(store).restarts >= 1
        assert Path(f"{db_path}-wal").stat().st_size < 2 * RESTART_FRAMES * page_size
        assert (await store.verify()).ok


async def test_a_short_lived_store_starts_no_checkpoint_thread(db_path: Path) -> None:
    async with eventmem.open(db_path) as store:
        await store.token_buffer("s").asave_context({"input": "hi"}, {"output": "hello"})
        assert _checkpointer(store)._thread is None
    assert not os.path.exists(f"{db_path}-wal")


async def test_a_read_only_store_has_no_checkpointer(db_path: Path) -> None:
    async with eventmem.open(db_path) as store:
        await store.token_buffer("s").asave_context({"input": "hi"}, {"output": "hello"})
    async with eventmem.open(db_path, read_only=True) as store:
        backend = store._backend
        assert isinstance(backend, SQLiteBackend)
        assert backend._checkpointer is None
