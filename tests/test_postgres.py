"""What only the PostgreSQL backend has: URLs and their passwords, an unreachable server,
schemas shared with other applications, several connections migrating one schema at
once, the database's own refusals, a lost connection, and moving a store between
SQLite and PostgreSQL. The contract every backend meets is tested in the other modules,
through the ``target``/``store`` fixtures."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

import eventmem
from eventmem.store.migrate import known_migrations
from eventmem.store.postgres import (
    SESSION_LOCK_CLASS,
    PostgresBackend,
    PostgresConnection,
    session_lock_key,
)
from tests.backends import POSTGRES_URL, drop_target, new_target, raw_database, schema_of
from tests.probes import target_exists

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("_postgres_server")]

OWN_TABLES = [
    "eventmem_migrations",
    "eventmem_settings",
    "events",
    "lg_checkpoints",
    "lg_values",
    "lg_writes",
    "sessions",
    "view_messages",
]


@pytest.fixture
def pg_target(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL URL naming a schema that does not exist yet (dropped afterwards)."""
    target = new_target("postgresql", tmp_path)
    yield target
    drop_target(target)


def _with_password(url: str) -> tuple[str, str]:
    """``url`` with a password in it (the test server's trust auth ignores it), and the
    password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return url, parts.password
    secret = "pw-s3cret-4711"
    user = parts.username or "postgres"
    netloc = f"{user}:{secret}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), secret


def _tables(target: str) -> list[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " ORDER BY 1",
                (schema_of(target),),
            )
        ]


def _backend_pid(store: eventmem.Store) -> int:
    backend = store._backend
    assert isinstance(backend, PostgresBackend)
    return int(backend._pg.raw.info.backend_pid)


def _terminate(pid: int) -> None:
    """Kill one server connection, as a restart or a network failure would."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        [(killed,)] = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'eventmem' AND datname = current_database()"
            " AND pid = %s AND pid <> pg_backend_pid()",
            (pid,),
        ).fetchall()
        assert killed
        # Wait until the server has let it go, so the next call surely meets a dead socket.
        deadline = time.monotonic() + 5
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.01)


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    ["bad-name;drop", "", "1st", "x" * 64, 'a"; DROP SCHEMA public; --', "naïve", "a b"],
)
@pytest.mark.parametrize("create", [True, False])
async def test_a_schema_that_is_not_a_plain_sql_name_is_refused(schema: str, create: bool) -> None:
    url = f"{POSTGRES_URL}?schema={urllib.parse.quote(schema)}"
    with pytest.raises(eventmem.InvalidInputError, match="schema"):
        await eventmem.open(url, create=create)
    assert not target_exists(f"{POSTGRES_URL}?schema={schema}")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ada:pw-s3cret-4711@127.0.0.1:notaport/test",
        "postgresql://ada:pw-s3cret-4711@127.0.0.1:99999/test",
        "postgresql://ada:pw-s3cret-4711@[::1/test",
    ],
)
async def test_a_malformed_url_is_invalid_input_without_its_password(url: str) -> None:
    with pytest.raises(eventmem.InvalidInputError) as caught:
        await eventmem.open(url)
    assert "pw-s3cret-4711" not in "".join(traceback.format_exception(caught.value))


async def test_an_unreachable_server_fails_fast_naming_the_url_without_its_password() -> None:
    url = "postgresql://ada:pw-s3cret-4711@127.0.0.1:1/test?schema=app"
    started = time.monotonic()
    with pytest.raises(eventmem.StorageError) as caught:
        await eventmem.open(url)
    assert time.monotonic() - started < 5
    assert "postgresql://ada@127.0.0.1:1/test?schema=app" in str(caught.value)
    assert "pw-s3cret-4711" not in "".join(traceback.format_exception(caught.value))


async def test_a_missing_database_is_a_storage_error_naming_it(pg_target: str) -> None:
    url = pg_target.replace("/test?", "/no_such_database_here?")
    with pytest.raises(eventmem.StorageError, match="no_such_database_here"):
        await eventmem.open(url)


async def test_the_password_never_shows(pg_target: str) -> None:
    url, secret = _with_password(pg_target)
    store = await eventmem.open(url)
    try:
        assert secret not in repr(store)
        assert schema_of(pg_target) in repr(store)
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
        with psycopg.connect(POSTGRES_URL, autocommit=True) as holder:
            # Another connection holds the session: the save times out with an error
            # that names the store.
            holder.execute("BEGIN")
            key = session_lock_key(schema_of(pg_target), "s")
            holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SESSION_LOCK_CLASS, key))
            await store.aclose()
            store = await eventmem.open(url, busy_timeout=0.2)
            with pytest.raises(eventmem.DatabaseLockedError) as caught:
                await store.token_buffer("s").asave_context({"input": "y"}, {"output": "z"})
        assert schema_of(pg_target) in str(caught.value)
        assert secret not in "".join(traceback.format_exception(caught.value))
        with pytest.warns(ResourceWarning) as warned:
            store.__del__()
        assert secret not in str(warned[0].message)
    finally:
        await store.aclose()


