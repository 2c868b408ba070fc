"""Output files of the ``eventmem`` command, written so that none can destroy a store.

Every command that writes a file (``export -o FILE``, and ``export`` to standard output)
goes through `safe_output`. Before a byte is written it refuses an output that is,
or resolves to (through a symlink, a hard link, another spelling of the path), the
database the command reads or one of its ``-wal``, ``-shm`` or ``-journal`` files; any
SQLite database or WAL file; a name SQLite would take for a database's companion
(``agent.db-wal`` next to ``agent.db``); a directory or a block device; and an existing
file unless ``force``. The output is then written under a temporary name in the same
directory and renamed over the target only once complete, so a failed or interrupted
command never leaves a partial file, and never a damaged original.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from eventmem.errors import EventmemError
from eventmem.store.base import is_postgres_url
from eventmem.store.sqlite.files import COMPANIONS

__all__ = ["COMPANIONS", "UnsafeOutputError", "safe_output", "store_files"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
# Names of an open descriptor (``-o /dev/stdout``): written in place, never renamed over,
# even when the descriptor is a regular file (the shell's redirection).
_DESCRIPTOR_NAMES = ("/dev/stdout", "/dev/stderr")
_DESCRIPTOR_DIRS = ("/dev/fd/", "/proc/self/fd/")


class UnsafeOutputError(EventmemError):
    """An output path was refused before anything was written to it."""


def store_files(db: str) -> list[Path]:
    """The files of the store ``db``: the database (resolved) and its companions, or
    nothing for a PostgreSQL URL."""
    if is_postgres_url(db):
        return []
    database = Path(db).expanduser().resolve()
    return [database, *(database.with_name(database.name + s) for s in COMPANIONS)]


def _same_file(st: os.stat_result, protected: Sequence[Path]) -> Path | None:
    for path in protected:
        try:
            other = path.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            return path
    return None


def _sniff(head: bytes) -> str | None:
    if head.startswith(_SQLITE_HEADER):
        return "a SQLite database"
    if head[:4] in _WAL_MAGIC:
        return "a SQLite WAL file"
    return None


def _head_of(path: Path) -> bytes:
    # Read before the command opens any store, so closing this descriptor cannot drop
    # a SQLite lock of this process.
    try:
        with path.open("rb") as stream:
            return stream.read(len(_SQLITE_HEADER))
    except OSError:
        return b""


def _companion_of_a_database(path: Path) -> Path | None:
    """The SQLite database ``path`` would be a -wal/-shm/-journal file of, if any."""
    for suffix in COMPANIONS:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            base = path.with_name(path.name[: -len(suffix)])
            if base.is_file() and _sniff(_head_of(base)) == "a SQLite database":
                return base
    return None


def _names_a_descriptor(path: Path) -> bool:
    name = str(path)
    return name in _DESCRIPTOR_NAMES or name.startswith(_DESCRIPTOR_DIRS)


def _refuse(output: str, why: str) -> UnsafeOutputError:
    return UnsafeOutputError(f"refusing to write {output}: {why}; nothing was written")


def check_output(output: str, *, force: bool, protect: Sequence[str]) -> tuple[Path, bool]:
    """Check that ``output`` may be written; return where to write and whether it is a
    stream (a character device or FIFO: written in place) rather than a file (written
    aside and renamed). Raises `UnsafeOutputError`."""
    if not output or "\x00" in output:
        raise _refuse(repr(output), "not a file name")
    protected = [file for db in protect for file in store_files(db)]
    path = Path(output).expanduser().absolute()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise _refuse(output, f"it cannot be resolved ({e})") from None
    if resolved in protected:
        raise _refuse(output, "it is the store itself, or one of its -wal/-shm/-journal files")
    companion_of = _companion_of_a_database(resolved)
    if companion_of is not None:
        raise _refuse(output, f"SQLite would take it for a file of the database {companion_of}")
    try:
        link = path.lstat()
    except FileNotFoundError:
        link = None
    except OSError as e:
        raise _refuse(output, e.strerror or str(e)) from None
    target: os.stat_result | None = None
    if link is not None:
        try:
            target = path.stat()  # through a symlink
        except FileNotFoundError:
            target = None  # a dangling symlink
    if target is not None:
        same = _same_file(target, protected)
        if same is not None:
            raise _refuse(output, f"it is the same file as {same}, a file of the store")
        if stat.S_ISDIR(target.st_mode):
            raise _refuse(output, "it is a directory")
        if stat.S_ISBLK(target.st_mode):
            raise _refuse(output, "it is a block device")
        if not stat.S_ISREG(target.st_mode):
            return path, True  # /dev/stdout, /dev/null, a FIFO: a stream, not a file
        what = _sniff(_head_of(path))
        if what is not None:
            raise _refuse(output, f"it is {what}, which an export never replaces")
        if _names_a_descriptor(path):
            return path, True  # /dev/stdout redirected to a file: the shell's file
    if link is not None and not force:
        kind = "a symlink" if stat.S_ISLNK(link.st_mode) else "a file"
        raise _refuse(output, f"{kind} of that name exists (--force replaces it)")
    if not path.parent.is_dir():
        raise _refuse(output, f"directory {path.parent} does not exist")
    return path, False


def check_stream(stream: BinaryIO, *, protect: Sequence[str]) -> None:
    """Refuse to write ``stream`` (standard output) if it is a file of the store, as
    ``eventmem export agent.db >> agent.db`` would make it, or a SQLite file."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return  # not a real file descriptor (a test's buffer)
    if not stat.S_ISREG(st.st_mode):
        return
    protected = [file for db in protect for file in store_files(db)]
    same = _same_file(st, protected)
    if same is not None:
        raise _refuse("standard output", f"it is {same}, a file of the store")
    if st.st_size and os.path.exists(f"/dev/fd/{stream.fileno()}"):
        what = _sniff(_head_of(Path(f"/dev/fd/{stream.fileno()}")))
        if what is not None:
            raise _refuse("standard output", f"it is {what}")


@contextlib.contextmanager
def _naming_write_errors(output: str) -> Iterator[None]:
    """A failed write (a full disk, ``/dev/full``) as one error naming the output."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise EventmemError(
            f"cannot write {output}: {e.strerror or e}; no partial file was left"
        ) from e


@contextlib.contextmanager
def safe_output(output: str, *, force: bool, protect: Sequence[str]) -> Iterator[BinaryIO]:
    """A binary stream for ``output``, checked by `check_output` before it is
    opened. A file is written as ``.NAME.RANDOM.partial`` beside it, synced, and renamed
    over ``output`` only when the block ends without an error; otherwise removed."""
    path, is_stream = check_output(output, force=force, protect=protect)
    if is_stream:
        with _naming_write_errors(output), path.open("wb") as sink:
            yield sink
        return
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    # O_EXCL: never through a file or symlink planted under that name. 0o666 and the
    # umask give the mode a new file gets; a replaced file keeps its own.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with _naming_write_errors(output), os.fdopen(fd, "wb") as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(partial, stat.S_IMODE(path.stat().st_mode))
        # Checked again: the target must not have become a file of the store meanwhile.
        check_output(output, force=True, protect=protect)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    if sys.platform != "win32":
        with contextlib.suppress(OSError):
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
