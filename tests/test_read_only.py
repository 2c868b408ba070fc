"""``eventmem.open(path, read_only=True)``: reads everything, writes nothing, anywhere.

On both backends every write raises :class:`eventmem.ReadOnlyStoreError` and nothing is
written (the database itself refuses too: SQLite's ``mode=ro``, PostgreSQL's
``default_transaction_read_only``). A SQLite store opens read-only on read-only media,
in read-only directories and from unwritable files, and leaves no ``-wal`` or ``-shm``
behind. The command's reading commands open stores read-only.

Root ignores permission bits, so the permission cases run in a subprocess that drops to
the user "nobody", and read-only media are a read-only bind mount (tests/files.py).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

import eventmem
from eventmem.store.migrate import known_migrations
from tests.backends import POSTGRES_URL, backend_of, new_target, raw_database, schema_of
from tests.files import (
    make_store,
    read_as_nobody,
    read_only_mount,
    snapshot,
    world_readable_directory,
)
from tests.test_cli import _populate, assert_clean_error, run

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"


async def _export(store: eventmem.Store) -> list[bytes]:
    return [line async for line in store.export()]


def _rows(target: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store's tables, read around eventmem."""
    with raw_database(target) as raw:
        return {
            table: sorted(raw.execute(f"SELECT * FROM {table}"), key=repr)
            for table in ("events", "sessions", "view_messages", "eventmem_migrations")
        }


async def test_a_read_only_store_reads_everything_and_refuses_every_write(
    target: str, tmp_path: Path
) -> None:
    await _populate(target)  # three sessions, one an agent's
    rows = _rows(target)
    files = snapshot(tmp_path) if backend_of(target) == "sqlite" else {}
    async with eventmem.open(target) as writable:
        export = await _export(writable)
        buffers = {s: await writable.messages(s) for s in await writable.sessions()}

    async with eventmem.open(target, read_only=True) as store:
        assert store.read_only
        assert {s: await store.messages(s) for s in await store.sessions()} == buffers
        assert await _export(store) == export
        assert (await store.verify()).ok
        assert (await store.stats()).sessions == 3
        assert len(await store.session_summaries()) == 3
        assert [e.position async for e in store.events("chat")] == [1, 2, 3]
        assert len(await store.messages("chat", as_of=1)) == 2
        assert await store.replay("chat", max_token_limit=10**6)
        chat = store.token_buffer("chat", max_token_limit=60)
        assert (await chat.aload_memory_variables({}))["history"]
        agent = store.agent_token_buffer("agent", max_token_limit=300)
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "save": lambda: chat.asave_context({"input": "more"}, {"output": "refused"}),
            "clear": lambda: chat.aclear(),
            "live step": lambda: agent.arecord_step(eventmem.Action("search", "q"), "found"),
            "rebuild": lambda: store.rebuild(),
            "import": lambda: store.import_events(export),
        }
        for what, write in writes.items():
            with pytest.raises(eventmem.ReadOnlyStoreError, match="read-only") as caught:
                await write()
            assert isinstance(caught.value, eventmem.ReadOnlyDatabaseError), what
        assert {s: await store.messages(s) for s in await store.sessions()} == buffers

    assert _rows(target) == rows  # nothing was written
    if backend_of(target) == "sqlite":
        assert snapshot(tmp_path) == files  # byte for byte, and no -wal or -shm left


def test_the_blocking_api_opens_read_only_too(target: str) -> None:
    anyio.run(_populate, target)
    rows = _rows(target)
    with eventmem.connect(target) as writable:
        events = writable.count_events()
    with eventmem.connect(target, read_only=True) as store:
        assert store.read_only
        assert store.count_events() == events
        with pytest.raises(eventmem.ReadOnlyStoreError):
            store.token_buffer("chat").save_context({"input": "x"}, {"output": "y"})
        with pytest.raises(eventmem.ReadOnlyStoreError):
            store.rebuild()
    assert _rows(target) == rows


async def test_the_database_itself_refuses_writes_of_a_read_only_store(target: str) -> None:
    # Past eventmem's own refusal (a write through the connection, as a bug might make
    # one): SQLite's mode=ro, PostgreSQL's read-only session refuse it, with the same error.
    async with eventmem.open(target):
        pass
    rows = _rows(target)
    async with eventmem.open(target, read_only=True) as store:
        backend: Any = store._backend
        if backend_of(target) == "postgresql":
            setting = await backend._run(
                lambda c: c.execute("SHOW default_transaction_read_only").fetchone()[0]
            )
            assert setting == "on"
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await backend._run(
                lambda c: c.execute(
                    "INSERT INTO eventmem_migrations VALUES (99, 'sneaky', 'now')"
                ).fetchall()
            )
        assert await store.count_events() == 0
    assert _rows(target) == rows


