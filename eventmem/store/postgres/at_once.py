"""A write batch sent in one round trip: the pieces ``PostgresConnection`` uses for it.

A batch whose sessions this connection wrote last is written without reading anything
first: their heads (and the counts of their visible rows) are the ones it committed, so
the batch's statements are composed on the client and sent as one simple query:
``BEGIN``, the sessions' advisory locks, an ``EXECUTE`` of a prepared statement per
write, ``COMMIT``. The check that the heads are still current is the log's own: each
session's first new event goes in at the position after the known head, and the
gapless trigger (or the unique ``(session_id, position)``) refuses it if another writer
appended in between; the transaction then fails whole, nothing of it is committed, and
the batch runs again the usual way (heads read under the locks).

Parameters travel as literals (the simple query protocol has no parameters). Only the
plain values the writes use are written that way (``None``, ``int``, ``str`` and
bytes); anything else (and any text holding a NUL, which would end the query string)
makes the batch take the usual path, where psycopg binds and checks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg

__all__ = ["NotAtOnce", "conflicts", "dollar_placeholders", "literal", "parameters"]

_GAPLESS = "eventmem: event positions must be gapless"
_PLACEHOLDER = re.compile(r"\?")


class NotAtOnce(Exception):
    """The batch cannot be written in one round trip (a read it needs, a head found stale,
    a refusal computed from a head that was not checked, a value with no literal form):
    it runs the usual way. Nothing of it was committed."""


def literal(value: Any) -> str:
    """``value`` as an SQL literal of unknown type (the prepared statement's parameter
    type reads it), with ``standard_conforming_strings`` on."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is int:
        return f"'{value}'"
    if kind is str:
        if "\x00" in value:
            raise NotAtOnce("a NUL in a text")
        text: str = value
        return "'" + text.replace("'", "''") + "'"
    if kind is bytes or kind is bytearray or kind is memoryview:
        return "'\\x" + bytes(value).hex() + "'"
    raise NotAtOnce(f"no literal form for {kind.__name__}")


def parameters(values: Sequence[Any]) -> str:
    """The argument list of an ``EXECUTE``."""
    return ", ".join([literal(value) for value in values])


def dollar_placeholders(query: str) -> str:
    """A statement with ``?`` placeholders, numbered as ``PREPARE`` wants them."""
    numbers = iter(range(1, 1 << 16))
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", query)


def conflicts(error: psycopg.Error) -> bool:
    """Whether ``error`` says another writer appended to a session first (so the heads
    the batch was composed from were stale)."""
    diag = error.diag
    if isinstance(error, pg.UniqueViolation):
        return diag.table_name == "events"
    if isinstance(error, pg.IntegrityConstraintViolation):
        return (diag.message_primary or "").startswith(_GAPLESS)
    return False