async def test_stores_in_two_schemas_of_one_database_are_separate(tmp_path: Path) -> None:
    first, second = new_target("postgresql", tmp_path), new_target("postgresql", tmp_path)
    try:
        async with eventmem.open(first) as a, eventmem.open(second) as b:
            await a.token_buffer("s").asave_context({"input": "in a"}, {"output": "x"})
            await b.token_buffer("s").asave_context({"input": "in b"}, {"output": "y"})
            assert [m.content for m in await a.messages("s")] == ["in a", "x"]
            assert [m.content for m in await b.messages("s")] == ["in b", "y"]
            assert (await a.verify()).ok
            assert (await b.verify()).ok
    finally:
        drop_target(first)
        drop_target(second)


# -- schemas that hold no store, or someone else's tables -------------------------------------


async def test_create_false_on_a_missing_schema_creates_nothing(pg_target: str) -> None:
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="no eventmem store"):
        await eventmem.open(pg_target, create=False)
    assert not target_exists(pg_target)


async def test_create_false_on_an_empty_schema_creates_nothing(pg_target: str) -> None:
    with raw_database(pg_target) as db:
        db.execute(f"CREATE SCHEMA {schema_of(pg_target)}")
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="no eventmem store"):
        await eventmem.open(pg_target, create=False)
    assert _tables(pg_target) == []


@pytest.mark.parametrize("create", [True, False])
async def test_a_schema_with_a_foreign_events_table_is_refused_untouched(
    pg_target: str, create: bool
) -> None:
    with raw_database(pg_target) as db:
        db.execute(f"CREATE SCHEMA {schema_of(pg_target)}")
        db.execute("CREATE TABLE events (id serial PRIMARY KEY, what text NOT NULL)")
        db.execute("INSERT INTO events (what) VALUES ('launch'), ('landing')")
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="something else"):
        await eventmem.open(pg_target, create=create)
    assert _tables(pg_target) == ["events"]
    with raw_database(pg_target) as db:
        assert db.execute("SELECT id, what FROM events ORDER BY id") == [
            (1, "launch"),
            (2, "landing"),
        ]


async def test_a_newer_schema_version_is_refused_on_postgres(pg_target: str) -> None:
    async with eventmem.open(pg_target):
        pass
    with raw_database(pg_target) as db:
        db.execute("INSERT INTO eventmem_migrations VALUES (99, 'future', '2031-01-01')")
    with pytest.raises(eventmem.SchemaVersionError, match="newer eventmem"):
        await eventmem.open(pg_target)
    with raw_database(pg_target) as db:
        newest = len(known_migrations("postgresql"))
        assert db.execute("SELECT version FROM eventmem_migrations ORDER BY 1") == [
            *((v,) for v in range(1, newest + 1)),
            (99,),
        ]


async def test_connections_opening_a_new_schema_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    for _ in range(3):
        target = new_target("postgresql", tmp_path)
        try:
            opened: list[eventmem.Store] = []

            async def open_one(target: str = target, opened: list[eventmem.Store] = opened) -> None:
                opened.append(await eventmem.open(target))

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(open_one)
            assert len(opened) == 6
            for store in opened:
                await store.aclose()
            with raw_database(target) as db:
                newest = len(known_migrations("postgresql"))
                assert db.execute("SELECT version FROM eventmem_migrations ORDER BY 1") == [
                    (v,) for v in range(1, newest + 1)
                ]
            assert _tables(target) == OWN_TABLES
        finally:
            drop_target(target)


# -- the database's own refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
        "UPDATE events SET hash = hash",
        "DELETE FROM events WHERE session_id = 's'",
    ],
)
async def test_the_server_refuses_to_change_events(store_pg: str, statement: str) -> None:
    with raw_database(store_pg) as db:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            db.execute(statement)
        assert db.execute("SELECT count(*) FROM events") == [(2,)]


async def test_the_triggers_guard_the_store_from_any_search_path(store_pg: str) -> None:
    events = sql.Identifier(schema_of(store_pg), "events")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("SET search_path TO public")
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="immutable"):
            conn.execute(sql.SQL("DELETE FROM {}").format(events))
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="gapless"):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (session_id, position, kind, recorded_at, data, hash)"
                    " VALUES ('s', 5, 'clear', 0, '{{}}', %s)"
                ).format(events),
                (bytes(32),),
            )
    async with eventmem.open(store_pg) as store:
        assert (await store.verify()).ok


