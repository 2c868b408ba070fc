"""Anchors: signed digests of every session's head, kept outside the store.

The hash chain proves that a session's events are the ones that were written, in order,
up to its last event; it cannot prove that nothing is *missing after* that event (a cut
tail whose head row was fixed too), that a whole session was not deleted, or that the
history was not rewritten and chained again from scratch. An anchor can: it records,
at one moment, each session's position and the hash of the event there, signed with a
key the store never holds. ``Store.verify(anchors=..., key=...)`` then checks that every
anchored session still has an event at the anchored position, with the anchored hash.

Two kinds of key: an HMAC-SHA256 secret (``bytes``, at least 16 of them; the same
secret signs and checks), or an Ed25519 key pair from the ``cryptography`` package
(``eventmem[crypto]``): the private key signs, the public key (or the private one)
checks, so whoever checks cannot forge. A key never appears in an anchor, a report, an
error or an export; an anchor names it by ``key_id``, a digest that does not reveal it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

import msgspec

from eventmem.errors import InvalidInputError, MissingDependencyError

__all__ = [
    "ANCHOR_FORMAT",
    "Anchor",
    "AnchorKey",
    "AnchoredHead",
    "key_id",
    "sign_heads",
    "signature_ok",
]

ANCHOR_FORMAT = "eventmem-anchor"
Algorithm = Literal["hmac-sha256", "ed25519"]
AnchorKey = Any
"""An HMAC-SHA256 secret (``bytes``, 16 or more) or a ``cryptography`` Ed25519 private
or public key (typed loosely: ``cryptography`` is an optional extra)."""
_MIN_SECRET = 16


class AnchoredHead(msgspec.Struct, frozen=True, array_like=True):
    """One session at the anchor's moment: its last position and that event's hash."""

    session_id: str
    position: int
    hash: str


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """A signed record of every session's head (see the module's documentation).

    ``created_at`` is in microseconds since the epoch (UTC); ``signature`` is hex. Write
    it with `to_json` and read it back with `from_json`; keep it where the store's
    attacker cannot reach (another machine, a ticket, a WORM bucket).
    """

    format: str = ANCHOR_FORMAT
    version: int = 1
    created_at: int
    algorithm: Algorithm
    key_id: str
    heads: tuple[AnchoredHead, ...]
    signature: str = ""

    def to_json(self) -> bytes:
        """The anchor as one JSON document."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Anchor:
        """Read an anchor written by `to_json`; anything else raises
        `InvalidInputError` (its signature is checked by ``verify``, not here)."""
        try:
            anchor = msgspec.json.decode(data, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise InvalidInputError(f"not an eventmem anchor: {e}") from None
        if anchor.format != ANCHOR_FORMAT or anchor.version != 1:
            raise InvalidInputError(
                f"not an eventmem anchor of version 1 (format {anchor.format!r}, "
                f"version {anchor.version})"
            )
        return anchor


def _signed_bytes(anchor: Anchor) -> bytes:
    """What the signature covers: the anchor's JSON without its signature."""
    return msgspec.json.encode(msgspec.structs.replace(anchor, signature=""))


def _algorithm(key: AnchorKey) -> Algorithm:
    if isinstance(key, (bytes, bytearray, memoryview)):
        if len(key) < _MIN_SECRET:
            raise InvalidInputError(
                f"an HMAC anchor key needs at least {_MIN_SECRET} bytes, got {len(key)}"
            )
        return "hmac-sha256"
    if type(key).__name__ in ("Ed25519PrivateKey", "Ed25519PublicKey") or any(
        cls.__name__ in ("Ed25519PrivateKey", "Ed25519PublicKey") for cls in type(key).__mro__
    ):
        return "ed25519"
    raise InvalidInputError(
        "an anchor key is an HMAC secret (bytes) or a cryptography Ed25519 key, not a "
        f"{type(key).__name__}"
    )


def _public_bytes(key: AnchorKey) -> bytes:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as e:  # pragma: no cover - an Ed25519 key implies the package
        raise MissingDependencyError(
            "Ed25519 anchors need the cryptography package: pip install 'eventmem[crypto]'"
        ) from e
    public = key.public_key() if hasattr(key, "public_key") else key
    raw: bytes = public.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return raw


def key_id(key: AnchorKey) -> str:
    """A name for ``key`` that does not reveal it: 16 hex digits."""
    if _algorithm(key) == "hmac-sha256":
        return hmac.new(bytes(key), b"eventmem-anchor-key-id", hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(b"eventmem-anchor-key-id" + _public_bytes(key)).hexdigest()[:16]


def sign_heads(heads: list[AnchoredHead], key: AnchorKey, created_at: int) -> Anchor:
    """An anchor of ``heads`` signed with ``key`` (an Ed25519 key must be the private one)."""
    algorithm = _algorithm(key)
    if algorithm == "ed25519" and not hasattr(key, "sign"):
        raise InvalidInputError("signing an anchor takes the Ed25519 private key")
    unsigned = Anchor(
        created_at=created_at,
        algorithm=algorithm,
        key_id=key_id(key),
        heads=tuple(sorted(heads, key=lambda h: h.session_id)),
    )
    payload = _signed_bytes(unsigned)
    if algorithm == "hmac-sha256":
        signature = hmac.new(bytes(key), payload, hashlib.sha256).hexdigest()
    else:
        signature = key.sign(payload).hex()
    return msgspec.structs.replace(unsigned, signature=signature)


def signature_ok(anchor: Anchor, key: AnchorKey) -> bool:
    """Whether ``anchor`` was signed by ``key`` (the Ed25519 public or private key) and
    is unchanged since."""
    algorithm = _algorithm(key)
    if algorithm != anchor.algorithm or anchor.key_id != key_id(key):
        return False
    payload = _signed_bytes(anchor)
    if algorithm == "hmac-sha256":
        expected = hmac.new(bytes(key), payload, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, anchor.signature)
    from cryptography.exceptions import InvalidSignature

    public = key.public_key() if hasattr(key, "public_key") else key
    try:
        public.verify(bytes.fromhex(anchor.signature), payload)
    except (InvalidSignature, ValueError):
        return False
    return True
