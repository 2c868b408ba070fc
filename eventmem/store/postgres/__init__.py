"""The PostgreSQL backend: its connection and dialect, schema migrations, URL handling
and error translator."""

from eventmem.store.postgres.backend import PostgresBackend
from eventmem.store.postgres.connection import (
    SESSION_LOCK_CLASS,
    PostgresConnection,
    session_lock_key,
)
from eventmem.store.postgres.target import DEFAULT_SCHEMA

__all__ = [
    "DEFAULT_SCHEMA",
    "SESSION_LOCK_CLASS",
    "PostgresBackend",
    "PostgresConnection",
    "session_lock_key",
]
