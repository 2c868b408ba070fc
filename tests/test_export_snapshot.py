"""An export taken while other connections write is a consistent prefix of every session.

Pages of an export are read one after another; writers on other connections commit
between them. In PostgreSQL a transaction can commit a lower id after another committed
a higher one, so pages by id outside one snapshot could pass an event: the export would
have a gap and no import would take it. Every backend must export a view that imports
and verifies, whatever is written meanwhile.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import eventmem
import eventmem.api
from eventmem.store.head import HEAD_COLUMNS
from tests.backends import check_postgres, drop_target, new_target, raw_database

pytestmark = pytest.mark.anyio


async def test_an_export_during_concurrent_writes_imports_and_verifies(
    target: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventmem.api, "_EXPORT_PAGE", 5)  # many pages, many gaps to fall in
    sessions = [f"s{n}" for n in range(12)]
    async with AsyncExitStack() as stack:
        exporter = await stack.enter_async_context(eventmem.open(target))
        # Writers on connections of their own, so their transactions overlap.
        writers = [await stack.enter_async_context(eventmem.open(target)) for _ in range(4)]
        for n, session in enumerate(sessions):
            memory = writers[n % 4].token_buffer(session, max_token_limit=60)
            await memory.asave_context({"input": "first"}, {"output": "turn"})
        done = anyio.Event()

        async def keep_writing(n: int, session: str) -> None:
            memory = writers[n % 4].token_buffer(session, max_token_limit=60)
            n = 0
            while not done.is_set():
                n += 1
                await memory.asave_context({"input": f"q{n}"}, {"output": f"a{n}"})

        lines: list[bytes] = []
        async with anyio.create_task_group() as tg:
            for n, session in enumerate(sessions):
                tg.start_soon(keep_writing, n, session)
            await anyio.sleep(0.05)
            async for line in exporter.export():
                lines.append(line)
                await anyio.lowlevel.checkpoint()  # let the writers commit between pages
            done.set()

    assert len(lines) > 2 + len(sessions)
    copy = new_target(backend, tmp_path / "copy")
    (tmp_path / "copy").mkdir()
    try:
        async with eventmem.open(copy) as imported:
            assert await imported.import_events(lines) == (len(sessions), len(lines) - 2)
            report = await imported.verify()
            assert report.ok, report.problems
    finally:
        drop_target(copy)


async def test_an_export_is_the_log_as_it_was_when_it_started(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events committed while the export reads its pages are not in it (so an export
    under writers that never pause still ends)."""
    monkeypatch.setattr(eventmem.api, "_EXPORT_PAGE", 2)
    async with eventmem.open(target) as exporter, eventmem.open(target) as writer:
        memory = writer.token_buffer("s", max_token_limit=60)
        for n in range(5):
            await memory.asave_context({"input": f"q{n}"}, {"output": f"a{n}"})
        lines = []
        async for line in exporter.export():
            lines.append(line)
            if len(lines) == 2:  # the header and the first event: one page read
                for n in range(5, 9):
                    await memory.asave_context({"input": f"q{n}"}, {"output": f"a{n}"})
        assert await exporter.count_events() == 9
    assert len(lines) == 2 + 5  # header, the five events of the start, end


async def test_a_postgresql_export_never_passes_an_event_committed_after_its_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made deterministic: a transaction holding a lower id commits after the
    first page was read past it, and its session moves on. PostgreSQL only: SQLite's one
    writer at a time cannot interleave like this."""
    check_postgres()
    monkeypatch.setattr(eventmem.api, "_EXPORT_PAGE", 2)
    target, scratch = new_target("postgresql", tmp_path), new_target("postgresql", tmp_path)
    try:
        # Session "x"'s first save, made elsewhere: its rows are copied in by hand below.
        async with eventmem.open(scratch) as other:
            await other.token_buffer("x").asave_context({"input": "x1"}, {"output": "x1"})
        with raw_database(scratch) as raw:
            x_rows = {
                table: raw.execute(f"SELECT {columns} FROM {table} WHERE session_id = 'x'")
                for table, columns in _COPIED.items()
            }
        async with eventmem.open(target) as store:
            b = store.token_buffer("b")
            await b.asave_context({"input": "b1"}, {"output": "b1"})  # id 1
            with raw_database(target) as held:
                held.execute("BEGIN")
                for table, rows in x_rows.items():  # id 2, not committed yet
                    marks = ", ".join("?" * len(rows[0]))
                    for row in rows:
                        held.execute(
                            f"INSERT INTO {table} ({_COPIED[table]}) VALUES ({marks})", row
                        )
                await b.asave_context({"input": "b2"}, {"output": "b2"})  # id 3, committed
                export = store.export()
                lines = [await anext(export) for _ in range(3)]  # header, page 1: ids 1, 3
                held.execute("COMMIT")
            await store.token_buffer("x").asave_context({"input": "x2"}, {"output": "x2"})
            lines += [line async for line in export]
        copy = new_target("postgresql", tmp_path)
        try:
            async with eventmem.open(copy) as imported:
                assert await imported.import_events(lines) == (1, 2)  # b's two events
                assert (await imported.verify()).ok
        finally:
            drop_target(copy)
    finally:
        drop_target(target)
        drop_target(scratch)


_COPIED = {
    "events": "session_id, position, kind, recorded_at, data, hash",
    "sessions": HEAD_COLUMNS,
    "view_messages": "session_id, seq, tokens, position, idx, message",
}
