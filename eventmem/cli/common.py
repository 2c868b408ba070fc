"""What every command shares to report: its name, exit statuses, styles and output."""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import msgspec

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_USAGE",
    "PROG",
    "Progress",
    "Style",
    "arrow",
    "clip",
    "csv_cell",
    "discard_stdout",
    "error",
    "plural",
    "print_csv_row",
    "print_json",
    "printable",
    "utc_seconds",
    "write_bytes",
]

PROG = "eventmem"
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


# -- text --------------------------------------------------------------------------------


class Style:
    """Bold headings on a terminal; plain text when piped or with NO_COLOR set."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: object) -> Style:
        """The style for ``stream``: enabled on a terminal that takes colours."""
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(tty and "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb")

    def bold(self, text: str) -> str:
        """``text`` in bold."""
        return f"\033[1m{text}\033[0m" if self.enabled else text

    def dim(self, text: str) -> str:
        """``text`` dimmed."""
        return f"\033[2m{text}\033[0m" if self.enabled else text


def clip(text: str, width: int) -> str:
    """``text`` on one line (whitespace runs as one space), cut to ``width`` with ``...``."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``), for one-line output."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def utc_seconds(moment: datetime | int) -> str:
    """A time to the second in UTC; a stored time no datetime can show as its raw number
    (microseconds since the epoch)."""
    if isinstance(moment, int):
        return str(moment)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def arrow() -> str:
    """``→`` when stdout can encode it, else ``->``."""
    try:
        "→".encode(getattr(sys.stdout, "encoding", None) or "ascii")
    except (LookupError, UnicodeEncodeError):
        return "->"
    return "→"


def plural(count: int, noun: str) -> str:
    """``1 event``, ``2 events``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# -- output ------------------------------------------------------------------------------

_json = msgspec.json.Encoder().encode


def write_bytes(data: bytes) -> None:
    """Write to stdout as bytes: JSON and export lines are UTF-8 whatever the locale."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - stdout replaced by a text-only stream
        sys.stdout.write(data.decode())
    else:
        buffer.write(data)


def discard_stdout() -> None:
    """Point stdout at the null device, once its reader has closed the pipe: what is
    still buffered (flushed at exit) then goes nowhere instead of raising again."""
    try:
        fileno = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (replaced, or closed): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


def print_json(value: object) -> None:
    """Print ``value`` as one line of JSON."""
    sys.stdout.flush()
    write_bytes(_json(value) + b"\n")


def csv_cell(value: object) -> str:
    """``value`` as one CSV field, the value ``--json`` shows flattened to text: a string
    as it is, a number as its digits, ``true``/``false``, an empty field for null, a time
    as RFC 3339, and a list or object as its compact JSON."""
    plain = msgspec.to_builtins(value)
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, str):
        return plain
    if isinstance(plain, int | float):
        return str(plain)
    return _json(plain).decode()


def print_csv_row(cells: Sequence[object]) -> None:
    """Print one CSV record (RFC 4180: quoted as needed, CRLF-terminated, UTF-8 whatever
    the locale, never styled), each cell as `csv_cell` writes it."""
    text = io.StringIO()
    csv.writer(text).writerow([csv_cell(cell) for cell in cells])
    sys.stdout.flush()
    write_bytes(text.getvalue().encode())


def error(message: str) -> None:
    """Print the first line of ``message`` to stderr as ``eventmem: error: ...``."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"{PROG}: error: {first_line}", file=sys.stderr)


class Progress:
    """One updating line on stderr (``verify: 120000/1000000 events``), shown only when
    stderr is a terminal and the output is not ``--json``: silent when piped.

    Called as ``progress(done, total)``, possibly from the store's worker thread, so it
    only ever writes to stderr. Erased when the work ends.
    """

    _INTERVAL = 0.1  # seconds between redraws

    def __init__(self, label: str, enabled: bool, unit: str = "events") -> None:
        self.label = label
        self.enabled = enabled
        self.unit = unit
        self._width = 0
        self._last = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_command(cls, label: str, *, quiet: bool = False, unit: str = "events") -> Progress:
        """The progress line of a command: enabled unless ``quiet`` or stderr is piped."""
        isatty = getattr(sys.stderr, "isatty", None)
        return cls(label, bool(not quiet and isatty and isatty()), unit)

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if (total is None or done < total) and now - self._last < self._INTERVAL:
            return
        self._last = now
        amount = f"{done}" if total is None else f"{done}/{total}"
        self.show(f"{self.label}: {amount} {self.unit}")

    def show(self, text: str) -> None:
        """Replace the line with ``text``."""
        if not self.enabled:
            return
        with self._lock:
            pad = " " * max(self._width - len(text), 0)
            sys.stderr.write(f"\r{text}{pad}")
            sys.stderr.flush()
            self._width = len(text)

    def clear(self) -> None:
        """Erase the line, before the command prints its result (or an error)."""
        if not self.enabled:
            return
        with self._lock:
            if self._width:
                sys.stderr.write("\r" + " " * self._width + "\r")
                sys.stderr.flush()
                self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