async def test_a_read_only_store_sees_what_others_commit(target: str) -> None:
    async with eventmem.open(target) as writer:
        memory = writer.token_buffer("s")
        await memory.asave_context({"input": "one"}, {"output": "1"})
        async with eventmem.open(target, read_only=True) as reader:
            assert await reader.count_events() == 1
            await memory.asave_context({"input": "two"}, {"output": "2"})
            assert await reader.count_events() == 2
            assert (await reader.messages("s"))[-1].content == "2"


async def test_read_only_never_creates_a_store(target: str, tmp_path: Path) -> None:
    with pytest.raises(eventmem.StorageError):
        await eventmem.open(target, read_only=True)
    if backend_of(target) == "sqlite":
        assert list(tmp_path.iterdir()) == []
        empty = tmp_path / "empty.db"
        empty.write_bytes(b"")
        with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="empty"):
            await eventmem.open(empty, read_only=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
        assert empty.read_bytes() == b""
    else:
        with psycopg.connect(POSTGRES_URL) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                (schema_of(target),),
            ).fetchone()
        assert found is None  # not even the schema


def _schema_1_store(backend: str, tmp_path: Path) -> str:
    """A store as the first eventmem left it (schema version 1)."""
    if backend == "sqlite":
        path = tmp_path / "old.db"
        shutil.copyfile(FIXTURES / "schema1.db", path)
        return str(path)
    target = new_target("postgresql", tmp_path)
    first = known_migrations("postgresql")[0]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        schema = sql.Identifier(schema_of(target))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        conn.execute(first.sql.encode())
        conn.execute(
            "INSERT INTO eventmem_migrations VALUES (1, %s, '2026-01-01T00:00:00.000Z')",
            (first.name,),
        )
    return target


@pytest.fixture
def old_store(backend: str, tmp_path: Path) -> Iterator[str]:
    from tests.backends import drop_target

    target = _schema_1_store(backend, tmp_path)
    yield target
    drop_target(target)


def _history(target: str) -> list[tuple[Any, ...]]:
    with raw_database(target) as raw:
        return raw.execute("SELECT version, name FROM eventmem_migrations ORDER BY 1")


async def test_read_only_never_migrates(old_store: str, tmp_path: Path) -> None:
    files = snapshot(tmp_path)
    with pytest.raises(eventmem.ReadOnlyStoreError, match=r"schema version 1.*not migrated"):
        await eventmem.open(old_store, read_only=True)
    assert _history(old_store) == [(1, "initial")]
    if backend_of(old_store) == "sqlite":
        assert snapshot(tmp_path) == files


# -- SQLite files: read-only media, directories and files -------------------------------


def _refusals(path: Path) -> None:
    async def check() -> None:
        async with eventmem.open(path, read_only=True) as store:
            assert await store.sessions() == ["kept", "exported"]
            assert await store.count_events() == 10
            assert (await store.verify()).ok
            with pytest.raises(eventmem.ReadOnlyStoreError):
                await store.token_buffer("kept").asave_context({"input": "x"}, {"output": "y"})

    anyio.run(check)


def test_a_store_on_read_only_media_opens_read_only(tmp_path: Path) -> None:
    make_store(tmp_path / "a.db")
    before = snapshot(tmp_path)
    with read_only_mount(tmp_path) as media:
        _refusals(media / "a.db")
        # Writable, it cannot be opened at all (SQLite cannot make its -wal and -shm):
        # the error says how to read it.
        with pytest.raises(eventmem.StorageError, match="read_only=True"):
            anyio.run(eventmem.open, media / "a.db")
    assert snapshot(tmp_path) == before


def test_a_crashed_store_on_read_only_media_is_read_with_its_wal(tmp_path: Path) -> None:
    from tests.files import crashed_copy

    make_store(tmp_path / "a.db")
    crashed_copy(tmp_path / "a.db", tmp_path / "crashed", session="kept", turns=2)
    before = snapshot(tmp_path / "crashed")
    with read_only_mount(tmp_path / "crashed") as media:

        async def count() -> int:
            async with eventmem.open(media / "a.db", read_only=True) as store:
                return await store.count_events()

        assert anyio.run(count) == 12  # the 2 events only in the WAL too
    assert snapshot(tmp_path / "crashed") == before


