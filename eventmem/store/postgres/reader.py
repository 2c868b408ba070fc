"""Reading a session's version on the event loop, so a cached load costs one round trip
and no thread hop.

A load serves the cached buffer only when the session's stored version still equals the
cached one (``eventmem.store.cache``). On PostgreSQL that check is a round trip; made on
the worker's connection it costs a hop to the worker thread and back as well. This
second connection (read-only, opened on the first load that finds a cached buffer)
reads the version on the loop instead, through libpq's non-blocking calls directly
(one prepared statement, the socket watched by the loop: about half of what psycopg's
asynchronous cursor costs per query here). Anything unusual (no such session, a reader
in use by another load, a failed or lost connection) answers "ask the worker", whose
path reads, translates errors and reconnects as every other call does.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg import pq, sql

from eventmem.store.postgres.loop_io import prepared_query
from eventmem.store.postgres.target import Target

__all__ = ["VersionReader"]

_STATEMENT = b"eventmem_version"
_VERSION = b"SELECT version FROM sessions WHERE session_id = $1"
_RETRY_AFTER_S = 1.0  # after a failure, loads take the worker's path this long


class VersionReader:
    """The connection that reads versions on the loop (opened lazily, reopened after a
    failure once ``_RETRY_AFTER_S`` has passed)."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._conn: psycopg.Connection[Any] | None = None
        self._busy = False
        self._closed = False
        self._retry_at = 0.0

    async def version(self, session_id: str) -> int | None:
        """The session's stored version, or None: no such session, or no answer here
        (the caller then asks the worker). Shielded: it takes one round trip, and a
        query abandoned half-way would leave the connection unusable."""
        if self._busy or self._closed or time.monotonic() < self._retry_at:
            return None
        self._busy = True
        try:
            with anyio.CancelScope(shield=True):
                try:
                    conn = self._conn
                    if conn is None:
                        conn = self._conn = await anyio.to_thread.run_sync(self._connect)
                        if self._closed:  # closed while connecting
                            self._drop()
                            return None
                    return await _query(conn.pgconn, session_id.encode())
                except (psycopg.Error, OSError, _Failed):
                    self._drop()
                    self._retry_at = time.monotonic() + _RETRY_AFTER_S
                    return None
        finally:
            self._busy = False
        return None  # (a shield never swallows an exception: not reached)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self._target.conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="eventmem",
            client_encoding="UTF8",
        )
        try:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self._target.schema))
            )
            conn.execute("SET default_transaction_read_only = on")
            result = conn.pgconn.prepare(_STATEMENT, _VERSION)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise _Failed
            conn.pgconn.nonblocking = 1
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error, OSError):
                conn.close()

    async def close(self) -> None:
        """Close the connection (idempotent). A load in progress keeps it until it
        ends; nothing waits for the server."""
        self._closed = True
        if not self._busy:
            self._drop()


class _Failed(Exception):
    """The server answered with an error, or the connection broke."""


async def _query(pgconn: pq.abc.PGconn, session_id: bytes) -> int | None:
    """One round trip: the prepared statement's answer."""
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise _Failed
    results = await prepared_query(pgconn, _STATEMENT, [session_id])
    for result in results:
        if result.status == pq.ExecStatus.TUPLES_OK and result.ntuples:
            value = result.get_value(0, 0)
            return None if value is None else int(value)
    return None
