"""PostgreSQL schema migrations: ``migrations/postgresql/NNNN_name.sql``.

The store lives in one PostgreSQL schema (``eventmem`` unless the URL names another),
which is the connection's whole search_path. Pending migrations run in one transaction
with their bookkeeping rows, under an advisory lock, so processes opening a new store at
once migrate it once. PostgreSQL's DDL is transactional: a failed migration leaves
nothing behind. The refusals are SQLite's: a newer schema, a gap in the history, or the
store's table names taken by something that is not an eventmem store.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from eventmem.errors import MigrationError, NotAnEventmemDatabaseError, SchemaVersionError
from eventmem.store.migrate import Migration, check_history, known_migrations, refuse_to_migrate

__all__ = ["MIGRATION_LOCK", "apply_migrations"]

# pg_advisory_xact_lock(classid, objid) key of the migration lock ("EVMM", 0); sessions
# use another classid (see postgres.py), so the two never wait on each other.
MIGRATION_LOCK = (0x45564D4D, 0)
_OWN_TABLES = ("eventmem_migrations", "events", "sessions", "view_messages")


def _applied_versions(conn: psycopg.Connection[Any], schema: str) -> list[int] | None:
    """Versions recorded in the schema, or None where eventmem never created its store."""
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = ANY(%s)",
            (schema, list(_OWN_TABLES)),
        )
    }
    if "eventmem_migrations" not in tables:
        if tables:
            raise NotAnEventmemDatabaseError(
                f"schema {schema!r} has tables named {sorted(tables)} but no eventmem schema "
                "history; they belong to something else, so eventmem refuses to use them "
                "(choose another schema with ?schema=NAME in the URL)"
            )
        return None
    applied = [row[0] for row in conn.execute("SELECT version FROM eventmem_migrations ORDER BY 1")]
    if not applied and tables - {"eventmem_migrations"}:
        raise SchemaVersionError(
            f"schema {schema!r} has eventmem tables but its schema history is empty "
            "(missing migration 1); it was modified outside eventmem"
        )
    return applied


def apply_migrations(
    conn: psycopg.Connection[Any], schema: str, *, create: bool = True, migrate: bool = True
) -> int:
    """Bring the store in ``schema`` to the newest version; return it.

    ``conn`` is in autocommit mode with its search_path set to ``schema``. With
    ``create=False`` a schema holding no store is refused, and nothing is created; with
    ``migrate=False`` (a read-only store) so is a store with migrations pending.
    """
    known = known_migrations("postgresql")
    # Checked once without a lock (an up-to-date store takes no lock, so a read-only
    # role can open it), then again under the lock before migrating.
    applied = _applied_versions(conn, schema)
    if applied is None and not create:
        raise NotAnEventmemDatabaseError(
            f"there is no eventmem store in schema {schema!r} (it was opened to read an "
            "existing store, so nothing was created)"
        )
    check_history(applied or [], len(known))
    if applied is not None and len(applied) == len(known):
        return len(known)
    if not migrate:
        raise refuse_to_migrate(applied or [], len(known))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        applied = _applied_versions(conn, schema) or []
        check_history(applied, len(known))
        for migration in known[len(applied) :]:
            _apply_one(conn, migration)
    return len(known)


def _apply_one(conn: psycopg.Connection[Any], migration: Migration) -> None:
    """Run one migration inside the caller's transaction, with its bookkeeping row."""
    try:
        with conn.transaction():  # a savepoint: the error below names this migration
            # No parameters: psycopg sends the script as one simple query, statements
            # and function bodies as written.
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO eventmem_migrations (version, name, applied_at)"
                " VALUES (%s, %s, to_char(now() AT TIME ZONE 'UTC',"
                ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'))',
                (migration.version, migration.name),
            )
    except psycopg.Error as e:
        if isinstance(e, psycopg.OperationalError):
            raise  # a lost connection or a lock timeout: translated like any storage error
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name} failed and was rolled back: {e}"
        ) from e