def test_a_read_only_file_in_a_read_only_directory_opens_read_only() -> None:
    # 0444 in 0555, as an ordinary user: it could not be opened at all before.
    with world_readable_directory() as directory:
        make_store(directory / "a.db")
        (directory / "a.db").chmod(0o444)
        directory.chmod(0o555)
        before = snapshot(directory)
        seen = read_as_nobody(directory / "a.db")
        assert seen == {
            "read_only": True,
            "sessions": ["kept", "exported"],
            "events": 10,
            "ok": True,
            "refused": "ReadOnlyStoreError",
        }
        assert snapshot(directory) == before


def test_a_read_only_file_in_a_writable_directory_leaves_no_wal_or_shm(tmp_path: Path) -> None:
    with world_readable_directory() as directory:
        make_store(directory / "a.db")
        (directory / "a.db").chmod(0o444)
        directory.chmod(0o777)  # nobody may create files here
        before = snapshot(directory)
        assert read_as_nobody(directory / "a.db")["events"] == 10
        assert snapshot(directory) == before  # no a.db-wal, no a.db-shm
    # And as root, who may write it: still nothing left behind.
    make_store(tmp_path / "a.db")
    (tmp_path / "a.db").chmod(0o444)
    before = snapshot(tmp_path)
    _refusals(tmp_path / "a.db")
    assert snapshot(tmp_path) == before


def test_a_writable_store_opened_read_only_leaves_no_file(tmp_path: Path) -> None:
    make_store(tmp_path / "a.db")
    before = snapshot(tmp_path)
    _refusals(tmp_path / "a.db")
    assert snapshot(tmp_path) == before


def test_a_store_another_connection_holds_keeps_its_files(tmp_path: Path) -> None:
    # The read-only store's -wal/-shm cleanup never removes what another connection uses.
    path = tmp_path / "a.db"
    make_store(path)

    async def both() -> None:
        async with eventmem.open(path, read_only=True) as reader, eventmem.open(path) as writer:
            await writer.token_buffer("kept").asave_context({"input": "a"}, {"output": "b"})
            await reader.aclose()
            assert Path(f"{path}-wal").exists()
            assert Path(f"{path}-shm").exists()
            assert await writer.count_events() == 11
        assert not Path(f"{path}-wal").exists()  # the writer, closing last, removed them

    anyio.run(both)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 11
    conn.close()


# -- the command's reading commands open read-only ---------------------------------------

READING = [
    ["sessions"],
    ["log", "DB", "kept"],
    ["buffer", "DB", "kept"],
    ["verify"],
    ["export"],
    ["stats"],
]


def _command(args: list[str], db: str) -> list[str]:
    if "DB" in args:
        return [db if a == "DB" else a for a in args]
    return [args[0], db]


@pytest.mark.fast_sample(2)
@pytest.mark.parametrize("args", READING, ids=[a[0] for a in READING])
def test_reading_commands_work_on_read_only_media(tmp_path: Path, args: list[str]) -> None:
    make_store(tmp_path / "a.db")
    before = snapshot(tmp_path)
    with read_only_mount(tmp_path) as media:
        result = run(*_command(args, str(media / "a.db")), cwd=media)
        assert result.returncode == 0, result
    assert snapshot(tmp_path) == before


def test_rebuild_on_read_only_media_fails_cleanly(tmp_path: Path) -> None:
    make_store(tmp_path / "a.db")
    with read_only_mount(tmp_path) as media:
        result = run("rebuild", str(media / "a.db"), cwd=media)
        assert_clean_error(result, 1)


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize("args", READING, ids=[a[0] for a in READING])
def test_reading_commands_never_migrate(old_store: str, tmp_path: Path, args: list[str]) -> None:
    files = snapshot(tmp_path)
    command = _command(args, old_store)
    if command[0] in ("log", "buffer"):
        command[2] = "support-7"
    result = run(*command, cwd=tmp_path)
    assert_clean_error(result, 1)
    assert "not migrated" in result.stderr
    assert _history(old_store) == [(1, "initial")]
    if backend_of(old_store) == "sqlite":
        assert snapshot(tmp_path) == files
