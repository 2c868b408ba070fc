"""``Store.export_to``: the export file written a page at a time is byte for byte the one
``Store.export`` yields line by line, at every page boundary, for a session or all."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import eventmem
from eventmem import api

pytestmark = pytest.mark.anyio


async def _fill(store: eventmem.Store, sessions: int, turns: int) -> None:
    for s in range(sessions):
        memory = store.token_buffer(f"s{s}", max_token_limit=50)
        for t in range(turns):
            await memory.asave_context({"input": f"q{t}"}, {"output": f"a{t}"})


async def _lines(store: eventmem.Store, session: str | None = None) -> bytes:
    return b"".join([line async for line in store.export(session)])


@pytest.mark.parametrize("events", [0, 1, 6, 7, 12, 13])
async def test_export_to_writes_the_lines_export_yields(
    store: eventmem.Store, events: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "_EXPORT_PAGE", 6)  # page boundaries at 6 and 12
    await _fill(store, 1, events)
    sink = io.BytesIO()
    pages: list[int] = []
    assert await store.export_to(sink, progress=pages.append) == events
    assert sink.getvalue() == await _lines(store)
    assert pages == [n for n in (6, 12) if n < events] + ([events] if events else [])


async def test_export_to_of_one_session(store: eventmem.Store) -> None:
    await _fill(store, 3, 4)
    sink = io.BytesIO()
    assert await store.export_to(sink, "s1") == 4
    assert sink.getvalue() == await _lines(store, "s1")
    copy = io.BytesIO(sink.getvalue())
    async with eventmem.open(":memory:") as other:
        assert await other.import_events(copy) == (1, 4)


async def test_a_failing_sink_ends_the_export(store: eventmem.Store, tmp_path: Path) -> None:
    await _fill(store, 2, 3)

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await store.export_to(Full())
    # the snapshot ended: the store goes on writing and exporting
    await _fill(store, 1, 1)
    assert await store.export_to(io.BytesIO()) == 7


async def test_export_to_refuses_a_bad_session_id(store: eventmem.Store) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        await store.export_to(io.BytesIO(), "")
