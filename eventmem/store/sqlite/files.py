"""A SQLite store's files, looked at before any connection that could change them.

SQLite trusts whatever ``-wal`` file lies beside a database: the first connection that
can write replays it into the main file when it checkpoints (at the latest when it
closes), even if the WAL belongs to another database and the open is then refused. So a
``-wal`` with frames in it is checked first, through connections that cannot checkpoint
(see `check_wal`). This module also decides how a store opened ``read_only`` is
connected (see `plan_open`), so that it writes nothing and leaves no file behind.

Every function here runs on a worker thread and may raise ``sqlite3.Error``, which the
backend translates.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from eventmem.errors import (
    InvalidInputError,
    NotAnEventmemDatabaseError,
    SchemaVersionError,
    StorageError,
)
from eventmem.store.sqlite.migrations import _applied_versions

__all__ = ["COMPANIONS", "OpenPlan", "check_wal", "companion", "plan_open", "remove_created"]

COMPANIONS = ("-wal", "-shm", "-journal")
WAL_MAGIC = (0x377F0682, 0x377F0683)  # big- and little-endian checksums
_WAL_HEADER = 32
# One WAL check at a time in this process: a check that has to open a private view of
# the files (see _wal_view) shares SQLite's in-process state of the file with any other
# connection to it, which must not start meanwhile.
_CHECKING = threading.Lock()


def companion(database: Path, suffix: str) -> Path:
    """``database``'s ``-wal``, ``-shm`` or ``-journal`` file (``database`` resolved)."""
    return database.with_name(database.name + suffix)


def _wal_has_frames(wal: Path) -> bool:
    """Whether SQLite would look for frames in ``wal``: it exists, is larger than its
    header, and the header is a WAL header (SQLite ignores and resets any other)."""
    try:
        if wal.stat().st_size <= _WAL_HEADER:
            return False
        # The WAL file itself carries no POSIX lock (SQLite locks the -shm and the main
        # file), so opening and closing it here cannot drop another connection's locks.
        with wal.open("rb") as stream:
            header = stream.read(_WAL_HEADER)
    except FileNotFoundError:
        return False
    return len(header) == _WAL_HEADER and int.from_bytes(header[:4], "big") in WAL_MAGIC


def _refuse_wal(where: str, why: str) -> NotAnEventmemDatabaseError:
    return NotAnEventmemDatabaseError(
        f"{where}: the -wal file beside it {why}; refusing to open it, nothing was changed "
        "(SQLite would copy that WAL into the database). Move the -wal file away if it is "
        "not this store's"
    )


_EDGES = (
    "SELECT id, session_id, position, hash FROM events"
    " WHERE id IN ((SELECT min(id) FROM events), (SELECT max(id) FROM events))"
)


def _main_file_events(database: Path, where: str) -> list[tuple[int, bytes]] | None:
    """The first and last event in the main file alone, ignoring the WAL: ``[]`` for a
    store without events, None where the main file alone cannot be read consistently
    (a checkpoint was cut short, or one is running: then it proves nothing)."""
    uri = database.as_uri() + "?mode=ro&immutable=1"  # reads the main file only, no lock
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
        try:
            applied = _applied_versions(conn)
        except NotAnEventmemDatabaseError as e:
            raise NotAnEventmemDatabaseError(f"{where}: {e}") from None
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e).lower():
                raise NotAnEventmemDatabaseError(
                    f"{where} is not a SQLite database ({e}), though a -wal file lies beside "
                    "it; refusing to open it, nothing was changed"
                ) from None
            return None
        except SchemaVersionError:
            return None  # a schema history the check through the WAL judges
        if applied is None:
            return []
        try:
            rows = conn.execute(_EDGES).fetchall()
        except sqlite3.DatabaseError:
            return None
    edges = []
    for event_id, session_id, position, digest in rows:
        well_formed = (
            isinstance(event_id, int)
            and isinstance(session_id, str)
            and isinstance(position, int)
            and isinstance(digest, bytes)
            and len(digest) == 32
        )
        if not well_formed:
            return None  # a page torn by a checkpoint in progress, read as a row
        edges.append((event_id, digest))
    return edges


