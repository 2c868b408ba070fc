"""Other processes folding parts of a SQLite store, for verify and rebuild.

``python -m eventmem.store.sqlite.fold_worker`` reads one request (pickled: the
database URI and a `Part`) on standard input, folds the part on a read-only connection
of its own and writes a `PartResult` on standard output. A plain child process, not
``multiprocessing``: that would import the caller's ``__main__`` again in the child.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

import msgspec

import eventmem
from eventmem.audit import ChainChecker, Opener
from eventmem.errors import EncryptionError
from eventmem.store.content import EncryptedContent
from eventmem.store.partition import Part, PartResult, PendingPart

__all__ = ["PARALLEL_FROM", "SubprocessSpread", "fold_part"]

# Below this many events a second process costs more (its start, ~0.2 s) than it saves.
PARALLEL_FROM = 200_000
_EVENT_ROWS = (
    "SELECT session_id, position, recorded_at, CAST(data AS BLOB), hash, kind, digest FROM events"
)
_CHUNK = 5000


class _Request(msgspec.Struct, frozen=True):
    uri: str
    part: Part
    verifying: bool
    # An encrypted store's: the data keys of the part's sessions (in this pipe only).
    keys: dict[str, bytes] | None = None


class _GivenKeys:
    """The key store of a child folding part of an encrypted store: the keys its parent
    handed it, read-only."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self._keys = keys

    def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        return self._keys.get(session_id)

    def destroy(self, session_id: str) -> bool:
        raise AssertionError("a fold destroys no key")  # pragma: no cover


def fold_part(
    conn: sqlite3.Connection, part: Part, *, verifying: bool, opened: Opener | None = None
) -> PartResult:
    """Fold the part's events in one read snapshot (``verifying``: see
    `FoldSpread.start`; ``opened``: see `ChainChecker`)."""
    where, parameters = part.where()
    conn.execute("BEGIN")
    try:
        legacy: set[str] = set()
        if verifying:
            legacy = {
                sid
                for (sid,) in conn.execute(
                    "SELECT DISTINCT session_id FROM view_messages WHERE position IS NULL"
                )
            }
        checker = ChainChecker(trusted=True, stored=True, opened=opened)
        cursor = conn.execute(f"{_EVENT_ROWS} WHERE {where} ORDER BY id", parameters)

        def rows() -> object:
            while chunk := cursor.fetchmany(_CHUNK):
                yield from chunk

        checker.feed(rows())  # type: ignore[arg-type]
        if verifying:
            checker.check_views()
    finally:
        conn.execute("COMMIT")
    return PartResult(
        [fold.outcome(messages=sid in legacy) for sid, fold in checker.folds.items()],
        checker.report.problems,
        checker.report.events,
    )


class _Running:
    def __init__(self, part: Part, process: subprocess.Popen[bytes]) -> None:
        self.part = part
        self._process = process

    def result(self) -> PartResult | None:
        process = self._process
        try:
            assert process.stdout is not None
            result = pickle.load(process.stdout)
            if process.wait() != 0 or not isinstance(result, PartResult):
                return None
            return result
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
            return None
        finally:
            _close(process)


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    with suppress(OSError, subprocess.SubprocessError):
        process.wait(timeout=5)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with suppress(OSError):
                stream.close()


class SubprocessSpread:
    """Folds parts of the store at ``uri`` in child processes (``processes``: how many
    to fold with, this one included; None: one per CPU, at most 2, for stores of at
    least ``PARALLEL_FROM`` events)."""

    def __init__(
        self, uri: str, processes: int | None, content: EncryptedContent | None = None
    ) -> None:
        """``content``: an encrypted store's, whose keys each child is handed for the
        sessions of its part."""
        self._uri = uri
        self._processes = processes
        self._content = content

    def processes(self, events: int) -> int:
        """How many processes (this one included) to fold ``events`` events with."""
        if self._processes is not None:
            return self._processes
        if events < PARALLEL_FROM:
            return 1
        return max(1, min(2, os.cpu_count() or 1))

    def start(self, parts: Sequence[Part], *, verifying: bool) -> list[PendingPart]:
        """Start one child per part; a part whose child does not start is left out."""
        started: list[PendingPart] = []
        for part in parts:
            process = self._spawn()
            if process is None:
                continue
            keys = None if self._content is None else self._keys_of(part)
            request = _Request(self._uri, part, verifying, keys)
            try:
                assert process.stdin is not None
                process.stdin.write(msgspec.msgpack.encode(request))
                process.stdin.close()
            except OSError:
                _close(process)
                continue
            started.append(_Running(part, process))
        return started

    def _keys_of(self, part: Part) -> dict[str, bytes]:
        """The data keys of the sessions with events in ``part`` (a session without
        one is left out: its child reports it, as a fold here would)."""
        assert self._content is not None
        where, parameters = part.where()
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None)
        try:
            sessions = [
                sid
                for (sid,) in conn.execute(
                    f"SELECT DISTINCT session_id FROM events WHERE {where}", parameters
                )
            ]
        finally:
            conn.close()
        keys: dict[str, bytes] = {}
        for session_id in sessions:
            try:
                key = self._content.keys.data_key(session_id, create=False)
            except EncryptionError:
                continue
            if key is not None:
                keys[session_id] = key
        return keys

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        if not _interpreter():
            return None
        # The child imports this very eventmem, wherever it was imported from.
        package_root = str(Path(eventmem.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "eventmem.store.sqlite.fold_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except (OSError, ValueError, subprocess.SubprocessError):
            return None


def _interpreter() -> bool:
    """Whether ``sys.executable`` is a Python interpreter that can run the child: not in
    a frozen application, nor where an embedding program (a server, an application)
    is ``sys.executable``, which must not be started again with these arguments."""
    executable = sys.executable
    if not executable or getattr(sys, "frozen", False) or not os.path.isfile(executable):
        return False
    return Path(executable).name.lower().startswith(("python", "pypy"))


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    request = msgspec.msgpack.decode(stdin.read(), type=_Request)
    conn = sqlite3.connect(request.uri, uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        opened = None if request.keys is None else EncryptedContent(_GivenKeys(request.keys)).open
        result = fold_part(conn, request.part, verifying=request.verifying, opened=opened)
    finally:
        conn.close()
    pickle.dump(result, stdout, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
