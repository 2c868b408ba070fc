"""Encryption at rest: each session's content under a data key of its own.

Open a store with ``eventmem.open(path, encryption=keys)`` and every event it writes
that holds content (messages, steps, tool calls and results, metadata, summaries,
checkpoints) is stored as AES-256-GCM ciphertext under the session's data key, bound to
the session and position it belongs to. The chain hash covers the ciphertext, so
``verify`` needs no plaintext to check the chain, and the stored digest reveals nothing
about the content.

The data keys live in a key store, never in the database: a [`Keyring`][eventmem.encryption.Keyring]
file of its own (each key wrapped by a master key the caller supplies, or by a KMS
through ``wrap``/``unwrap`` callbacks), or anything implementing
[`KeyStore`][eventmem.encryption.KeyStore]. An erasure (``Store.erase``) also destroys
the session's data key, so a copy of the database made before the erasure (a backup)
can no longer read that session.

Needs the ``cryptography`` package (``pip install 'eventmem[crypto]'``), imported only
when a key is first used.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eventmem.errors import (
    DataKeyMissingError,
    InvalidInputError,
    KeyringError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DATA_KEY_BYTES", "KeyStore", "Keyring", "generate_master_key"]

DATA_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12
_APPLICATION_ID = 0x45564D4B  # "EVMK": marks the file as an eventmem keyring
_CHECK_TEXT = b"eventmem keyring 1"
_CHECK_AAD = b"eventmem keyring check"


@runtime_checkable
class KeyStore(Protocol):
    """Where the store gets each session's data key (32 random bytes).

    Called from the store's worker threads, so an implementation must be thread-safe; it
    may block (a KMS call). Implement it to keep data keys in a KMS or a vault;
    [`Keyring`][eventmem.encryption.Keyring] is the one eventmem ships.
    """

    def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        """The session's data key; with ``create``, make one if it has none. None when it
        has none (never had one, or it was destroyed) and ``create`` is false. A key
        that was destroyed is never made again: raise `DataKeyMissingError` then."""
        ...

    def destroy(self, session_id: str) -> bool:
        """Destroy the session's data key for good; whether there was one."""
        ...


# A key store may also have ``check() -> None``: the store calls it as it opens, so a key
# store that cannot serve (a wrong master key, an unreachable vault) refuses the open
# rather than the first read.


def generate_master_key() -> bytes:
    """A new random master key for a [`Keyring`][eventmem.encryption.Keyring] (32 bytes).
    Keep it outside the store and the keyring (a secrets manager, an environment
    variable): whoever holds it and the keyring file reads every session."""
    return os.urandom(DATA_KEY_BYTES)


_MISSING = "encryption at rest needs the cryptography package: pip install 'eventmem[crypto]'"


def _aesgcm(key: bytes) -> AESGCM:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:
        raise MissingDependencyError(_MISSING) from e
    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    try:
        from cryptography.exceptions import InvalidTag
    except ImportError as e:
        raise MissingDependencyError(_MISSING) from e
    return InvalidTag


def _key_aad(session_id: str) -> bytes:
    return b"eventmem data key\0" + session_id.encode()