@contextmanager
def _wal_view(database: Path, busy_timeout_ms: int) -> Iterator[sqlite3.Connection]:
    """A connection that reads the database with its WAL and can write neither.

    ``mode=ro`` cannot checkpoint. It needs the WAL's index, the ``-shm`` file: if there
    is one (another connection is open, or one crashed), it is used as it is. If there is
    none, ``mode=ro`` would create it beside the database; instead the check reads a
    private view in a scratch directory next to it, a hard link of the main file and a
    copy of the WAL, removed afterwards. (Where hard links are impossible it falls back
    to reading in place, and then leaves a ``-shm`` file behind: an index, no data.)
    """
    scratch: Path | None = None
    view = database
    if not companion(database, "-shm").exists():
        try:
            scratch = Path(
                tempfile.mkdtemp(prefix=f".{database.name}.", suffix=".check", dir=database.parent)
            )
            os.link(database, scratch / "db")
            shutil.copyfile(companion(database, "-wal"), scratch / "db-wal")
            view = scratch / "db"
        except OSError:
            view = database
    try:
        uri = view.as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            yield conn
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def check_wal(database: Path, where: str, busy_timeout_ms: int) -> None:
    """Refuse ``database`` if the ``-wal`` beside it is not its own, before SQLite could
    copy it into the file.

    A WAL with frames is accepted only if the database seen through it (read by
    connections that cannot write) is still an eventmem store whose events include those
    of the main file alone: events are never changed or removed, so the first and last
    event of the main file must be there, with the same hashes. A WAL of another
    application's database, of another eventmem store, or one beside a file that is empty
    or not SQLite at all, is refused, and the main file and the WAL stay byte for byte as
    they were. A WAL left by a crash of this store passes, and SQLite replays it.
    """
    if not _wal_has_frames(companion(database, "-wal")):
        return
    if not database.exists() or database.stat().st_size == 0:
        raise _refuse_wal(
            where,
            "has frames but the database file is "
            + ("missing" if not database.exists() else "empty")
            + " (the WAL of another database, or what is left of a deleted one)",
        )
    with _CHECKING:
        edges = _main_file_events(database, where)
        with _wal_view(database, busy_timeout_ms) as view:
            try:
                _applied_versions(view)
            except NotAnEventmemDatabaseError:
                raise _refuse_wal(where, "belongs to another application's database") from None
            for event_id, digest in edges or ():
                row = view.execute("SELECT hash FROM events WHERE id = ?", (event_id,)).fetchone()
                if row is None or not isinstance(row[0], bytes) or row[0] != digest:
                    raise _refuse_wal(
                        where,
                        f"does not hold this store's event {event_id} as the file does: it "
                        "belongs to another eventmem store (or to an older copy of this one)",
                    )


@dataclass
class OpenPlan:
    """How to connect: the URI, and the companions that did not exist before (a store
    opened read-only removes those it made, see `remove_created`)."""

    uri: str
    absent: list[Path] = field(default_factory=list)


def _writable(path: Path) -> bool:
    # os.access answers for the real user and for read-only mounts and immutable files,
    # also as root (who may otherwise write anything).
    return os.access(path, os.W_OK)


def plan_open(target: Path, where: str, *, create: bool, read_only: bool) -> OpenPlan:
    """The connection URI for ``target`` (absolute, not resolved), after the checks."""
    if target.is_dir():
        raise StorageError(f"cannot open {where}: it is a directory")
    if (read_only or not create) and not target.exists():
        raise StorageError(f"cannot open {where}: no such database file")
    database = target.resolve()  # SQLite puts the -wal beside the file a symlink names
    if not target.exists():
        for suffix in COMPANIONS:
            if not database.name.endswith(suffix) or database.name == suffix:
                continue
            base = database.with_name(database.name[: -len(suffix)])
            if base.is_file():
                # SQLite would take the new store for that file's WAL, journal or index,
                # and overwrite it, or replay it into that file.
                raise InvalidInputError(
                    f"cannot create {where}: SQLite would take a file of that name for the "
                    f"{suffix[1:]} file of {base}; choose another name"
                )
    uri = target.as_uri()
    if not read_only:
        return OpenPlan(uri if create else uri + "?mode=rw")
    if database.stat().st_size == 0:
        raise NotAnEventmemDatabaseError(
            f"{where} is empty, not an eventmem store (opened read-only: left as it is)"
        )
    wal = companion(database, "-wal")
    if wal.exists():
        # In use, or left by a crash: read it with SQLite's shared index (-shm), which
        # mode=ro creates if it is missing (and SQLite can: the directory is writable).
        return OpenPlan(uri + "?mode=ro")
    if not (_writable(database) and _writable(database.parent)):
        # No one can write this file through SQLite (a WAL database needs its -wal and
        # -shm, which cannot be made here), so it cannot change: read it as immutable,
        # which needs neither (read-only media, read-only directories, 0444 files).
        return OpenPlan(uri + "?mode=ro&immutable=1")
    # A writable file: other processes may write it while this store reads, so read it
    # the way SQLite shares it, through the -wal and -shm, which mode=ro creates; they
    # are removed on close if they are still unused (remove_created).
    return OpenPlan(uri + "?mode=ro", [wal, companion(database, "-shm")])


def remove_created(target: Path, plan: OpenPlan) -> None:
    """After a read-only store closed: remove the empty ``-wal`` and its ``-shm`` that
    its connection made, the way SQLite does when the last connection closes.

    A read-only connection cannot: SQLite removes them only from a connection that can
    checkpoint. So one is opened for that alone, if the WAL is still empty (nothing to
    copy into the file, whichever process wrote it); if another connection has the store
    open, SQLite leaves the files to it.
    """
    if not plan.absent:
        return
    wal = plan.absent[0]
    with suppress(OSError):
        if wal.stat().st_size != 0:
            return  # someone wrote meanwhile: their files now, not ours to remove
    with (
        suppress(sqlite3.Error),
        closing(
            sqlite3.connect(target.as_uri() + "?mode=rw", uri=True, isolation_level=None)
        ) as conn,
    ):
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA schema_version").fetchone()
