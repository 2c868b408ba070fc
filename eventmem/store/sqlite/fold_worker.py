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
from eventmem.audit import ChainChecker
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


def fold_part(conn: sqlite3.Connection, part: Part, *, verifying: bool) -> PartResult:
    """Fold the part's events in one read snapshot (``verifying``: see
    `FoldSpread.start`)."""
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
        checker = ChainChecker(trusted=True, stored=True)
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

    def __init__(self, uri: str, processes: int | None) -> None:
        self._uri = uri
        self._processes = processes

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
            request = _Request(self._uri, part, verifying)
            try:
                assert process.stdin is not None
                process.stdin.write(msgspec.msgpack.encode(request))
                process.stdin.close()
            except OSError:
                _close(process)
                continue
            started.append(_Running(part, process))
        return started

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
        result = fold_part(conn, request.part, verifying=request.verifying)
    finally:
        conn.close()
    pickle.dump(result, stdout, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
