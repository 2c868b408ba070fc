"""``anchor``: sign every session's head with a key kept off the store; and the key files
``anchor`` and ``verify --anchors`` read (``eventmem.anchors``).

A key file is either a PEM Ed25519 key (``cryptography``: the private key signs, the
public or the private key checks), or anything else, taken byte for byte as an HMAC
secret (at least 16 bytes: ``head -c 32 /dev/urandom > anchor.key``). A key is never
printed, not even in an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from eventmem._files import check_stream, safe_output
from eventmem.anchors import Anchor, AnchorKey
from eventmem.cli.args import add_db
from eventmem.cli.common import EXIT_OK, plural
from eventmem.cli.stores import open_existing
from eventmem.errors import InvalidInputError, MissingDependencyError

__all__ = ["add_key_file", "configure_anchor", "load_anchors", "load_key", "run_anchor"]

_MAX_KEY_FILE = 64 * 1024
_MAX_ANCHOR_FILE = 1 << 30


def add_key_file(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Add ``--key-file``."""
    parser.add_argument(
        "--key-file",
        metavar="KEY",
        required=required,
        help="the anchor key: a PEM Ed25519 key, or an HMAC secret (the file's bytes, 16 or more)",
    )


def _read_limited(path: str, limit: int, what: str) -> bytes:
    try:
        with Path(path).expanduser().open("rb") as source:
            data = source.read(limit + 1)
    except OSError as e:
        raise InvalidInputError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise InvalidInputError(f"the {what} {path} is larger than {limit} bytes")
    return data


def load_key(path: str, *, signing: bool) -> AnchorKey:
    """The key in the file at ``path`` (see the module's documentation)."""
    data = _read_limited(path, _MAX_KEY_FILE, "key file")
    if not data.lstrip().startswith(b"-----BEGIN"):
        return data
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )
    except ImportError as e:
        raise MissingDependencyError(
            "a PEM key needs the cryptography package: pip install 'eventmem[crypto]'"
        ) from e
    key: object
    try:
        if b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        # the error text of a parser may quote the file: say only what is wrong
        raise InvalidInputError(
            f"the key file {path} is not a PEM key without a password"
        ) from None
    if not isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
        raise InvalidInputError(f"the key file {path} holds a PEM key that is not Ed25519")
    if signing and not isinstance(key, Ed25519PrivateKey):
        raise InvalidInputError(f"signing needs the private key; {path} holds the public one")
    return key


def load_anchors(paths: list[str]) -> list[Anchor]:
    """The anchors in the files at ``paths``."""
    anchors = []
    for path in paths:
        data = _read_limited(path, _MAX_ANCHOR_FILE, "anchor file")
        try:
            anchors.append(Anchor.from_json(data))
        except InvalidInputError as e:
            raise InvalidInputError(f"{path}: {e}") from None
    return anchors


def configure_anchor(parser: argparse.ArgumentParser) -> None:
    """Add the ``anchor`` arguments."""
    add_db(parser)
    add_key_file(parser, required=True)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the anchor to FILE (written aside, renamed once complete) instead of stdout",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace FILE if it exists (never a database)"
    )


async def _anchor(db: str, key: AnchorKey) -> Anchor:
    async with open_existing(db, read_only=True) as store:
        return await store.anchor(key)


def run_anchor(args: argparse.Namespace) -> int:
    """Run ``anchor``: the signed heads as one JSON document, to stdout or FILE."""
    key = load_key(args.key_file, signing=True)
    protect = [args.db, args.key_file]
    output: str | None = args.output
    if output is None or output == "-":
        check_stream(sys.stdout.buffer, protect=protect)
        anchor = anyio.run(_anchor, args.db, key, backend="asyncio")
        sys.stdout.buffer.write(anchor.to_json() + b"\n")
        sys.stdout.buffer.flush()
        return EXIT_OK
    with safe_output(output, force=args.force, protect=protect) as sink:
        anchor = anyio.run(_anchor, args.db, key, backend="asyncio")
        sink.write(anchor.to_json() + b"\n")
    print(
        f"anchored {plural(len(anchor.heads), 'session')} with key {anchor.key_id} "
        f"({anchor.algorithm}) to {output}"
    )
    return EXIT_OK
