"""The one place ``sqlite3`` errors become eventmem's.

Every error is mapped by what SQLite says it is: its primary result code (the
``sqlite_errorcode`` that ``sqlite3.Error`` carries from Python 3.11 on), or, where Python
does not provide it (3.10, and errors raised by the ``sqlite3`` module itself), by the
fixed text SQLite gives each code. The backend calls ``translated`` where a transaction
ends (its worker call) and where a file is checked before connecting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from eventmem.errors import (
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    MigrationError,
    NotAnEventmemDatabaseError,
    ReadOnlyDatabaseError,
    ReadOnlyStoreError,
    StorageError,
)
from eventmem.store.migrate import MigrationFailure

__all__ = ["translate", "translated"]

# SQLite's primary result codes (sqlite3.h).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    5, 6, 8, 10, 11, 13, 14, 26,
)  # fmt: skip
# Codes that mean the storage failed rather than a migration's SQL: a migration that
# meets one is reported like any other write that did.
_STORAGE = frozenset({_BUSY, _LOCKED, _READONLY, _IOERR, _FULL, _CANTOPEN})
# Without a code: the text SQLite gives each (sqlite3_errstr), matched loosely.
_TEXTS = (
    ("file is not a database", _NOTADB),
    ("malformed", _CORRUPT),
    ("corrupt", _CORRUPT),
    ("locked", _BUSY),
    ("busy", _BUSY),
    ("readonly", _READONLY),
    ("read-only", _READONLY),
    ("disk i/o", _IOERR),
    ("full", _FULL),
    ("unable to open", _CANTOPEN),
)


def _code(error: sqlite3.Error) -> int | None:
    """The primary result code of ``error`` (None for one SQLite did not report)."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF  # an extended code's low byte is its primary code
    lowered = str(error).lower()
    return next((code for text, code in _TEXTS if text in lowered), None)


def translate(error: sqlite3.Error, where: str, *, read_only: bool = False) -> EventmemError:
    """The eventmem error for a ``sqlite3`` error met on the store ``where`` (opened
    ``read_only`` or not)."""
    text = str(error)
    code = _code(error)
    if code == _NOTADB:
        return NotAnEventmemDatabaseError(f"{where} is not a SQLite database ({text})")
    if code == _CORRUPT:
        return CorruptDatabaseError(f"{where} is corrupt: {text}")
    if code in (_BUSY, _LOCKED):
        return DatabaseLockedError(
            f"{where}: another connection held the write lock past the busy timeout ({text})"
        )
    if code == _READONLY:
        if read_only:
            return ReadOnlyStoreError(f"{where} was opened read-only: {text}")
        return ReadOnlyDatabaseError(f"{where} cannot be written: {text}")
    if code == _FULL:
        return DiskFullError(f"{where}: no space left, the write was rolled back ({text})")
    if code == _CANTOPEN:
        return StorageError(f"cannot open {where}: {text}")
    return StorageError(f"{where}: SQLite error: {text}")


def _migration_error(failure: MigrationFailure, where: str, read_only: bool) -> EventmemError:
    cause = failure.__cause__
    assert isinstance(cause, sqlite3.Error)
    if _code(cause) in _STORAGE:
        return translate(cause, where, read_only=read_only)
    return MigrationError(f"migration {failure.label} failed and was rolled back: {cause}")


@contextmanager
def translated(where: str, *, read_only: bool = False) -> Iterator[None]:
    """Raise the eventmem error for a ``sqlite3`` error (or a failed migration) met
    inside, ``from`` the driver's error."""
    try:
        yield
    except sqlite3.Error as e:
        raise translate(e, where, read_only=read_only) from e
    except MigrationFailure as e:
        raise _migration_error(e, where, read_only) from e.__cause__
