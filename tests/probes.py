"""Looking inside an open store in either backend: the statements it runs, and whether
its target exists at all."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg

import eventmem
from eventmem.store.postgres import PostgresBackend
from eventmem.store.postgres import connection as pg_connection
from eventmem.store.postgres.loop_io import simple_query
from eventmem.store.sqlite import SQLiteBackend
from tests.backends import POSTGRES_URL, backend_of, schema_of


def _sent_at_once(conn: Any, text: str) -> list[str]:
    """The statements of a batch sent in one query (``BEGIN; ...; COMMIT``), each
    prepared statement by its text (as the pipelined path sends it); any other query
    as it is, except the PREPAREs that name those statements."""
    if text.startswith("PREPARE eventmem_"):
        return []  # once per statement and connection, not part of any call's work
    if not text.startswith("BEGIN;\n"):
        return [text]
    names = {name: query for query, name in conn._prepared.items()}
    statements = []
    for part in text.split(";\n"):
        match = re.match(r"EXECUTE (eventmem_\d+)\(", part)
        statements.append(conn._statement(names[match[1]])[0] if match else part)
    return statements


@asynccontextmanager
async def traced_statements(store: eventmem.Store) -> AsyncIterator[list[str]]:
    """Every statement the store sends to its database inside the block, in order.

    SQLite reports them through its trace callback (``executemany`` once per row, like
    SQLite); on PostgreSQL the connection's ``execute`` and ``executemany`` are wrapped,
    also counted once per row, and ``BEGIN``/``COMMIT`` appear as statements too.
    """
    statements: list[str] = []
    backend = store._backend
    if not isinstance(backend, PostgresBackend):
        assert isinstance(backend, SQLiteBackend)
        await backend._run(lambda conn: conn.set_trace_callback(statements.append))
        try:
            yield statements
        finally:
            await backend._run(lambda conn: conn.set_trace_callback(None))
        return

    conn = backend._pg
    raw = conn.raw
    execute: Callable[..., Any] = raw.execute
    executemany: Callable[..., Any] = conn.executemany

    def traced_execute(query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        statements.extend(_sent_at_once(conn, text))
        return execute(query, *args, **kwargs)

    def traced_executemany(query: str, parameters: Iterable[Sequence[Any]], /) -> None:
        rows = list(parameters)
        statements.extend([query] * len(rows))
        executemany(query, rows)

    async def traced_simple_query(pgconn: Any, query: bytes) -> Any:
        statements.extend(_sent_at_once(conn, query.decode()))
        return await simple_query(pgconn, query)

    raw.execute = traced_execute  # type: ignore[method-assign]
    conn.executemany = traced_executemany  # type: ignore[method-assign]
    pg_connection.simple_query = traced_simple_query  # type: ignore[attr-defined]
    try:
        yield statements
    finally:
        del raw.execute
        del conn.executemany
        pg_connection.simple_query = simple_query  # type: ignore[attr-defined]


def target_exists(target: str | os.PathLike[str]) -> bool:
    """Whether anything exists at ``target``: the SQLite file, or the PostgreSQL schema."""
    if backend_of(target) == "sqlite":
        return Path(target).exists()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (schema_of(str(target)),),
        ).fetchone()
    assert row is not None
    return bool(row[0])


def local_tcp_ports() -> list[int]:
    """The local ports of this process's TCP sockets (Linux): to tell its own server
    connections from those of the other processes sharing the test server."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
