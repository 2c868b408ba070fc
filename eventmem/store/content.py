"""How an event's content is kept in the ``data`` column: as written, or encrypted.

An encrypted event's ``data`` is still JSON, ``{"kind":"encrypted","box":"..."}``: the
base64 of a 12-byte nonce and the AES-256-GCM ciphertext of the event's JSON under its
session's data key (`eventmem.encryption`), with the session id and position as
associated data, so a box moved to another session or position does not open. The
stored digest and the chain hash cover these bytes, as they cover a plain event's.

Events that hold no content (a fork, a rewind, an erasure's tombstone, a seal) stay
plain: the database's triggers read a seal's ``before``, and a tombstone must stay
readable once its session's key is gone. An encrypted store also reads the plain events
written before it was encrypted, and the ``{"kind":"erased"}`` that an erasure or a seal
leaves.

Every read of a ``data`` column goes through ``conn.content.open(session, position,
data)`` before it is decoded (a fold of many events of a plain store skips it: `opener`);
the one write path (``SessionHead.append_event``) through ``close``.
"""

from __future__ import annotations

import binascii
import os
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from eventmem.errors import (
    CorruptDatabaseError,
    DataKeyMissingError,
    EncryptionError,
    KeysRequiredError,
)

if TYPE_CHECKING:
    from eventmem.encryption import KeyStore

__all__ = [
    "ENVELOPE_PREFIX",
    "PLAIN",
    "PLAIN_KINDS",
    "Content",
    "EncryptedContent",
    "PlainContent",
    "envelope_bytes",
    "is_encrypted",
    "opened_in",
    "opener",
    "use_content",
]

ENVELOPE_PREFIX = b'{"kind":"encrypted","box":"'
_ENVELOPE_PREFIX_TEXT = ENVELOPE_PREFIX.decode()
_SUFFIX = b'"}'
# The kinds stored plain in an encrypted store: they hold ids, positions, hashes and
# counts (and a tombstone's reason and author), no conversation content.
PLAIN_KINDS = frozenset({"fork", "rewind", "erase", "seal"})
_NONCE = 12
_KEYS_CACHED = 4096


def is_encrypted(data: bytes | str | memoryview) -> bool:
    """Whether the stored ``data`` is an encrypted event's."""
    if type(data) is bytes:
        return data.startswith(ENVELOPE_PREFIX)
    if isinstance(data, str):
        return data.startswith(_ENVELOPE_PREFIX_TEXT)
    return bytes(data[: len(ENVELOPE_PREFIX)]) == ENVELOPE_PREFIX


