"""The ``DB`` argument of the commands: how it is opened and how it is printed."""

from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
import urllib.parse
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import eventmem
from eventmem.cli.common import PROG
from eventmem.errors import EventmemError
from eventmem.store.base import TriggerMode, is_postgres_url

if TYPE_CHECKING:
    from eventmem.encryption import Keyring

__all__ = [
    "MASTER_KEY_VARIABLE",
    "creatable",
    "keys_from_environment",
    "master_key_from",
    "open_existing",
    "psql_inspect",
    "require_session",
    "shell_arg",
    "shown",
    "wal_bytes",
]


def shown(db: str) -> str:
    """``db`` as the command prints it: a URL without its password."""
    if not is_postgres_url(db):
        return db
    try:
        parts = urllib.parse.urlsplit(db)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise EventmemError(f"invalid database URL: {e}") from None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key != "password"]
    rest = parts.query if len(kept) == len(query) else urllib.parse.urlencode(kept)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=rest))


def shell_arg(db: str) -> str:
    """``db`` (as shown) quoted for a shell command inside a single-quoted hint: in double
    quotes where that is enough (a URL's ``?``), else as ``shlex.quote`` does."""
    text = shown(db)
    if shlex.quote(text) == text:
        return text
    if not any(c in text for c in "\"$`\\!'"):
        return f'"{text}"'
    return shlex.quote(text)


def psql_inspect(db: str, query: str) -> str:
    """A ``psql`` command running ``query`` (on ``events``) in the store's schema; ``db``
    is a URL the store opened, so psycopg is there."""
    # The store's own reading of the URL: what it connects to, and in which schema.
    from eventmem.store.postgres.target import Target

    target = Target(shown(db))
    schema = target.schema
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        schema = '"' + schema.replace('"', '""') + '"'
    query = query.replace(" FROM events ", f" FROM {schema}.events ")
    return f"psql {shlex.quote(target.conninfo)} -c {shlex.quote(query)}"


def creatable(path: str) -> Path:
    """``path`` resolved, once its directory is known to exist (commands that create)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.parent.is_dir():
        # checked here: the message names the missing directory, not a failed open
        raise EventmemError(f"cannot create {path}: directory {resolved.parent} does not exist")
    return resolved


def open_existing(
    path: str, *, triggers: TriggerMode = "require", read_only: bool = False
) -> AbstractAsyncContextManager[eventmem.Store]:
    """Open a store that must already exist: reading commands never create a database
    (in PostgreSQL, ``create=False`` refuses a schema without a store). The commands
    that only read open it ``read_only``: they write nothing, not even a migration, and
    work on read-only media."""
    keys = keys_from_environment()
    if is_postgres_url(path):
        shown(path)  # a malformed URL is refused before connecting
        return eventmem.open(
            path, create=False, triggers=triggers, read_only=read_only, encryption=keys
        )
    target = Path(path).expanduser()
    if target.is_file() and target.stat().st_size == 0 and wal_bytes(target) == 0:
        # SQLite takes an empty file for a new database, and eventmem would write its
        # schema into it: a command that only reads must not turn a file into a store.
        raise EventmemError(f"cannot open {path}: the file is empty, not an eventmem database")
    return eventmem.open(
        path, create=False, triggers=triggers, read_only=read_only, encryption=keys
    )


KEYRING_VARIABLE = "EVENTMEM_KEYRING"
MASTER_KEY_VARIABLE = "EVENTMEM_MASTER_KEY"


def keys_from_environment() -> Keyring | None:
    """The keyring the environment names (``EVENTMEM_KEYRING``: its file, and
    ``EVENTMEM_MASTER_KEY``: the master key as 64 hex digits or base64), or None. Never
    from an argument: a key on a command line is seen by every user of the machine."""
    path = os.environ.get(KEYRING_VARIABLE)
    text = os.environ.get(MASTER_KEY_VARIABLE)
    if not path and not text:
        return None
    if not path or not text:
        raise EventmemError(
            f"{KEYRING_VARIABLE} and {MASTER_KEY_VARIABLE} go together: set both (the "
            "keyring's file and its master key) or neither"
        )
    from eventmem.encryption import Keyring

    return Keyring(path, master_key=master_key_from(text.strip()))


def master_key_from(text: str, variable: str = MASTER_KEY_VARIABLE) -> bytes:
    """The master key written as 64 hex digits or base64, read from ``variable`` (the
    error never shows it)."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "==", validate=False)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise EventmemError(
            f"{variable} is not a master key: it must be 32 bytes, written as 64 hex "
            "digits or in base64"
        )
    return key


def wal_bytes(target: Path) -> int:
    """The size of the SQLite file ``target``'s write-ahead log (0 if it has none)."""
    try:
        return (target.parent / (target.name + "-wal")).stat().st_size
    except OSError:
        return 0


async def require_session(store: eventmem.Store, session: str, path: str) -> int:
    """The session's version (its last position); an error if it has no events."""
    version = await store.version(session)
    if version == 0:
        raise EventmemError(
            f"no session {session!r} in {shown(path)} (see '{PROG} sessions {shell_arg(path)}')"
        )
    return version