@pytest.fixture
async def store_pg(pg_target: str) -> str:
    """``pg_target`` holding one session of two events."""
    async with eventmem.open(pg_target) as store:
        mem = store.token_buffer("s")
        await mem.asave_context({"input": "x"}, {"output": "y"})
        await mem.aclear()
    return pg_target


async def test_a_session_held_past_the_busy_timeout_is_a_locked_error(pg_target: str) -> None:
    key = session_lock_key(schema_of(pg_target), "s")
    async with eventmem.open(pg_target, busy_timeout=0.2) as store:
        mem = store.token_buffer("s")
        with psycopg.connect(POSTGRES_URL, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s, %s)", (SESSION_LOCK_CLASS, key))
            started = time.monotonic()
            with pytest.raises(eventmem.DatabaseLockedError):
                await mem.asave_context({"input": "x"}, {"output": "y"})
            assert time.monotonic() - started < 5
            await store.token_buffer("other").asave_context({"input": "x"}, {"output": "y"})
        await mem.asave_context({"input": "x"}, {"output": "y"})  # the lock went with it
        assert await store.version("s") == 1
        assert (await store.verify()).ok


async def test_durability_full_turns_synchronous_commit_on(pg_target: str) -> None:
    async with eventmem.open(pg_target, durability="full") as store:
        backend = store._backend
        assert isinstance(backend, PostgresBackend)
        setting = await backend._run(
            lambda conn: conn.execute("SHOW synchronous_commit").fetchone()[0]
        )
    assert setting == "on"


# -- a lost connection -------------------------------------------------------------------------


async def test_a_connection_lost_between_calls_costs_no_call(pg_target: str) -> None:
    """A server restart or failover between calls: the next call finds the connection
    dead before it sent a COMMIT, so it runs again on a new connection, once."""
    async with eventmem.open(pg_target) as store:
        mem = store.token_buffer("s", max_token_limit=40)
        for i in range(3):
            await mem.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
        for lost in range(3):
            _terminate(_backend_pid(store))
            await mem.asave_context({"input": f"r{lost}"}, {"output": f"b{lost}"})
        assert await store.version("s") == 6  # each save once, none twice
        assert (await store.messages("s"))[-1].content == "b2"
        assert (await store.verify()).ok


async def test_a_connection_lost_before_a_read_costs_no_call(pg_target: str) -> None:
    async with eventmem.open(pg_target) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
        _terminate(_backend_pid(store))
        assert await store.sessions() == ["s"]
        assert [e.position async for e in store.events("s")] == [1]


# -- moving a store between backends -----------------------------------------------------------


async def _fill(store: eventmem.Store) -> None:
    chat = store.token_buffer("chat", max_token_limit=60)
    agent = store.agent_token_buffer("agent", max_token_limit=200, format_as_tools=True)
    for i in range(8):
        await chat.asave_context({"input": f"question {i} ünïcode 🙂"}, {"output": f"answer {i}"})
        action = {"tool": "search", "tool_input": {"q": i}, "log": "", "tool_call_id": f"c{i}"}
        if i % 3 == 0:
            await agent.arecord_step(action, {"hits": [i, None]})
            steps = [(action, {"hits": [i, None]})]
        else:
            steps = []
        await agent.asave_context(
            {"input": f"task {i}"}, {"output": f"done {i}", "intermediate_steps": steps}
        )
        if i == 5:
            await chat.aclear()


async def _export(store: eventmem.Store) -> list[bytes]:
    return [line async for line in store.export()]


async def _chains(store: eventmem.Store) -> dict[str, list[tuple[int, str, str]]]:
    chains = {}
    for session in await store.sessions():
        chains[session] = [(e.position, e.kind, e.hash) async for e in store.events(session)]
    return chains


@pytest.mark.parametrize("origin", ["sqlite", "postgresql"])
async def test_an_export_moves_between_backends_and_back_unchanged(
    origin: str, tmp_path: Path
) -> None:
    other = "postgresql" if origin == "sqlite" else "sqlite"
    locations: list[str] = []
    for backend in (origin, other, origin):
        directory = tmp_path / str(len(locations))
        directory.mkdir()
        locations.append(new_target(backend, directory))
    try:
        async with eventmem.open(locations[0]) as first:
            await _fill(first)
            exported = await _export(first)
            chains = await _chains(first)
            buffers = {s: await first.messages(s) for s in await first.sessions()}
            past = await first.messages("agent", as_of=5)
        for location in locations[1:]:
            async with eventmem.open(location) as copy:
                assert await copy.import_events(exported) == (2, len(exported) - 2)
                assert (await copy.verify()).ok
                assert await _chains(copy) == chains
                assert {s: await copy.messages(s) for s in await copy.sessions()} == buffers
                assert await copy.messages("agent", as_of=5) == past
                again = await _export(copy)
            assert again == exported  # byte for byte, whichever backend wrote it
            exported = again
    finally:
        for location in locations:
            drop_target(location)