def envelope_bytes(plain_bytes: int) -> int:
    """The size of the encrypted ``data`` of an event whose JSON is ``plain_bytes`` long
    (an import's bound on an encrypted event of a save within ``max_save_bytes``)."""
    box = _NONCE + plain_bytes + 16  # the nonce, the ciphertext, GCM's tag
    return len(ENVELOPE_PREFIX) + 4 * -(-box // 3) + len(_SUFFIX)


def opener(content: Content) -> Callable[[str, int, Any], Any] | None:
    """What a fold of many stored events opens each one with: None for plain content,
    which costs nothing per event then (an envelope in a plain store does not decode,
    and verify reports it as undecodable)."""
    return content.open if content.encrypted else None


def opened_in(content: Content, session_id: str) -> Callable[[int, Any], Any] | None:
    """`opener` for the events of one session, by position."""
    return partial(content.open, session_id) if content.encrypted else None


class Content(Protocol):
    """How a store keeps content: `PLAIN` or an `EncryptedContent`."""

    encrypted: bool

    def close(self, session_id: str, position: int, kind: str, data: bytes) -> bytes:
        """The ``data`` to store for the event's JSON ``data``."""
        ...

    def open(self, session_id: str, position: int, data: Any) -> Any:
        """The event JSON of stored ``data`` (plain data is returned as it is)."""
        ...

    def destroy(self, session_id: str) -> bool:
        """Destroy the session's data key (an erasure's last step); whether there was one."""
        ...

    def holds_key(self, session_id: str) -> bool:
        """Whether the session's content can be opened and closed without asking the key
        store (which may block): always, for plain content."""
        ...

    def prepare(self, session_id: str) -> None:
        """Get the session's data key from the key store (made if it has none), so the
        writes that follow need not ask: called outside any transaction."""
        ...


class PlainContent:
    """A store opened without keys: it writes content as it is, and refuses to read an
    encrypted event (it cannot)."""

    encrypted = False

    def close(self, session_id: str, position: int, kind: str, data: bytes) -> bytes:
        return data

    def open(self, session_id: str, position: int, data: Any) -> Any:
        if is_encrypted(data):
            raise KeysRequiredError(
                f"the event at position {position} of session {session_id!r} is encrypted: "
                "open the store with its key store (eventmem.open(..., encryption=keys))"
            )
        return data

    def destroy(self, session_id: str) -> bool:
        return False

    def holds_key(self, session_id: str) -> bool:
        return True

    def prepare(self, session_id: str) -> None:
        pass


PLAIN = PlainContent()


def _aad(session_id: str, position: int) -> bytes:
    return b"eventmem event\0" + session_id.encode() + b"\0" + position.to_bytes(8, "big")


class EncryptedContent:
    """Content under each session's data key from ``keys`` (AES-256-GCM)."""

    encrypted = True

    def __init__(self, keys: KeyStore) -> None:
        from eventmem.encryption import _aesgcm, _invalid_tag

        self.keys = keys
        self._aesgcm = _aesgcm
        self._invalid_tag = _invalid_tag()
        # session -> its AESGCM, the oldest first out past _KEYS_CACHED. A hit reads the
        # dict without the lock (one atomic lookup); the lock guards insertions.
        self._ciphers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def close(self, session_id: str, position: int, kind: str, data: bytes) -> bytes:
        if kind in PLAIN_KINDS:
            return data
        nonce = os.urandom(_NONCE)
        box = nonce + self._cipher(session_id, create=True).encrypt(
            nonce, data, _aad(session_id, position)
        )
        return ENVELOPE_PREFIX + binascii.b2a_base64(box, newline=False) + _SUFFIX

    def open(self, session_id: str, position: int, data: Any) -> Any:
        if not is_encrypted(data):
            return data
        raw = data.encode() if isinstance(data, str) else bytes(data)  # (bytes: no copy)
        if not raw.endswith(_SUFFIX):
            raise _unauthentic(session_id, position, "is not a readable encrypted box")
        try:
            # Not validated character by character: GCM's tag authenticates every byte.
            box = memoryview(binascii.a2b_base64(memoryview(raw)[len(ENVELOPE_PREFIX) : -2]))
        except binascii.Error:
            raise _unauthentic(session_id, position, "is not a readable encrypted box") from None
        if len(box) <= _NONCE:
            raise _unauthentic(session_id, position, "is not a readable encrypted box")
        cipher = self._cipher(session_id, create=False)
        try:
            return cipher.decrypt(box[:_NONCE], box[_NONCE:], _aad(session_id, position))
        except self._invalid_tag:
            raise _unauthentic(
                session_id,
                position,
                "does not open with the session's data key: it was changed, moved from "
                "another session or position, or written under another key",
            ) from None

    def destroy(self, session_id: str) -> bool:
        with self._lock:
            self._ciphers.pop(session_id, None)
        return bool(self.keys.destroy(session_id))

    def holds_key(self, session_id: str) -> bool:
        return session_id in self._ciphers

    def prepare(self, session_id: str) -> None:
        self._cipher(session_id, create=True)

    def _cipher(self, session_id: str, *, create: bool) -> Any:
        cipher = self._ciphers.get(session_id)
        if cipher is not None:
            return cipher
        key = self.keys.data_key(session_id, create=create)
        if key is None:
            raise DataKeyMissingError(
                f"session {session_id!r} has no data key in the key store: an erasure "
                "destroyed it after this copy of the store was made, or the key store "
                "belongs to another store"
            )
        if not isinstance(key, bytes) or len(key) != 32:
            raise EncryptionError("a key store must give 32-byte data keys")
        cipher = self._aesgcm(key)
        with self._lock:
            self._ciphers[session_id] = cipher
            while len(self._ciphers) > _KEYS_CACHED:
                del self._ciphers[next(iter(self._ciphers))]
        return cipher


_SETTING = "SELECT value FROM eventmem_settings WHERE name = 'encryption'"
_ALGORITHM = "aes-256-gcm"


def use_content(conn: Any, keys: KeyStore | None, read_only: bool) -> Content:
    """On open: keep the store's content under ``keys`` (None: plain), after checking
    that the store agrees: one that was opened with keys is refused without them. A
    writable store opened with keys for the first time remembers it. Returns the
    connection's content, now set."""
    row = conn.execute(_SETTING).fetchone()
    if keys is None:
        if row is not None:
            raise KeysRequiredError(
                "this store keeps its content encrypted: open it with its key store "
                "(eventmem.open(..., encryption=keys); the CLI reads EVENTMEM_KEYRING and "
                "EVENTMEM_MASTER_KEY)"
            )
        conn.content = PLAIN
        return PLAIN
    check = getattr(keys, "check", None)
    if callable(check):
        check()  # a key store that cannot serve refuses the open, not the first read
    if row is None and not read_only:
        conn.begin_write()
        try:
            conn.execute(
                "INSERT INTO eventmem_settings (name, value) VALUES ('encryption', ?)"
                " ON CONFLICT (name) DO NOTHING",
                (_ALGORITHM,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    content = conn.content = EncryptedContent(keys)
    return content


def _unauthentic(session_id: str, position: int, what: str) -> CorruptDatabaseError:
    return CorruptDatabaseError(
        f"the encrypted event at position {position} of session {session_id!r} {what}; run verify"
    )
