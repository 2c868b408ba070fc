"""Schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order on open.

Pending files run in one transaction together with their rows in ``eventmem_migrations``,
so a database is always at exactly one schema version. A database whose history names a
version this eventmem does not know (written by a newer release) is refused, as is one
with a gap. Both dialects share the version numbers: version N is the same schema in
SQLite and PostgreSQL. This module applies SQLite's, on a plain ``sqlite3.Connection`` in
autocommit mode (the backend's worker thread); ``pg_schema`` applies PostgreSQL's.

It also knows the triggers the migrations create (the log's immutability): what a store
must have, checked on open and by verify, and restored on request.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # importlib.abc's copy is deprecated from 3.12 and gone in 3.14
    from importlib.abc import Traversable

from eventmem.errors import (
    MigrationError,
    NotAnEventmemDatabaseError,
    ReadOnlyStoreError,
    SchemaVersionError,
)

__all__ = [
    "APPLICATION_ID",
    "Dialect",
    "Migration",
    "apply_migrations",
    "check_history",
    "known_migrations",
    "refuse_to_migrate",
    "restore_triggers",
    "trigger_findings",
]

Dialect = Literal["sqlite", "postgresql"]

APPLICATION_ID = 0x45564D4D  # "EVMM", set by 0001_initial.sql
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


def _migrations_dir(dialect: Dialect) -> Traversable:
    # Installed wheels carry the files inside the package; a source checkout (or an
    # editable install) has them at the repository's top level.
    packaged = resources.files("eventmem") / "migrations"
    if packaged.is_dir():
        return packaged / dialect
    return Path(__file__).resolve().parents[2] / "migrations" / dialect


def known_migrations(dialect: Dialect = "sqlite") -> list[Migration]:
    """Every migration shipped with this eventmem for ``dialect``, in order."""
    found = []
    for entry in _migrations_dir(dialect).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"the bundled migrations are not numbered 1..n: {[m.version for m in found]}"
        )
    return found


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


def refuse_to_migrate(applied: list[int], newest: int) -> ReadOnlyStoreError:
    """The error for a store opened read-only that would need migrations first."""
    return ReadOnlyStoreError(
        f"the store has schema version {len(applied)}, older than this eventmem's {newest}, "
        "and was opened read-only, so it was not migrated (nothing was written); open it "
        "once for writing to bring it up to date (eventmem.open without read_only=True, "
        "or a command that writes, such as 'eventmem rebuild')"
    )


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


def check_history(applied: list[int], newest: int) -> None:
    """Refuse a schema history from a newer eventmem, or one with a gap."""
    if applied and max(applied) > newest:
        raise SchemaVersionError(
            f"the database has schema version {max(applied)}, written by a newer eventmem; "
            f"this eventmem knows versions up to {newest}. Upgrade eventmem to open it."
        )
    if applied != list(range(1, len(applied) + 1)):
        missing = sorted(set(range(1, max(applied) + 1)) - set(applied))
        raise SchemaVersionError(
            f"the database's schema history is missing migration(s) {missing}; "
            "it was modified outside eventmem"
        )


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
        if isinstance(e, sqlite3.OperationalError) and _is_lock_or_io(e):
            raise  # translated by the backend like any other storage error
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name} failed and was rolled back: {e}"
        ) from e


def _is_lock_or_io(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("locked", "busy", "readonly", "disk", "unable to open"))


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
