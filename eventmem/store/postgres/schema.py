"""PostgreSQL schema migrations: ``migrations/postgresql/NNNN_name.sql``.

The store lives in one PostgreSQL schema (``eventmem`` unless the URL names another),
which is the connection's whole search_path. Pending migrations run in one transaction
with their bookkeeping rows, under an advisory lock, so processes opening a new store at
once migrate it once. PostgreSQL's DDL is transactional: a failed migration leaves
nothing behind. The refusals are SQLite's: a newer schema, a gap in the history, or the
store's table names taken by something that is not an eventmem store.

It also checks and restores the triggers that keep the log immutable, as SQLite's
``eventmem.store.sqlite.migrations`` does: PostgreSQL can disable a trigger without dropping it
(``ALTER TABLE events DISABLE TRIGGER``), and that counts as missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg import sql

from eventmem.errors import NotAnEventmemDatabaseError, SchemaVersionError
from eventmem.store.migrate import (
    Migration,
    MigrationFailure,
    check_history,
    known_migrations,
    refuse_to_migrate,
)

__all__ = ["MIGRATION_LOCK", "apply_migrations", "restore_triggers", "trigger_findings"]

# pg_advisory_xact_lock(classid, objid) key of the migration lock ("EVMM", 0); sessions
# use another classid (see ``postgres.connection``), so the two never wait on each other.
MIGRATION_LOCK = (0x45564D4D, 0)
_OWN_TABLES = (
    "eventmem_migrations",
    "eventmem_settings",
    "events",
    "sessions",
    "view_messages",
    "lg_checkpoints",
    "lg_values",
    "lg_writes",
)


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
        raise MigrationFailure(migration) from e


# -- triggers ----------------------------------------------------------------------------

_FUNCTION = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION (\w+)\(\).*?AS \$\$(.*?)\$\$;", re.S)
_TRIGGER = re.compile(
    r"CREATE TRIGGER (\w+) (BEFORE|AFTER) ([A-Z ]+?) ON (\w+)\s+"
    r"FOR EACH (ROW|STATEMENT) EXECUTE FUNCTION (\w+)\(\);"
)
_TABLE = re.compile(r"CREATE TABLE (\w+)")
# pg_trigger.tgtype bits (PostgreSQL's include/catalog/pg_trigger.h)
_TYPE_BITS = {"ROW": 1, "BEFORE": 2, "INSERT": 4, "DELETE": 8, "UPDATE": 16, "TRUNCATE": 32}


@dataclass(frozen=True)
class _Trigger:
    table: str
    tgtype: int
    function: str
    statement: str


@cache
def _expected() -> tuple[dict[str, _Trigger], dict[str, tuple[str, str]]]:
    """The triggers the migrations create, and their functions (name -> (body, CREATE
    statement)); a later definition of the same name replaces an earlier one."""
    triggers: dict[str, _Trigger] = {}
    functions: dict[str, tuple[str, str]] = {}
    for migration in known_migrations("postgresql"):
        for match in _FUNCTION.finditer(migration.sql):
            functions[match[1]] = (match[2], match[0])
        for match in _TRIGGER.finditer(migration.sql):
            name, when, events, table, each, function = match.groups()
            tgtype = _TYPE_BITS[when] + (each == "ROW")
            tgtype += sum(_TYPE_BITS[event] for event in events.split(" OR "))
            triggers[name] = _Trigger(table, tgtype, function, match[0])
    return triggers, functions


@cache
def _tables() -> tuple[str, ...]:
    """The tables the migrations create."""
    return tuple(
        sorted({name for m in known_migrations("postgresql") for name in _TABLE.findall(m.sql)})
    )


def trigger_findings(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """What differs between the triggers on the store's tables and the schema's: one
    sentence each (empty when the log is protected as the migrations left it)."""
    triggers, functions = _expected()
    # By eventmem's own tables (index lookups): a join over pg_class by schema costs a
    # scan of every row version in the catalog, which grows with each dropped table when
    # nothing vacuums it.
    stored = {
        (name, table): rest
        for name, table, *rest in conn.execute(
            "SELECT t.tgname, r.name, t.tgenabled, t.tgtype,"
            " t.tgqual IS NULL AND t.tgnargs = 0 AND t.tgattr::text = '',"
            " p.proname, p.pronamespace = to_regnamespace(quote_ident(%(schema)s)), p.prosrc"
            " FROM unnest(%(tables)s::text[]) AS r(name)"
            " JOIN pg_trigger AS t"
            " ON t.tgrelid = to_regclass(format('%%I.%%I', %(schema)s::text, r.name))"
            " JOIN pg_proc AS p ON p.oid = t.tgfoid"
            " WHERE NOT t.tgisinternal",
            {"schema": schema, "tables": list(_tables())},
        )
    }
    findings = []
    for name, trigger in triggers.items():
        found = stored.get((name, trigger.table))
        if found is None:
            findings.append(f"the trigger {name} on {trigger.table} is missing")
            continue
        enabled, tgtype, plain, function, own_schema, body = found
        wanted = (trigger.tgtype, True, trigger.function, True, functions[trigger.function][0])
        if (tgtype, plain, function, own_schema, body) != wanted:
            findings.append(f"the trigger {name} on {trigger.table} differs from eventmem's schema")
        elif enabled not in ("O", "A"):  # D: disabled; R: fires only on replicas
            findings.append(f"the trigger {name} on {trigger.table} is disabled")
    for name, table in stored:
        if triggers.get(name, _Trigger("", 0, "", "")).table != table:
            findings.append(f"the trigger {name} on {table} is not eventmem's")
    return findings


def restore_triggers(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Inside the caller's transaction: make the triggers the schema's again (drop the
    store's triggers, re-create the schema's functions and triggers, enabled); return
    what was wrong."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATION_LOCK)
    findings = trigger_findings(conn, schema)
    if findings:
        for name, table in conn.execute(
            "SELECT t.tgname, c.relname FROM pg_trigger AS t"
            " JOIN pg_class AS c ON c.oid = t.tgrelid"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND NOT t.tgisinternal",
            (schema,),
        ).fetchall():
            conn.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(name), sql.Identifier(table))
            )
        triggers, functions = _expected()
        for _, statement in functions.values():
            replacing = statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
            conn.execute(replacing.encode())
        for trigger in triggers.values():
            conn.execute(trigger.statement.encode())
    return findings
