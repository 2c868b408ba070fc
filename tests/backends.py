"""The two backends the contract suite runs against, and raw access to their tables.

Tests get a store location from the ``target`` fixture (tests/conftest.py): a SQLite
file, or a PostgreSQL URL naming a schema of its own, dropped after the test. The server
is ``EVENTMEM_TEST_POSTGRES_URL`` (default: the local one); a test that needs it and
cannot connect fails, it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
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
    """A store location holding no sessions, for code that needs several stores in one
    test (a hypothesis example each, or a copy to import into): a new SQLite file, or a
    PostgreSQL schema that is new or was emptied for reuse (see ``reusable_target``),
    released afterwards."""
    if backend == "sqlite":
        location = str(tmp_path / f"{uuid.uuid4().hex}.db")
    else:
        location = reusable_target(backend, tmp_path)
    try:
        yield location
    finally:
        release_target(location)


# PostgreSQL schemas of this process that a test used through eventmem alone, emptied and
# ready for the next test that wants an open store: creating a schema and running the
# migrations costs most of a small PostgreSQL test. A schema anything changed around
# eventmem (raw SQL other than SELECT, triggers switched off) is dropped instead.
_POOL: list[str] = []
_CHANGED_AROUND_EVENTMEM: set[str] = set()


def reusable_target(backend: str, tmp_path: Path) -> str:
    """Like :func:`new_target`, but on PostgreSQL the location may be a schema an earlier
    test of this process used and :func:`release_target` emptied: it holds eventmem's
    schema with no sessions. For tests that open a store there anyway."""
    if backend == "postgresql" and _POOL:
        return _POOL.pop()
    return new_target(backend, tmp_path)


def release_target(target: str) -> None:
    """Done with ``target``: a PostgreSQL schema goes back to the pool, empty, when only
    eventmem wrote to it and its triggers are still eventmem's; otherwise it is dropped."""
    if backend_of(target) != "postgresql":
        return
    if target not in _CHANGED_AROUND_EVENTMEM and _empty(target):
        _POOL.append(target)
    else:
        _CHANGED_AROUND_EVENTMEM.discard(target)
        drop_target(target)


def drop_pool() -> None:
    """Drop the schemas waiting for reuse (at the end of the run)."""
    while _POOL:
        drop_target(_POOL.pop())
    drop_pool_connection()
    while _idle_raw:
        _idle_raw.pop().close()


# One connection per process empties the pooled schemas: connecting costs more than
# emptying a schema a test wrote a few rows to.
_pool_connection: psycopg.Connection[Any] | None = None


def drop_pool_connection() -> None:
    """Close the connection that empties pooled schemas (the next use connects again)."""
    global _pool_connection
    if _pool_connection is not None:
        _pool_connection.close()
        _pool_connection = None


def _admin() -> psycopg.Connection[Any]:
    global _pool_connection
    if _pool_connection is None or _pool_connection.closed:
        _pool_connection = psycopg.connect(POSTGRES_URL)
    return _pool_connection


