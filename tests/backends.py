"""The two backends the contract suite runs against, and raw access to their tables.

Tests get a store location from the ``target`` fixture (tests/conftest.py): a SQLite
file, or a PostgreSQL URL naming a schema of its own, dropped after the test. The server
is ``EVENTMEM_TEST_POSTGRES_URL`` (default: the local one); a test that needs it and
cannot connect fails, it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BACKENDS = ("sqlite", "postgresql")
POSTGRES_URL = os.environ.get(
    "EVENTMEM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


def check_postgres() -> None:
    """Raise (failing the test) unless the test server answers."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        raise RuntimeError(
            f"the PostgreSQL test server at {POSTGRES_URL} is unreachable ({e}); {START_HINT}"
        ) from e


def new_target(backend: str, tmp_path: Path) -> str:
    """A store location that does not exist yet."""
    if backend == "sqlite":
        return str(tmp_path / "eventmem.db")
    return f"{POSTGRES_URL}?schema=t_{uuid.uuid4().hex[:16]}"


@contextmanager
def fresh_target(backend: str, tmp_path: Path) -> Iterator[str]:
    """A store location nothing else has used, removed afterwards: for code that needs
    several stores in one test (a hypothesis example each, or a copy to import into)."""
    if backend == "sqlite":
        location = str(tmp_path / f"{uuid.uuid4().hex}.db")
    else:
        location = new_target(backend, tmp_path)
    try:
        yield location
    finally:
        drop_target(location)


def backend_of(target: str | os.PathLike[str]) -> str:
    """Which backend a target names."""
    return "postgresql" if str(target).startswith("postgresql://") else "sqlite"


def schema_of(target: str) -> str:
    """The PostgreSQL schema a target URL names."""
    return target.rsplit("?schema=", 1)[1]


def drop_target(target: str) -> None:
    """Remove a PostgreSQL target's schema (a SQLite file goes with tmp_path)."""
    if backend_of(target) == "postgresql":
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema_of(target))
                )
            )


class RawDatabase:
    """Plain SQL on a store's tables, around eventmem, to inspect or damage them.

    Statements use ``?`` placeholders in both dialects.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.backend = backend_of(target)
        self._dropped: list[tuple[Any, ...]] = []
        self._conn: Any
        if self.backend == "sqlite":
            import sqlite3

            self._conn = sqlite3.connect(target, isolation_level=None)
        else:
            self._conn = psycopg.connect(POSTGRES_URL, autocommit=True)
            self._conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_of(str(target))))
            )

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (if any)."""
        if self.backend == "postgresql":
            statement = statement.replace("?", "%s")
        cursor = self._conn.execute(statement, tuple(parameters))
        if cursor.description is None:
            return []
        return [tuple(row) for row in cursor.fetchall()]

    def allow_tampering(self) -> None:
        """Switch off the database's refusal to change or delete events (eventmem then
        refuses to open the store until :meth:`restore_triggers` or a repair)."""
        if self.backend == "sqlite":
            self._dropped = self.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
            for name, _ in self._dropped:
                self._conn.execute(f"DROP TRIGGER {name}")
        else:
            self._conn.execute("ALTER TABLE events DISABLE TRIGGER USER")

    def restore_triggers(self) -> None:
        """Switch the refusal back on, as someone covering their tracks would."""
        if self.backend == "sqlite":
            for _, statement in self._dropped:
                self._conn.execute(statement)
        else:
            self._conn.execute("ALTER TABLE events ENABLE TRIGGER USER")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


@contextmanager
def raw_database(target: str | os.PathLike[str]) -> Iterator[RawDatabase]:
    """A :class:`RawDatabase` on ``target``, closed afterwards."""
    raw = RawDatabase(target)
    try:
        yield raw
    finally:
        raw.close()
