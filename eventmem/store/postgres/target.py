"""Where a PostgreSQL URL points, and opening a connection to it."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from eventmem.errors import InvalidInputError, StorageError
from eventmem.store.base import Durability
from eventmem.store.postgres.errors import translated
from eventmem.store.postgres.schema import apply_migrations

__all__ = ["DEFAULT_SCHEMA", "Settings", "Target", "connect"]

DEFAULT_SCHEMA = "eventmem"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Target:
    """Where a URL points: what psycopg connects to, the schema, and a printable name."""

    def __init__(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            port = f":{parts.port}" if parts.port else ""
        except ValueError as e:  # a bad port or IPv6 address; the message has no password
            raise InvalidInputError(f"not a valid PostgreSQL URL: {e}") from None
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "schema"]
        self.schema = schemas[-1] if schemas else DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(self.schema):
            raise InvalidInputError(
                f"schema must be a plain SQL name (letters, digits, _), got {self.schema!r}"
            )
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
        self.conninfo = urllib.parse.urlunsplit(parts._replace(query=rest))
        host = parts.hostname or "localhost"
        user = f"{parts.username}@" if parts.username else ""
        self.display = f"postgresql://{user}{host}{port}{parts.path}?schema={self.schema}"


class Settings(NamedTuple):
    """What every connection of a store is opened with (also on reconnecting)."""

    lock_timeout_ms: int
    durability: Durability
    read_only: bool = False


def connect(target: Target, settings: Settings, create: bool) -> psycopg.Connection[Any]:
    """A connection in autocommit mode to the target's schema, migrated unless ``create``
    and the settings say otherwise."""
    with translated(target.display, connecting=True):
        raw = psycopg.connect(
            target.conninfo,
            autocommit=True,
            connect_timeout=10,
            application_name="eventmem",
            client_encoding="UTF8",  # whatever the URL or PGCLIENTENCODING say
        )
    try:
        with translated(target.display):
            _configure(raw, target, settings, create)
    except BaseException:
        raw.close()
        raise
    return raw


def _configure(
    raw: psycopg.Connection[Any], target: Target, settings: Settings, create: bool
) -> None:
    lock_timeout_ms, durability, read_only = settings
    # Text is hashed as its UTF-8 bytes and must read back as it was written: another
    # server encoding refuses some characters (LATIN1) or hands back bytes (SQL_ASCII).
    encoding = raw.info.parameter_status("server_encoding")
    if encoding != "UTF8":
        raise StorageError(
            f"{target.display}: the database's encoding is {encoding}; eventmem needs a "
            "UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')"
        )
    raw.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(target.schema)))
    # Writes sent at once carry their values as literals (eventmem.store.postgres.at_once).
    raw.execute("SET standard_conforming_strings = on")
    raw.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(lock_timeout_ms)))
    # "normal" as on SQLite (WAL + synchronous=NORMAL): a commit returns without waiting
    # for its WAL flush, so a crash of the server or its machine may lose the last
    # commits (the server flushes within 3 x wal_writer_delay), never leaves them torn.
    raw.execute(f"SET synchronous_commit = {'on' if durability == 'full' else 'off'}")
    if read_only:
        # Every transaction of the session is READ ONLY: the server refuses any
        # write, whatever eventmem's own refusal would have missed.
        raw.execute("SET default_transaction_read_only = on")
    apply_migrations(raw, target.schema, create=create and not read_only, migrate=not read_only)