def _empty(target: str) -> bool:
    """Remove every session from the schema, leaving it as the migrations made it; False
    (nothing changed) if the schema is not eventmem's as the migrations made it."""
    from eventmem.store.migrate import known_migrations
    from eventmem.store.postgres.schema import trigger_findings

    schema = schema_of(target)
    newest = max(m.version for m in known_migrations("postgresql"))
    conn = _admin()
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            versions = [v for (v,) in conn.execute("SELECT version FROM eventmem_migrations")]
            if max(versions, default=0) != newest or trigger_findings(conn, schema):
                return False
            # The log's own triggers refuse DELETE; this role does not fire them. DELETE,
            # not TRUNCATE: a few rows go much faster, and the identity starts over below.
            conn.execute("SET LOCAL session_replication_role = replica")
            tables = ("view_messages", "lg_checkpoints", "lg_values", "lg_writes")
            for table in (*tables, "eventmem_settings"):
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            conn.execute("DELETE FROM sessions")
            conn.execute("DELETE FROM events")
            conn.execute("SELECT setval(pg_get_serial_sequence('events', 'id'), 1, false)")
    except psycopg.Error:
        if conn.broken:
            drop_pool_connection()
        return False
    return True


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
        self._target = str(target)
        self._dropped: list[tuple[Any, ...]] = []
        self._conn: Any
        if self.backend == "sqlite":
            import sqlite3

            self._conn = sqlite3.connect(target, isolation_level=None)
        else:
            self._conn = (
                _idle_raw.pop() if _idle_raw else psycopg.connect(POSTGRES_URL, autocommit=True)
            )
            self._conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_of(str(target))))
            )

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (if any)."""
        if self.backend == "postgresql":
            if not statement.lstrip().upper().startswith("SELECT"):
                _CHANGED_AROUND_EVENTMEM.add(self._target)
            statement = statement.replace("?", "%s")
        cursor = self._conn.execute(statement, tuple(parameters))
        if cursor.description is None:
            return []
        return [tuple(row) for row in cursor.fetchall()]

    def rechain(self, session_id: str, rewrite: Callable[[int, bytes], bytes]) -> bytes:
        """Replace each event's data by ``rewrite(position, data)`` and recompute every
        hash of the session's chain, as someone who has read eventmem's hash rule would
        (call :meth:`allow_tampering` first); the new last hash."""
        from eventmem.events import GENESIS_HASH, chain_hash, content_digest, event_hash

        rows = self.execute(
            "SELECT position, recorded_at, data, digest FROM events WHERE session_id = ?"
            " ORDER BY position",
            (session_id,),
        )
        previous = GENESIS_HASH
        for position, recorded_at, data, digest in rows:
            stored = rewrite(position, data.encode() if isinstance(data, str) else bytes(data))
            content = None if digest is None else content_digest(stored)
            previous = (
                chain_hash(previous, session_id, position, recorded_at, stored)
                if content is None
                else event_hash(previous, session_id, position, recorded_at, content)
            )
            self.execute(
                "UPDATE events SET data = ?, hash = ?, digest = ?"
                " WHERE session_id = ? AND position = ?",
                (stored.decode(), previous, content, session_id, position),
            )
        return previous

    def allow_tampering(self) -> None:
        """Switch off the database's refusal to change or delete events (eventmem then
        refuses to open the store until :meth:`restore_triggers` or a repair)."""
        _CHANGED_AROUND_EVENTMEM.add(self._target)
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
        """Close the connection (PostgreSQL's, reset, waits for the next RawDatabase:
        connecting costs the server more than most of what a test asks of it)."""
        if self.backend == "postgresql" and not self._conn.closed and not self._conn.broken:
            try:
                # DISCARD ALL but for prepared statements, which psycopg keeps track of
                self._conn.execute(
                    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;"
                    " SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP;"
                    " DISCARD SEQUENCES"
                )
            except psycopg.Error:
                self._conn.close()
            else:
                _idle_raw.append(self._conn)
                return
        self._conn.close()


# PostgreSQL connections of closed RawDatabase objects, reset, for the next one.
_idle_raw: list[psycopg.Connection[Any]] = []


@contextmanager
def raw_database(target: str | os.PathLike[str]) -> Iterator[RawDatabase]:
    """A :class:`RawDatabase` on ``target``, closed afterwards."""
    raw = RawDatabase(target)
    try:
        yield raw
    finally:
        raw.close()


def rehash(
    previous: bytes,
    session_id: str,
    position: int,
    recorded_at: int,
    data: bytes,
    chained_by_digest: bool = True,
) -> tuple[bytes, bytes | None]:
    """The chain hash an event with ``data`` gets after ``previous`` (by the rule of the
    chain since schema 7 unless ``chained_by_digest`` is false), and its content digest
    (None under the first chain): what someone who knows the rule computes to forge."""
    from eventmem.events import chain_hash, content_digest, event_hash

    if not chained_by_digest:
        return chain_hash(previous, session_id, position, recorded_at, data), None
    content = content_digest(data)
    return event_hash(previous, session_id, position, recorded_at, content), content
