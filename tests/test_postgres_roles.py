"""What narrower PostgreSQL roles can do with a store (docs/postgres.md#permissions)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

import eventmem
from tests.backends import POSTGRES_URL, check_postgres, drop_target, new_target, schema_of

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    """A store with one saved turn in session "s", made by the schema's owner."""
    check_postgres()
    url = new_target("postgresql", tmp_path)
    async with eventmem.open(url) as store:
        memory = store.token_buffer("s")
        await memory.asave_context({"input": "hello"}, {"output": "hi"})
    yield url
    drop_target(url)


@pytest.fixture
def roles(store_url: str) -> Iterator[dict[str, str]]:
    """A reader and a writer role on the store's schema, dropped afterwards."""
    schema = schema_of(store_url)
    suffix = uuid.uuid4().hex[:8]
    reader, writer = f"em_reader_{suffix}", f"em_writer_{suffix}"
    grants = [
        f"CREATE ROLE {reader} LOGIN",
        f"CREATE ROLE {writer} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {reader}, {writer}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
        f"GRANT SELECT, INSERT ON {schema}.events TO {writer}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.sessions, {schema}.view_messages"
        f" TO {writer}",
        f"GRANT SELECT ON {schema}.eventmem_migrations, {schema}.eventmem_settings TO {writer}",
    ]
    base = POSTGRES_URL.split("://", 1)[1].split("@", 1)[1]
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for statement in grants:
                admin.execute(statement.encode())
        yield {
            role: f"postgresql://{name}@{base}?schema={schema}"
            for role, name in (("reader", reader), ("writer", writer))
        }
    finally:  # roles are the server's, not the schema's: never leave them behind
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for name in (reader, writer):
                admin.execute(
                    f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}')"
                    f" THEN DROP OWNED BY {name}; DROP ROLE {name}; END IF; END $$".encode()
                )


async def test_a_reading_role_reads_and_audits_but_cannot_write(
    store_url: str, roles: dict[str, str]
) -> None:
    async with eventmem.open(roles["reader"]) as store:
        memory = store.token_buffer("s")
        assert (await memory.aload_memory_variables({}))["history"] == "Human: hello\nAI: hi"
        assert (await store.verify()).ok
        assert len([line async for line in store.export()]) == 3
        with pytest.raises(eventmem.ReadOnlyDatabaseError):
            await memory.asave_context({"input": "more"}, {"output": "refused"})
        with pytest.raises(eventmem.ReadOnlyDatabaseError):
            await store.rebuild()
    async with eventmem.open(store_url) as store:
        assert await store.version("s") == 1  # nothing was written


async def test_a_writing_role_saves_but_cannot_edit_the_log_or_rebuild(
    store_url: str, roles: dict[str, str]
) -> None:
    async with eventmem.open(roles["writer"]) as store:
        memory = store.token_buffer("s", max_token_limit=8)
        await memory.asave_context({"input": "more"}, {"output": "saved"})
        await memory.aclear()
        assert await store.version("s") == 3
        with pytest.raises(eventmem.ReadOnlyDatabaseError):
            await store.rebuild()
    user = roles["writer"].split("://", 1)[1].split("@", 1)[0]
    with psycopg.connect(POSTGRES_URL, user=user, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema_of(store_url)}".encode())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM events")
    async with eventmem.open(store_url) as store:
        assert (await store.verify()).ok


def test_roles_granted_before_schema_8_still_open_the_upgraded_store(tmp_path: Path) -> None:
    """Schema 8 added a table every open reads: the roles that could read the log are
    granted it by the migration, or an upgrade would lock them out."""
    from psycopg import sql

    from eventmem.store.migrate import known_migrations

    check_postgres()
    url = new_target("postgresql", tmp_path)
    schema = schema_of(url)
    reader = f"em_old_reader_{uuid.uuid4().hex[:8]}"
    base = POSTGRES_URL.split("://", 1)[1].split("@", 1)[1]
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            admin.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            older = known_migrations("postgresql")[:7]
            for migration in older:  # the store as schema 7 left it
                admin.execute(migration.sql.encode())
                admin.execute(
                    "INSERT INTO eventmem_migrations VALUES (%s, %s, '2026-11-01')",
                    (migration.version, migration.name),
                )
            for statement in (
                f"CREATE ROLE {reader} LOGIN",
                f"GRANT USAGE ON SCHEMA {schema} TO {reader}",
                f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}",
            ):
                admin.execute(statement.encode())
        eventmem.connect(url).close()  # the owner upgrades it
        with eventmem.connect(
            f"postgresql://{reader}@{base}?schema={schema}", read_only=True
        ) as store:
            assert store.sessions() == []
            assert store.verify().ok
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{reader}')"
                f" THEN DROP OWNED BY {reader}; DROP ROLE {reader}; END IF; END $$".encode()
            )
        drop_target(url)
