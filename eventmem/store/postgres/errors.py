"""The one place psycopg errors become eventmem's.

Every error is mapped by its class (psycopg's ``errors`` classes, one per SQLSTATE). The
backend calls ``translated`` where a transaction ends (its worker call, an export's
page) and where a connection is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg

from eventmem.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    MigrationError,
    ReadOnlyDatabaseError,
    ReadOnlyStoreError,
    StorageError,
)
from eventmem.store.migrate import MigrationFailure

__all__ = ["translate", "translated"]


def translate(
    error: psycopg.Error, where: str, *, read_only: bool = False, connecting: bool = False
) -> EventmemError:
    """The eventmem error for a psycopg error met on the store ``where`` (opened
    ``read_only`` or not; ``connecting``: while a connection was being opened)."""
    text = str(error).strip()
    if connecting:
        return StorageError(f"cannot connect to {where}: {text}")
    if isinstance(error, (pg.LockNotAvailable, pg.DeadlockDetected)) or (
        isinstance(error, pg.QueryCanceled) and "lock timeout" in text
    ):
        return DatabaseLockedError(
            f"{where}: another connection held a lock past the busy timeout ({text})"
        )
    if read_only and isinstance(error, pg.ReadOnlySqlTransaction):
        return ReadOnlyStoreError(f"{where} was opened read-only: {text}")
    if isinstance(error, (pg.ReadOnlySqlTransaction, pg.InsufficientPrivilege)):
        return ReadOnlyDatabaseError(f"{where} cannot be written: {text}")
    if isinstance(error, pg.DiskFull):
        return DiskFullError(f"{where}: no space left, the write was rolled back ({text})")
    if isinstance(error, (pg.DataCorrupted, pg.IndexCorrupted)):
        return CorruptDatabaseError(f"{where} is corrupt: {text}")
    if isinstance(error, psycopg.OperationalError):
        return StorageError(f"{where}: the connection failed: {text}")
    return StorageError(f"{where}: PostgreSQL error: {text}")


def _migration_error(failure: MigrationFailure, where: str, read_only: bool) -> EventmemError:
    cause = failure.__cause__
    assert isinstance(cause, psycopg.Error)
    if isinstance(cause, psycopg.OperationalError):  # a lost connection, a lock timeout
        return translate(cause, where, read_only=read_only)
    return MigrationError(f"migration {failure.label} failed and was rolled back: {cause}")


@contextmanager
def translated(where: str, *, read_only: bool = False, connecting: bool = False) -> Iterator[None]:
    """Raise the eventmem error for a psycopg error (or a failed migration) met inside,
    ``from`` the driver's error."""
    try:
        yield
    except psycopg.Error as e:
        raise translate(e, where, read_only=read_only, connecting=connecting) from e
    except MigrationFailure as e:
        raise _migration_error(e, where, read_only) from e.__cause__
