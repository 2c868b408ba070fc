"""Queries made on the event loop through libpq's non-blocking calls: the query sent,
its results read when the loop sees the socket readable. No thread hop, and nothing
blocks the loop while the server works (psycopg's asynchronous cursor does the same
with about twice the overhead per query, measured here).

The caller owns the connection for the call: nobody else may use it meanwhile (the
version reader has its own; a write borrows the worker's connection while the worker
is idle). A server error comes back as psycopg's exception for it; a broken connection
as ``psycopg.OperationalError`` (the connection is then unusable, as psycopg reports).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
from psycopg import errors, pq

__all__ = ["prepared_query", "simple_query", "usable"]

# Windows' default loop cannot watch a socket (no add_reader): calls go to the worker.
_NO_READERS: tuple[type, ...] = tuple(
    cls for cls in [getattr(asyncio, "ProactorEventLoop", None)] if cls is not None
)


def usable() -> bool:
    """Whether the running loop can watch a socket, as these calls need."""
    return not isinstance(asyncio.get_running_loop(), _NO_READERS)


async def simple_query(pgconn: pq.abc.PGconn, query: bytes) -> list[pq.abc.PGresult]:
    """Send ``query`` (statements separated by ``;``) in the simple query protocol; its
    results, or the first error (the server runs no statement after it)."""
    pgconn.send_query(query)
    return await _results(pgconn)


async def prepared_query(
    pgconn: pq.abc.PGconn, name: bytes, values: Sequence[bytes | None]
) -> list[pq.abc.PGresult]:
    """Execute the prepared statement ``name`` with text-format ``values``."""
    pgconn.send_query_prepared(name, values)
    return await _results(pgconn)


async def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    await _flush(pgconn)
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()
    fd = pgconn.socket

    def readable() -> None:
        if answered.done():
            return
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as e:
            answered.set_exception(e)
            return
        if not pgconn.is_busy():
            answered.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await answered
    finally:
        loop.remove_reader(fd)
    results: list[pq.abc.PGresult] = []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    for result in results:
        if result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE):
            raise errors.error_from_result(result, encoding="utf-8")
    return results


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _flush(pgconn: pq.abc.PGconn) -> None:
    """Hand the whole query to the socket (non-blocking: a large one waits for the
    kernel's buffer to drain, reading whatever the server says meanwhile)."""
    while pgconn.flush():
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        loop.add_writer(pgconn.socket, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_writer(pgconn.socket)
        pgconn.consume_input()
