"""The exceptions eventmem raises.

Every error is an [`EventmemError`][eventmem.EventmemError]. Errors about bad input also
derive from the built-in exception LangChain raises for the same mistake (``ValueError``,
``KeyError``, ``TypeError``), so code written against LangChain's memories keeps catching
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventmem.audit import Problem

__all__ = [
    "ClosedError",
    "ConcurrencyError",
    "CorruptDatabaseError",
    "DataKeyMissingError",
    "DatabaseLockedError",
    "DiskFullError",
    "EncryptionError",
    "ErasedSessionError",
    "EventmemError",
    "ImportRefusedError",
    "InputKeyError",
    "InputTooLargeError",
    "InvalidInputError",
    "KeyringError",
    "KeysRequiredError",
    "MigrationError",
    "MissingDependencyError",
    "MissingKeyError",
    "NotAnEventmemDatabaseError",
    "NotSerializableError",
    "ReadOnlyDatabaseError",
    "ReadOnlyStoreError",
    "RebuildRefusedError",
    "SchemaVersionError",
    "SessionExistsError",
    "StorageError",
    "SummarizerError",
    "SyncInAsyncContextError",
    "UnknownModelError",
    "UnknownSessionError",
    "UnprotectedLogError",
]


class EventmemError(Exception):
    """Root of every exception raised by eventmem."""


class InvalidInputError(EventmemError, ValueError, TypeError):
    """An argument or a value to be stored is of the wrong type or out of range.

    Nothing is written when this is raised.
    """


class NotSerializableError(InvalidInputError):
    """A value cannot be stored as JSON (an arbitrary object, NaN, a lone surrogate...)."""


class InputKeyError(InvalidInputError):
    """The input or output key of a ``save_context`` call cannot be determined.

    Mirrors LangChain's ``ValueError`` for "One input key expected" and
    "Got multiple output keys".
    """


class MissingKeyError(EventmemError, KeyError):
    """A configured ``input_key`` / ``output_key`` is absent from the dict given."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a readable message is more useful here.
        return str(self.args[0]) if self.args else ""


class InputTooLargeError(InvalidInputError):
    """A save (or an import line) is larger than the store's ``max_save_bytes``.

    Checked before the text is copied or counted; nothing is written.
    """


class UnknownModelError(InvalidInputError):
    """No token-counting scheme is known for the model name; pass ``token_counter=``."""


class ImportRefusedError(EventmemError):
    """An export file cannot be imported (malformed, tampered, or its sessions exist)."""


class RebuildRefusedError(EventmemError):
    """``rebuild`` found chain problems (edited, moved or removed events, or a head whose
    log is gone) that recomputing the projections would hide. Nothing was written.

    ``problems`` lists them; ``rebuild(force=True)`` rebuilds every other session and
    leaves the damaged ones as they are, so verify keeps reporting them.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class ConcurrencyError(EventmemError):
    """A write named an ``expected_version`` the session has already moved past."""


class SessionExistsError(ConcurrencyError):
    """A write that begins a session (a fork) named one that already has events;
    nothing was written."""


class ErasedSessionError(EventmemError):
    """The session was erased ([`Store.erase`][eventmem.Store.erase]): its content is
    gone, so there is no view to read (its events read as `ContentErased`, and its
    tombstone says who erased it, when and why), and it takes no more writes."""


class EncryptionError(EventmemError):
    """Encrypted content cannot be read or written as asked (see `eventmem.encryption`);
    nothing was written."""


class KeysRequiredError(EncryptionError):
    """The store holds encrypted events, or a file to import does, and it was opened
    without the key store that can read them (``eventmem.open(..., encryption=...)``)."""


class KeyringError(EncryptionError):
    """A key store cannot give a session's data key: the master key is not the one the
    keyring was made with, its file is not a keyring or is damaged, or the key callback
    failed."""


class DataKeyMissingError(EncryptionError):
    """The session's data key is not in the key store: an erasure destroyed it (a copy
    of the store made before the erasure can no longer read the session), or the key
    store belongs to another store."""


class UnknownSessionError(InvalidInputError, LookupError):
    """An operation that needs a session's history (a fork's source, a rewind) named a
    session that has no events."""


class SummarizerError(EventmemError):
    """A summary buffer's model raised, or answered something other than text, while
    summarising the messages a save prunes; nothing of the save was written. The
    model's own exception is the ``__cause__``."""


class ClosedError(EventmemError):
    """The store was used after ``aclose()``."""


class SyncInAsyncContextError(EventmemError, RuntimeError):
    """A blocking method was called from inside a running event loop.

    Blocking there would stall (or deadlock) the loop; use the ``a``-prefixed method.
    """


class StorageError(EventmemError):
    """The database could not be read or written."""


class NotAnEventmemDatabaseError(StorageError):
    """The file is not a SQLite database, or belongs to another application (in
    PostgreSQL: the store's schema holds tables that are not eventmem's, or no store)."""


class CorruptDatabaseError(StorageError):
    """The database reports its file (or, in PostgreSQL, a page or index) as corrupt."""


class SchemaVersionError(StorageError):
    """The database was written by a newer eventmem, or its schema history has a gap."""


class DatabaseLockedError(StorageError):
    """Another connection held the write lock (in PostgreSQL: a session's lock) for
    longer than the busy timeout."""


class ReadOnlyDatabaseError(StorageError):
    """The database file (or its directory) cannot be written; in PostgreSQL, the
    server is read-only (a standby) or the role may not write."""


class ReadOnlyStoreError(ReadOnlyDatabaseError):
    """The store was opened with ``read_only=True``: a write (a save, a clear, a live step,
    ``rebuild``, ``import_events``) or a schema migration the store would need was refused
    before anything was written."""


class DiskFullError(StorageError):
    """The disk (or the database's size limit) is full; the write was rolled back."""


class UnprotectedLogError(StorageError):
    """The events table's immutability triggers are missing, disabled or changed (or a
    trigger that is not eventmem's was added): something outside eventmem switched the
    log's protection off, and may have changed the log meanwhile.

    Open with ``triggers="repair"`` (or run ``eventmem verify --repair-triggers DB``) to
    restore them, then read what ``verify`` reports; ``triggers="report"`` opens the store
    as it is, for inspection.
    """


class MissingDependencyError(EventmemError, ImportError):
    """An optional feature's package is not installed (the message names the extra)."""


class MigrationError(StorageError):
    """A schema migration failed; the database was left as it was before it."""
