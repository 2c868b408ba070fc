"""Files on disk for the file-safety tests: byte-level snapshots, stores with a WAL as a
crash leaves it, foreign WAL files, read-only mounts and unprivileged subprocesses.

Reading a database file with plain ``open()`` while this process has a SQLite
connection to it would drop that connection's POSIX locks (closing any descriptor of a
file drops them all), so :func:`snapshot` is only taken while no store is open here.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import eventmem


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (hidden ones too), by relative name: its SHA-256,
    or ``"dir"``/``"link -> target"``. Two equal snapshots mean byte-identical trees."""
    found: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_symlink():
            found[name] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "dir"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def _save_turns(path: Path | str, session: str, turns: int) -> None:
    async with eventmem.open(path) as store:
        memory = store.token_buffer(session, max_token_limit=200)
        for i in range(turns):
            await memory.asave_context({"input": f"question {i} of {session}"}, {"output": "ok"})


def make_store(
    path: Path, sessions: tuple[str, ...] = ("kept", "exported"), turns: int = 5
) -> None:
    """A store with ``turns`` events in each session, its WAL copied into the file (so the
    file alone is the whole store, as after a clean close)."""
    for session in sessions:
        anyio.run(_save_turns, path, session, turns)
    assert not Path(f"{path}-wal").exists()


def event_count(path: Path | str) -> int:
    """The events of the store at ``path`` (opened read-only: nothing changes)."""

    async def count() -> int:
        async with eventmem.open(path, read_only=True) as store:
            return await store.count_events()

    return anyio.run(count)


def _copy_live(database: Path, destination: Path, with_shm: bool) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if suffix == "-shm" and not with_shm:
            continue
        shutil.copyfile(f"{database}{suffix}", destination / f"{database.name}{suffix}")


def crashed_copy(
    source: Path, destination: Path, *, session: str, turns: int, with_shm: bool = True
) -> None:
    """Copy ``source`` (a store) to ``destination``/``source.name`` as a crash of a writer
    leaves it: ``turns`` more events of ``session`` committed to the WAL only (with its
    ``-shm`` index, or without it, as a backup that skipped it leaves it)."""

    async def write_and_copy() -> None:
        async with eventmem.open(source) as store:
            memory = store.token_buffer(session, max_token_limit=200)
            for i in range(turns):
                await memory.asave_context({"input": f"late {i}"}, {"output": "in the WAL"})
            # Copied while the store is open: its WAL has frames no checkpoint copied yet.
            assert Path(f"{source}-wal").stat().st_size > 32
            _copy_live(source, destination, with_shm)

    anyio.run(write_and_copy)


def foreign_wal(destination: Path, scratch: Path) -> None:
    """Write at ``destination`` the WAL of another application's SQLite database (with
    committed frames no checkpoint copied into that database)."""
    other = scratch / "other-application.db"
    conn = sqlite3.connect(other, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE notes (body TEXT)")
        for i in range(40):
            conn.execute("INSERT INTO notes VALUES (?)", (f"note {i} " * 40,))
        shutil.copyfile(f"{other}-wal", destination)
    finally:
        conn.close()
    assert destination.stat().st_size > 32


def eventmem_wal(destination: Path, scratch: Path, turns: int = 8) -> None:
    """Write at ``destination`` the WAL of another eventmem store (committed frames)."""
    other = scratch / "another-store.db"
    make_store(other, sessions=("theirs",), turns=3)
    copy = scratch / "another-store-crashed"
    crashed_copy(other, copy, session="theirs", turns=turns)
    shutil.copyfile(copy / f"{other.name}-wal", destination)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextmanager
def read_only_mount(directory: Path) -> Iterator[Path]:
    """``directory`` seen through a read-only bind mount (as read-only media are, also
    for root, who ignores permission bits); skips where mounting is not possible."""
    if not is_root() or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a read-only bind mount")
    mountpoint = Path(tempfile.mkdtemp(prefix="eventmem-ro-"))
    made = subprocess.run(
        f"mount --bind '{directory}' '{mountpoint}' && mount -o remount,bind,ro '{mountpoint}'",
        shell=True,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        subprocess.run(["umount", str(mountpoint)], capture_output=True)
        mountpoint.rmdir()
        pytest.skip(f"cannot make a read-only bind mount here: {made.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        gc.collect()  # a failed sqlite3 connect keeps its descriptor until collected
        for _ in range(50):
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
                break
            gc.collect()
            anyio.run(anyio.sleep, 0.1)
        else:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)
        mountpoint.rmdir()


@contextmanager
def tiny_filesystem(kilobytes: int) -> Iterator[Path]:
    """A tmpfs of ``kilobytes``, to fill up; skips where mounting is not possible."""
    if not is_root() or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs")
    mountpoint = Path(tempfile.mkdtemp(prefix="eventmem-full-"))
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)
        mountpoint.rmdir()


# Run as the unprivileged user "nobody": the interpreter starts as root (it may live
# where nobody cannot read), imports what it needs, then drops its privileges.
_AS_NOBODY = """
import json, os, pwd, sys, tempfile
import anyio, eventmem
path, write = sys.argv[1], sys.argv[2] == "write"
result = {}
async def main(path):
    async with eventmem.open(path, read_only=True) as store:
        result["read_only"] = store.read_only
        result["sessions"] = await store.sessions()
        result["events"] = await store.count_events()
        result["ok"] = (await store.verify()).ok
        if write:
            try:
                await store.token_buffer("kept").asave_context({"input": "x"}, {"output": "y"})
            except eventmem.ReadOnlyStoreError as e:
                result["refused"] = type(e).__name__
# Everything the run below needs is imported now, while the interpreter's own files are
# still readable: a rehearsal on a store of its own.
with tempfile.TemporaryDirectory() as rehearsal:
    async def make(path):
        async with eventmem.open(path) as store:
            await store.token_buffer("kept").asave_context({"input": "a"}, {"output": "b"})
    anyio.run(make, rehearsal + "/r.db")
    anyio.run(main, rehearsal + "/r.db")
result.clear()
nobody = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(nobody.pw_gid)
os.setuid(nobody.pw_uid)
try:
    anyio.run(main, path)
except eventmem.EventmemError as e:
    result["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(result))
"""


def read_as_nobody(path: Path, *, write: bool = True) -> dict[str, Any]:
    """Open ``path`` read-only in a process running as "nobody"; what it saw."""
    if not is_root():
        pytest.skip("needs root to run a process as another user")
    done = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(path), "write" if write else "read"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextmanager
def world_readable_directory() -> Iterator[Path]:
    """A directory "nobody" can reach (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="eventmem-perm-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in [directory, *directory.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            else:
                path.chmod(0o644)
        shutil.rmtree(directory)
