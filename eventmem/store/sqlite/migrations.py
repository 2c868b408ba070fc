"""SQLite's migrations runner, and the triggers its migrations create.

Applies ``migrations/sqlite/NNNN_name.sql`` (see ``eventmem.store.migrate``) on a plain
``sqlite3.Connection`` in autocommit mode, on the backend's worker thread. It also knows
the triggers the migrations create (the log's immutability): what a store must have,
checked on open and by verify, and restored on request.
"""

from __future__ import annotations

import sqlite3
from functools import cache

from eventmem.errors import MigrationError, NotAnEventmemDatabaseError, SchemaVersionError
from eventmem.store.migrate import (
    Migration,
    MigrationFailure,
    check_history,
    known_migrations,
    refuse_to_migrate,
)

__all__ = ["APPLICATION_ID", "apply_migrations", "restore_triggers", "trigger_findings"]

APPLICATION_ID = 0x45564D4D  # "EVMM", set by 0001_initial.sql


def _applied_versions(conn: sqlite3.Connection) -> list[int] | None:
    """Versions recorded in the database, or None for a database eventmem never touched."""
    tables = {
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    }
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if "eventmem_migrations" not in tables:
        if tables or app_id not in (0, APPLICATION_ID):
            raise NotAnEventmemDatabaseError(
                "the file is a SQLite database of another application (it has tables "
                f"{sorted(tables)[:5]} but no eventmem schema); refusing to modify it"
            )
        return None
    if app_id != APPLICATION_ID:
        raise NotAnEventmemDatabaseError(
            f"the database's application_id is {app_id:#x}, not eventmem's; refusing to use it"
        )
    applied = [row[0] for row in conn.execute("SELECT version FROM eventmem_migrations ORDER BY 1")]
    if not applied and tables - {"eventmem_migrations", "sqlite_sequence"}:
        raise SchemaVersionError(
            "the database has eventmem tables but its schema history is empty (missing "
            "migration 1); it was modified outside eventmem"
        )
    return applied


def apply_migrations(conn: sqlite3.Connection, *, create: bool = True, migrate: bool = True) -> int:
    """Bring the database to the newest schema; return its version.

    With ``create=False`` a file without an eventmem schema (an empty one) is refused
    instead of being made into a store; with ``migrate=False`` (a read-only store) so is
    one with migrations pending, and nothing is written.
    """
    known = known_migrations()
    # Checked once without a lock (to refuse foreign files untouched, and to leave an
    # up-to-date file unlocked, so read-only files stay readable), then again under the
    # write lock, so two processes opening a new file at once migrate it once.
    applied = _applied_versions(conn)
    if applied is None and not create:
        raise NotAnEventmemDatabaseError(
            "the file is empty, not an eventmem store (it was opened with create=False, "
            "so it is left as it is)"
        )
    check_history(applied or [], len(known))
    if applied is not None and len(applied) == len(known):
        return len(known)
    if not migrate:
        raise refuse_to_migrate(applied or [], len(known))
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = _applied_versions(conn) or []
        check_history(applied, len(known))
        for migration in known[len(applied) :]:
            _apply_one(conn, migration)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(known)


def _statements(sql: str) -> list[str]:
    """Split a script into statements (trigger bodies keep their inner semicolons)."""
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()
    ):
        raise MigrationError(f"unterminated statement in migration: {pending.strip()[:80]}")
    return statements


def _apply_one(conn: sqlite3.Connection, migration: Migration) -> None:
    """Run one migration inside the caller's transaction, with its bookkeeping row."""
    try:
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO eventmem_migrations (version, name, applied_at)"
            " VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (migration.version, migration.name),
        )
    except sqlite3.Error as e:
        raise MigrationFailure(migration) from e


# -- triggers ----------------------------------------------------------------------------


def _quote_name(name: str) -> str:
    """An SQL identifier, quoted (a name read from the catalog may be anything)."""
    return '"' + name.replace('"', '""') + '"'


@cache
def _expected_triggers() -> dict[str, tuple[str, str]]:
    """name -> (table, CREATE statement) of every trigger the migrations leave, read
    from a database they built in memory (so a later migration that changes a trigger
    changes this too)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        apply_migrations(conn)
        rows = conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
    finally:
        conn.close()
    return {name: (table, sql) for name, table, sql in rows}


def _same_sql(a: str, b: str) -> bool:
    return a.split() == b.split()


def trigger_findings(conn: sqlite3.Connection) -> list[str]:
    """What differs between the store's triggers and the schema's: one sentence each
    (empty when the log is protected as the migrations left it)."""
    expected = _expected_triggers()
    stored = {
        name: (table, sql or "")
        for name, table, sql in conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        )
    }
    findings = []
    for name, (table, sql) in expected.items():
        if name not in stored:
            findings.append(f"the trigger {name} on {table} is missing")
        elif stored[name][0] != table or not _same_sql(stored[name][1], sql):
            findings.append(f"the trigger {name} on {table} differs from eventmem's schema")
    for name, (table, _) in stored.items():
        if name not in expected:
            findings.append(f"the trigger {name} on {table} is not eventmem's")
    return findings


def restore_triggers(conn: sqlite3.Connection) -> list[str]:
    """Inside the caller's write transaction: make the triggers the schema's again
    (drop foreign and changed ones, create the missing); return what was wrong."""
    findings = trigger_findings(conn)
    if findings:
        expected = _expected_triggers()
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {_quote_name(name)}")
        for _, sql in expected.values():
            conn.execute(sql)
    return findings