async def test_a_call_failing_outside_the_database_leaves_no_transaction_open(
    pg_target: str,
) -> None:
    async with eventmem.open(pg_target) as store:
        backend = store._backend
        assert isinstance(backend, PostgresBackend)

        def broken_read(conn: Any) -> None:
            conn.begin_read()  # a read-only snapshot ...
            raise LookupError("... then a bug, before its COMMIT")

        with pytest.raises(LookupError):
            await backend._run(broken_read)
        assert not backend._pg.in_transaction
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
        assert await store.version("s") == 1


def test_without_psycopg_a_url_names_the_extra_to_install() -> None:
    """A URL on an install without the postgres extra: a typed error naming the extra
    (and SQLite keeps working)."""
    script = (
        "import sys, anyio\n"
        "sys.modules['psycopg'] = None  # as if it were not installed\n"
        "import eventmem\n"
        "async def main():\n"
        "    try:\n"
        "        await eventmem.open('postgresql://u@127.0.0.1/test')\n"
        "    except eventmem.MissingDependencyError as e:\n"
        "        assert isinstance(e, ImportError) and 'eventmem[postgres]' in str(e), e\n"
        "    else:\n"
        "        raise AssertionError('opened')\n"
        "    async with eventmem.open(sys.argv[1]) as store:\n"
        "        await store.token_buffer('s').asave_context({'input': 'a'}, {'output': 'b'})\n"
        "anyio.run(main)\n"
    )
    with tempfile.TemporaryDirectory() as work:
        result = subprocess.run(
            [sys.executable, "-c", script, str(Path(work) / "fine.db")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr


async def test_a_connection_lost_after_commit_was_sent_is_not_run_again(
    pg_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply to COMMIT lost with the connection: the save may have committed, so it
    is reported as failed, never run a second time (which would save it twice)."""
    async with eventmem.open(pg_target) as store:
        memory = store.token_buffer("s")
        await memory.asave_context({"input": "first"}, {"output": "saved"})
        execute = PostgresConnection.execute

        def commit_then_lose_the_reply(
            conn: PostgresConnection, query: str, parameters: Any = ()
        ) -> Any:
            cursor = execute(conn, query, parameters)
            if query == "COMMIT":
                conn.raw.close()  # the server got the COMMIT; its reply never arrives
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return cursor

        monkeypatch.setattr(PostgresConnection, "execute", commit_then_lose_the_reply)
        with pytest.raises(eventmem.StorageError, match="connection"):
            await memory.asave_context({"input": "second"}, {"output": "committed once"})
        monkeypatch.undo()
        assert await store.version("s") == 2  # committed, and only once
        assert (await store.verify()).ok


def test_psycopg_errors_are_mapped_by_their_class() -> None:
    from psycopg import errors as pg

    from eventmem.errors import (
        DatabaseLockedError,
        DiskFullError,
        MigrationError,
        ReadOnlyDatabaseError,
        ReadOnlyStoreError,
        StorageError,
    )
    from eventmem.store.migrate import Migration, MigrationFailure
    from eventmem.store.postgres.errors import translate, translated

    assert type(translate(pg.LockNotAvailable("x"), "db")) is DatabaseLockedError
    assert type(translate(pg.DiskFull("x"), "db")) is DiskFullError
    readonly = pg.ReadOnlySqlTransaction("x")
    assert type(translate(readonly, "db")) is ReadOnlyDatabaseError
    assert type(translate(readonly, "db", read_only=True)) is ReadOnlyStoreError
    assert str(translate(pg.SyntaxError("x"), "db")) == "db: PostgreSQL error: x"
    assert str(translate(psycopg.OperationalError("x"), "db", connecting=True)) == (
        "cannot connect to db: x"
    )

    def fail_in_migration(driver_error: psycopg.Error) -> None:
        with translated("db"):
            try:
                raise driver_error
            except psycopg.Error as e:
                raise MigrationFailure(Migration(7, "seven", "")) from e

    with pytest.raises(MigrationError, match="migration 0007_seven failed") as raised:
        fail_in_migration(pg.SyntaxError("bad"))
    assert isinstance(raised.value.__cause__, pg.SyntaxError)
    with pytest.raises(StorageError, match="the connection failed"):
        fail_in_migration(psycopg.OperationalError("gone"))
