"""[`open`][eventmem.open]: check a store's options, then connect to its database."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from eventmem.api import Store
from eventmem.errors import InvalidInputError, MissingDependencyError
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store.base import Durability, OpenOptions, TriggerMode, is_postgres_url
from eventmem.store.sqlite import SQLiteBackend

if TYPE_CHECKING:
    from eventmem.encryption import KeyStore

__all__ = ["Opening", "open"]


class Opening:
    """What [`open`][eventmem.open] returns: an awaitable and an async context manager.

    ``store = await eventmem.open(path)`` opens the store (close it with ``aclose()``);
    ``async with eventmem.open(path) as store:`` opens it and closes it at the end of
    the block. Each ``await`` or ``async with`` opens a new connection.
    """

    def __init__(self, path: str | os.PathLike[str], options: OpenOptions) -> None:
        self._path = path
        self._options = options
        self._store: Store | None = None

    async def _open(self) -> Store:
        if is_postgres_url(self._path):
            try:
                from eventmem.store.postgres import PostgresBackend
            except ImportError as e:
                if not (e.name or "").startswith("psycopg"):
                    raise  # a real error in eventmem's own modules, not a missing driver
                raise MissingDependencyError(
                    "a PostgreSQL store needs psycopg 3: pip install 'eventmem[postgres]'"
                ) from e
            return Store(await PostgresBackend.open(str(self._path), self._options))
        return Store(await SQLiteBackend.open(self._path, self._options))

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        if self._store is not None:
            await self._store.aclose()


def open(
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    durability: Durability = "normal",
    busy_timeout: float = 30.0,
    cache_sessions: int = 1024,
    triggers: TriggerMode = "require",
    max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
    read_only: bool = False,
    encryption: KeyStore | None = None,
) -> Opening:
    """Open the store in the SQLite file ``path`` (created if missing, unless ``create=False``),
    or, given a ``postgresql://`` URL, in a PostgreSQL database.

    A URL is a libpq URI (``postgresql://user:password@host:5432/dbname``); the store lives
    in the schema ``eventmem`` unless ``?schema=NAME`` names another. The extra
    ``eventmem[postgres]`` installs its driver.

    ``durability="normal"`` (the default) survives a process crash but may lose the last
    commits on power loss (PostgreSQL: on a crash of the server; this connection runs
    with ``synchronous_commit = off``); ``"full"`` syncs every commit (PostgreSQL:
    ``synchronous_commit = on``).
    ``busy_timeout`` is how many seconds a write waits for another process's lock.
    ``cache_sessions`` bounds how many sessions' decoded buffers stay cached (each
    validated against the stored version on every load; 0 disables the cache).

    ``triggers`` is what to do when the triggers that keep the log immutable are missing,
    disabled or changed (someone switched them off, and may have changed the log):
    ``"require"`` (the default) refuses with `UnprotectedLogError`;
    ``"repair"`` restores them (see
    [`Store.repair_triggers`][eventmem.Store.repair_triggers]) and opens; ``"report"`` opens
    the store as it is, for [`Store.verify`][eventmem.Store.verify] to report.

    ``max_save_bytes`` (default 16 MiB) bounds what one write may store: the UTF-8 JSON
    of a save's events (its messages, steps and counts), or of one recorded step; a larger
    one raises `InputTooLargeError` before its text is copied or
    counted. It also bounds each line an import reads. Use as
    ``async with eventmem.open(path) as store:`` or ``store = await eventmem.open(path)``.

    ``read_only=True`` opens an existing, up-to-date store to read it, also on read-only
    media: it never creates or migrates a store, and every write (a save, a clear, a
    live step, ``rebuild``, ``import_events``) raises
    `ReadOnlyStoreError` and writes nothing. A SQLite file is
    read with ``mode=ro`` (``immutable=1`` where neither the file nor its directory can
    be written, so no one else can change it), and no ``-wal`` or ``-shm`` file is left
    behind; in PostgreSQL the session is ``default_transaction_read_only``.

    ``encryption`` (a key store: `eventmem.encryption.Keyring`) keeps every event's
    content encrypted at rest under its session's data key (AES-256-GCM; the extra
    ``eventmem[crypto]``), and makes an erasure destroy the session's key too. Once a
    store was opened with keys it is opened only with them (`KeysRequiredError`). The
    keyring's file must not be the store's own.

    A path (or URL) containing a NUL character is refused with
    `InvalidInputError`, a ``ValueError``, as the built-in
    ``open()`` refuses it: the operating system would read it only up to the NUL.

    Every argument is checked before anything is created or connected to.
    """
    options = OpenOptions(
        create=create,
        durability=durability,
        busy_timeout=busy_timeout,
        cache_sessions=cache_sessions,
        triggers=triggers,
        max_save_bytes=max_save_bytes,
        read_only=read_only,
        encryption=encryption,
    )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    _check_path(path)
    _check_keyring_apart(path, encryption)
    return Opening(path, options)


def _check_keyring_apart(path: str | os.PathLike[str], keys: object) -> None:
    """Refuse a keyring file that is the store's own database (or one of its files)."""
    keyring_path = getattr(keys, "path", None)
    if keyring_path is None or is_postgres_url(path):
        return
    try:
        same = os.path.realpath(os.fspath(keyring_path)) in {
            os.path.realpath(os.fspath(path)) + suffix
            for suffix in ("", "-wal", "-shm", "-journal")
        }
    except (TypeError, ValueError):
        return
    if same:
        raise InvalidInputError(
            "the keyring's file is the store's own database: keep the keys in a file of "
            "their own (an erasure must be able to destroy them apart from the data)"
        )


def _check_path(path: str | os.PathLike[str]) -> None:
    """Refuse a path the operating system would cut short: ``open('a.db\\0.x')`` would
    open ``a.db``, another file than the one named."""
    try:
        name = os.fspath(path)
    except TypeError as e:
        raise InvalidInputError(f"path is not a valid path: {e}") from None
    if not isinstance(name, (str, bytes)):  # pragma: no cover - os.fspath guarantees it
        raise InvalidInputError(f"path must be a str, got {type(name).__name__}")
    if isinstance(name, bytes):
        raise InvalidInputError("path must be a str (or os.PathLike of str), not bytes")
    if "\x00" in name:
        raise InvalidInputError(
            f"path contains a NUL character: {name!r}; a file name cannot hold one (the "
            "system would open the file named by what comes before it)"
        )