_SCHEMA = """
PRAGMA application_id = 1163283787;
CREATE TABLE keyring (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    format    INTEGER NOT NULL,
    check_box BLOB,          -- the check text under the master key (NULL: KMS-wrapped keys)
    made_at   TEXT    NOT NULL
);
CREATE TABLE data_keys (
    session_id TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,  -- nonce + AES-GCM(master key, data key), or the KMS's bytes
    made_at    TEXT NOT NULL
);
CREATE TABLE destroyed_keys (
    session_id   TEXT PRIMARY KEY,
    destroyed_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Keyring:
    """A [`KeyStore`][eventmem.encryption.KeyStore] in a SQLite file of its own: each
    session's data key wrapped by a master key (AES-256-GCM, bound to the session id),
    or by a KMS through ``wrap(session_id, data_key) -> bytes`` and
    ``unwrap(session_id, wrapped) -> bytes``.

    Keep the keyring apart from the database (another file, another backup schedule):
    an erasure deletes the session's wrapped key from this file (with SQLite's
    ``secure_delete`` and no write-ahead log, so no copy stays in it), and a backup of
    the database alone cannot read a session whose key is gone. A backup of the keyring
    made before an erasure can still read it: keep keyring backups short-lived, or let a
    KMS hold the keys. Losing the keyring (or the master key) loses every encrypted
    session, just as surely.

    The file is created on first use; a master key that is not the one it was made with
    raises `KeyringError`. The master key never appears in a ``repr``, an error, a log
    or an export.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        master_key: bytes | None = None,
        wrap: Callable[[str, bytes], bytes] | None = None,
        unwrap: Callable[[str, bytes], bytes] | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        name = os.fspath(path)
        if not isinstance(name, str) or not name or "\x00" in name or name == ":memory:":
            raise InvalidInputError("a keyring is a file: give it a path")
        if master_key is None:
            if wrap is None or unwrap is None:
                raise InvalidInputError("a keyring needs master_key=, or both wrap= and unwrap=")
            if not callable(wrap) or not callable(unwrap):
                raise InvalidInputError("wrap and unwrap must be functions")
        else:
            if wrap is not None or unwrap is not None:
                raise InvalidInputError("give a keyring master_key= or wrap=/unwrap=, not both")
            _checked_master_key(master_key)
        self.path = Path(name)
        self._master = None if master_key is None else _Wrapper(master_key)
        self._wrap, self._unwrap = wrap, unwrap
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        how = "master key" if self._master is not None else "KMS callbacks"
        return f"Keyring({str(self.path)!r}, {how})"

    # -- KeyStore ------------------------------------------------------------------------

    def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        with self._lock:
            conn = self._connected()
            row = conn.execute(
                "SELECT wrapped FROM data_keys WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                gone = conn.execute(
                    "SELECT destroyed_at FROM destroyed_keys WHERE session_id = ?", (session_id,)
                ).fetchone()
                if gone is not None:
                    raise DataKeyMissingError(
                        f"the data key of session {session_id!r} was destroyed at {gone[0]} "
                        "(the session was erased); it cannot be read or written again"
                    )
                if not create:
                    return None
                self._store_new(conn, session_id)
                row = conn.execute(
                    "SELECT wrapped FROM data_keys WHERE session_id = ?", (session_id,)
                ).fetchone()
            return self._unwrapped(session_id, bytes(row[0]))

    def destroy(self, session_id: str) -> bool:
        with self._lock:
            conn = self._connected()
            with conn:
                had = conn.execute("DELETE FROM data_keys WHERE session_id = ?", (session_id,))
                conn.execute(
                    "INSERT OR IGNORE INTO destroyed_keys (session_id, destroyed_at) VALUES (?, ?)",
                    (session_id, _now()),
                )
            return had.rowcount > 0

    # -- the rest ------------------------------------------------------------------------

    def check(self) -> None:
        """Open the keyring's file (creating it if it is new) and check the master key:
        `KeyringError` if it is not this keyring's, or the file is not a keyring. A store
        opened with the keyring calls it first."""
        with self._lock:
            self._connected()

    def rotate(self, new_master_key: bytes) -> int:
        """Wrap every data key under ``new_master_key`` instead, in one transaction of
        the keyring's file (the old wrapped keys overwritten: ``secure_delete``); from
        then on the keyring opens with the new key only. The data keys, and so the
        store, are unchanged. Returns how many keys were re-wrapped. A keyring whose keys
        a KMS wraps rotates in the KMS."""
        if self._master is None:
            raise InvalidInputError(
                "this keyring's keys are wrapped by a KMS (wrap=/unwrap=): rotate them there"
            )
        new = _Wrapper(_checked_master_key(new_master_key))
        with self._lock:
            conn = self._connected()
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute("SELECT session_id, wrapped FROM data_keys").fetchall()
                for session_id, wrapped in rows:
                    key = self._unwrapped(session_id, bytes(wrapped))
                    conn.execute(
                        "UPDATE data_keys SET wrapped = ? WHERE session_id = ?",
                        (new.wrap(key, _key_aad(session_id)), session_id),
                    )
                conn.execute(
                    "UPDATE keyring SET check_box = ? WHERE id = 1",
                    (new.wrap(_CHECK_TEXT, _CHECK_AAD),),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._master = new
        return len(rows)

    def destroyed_at(self, session_id: str) -> str | None:
        """When the session's data key was destroyed (ISO 8601, UTC), or None."""
        with self._lock:
            row = (
                self._connected()
                .execute(
                    "SELECT destroyed_at FROM destroyed_keys WHERE session_id = ?", (session_id,)
                )
                .fetchone()
            )
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Close the keyring's file (it opens again on the next use)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _store_new(self, conn: sqlite3.Connection, session_id: str) -> None:
        key = os.urandom(DATA_KEY_BYTES)
        if self._master is not None:
            wrapped = self._master.wrap(key, _key_aad(session_id))
        else:
            assert self._wrap is not None
            wrapped = _through_kms(self._wrap, "wrap", session_id, key)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._master is not None:
                # Another process may have rotated the master key since this one opened
                # the file: a key wrapped under the old one would not open again.
                (check,) = conn.execute("SELECT check_box FROM keyring WHERE id = 1").fetchone()
                if self._master.unwrap(bytes(check), _CHECK_AAD) != _CHECK_TEXT:
                    raise KeyringError(
                        "the keyring's master key was rotated since it was opened: open it "
                        "with the new master key"
                    )
            # Another process may have made one meanwhile: then that one is used.
            conn.execute(
                "INSERT OR IGNORE INTO data_keys (session_id, wrapped, made_at) VALUES (?, ?, ?)",
                (session_id, wrapped, _now()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _unwrapped(self, session_id: str, wrapped: bytes) -> bytes:
        if self._master is not None:
            key = self._master.unwrap(wrapped, _key_aad(session_id))
            if key is None:
                raise KeyringError(
                    f"the wrapped data key of session {session_id!r} does not open with the "
                    "master key: the keyring file was changed"
                )
        else:
            assert self._unwrap is not None
            key = _through_kms(self._unwrap, "unwrap", session_id, wrapped)
        if not isinstance(key, bytes) or len(key) != DATA_KEY_BYTES:
            raise KeyringError(f"a data key must be {DATA_KEY_BYTES} bytes")
        return key

    def _connected(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise KeyringError(f"cannot open the keyring {str(self.path)!r}: {e}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            self._check_or_create(conn)  # before anything could change a foreign file
            # No write-ahead log and freed bytes zeroed: a destroyed key leaves no copy
            # in the file. FULL sync: a lost key is lost content.
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise KeyringError(
                f"{str(self.path)!r} is not a readable keyring ({e}); nothing was changed"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_or_create(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    check = (
                        None if self._master is None else self._master.wrap(_CHECK_TEXT, _CHECK_AAD)
                    )
                    conn.execute(
                        "INSERT INTO keyring (id, format, check_box, made_at) VALUES (1, 1, ?, ?)",
                        (check, _now()),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        row = None
        if application_id == _APPLICATION_ID:
            row = conn.execute("SELECT format, check_box FROM keyring WHERE id = 1").fetchone()
        if row is None:
            raise KeyringError(
                f"{str(self.path)!r} is not an eventmem keyring (another program's file, or "
                "an eventmem store); nothing was changed"
            )
        made_with_master = row[1] is not None
        if made_with_master != (self._master is not None):
            raise KeyringError(
                "this keyring was made with "
                + (
                    "a master key: open it with master_key="
                    if made_with_master
                    else "KMS callbacks: open it with wrap= and unwrap="
                )
            )
        if (
            self._master is not None
            and self._master.unwrap(bytes(row[1]), _CHECK_AAD) != _CHECK_TEXT
        ):
            raise KeyringError("the master key is not the one this keyring was made with")


def _checked_master_key(master_key: object) -> bytes:
    if not isinstance(master_key, bytes) or len(master_key) != DATA_KEY_BYTES:
        raise InvalidInputError(
            f"master_key must be {DATA_KEY_BYTES} bytes (eventmem.encryption."
            "generate_master_key() makes one)"
        )
    return master_key


def _through_kms(
    callback: Callable[[str, bytes], bytes], what: str, session_id: str, value: bytes
) -> bytes:
    """``callback(session_id, value)``, its failure a `KeyringError` that names only the
    exception's type (its message may hold what the KMS was given)."""
    try:
        out = callback(session_id, value)
    except Exception as e:
        raise KeyringError(
            f"the {what} callback failed for session {session_id!r}: {type(e).__name__}"
        ) from e
    if not isinstance(out, bytes) or not out:
        raise KeyringError(f"the {what} callback must return bytes")
    return out


class _Wrapper:
    """AES-256-GCM under the master key; holds it without showing it."""

    __slots__ = ("_aead", "_key")

    def __init__(self, master_key: bytes) -> None:
        self._aead: Any = None
        self._key = master_key

    def __repr__(self) -> str:
        return "<master key>"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + bytes(self._cipher().encrypt(nonce, plaintext, aad))

    def unwrap(self, box: bytes, aad: bytes) -> bytes | None:
        if len(box) <= _NONCE_BYTES:
            return None
        try:
            return bytes(self._cipher().decrypt(box[:_NONCE_BYTES], box[_NONCE_BYTES:], aad))
        except _invalid_tag():
            return None

    def _cipher(self) -> Any:
        if self._aead is None:
            self._aead = _aesgcm(self._key)
        return self._aead
