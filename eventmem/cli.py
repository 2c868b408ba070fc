"""The ``eventmem`` command (also ``python -m eventmem``).

Subcommands register themselves in ``COMMANDS``; each one adds its arguments to a
subparser and names the function that runs it. A command returns its exit status:

* 0 -- everything is fine;
* 1 -- a problem was found (any [`EventmemError`][eventmem.EventmemError], an unreadable file...);
* 2 -- usage error (bad arguments; argparse reports them).

Errors are printed to stderr as one line, ``eventmem: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, cast

import anyio
import msgspec

import eventmem
from eventmem._files import check_stream, safe_output, store_files
from eventmem.audit import Problem, max_line_bytes, rewrite_for_replay
from eventmem.errors import EventmemError
from eventmem.events import Event, MemoryCleared, StepRecorded, StoredEvent, TurnSaved
from eventmem.messages import Message, buffer_string
from eventmem.projection import MemoryBuffer, apply
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES, check_max_save_bytes, stored_time
from eventmem.store.base import TriggerMode, is_postgres_url
from eventmem.tokens import resolve_counter

__all__ = ["COMMANDS", "DEMO_CONVERSATION", "Command", "build_parser", "main"]

PROG = "eventmem"
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

DEFAULT_DEMO_DB = "eventmem-demo.db"
DEFAULT_DEMO_LIMIT = 120
DEFAULT_DEMO_MODEL = "gpt-4o"
_MAX_SHOWN = 8  # buffer lines the demo prints


# A small travel-planning support chat: (what the user says, what the assistant answers).
# Turn 1 carries facts (dates, budget, diet) that the token limit pushes out of the
# buffer later on, while the log keeps them.
DEMO_CONVERSATION: tuple[tuple[str, str], ...] = (
    (
        "Hi! I'm planning 4 days in Lisbon, 12-15 May, for two adults. "
        "Budget is about 1500 EUR without flights, and my partner is vegetarian.",
        "Lovely choice for May. I'll keep to 1500 EUR for two and flag vegetarian-friendly "
        "places. Shall we start with where to stay?",
    ),
    (
        "Yes please. We like walking and don't want to rent a car.",
        "Then stay central: Baixa or Chiado are flat-ish and close to trams and the metro. "
        "Alfama is charming but steep.",
    ),
    (
        "Chiado sounds good. Any hotel around 150 EUR a night?",
        "Several boutique hotels in Chiado are 130-170 EUR in mid-May. Book soon: the week "
        "of 12 May is busy.",
    ),
    (
        "How do we get from the airport to Chiado?",
        "Take the red metro line to Alameda, change to the green line for Baixa-Chiado: "
        "about 35 minutes. A taxi is 20-25 minutes.",
    ),
    (
        "Is the Lisboa Card worth it?",
        "For 3 or more museum visits plus transport, yes. The 72-hour card covers metro, "
        "trams and the Belem monuments.",
    ),
    (
        "We'd love a day trip. Sintra or Cascais?",
        "Sintra for palaces and forest walks, Cascais for the sea. Sintra is 40 minutes by "
        "train from Rossio; go early to beat the queues.",
    ),
    (
        "Let's do Sintra on day 2. Where should we have dinner that night?",
        "Back in Lisbon, try a tasca in Principe Real: several have good vegetable dishes, "
        "and dinner for two is around 50 EUR.",
    ),
    (
        "Can you remind me of our total budget and dates?",
        "Your dates and budget were in our first messages, which are no longer in my "
        "context window. Could you repeat them?",
    ),
    (
        "Sure: 12-15 May, 1500 EUR. Does the plan still fit?",
        "Yes: about 600 EUR hotel, 120 EUR Lisboa Cards, 40 EUR Sintra, leaving roughly "
        "700 EUR for food and extras.",
    ),
    (
        "Perfect. Please send me a short summary.",
        "Lisbon 12-15 May: Chiado hotel, metro from the airport, Lisboa Card, Sintra on "
        "day 2, dinner in Principe Real. Boa viagem!",
    ),
)


# -- command registry ------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, and how it adds arguments and runs."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _save_bytes(text: str) -> int:
    try:
        return check_max_save_bytes(_non_negative_int(text))
    except EventmemError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _model_name(text: str) -> str:
    try:
        eventmem.OpenAIChatCounter(text)
    except EventmemError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


# -- demo --------------------------------------------------------------------------------


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=DEFAULT_DEMO_DB,
        help=(
            "SQLite file or postgresql:// URL to write (created if missing; default: "
            f"./{DEFAULT_DEMO_DB})"
        ),
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=_non_negative_int,
        default=DEFAULT_DEMO_LIMIT,
        help=f"max_token_limit of the buffer (default: {DEFAULT_DEMO_LIMIT})",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        type=_model_name,
        default=DEFAULT_DEMO_MODEL,
        help=f"model whose tokenizer counts the tokens (default: {DEFAULT_DEMO_MODEL})",
    )


class _Style:
    """Bold headings on a terminal; plain text when piped or with NO_COLOR set."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: object) -> _Style:
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(tty and "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb")

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.enabled else text

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.enabled else text


def _clip(text: str, width: int) -> str:
    text = _printable(" ".join(text.split()))
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def _printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x00``), for one-line output."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _new_session_id() -> str:
    now = datetime.now(timezone.utc)
    return "demo-" + now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _demo(path: str, resolved: str, limit: int, model: str) -> int:
    style = _Style.for_stream(sys.stdout)
    width = max(min(shutil.get_terminal_size((100, 24)).columns, 100), 40)

    async with eventmem.open(path) as store:
        base = session = _new_session_id()
        suffix = 1
        while await store.version(session) > 0:  # an older run got the same id
            suffix += 1
            session = f"{base}-{suffix}"
        memory = store.token_buffer(
            session, max_token_limit=limit, model=model, return_messages=True
        )
        print(style.bold(f"eventmem demo: session {session}"))
        print(f"max_token_limit {limit}, tokens counted for {model} ({memory.counter.name})")
        print()
        print(style.dim("turn  buffer tokens  visible  pruned  events"))
        saved = 0
        messages: list[Message] = []
        for turn, (question, answer) in enumerate(DEMO_CONVERSATION, start=1):
            await memory.asave_context({"input": question}, {"output": answer})
            saved += 2
            loaded = await memory.aload_memory_variables({})
            messages = loaded[memory.memory_key]
            tokens = eventmem.count_tokens(messages, model=model)
            events = await store.version(session)  # positions are gapless: last = count
            print(
                f"{turn:>4}  {f'{tokens}/{limit}':>13}  {len(messages):>7}  "
                f"{saved - len(messages):>6}  {events:>6}"
            )

        tokens = eventmem.count_tokens(messages, model=model)
        print()
        print(style.bold(f"Buffer the model sees now ({len(messages)} messages, {tokens} tokens):"))
        shown = messages
        if len(messages) > _MAX_SHOWN:  # keep the account short with a large --limit
            shown = messages[-(_MAX_SHOWN - 1) :]
            print(f"  ... {len(messages) - len(shown)} older messages not shown")
        for message in shown:
            print("  " + _clip(message.buffer_line(), width - 2))
        if not messages:
            print("  (empty: no message fits within the limit)")

        log = [event async for event in store.events(session)]
        # Messages enter the buffer from turns and (for agent memories) steps.
        saved_by = [
            (e.position, e.data.messages)
            for e in log
            if isinstance(e.data, (TurnSaved, StepRecorded)) and e.data.messages
        ]
        in_log = sum(len(m) for _, m in saved_by)
        print()
        print(style.bold("The full history stays in the log:"))
        print(
            f"  {len(log)} events, {in_log} messages saved, {len(messages)} visible, "
            f"{in_log - len(messages)} pruned from the buffer (not from the log)"
        )
        if saved_by:
            position, first = saved_by[0]
            lead = f"  event {position} still holds: "
            print(lead + _clip(first[0].buffer_line(), width - len(lead)))
            print(f"  hash chain head (event {log[-1].position}): {log[-1].hash[:16]}...")
        sessions = await store.sessions()

    async with eventmem.open(path, create=False, read_only=True) as store:
        reopened = await store.messages(session)
    where = _shown(path)
    if reopened != messages:
        _error(
            f"reopened {where}: the buffer differs "
            f"({len(reopened)} messages instead of {len(messages)})"
        )
        return EXIT_PROBLEM
    print(f"reopened {where}: buffer identical")
    print()
    noun = "session" if len(sessions) == 1 else "sessions"
    print(f"database: {resolved} ({len(sessions)} {noun}; each run adds one)")
    query = "SELECT session_id, position, kind FROM events ORDER BY id"
    if is_postgres_url(path):
        print(f"inspect it: {_psql_inspect(path, query)}")
    else:
        print(f"inspect it: sqlite3 {shlex.quote(path)} {shlex.quote(query)}")
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    path: str = args.db
    limit: int = args.limit
    model: str = args.model
    resolved = _shown(path) if is_postgres_url(path) else str(_creatable(path))
    return anyio.run(_demo, path, resolved, limit, model, backend="asyncio")


# -- shared by the store commands ----------------------------------------------------------


def _shown(db: str) -> str:
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


def _shell_arg(db: str) -> str:
    """``db`` (as shown) quoted for a shell command inside a single-quoted hint: in double
    quotes where that is enough (a URL's ``?``), else as ``shlex.quote`` does."""
    shown = _shown(db)
    if shlex.quote(shown) == shown:
        return shown
    if not any(c in shown for c in "\"$`\\!'"):
        return f'"{shown}"'
    return shlex.quote(shown)


def _psql_inspect(db: str, query: str) -> str:
    """A ``psql`` command running ``query`` (on ``events``) in the store's schema."""
    parts = urllib.parse.urlsplit(_shown(db))
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in pairs if key == "schema"]
    schema = schemas[-1] if schemas else "eventmem"
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        schema = '"' + schema.replace('"', '""') + '"'
    rest = urllib.parse.urlencode([(key, value) for key, value in pairs if key != "schema"])
    server = urllib.parse.urlunsplit(parts._replace(query=rest))
    query = query.replace(" FROM events ", f" FROM {schema}.events ")
    return f"psql {shlex.quote(server)} -c {shlex.quote(query)}"


def _creatable(path: str) -> Path:
    """``path`` resolved, once its directory is known to exist (commands that create)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.parent.is_dir():
        # Checked here for a clear message (and because aiosqlite's worker thread can
        # print a stray traceback after a failed connect once the event loop is gone).
        raise EventmemError(f"cannot create {path}: directory {resolved.parent} does not exist")
    return resolved


def _open_existing(
    path: str, *, triggers: TriggerMode = "require", read_only: bool = False
) -> AbstractAsyncContextManager[eventmem.Store]:
    """Open a store that must already exist: reading commands never create a database
    (in PostgreSQL, ``create=False`` refuses a schema without a store). The commands
    that only read open it ``read_only``: they write nothing, not even a migration, and
    work on read-only media."""
    if is_postgres_url(path):
        _shown(path)  # a malformed URL is refused before connecting
        return eventmem.open(path, create=False, triggers=triggers, read_only=read_only)
    target = Path(path).expanduser()
    if target.is_file() and target.stat().st_size == 0 and _wal_bytes(target) == 0:
        # SQLite takes an empty file for a new database, and eventmem would write its
        # schema into it: a command that only reads must not turn a file into a store.
        raise EventmemError(f"cannot open {path}: the file is empty, not an eventmem database")
    return eventmem.open(path, create=False, triggers=triggers, read_only=read_only)


def _wal_bytes(target: Path) -> int:
    try:
        return (target.parent / (target.name + "-wal")).stat().st_size
    except OSError:
        return 0


def _add_db(parser: argparse.ArgumentParser, *, creates: bool = False) -> None:
    parser.add_argument(
        "db",
        metavar="DB",
        help=(
            "eventmem database: a SQLite file or a postgresql:// URL (created if missing)"
            if creates
            else "eventmem database: a SQLite file or a postgresql:// URL (must exist; never "
            "created)"
        ),
    )


def _add_session(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="session id (see 'eventmem sessions')")


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} instead of text")


async def _require_session(store: eventmem.Store, session: str, path: str) -> int:
    """The session's version (its last position); an error if it has no events."""
    version = await store.version(session)
    if version == 0:
        raise EventmemError(
            f"no session {session!r} in {_shown(path)} (see '{PROG} sessions {_shell_arg(path)}')"
        )
    return version


def _events(store: eventmem.Store, session: str) -> AsyncGenerator[StoredEvent, None]:
    # Store.events is an async generator; typed as one so it can be closed early.
    return cast(AsyncGenerator[StoredEvent, None], store.events(session))


def _fold_one(buffer: MemoryBuffer, event: Event, position: int, session: str) -> None:
    try:
        apply(buffer, event, position)
    except ValueError as e:
        raise EventmemError(
            f"session {session!r} position {position} does not fold ({e}); run '{PROG} verify'"
        ) from None


_json = msgspec.json.Encoder().encode


def _write_bytes(data: bytes) -> None:
    """Write to stdout as bytes: JSON and export lines are UTF-8 whatever the locale."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # pragma: no cover - stdout replaced by a text-only stream
        sys.stdout.write(data.decode())
    else:
        buffer.write(data)


def _print_json(value: object) -> None:
    sys.stdout.flush()
    _write_bytes(_json(value) + b"\n")


def _utc_seconds(moment: datetime | int) -> str:
    """A time to the second in UTC; a stored time no datetime can show as its raw number
    (microseconds since the epoch)."""
    if isinstance(moment, int):
        return str(moment)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _arrow() -> str:
    """``→`` when stdout can encode it, else ``->``."""
    try:
        "→".encode(getattr(sys.stdout, "encoding", None) or "ascii")
    except (LookupError, UnicodeEncodeError):
        return "->"
    return "→"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Progress:
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
    def for_command(cls, label: str, *, quiet: bool = False, unit: str = "events") -> _Progress:
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

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


# -- sessions ----------------------------------------------------------------------------


def _configure_sessions(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    _add_json(parser, "one JSON object per session (JSON Lines)")


async def _sessions(path: str, as_json: bool) -> int:
    async with _open_existing(path, read_only=True) as store:
        rows = await store.session_summaries()
    if as_json:
        for row in rows:
            _print_json(row)
        return EXIT_OK
    if not rows:
        print(f"no sessions in {_shown(path)}")
        return EXIT_OK
    style = _Style.for_stream(sys.stdout)
    shown = [_printable(r.session_id) for r in rows]
    width = max(len("session"), *(len(session) for session in shown))
    header = f"{'session':<{width}}  events  visible  tokens  last activity"
    print(style.dim(header))
    for session, r in zip(shown, rows, strict=True):
        last = "-" if r.last_activity is None else _utc_seconds(r.last_activity)
        print(f"{session:<{width}}  {r.events:>6}  {r.visible_messages:>7}  {r.tokens:>6}  {last}")
    total = sum(r.events for r in rows)
    print(f"{_plural(len(rows), 'session')}, {_plural(total, 'event')}")
    return EXIT_OK


def _run_sessions(args: argparse.Namespace) -> int:
    return anyio.run(_sessions, args.db, args.json, backend="asyncio")


# -- log ---------------------------------------------------------------------------------


@dataclass
class _Placement:
    """Where each event's messages went in the session's buffer sequence (``seq``)."""

    version: int = 0
    seqs: dict[int, tuple[int, ...]] = field(default_factory=dict)  # in message order
    abandoned: set[int] = field(default_factory=set)
    watermark: int = 0  # the buffer now: watermark <= seq < next_seq
    next_seq: int = 0

    def visibility(self, position: int, event: Event) -> tuple[str, list[bool]]:
        """The event's marker (visible, pruned, k/n visible, pending, abandoned, -) and
        whether each of its messages is in the buffer now."""
        if isinstance(event, MemoryCleared):
            return "-", []
        if position in self.abandoned:
            return "abandoned", [False] * len(event.messages)
        seqs = self.seqs.get(position)
        if seqs is None:  # a step recorded live whose turn is not saved yet
            return "pending", [False] * len(event.messages)
        flags = [self.watermark <= seq < self.next_seq for seq in seqs]
        if not flags:
            return "-", flags
        shown = sum(flags)
        if shown == len(flags):
            return "visible", flags
        return ("pruned" if shown == 0 else f"{shown}/{len(flags)} visible"), flags


async def _place(store: eventmem.Store, session: str) -> _Placement:
    """Fold the session's events, noting the ``seq`` numbers each event's messages get.

    A turn's messages enter the buffer as [input, its steps' messages..., the rest]
    (see ``eventmem.projection.apply``), so the numbers are exact, not guessed.
    """
    placed = _Placement()
    buffer = MemoryBuffer()
    async for stored in store.events(session):
        event, position = stored.data, stored.position
        cursor = buffer.next_seq
        if isinstance(event, TurnSaved):
            skipped = set(event.abandoned)
            own = [cursor] if event.messages else []
            cursor += len(own)
            for step_position, step in buffer.pending:
                if step_position in skipped:
                    placed.abandoned.add(step_position)
                    continue
                placed.seqs[step_position] = tuple(range(cursor, cursor + len(step.messages)))
                cursor += len(step.messages)
            rest = len(event.messages) - len(own)
            own.extend(range(cursor, cursor + rest))
            cursor += rest
            placed.seqs[position] = tuple(own)
        _fold_one(buffer, event, position, session)
        if buffer.next_seq != cursor:  # pragma: no cover - apply's numbering changed
            raise EventmemError(f"session {session!r} position {position}: cannot place messages")
        placed.version = position
    placed.watermark, placed.next_seq = buffer.watermark, buffer.next_seq
    return placed


def _gist(message: Message, width: int) -> str:
    prefix = {"human": "Human", "ai": "AI"}.get(message.role, message.role.capitalize())
    text = message.content
    if not text.strip() and (message.tool_calls or message.function_call):
        names = [call.name for call in message.tool_calls]
        if message.function_call is not None:
            names.append(str(message.function_call.get("name", "?")))
        text = "calls " + ", ".join(names)
    return f"{prefix}: {_clip(text, width)}"


def _summary(event: Event, arrow: str, width: int = 40) -> str:
    if isinstance(event, TurnSaved):
        messages = event.messages
        text = _gist(messages[0], width) if messages else "(no messages)"
        if len(messages) > 1:
            text += f" {arrow} {_gist(messages[-1], width)}"
        if event.steps:
            text += f" +{_plural(len(event.steps), 'step')}"
        if event.abandoned:
            text += f" ({len(event.abandoned)} abandoned)"
        return text
    if isinstance(event, StepRecorded):
        text = f"tool({_clip(event.action.tool, width)}) {arrow} {_clip(event.observation, width)}"
        return text + " (live)" if event.live else text
    return "cleared"


def _event_tokens(event: Event) -> int:
    return sum(event.tokens) if isinstance(event, (TurnSaved, StepRecorded)) else 0


def _configure_log(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    _add_session(parser)
    _add_json(parser, "one JSON object per event, with its full data (JSON Lines)")


async def _log(path: str, session: str, as_json: bool) -> int:
    arrow = _arrow()
    style = _Style.for_stream(sys.stdout)
    async with _open_existing(path, read_only=True) as store:
        await _require_session(store, session, path)
        placed = await _place(store, session)
        width = max(len(str(placed.version)), 3)
        if not as_json:
            print(
                style.dim(
                    f"{'pos':>{width}}  time                  kind  tokens  buffer       summary"
                )
            )
        async with aclosing(_events(store, session)) as events:
            async for stored in events:
                if stored.position > placed.version:  # written since the fold: not placed
                    break
                event = stored.data
                marker, flags = placed.visibility(stored.position, event)
                recorded_at = stored_time(stored.recorded_at_us)  # raw if out of range
                if as_json:
                    _print_json(
                        {
                            "session_id": stored.session_id,
                            "position": stored.position,
                            "global_position": stored.global_position,
                            "recorded_at": recorded_at,
                            "kind": stored.kind,
                            "summary": _summary(event, arrow),
                            "tokens": _event_tokens(event),
                            "buffer": marker,
                            "message_visible": flags,
                            "hash": stored.hash,
                            "data": event,
                        }
                    )
                    continue
                print(
                    f"{stored.position:>{width}}  {_utc_seconds(recorded_at)}  "
                    f"{stored.kind:<5} {_event_tokens(event):>6}  {marker:<11}  "
                    f"{_summary(event, arrow)}"
                )
    if not as_json:
        entered = placed.next_seq
        print(
            f"{_plural(placed.version, 'event')}; {_plural(entered, 'message')} entered the "
            f"buffer, {placed.next_seq - placed.watermark} visible now"
        )
    return EXIT_OK


def _run_log(args: argparse.Namespace) -> int:
    return anyio.run(_log, args.db, args.session, args.json, backend="asyncio")


# -- buffer ------------------------------------------------------------------------------


def _configure_buffer(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    _add_session(parser)
    parser.add_argument(
        "--at",
        metavar="POSITION",
        type=_non_negative_int,
        help="the buffer as a load right after this position returned it (time travel)",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=_non_negative_int,
        help="what-if: replay the history with this max_token_limit (nothing is written)",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        type=_model_name,
        help="what-if: replay the history counting tokens for this model",
    )
    _add_json(parser, "the messages (chat-completions dicts) and the token total as JSON")


async def _buffer(
    path: str,
    session: str,
    at: int | None,
    limit: int | None,
    model: str | None,
    as_json: bool,
) -> int:
    what_if = limit is not None or model is not None
    counter = resolve_counter(model) if model is not None else None
    async with _open_existing(path, read_only=True) as store:
        version = await _require_session(store, session, path)
        if at is not None and at > version:
            raise EventmemError(
                f"session {session!r} has {version} events; --at {at} is in its future"
            )
        upto = version if at is None else at
        # The very fold (and what-if rewrite) Store.messages and Store.replay run, kept
        # here to also learn the token count and the limit in force.
        buffer = MemoryBuffer()
        max_token_limit: int | None = None
        recorded_model: str | None = None
        async with aclosing(_events(store, session)) as events:
            async for stored in events:
                if stored.position > upto:
                    break
                for event in rewrite_for_replay([stored.data], limit, counter):
                    _fold_one(buffer, event, stored.position, session)
                    if isinstance(event, TurnSaved):
                        max_token_limit, recorded_model = event.max_token_limit, event.model
        messages = buffer.messages
        damaged = False
        if at is None and not what_if:
            served = await store.messages(session)  # what a load returns now
            if await store.version(session) == version and served != messages:
                damaged = True
            messages = served
    tokens = buffer.total_tokens + buffer.overhead
    shown_model = model if model is not None else recorded_model
    if as_json:
        _print_json(
            {
                "session_id": session,
                "position": upto,
                "events": version,
                "what_if": what_if,
                "max_token_limit": max_token_limit,
                "model": shown_model,
                "counter": buffer.counter,
                "tokens": tokens,
                "messages": [m.to_openai() for m in messages],
            }
        )
    else:
        style = _Style.for_stream(sys.stdout)
        print(buffer_string(messages) if messages else "(the buffer is empty)")
        print()
        limit_text = f"/{max_token_limit}" if max_token_limit is not None else ""
        scheme = f" ({buffer.counter})" if buffer.counter else ""
        if what_if:
            options = (f" --limit {limit}" if limit is not None else "") + (
                f" --model {model}" if model is not None else ""
            )
            when = f"what-if replay of positions 1-{upto} with{options}; nothing was written"
        elif at is not None:
            when = f"as of position {at} of {version}"
        else:
            when = f"now, after position {version}"
        print(
            style.dim(
                f"{_plural(len(messages), 'message')}, {tokens}{limit_text} tokens{scheme}; {when}"
            )
        )
    if damaged:
        _error(
            f"the stored buffer of session {session!r} differs from the fold of its events; "
            f"run '{PROG} verify {_shell_arg(path)}'"
        )
        return EXIT_PROBLEM
    return EXIT_OK


def _run_buffer(args: argparse.Namespace) -> int:
    return anyio.run(
        _buffer,
        args.db,
        args.session,
        args.at,
        args.limit,
        args.model,
        args.json,
        backend="asyncio",
    )


# -- verify ------------------------------------------------------------------------------


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    parser.add_argument(
        "--repair-triggers",
        action="store_true",
        help="first restore the triggers that keep the log immutable, if they are missing, "
        "disabled or changed (each one restored is printed)",
    )
    _add_json(parser, "the report as one JSON object")


def _problem_text(problem: Problem) -> str:
    where = f"session {problem.session_id} position {problem.position}"
    return f"{where if problem.session_id else 'store'}: {problem.kind}: {problem.detail}"


async def _verify(path: str, repair: bool, as_json: bool) -> int:
    # Opened as it is: a log whose triggers are off is what verify is there to report;
    # read-only unless asked to repair them.
    async with _open_existing(path, triggers="report", read_only=not repair) as store:
        repaired = await store.repair_triggers() if repair else []
        with _Progress.for_command("verify", quiet=as_json) as progress:
            report = await store.verify(progress=progress)
    if as_json:
        document: dict[str, object] = {
            "ok": report.ok,
            "sessions": report.sessions,
            "events": report.events,
            "problems": report.problems,
        }
        if repair:
            document["repaired_triggers"] = repaired
        _print_json(document)
    else:
        for finding in repaired:
            print(f"repaired: {finding}")
        if report.ok:
            print(
                f"ok: {_plural(report.sessions, 'session')}, "
                f"{_plural(report.events, 'event')} verified"
            )
        else:
            for problem in report.problems:
                print(_problem_text(problem))
            damaged = len({p.session_id for p in report.problems if p.session_id})
            places = [_plural(damaged, "session")] if damaged else []
            if any(not p.session_id for p in report.problems):
                places.append("the store's triggers")
            print(
                f"{_plural(len(report.problems), 'problem')} in {' and '.join(places)} "
                f"({_plural(report.sessions, 'session')}, "
                f"{_plural(report.events, 'event')} checked)"
            )
    return EXIT_OK if report.ok else EXIT_PROBLEM


def _run_verify(args: argparse.Namespace) -> int:
    return anyio.run(_verify, args.db, args.repair_triggers, args.json, backend="asyncio")


# -- rebuild -----------------------------------------------------------------------------


def _configure_rebuild(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild even though verify finds chain problems: the damaged sessions are "
        "left as they are, and verify keeps reporting them",
    )
    _add_json(parser, "the counts as one JSON object")


async def _rebuild(path: str, force: bool, as_json: bool) -> int:
    async with _open_existing(path) as store:
        with _Progress.for_command("rebuild", quiet=as_json) as progress:
            sessions = await store.rebuild(progress=progress, force=force)
        events = await store.count_events()
        # sessions with events that a forced rebuild left as they were
        left = len(await store.sessions()) - sessions if force else 0
    if as_json:
        counts = {"sessions": sessions, "events": events}
        _print_json({**counts, "left_damaged": left} if force else counts)
    else:
        print(
            f"rebuilt the buffers of {_plural(sessions, 'session')} from {_plural(events, 'event')}"
        )
        if left:
            print(
                f"left {_plural(left, 'damaged session')} as {'they are' if left > 1 else 'it is'}"
                f": run '{PROG} verify {_shell_arg(path)}'"
            )
    return EXIT_OK


def _run_rebuild(args: argparse.Namespace) -> int:
    return anyio.run(_rebuild, args.db, args.force, args.json, backend="asyncio")


# -- export ------------------------------------------------------------------------------


def _configure_export(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    parser.add_argument(
        "--session", metavar="S", help="export only this session (default: every session)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE (written aside, renamed once complete) instead of stdout",
    )
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace FILE if it exists (never a database, nor a file of DB)",
    )


async def _export_to(
    store: eventmem.Store, session: str | None, sink: BinaryIO, total: int, quiet: bool
) -> int:
    written = -2  # the header and the end line are not events
    # aclosing: a failing sink (a full disk) ends the export's snapshot transaction at
    # once, before the store closes.
    with _Progress.for_command("export", quiet=quiet) as progress:
        async with aclosing(store.export(session)) as lines:
            async for line in lines:
                sink.write(line)
                written += 1
                progress(max(written, 0), total)
    return written


async def _export(
    path: str, session: str | None, sink: BinaryIO, quiet: bool = False
) -> tuple[int, int]:
    """Write the export to ``sink``; return (events, sessions) written."""
    async with _open_existing(path, read_only=True) as store:
        if session is not None:
            total = await _require_session(store, session, path)
            sessions = 1
        else:
            total = await store.count_events()
            sessions = len(await store.sessions())
        return await _export_to(store, session, sink, total, quiet), sessions


def _run_export(args: argparse.Namespace) -> int:
    output: str | None = args.output
    if output is None or output == "-":
        check_stream(sys.stdout.buffer, protect=[args.db])
        # No progress line over the export itself when both go to the same terminal.
        quiet = sys.stdout.isatty()
        sys.stdout.flush()
        anyio.run(_export, args.db, args.session, sys.stdout.buffer, quiet, backend="asyncio")
        sys.stdout.buffer.flush()
        return EXIT_OK
    # Checked before the store is opened; written aside and renamed once complete, so an
    # export cut short (an error, Ctrl-C) never leaves a file that looks whole.
    with safe_output(output, force=args.force, protect=[args.db]) as sink:
        events, sessions = anyio.run(_export, args.db, args.session, sink, backend="asyncio")
    print(f"exported {_plural(events, 'event')} of {_plural(sessions, 'session')} to {output}")
    return EXIT_OK


# -- import ------------------------------------------------------------------------------


def _configure_import(parser: argparse.ArgumentParser) -> None:
    _add_db(parser, creates=True)
    parser.add_argument("file", metavar="FILE", help="export file to read ('-' for standard input)")
    parser.add_argument(
        "--max-save-bytes",
        type=_save_bytes,
        default=DEFAULT_MAX_SAVE_BYTES,
        metavar="N",
        help=(
            "the store's max_save_bytes: bounds every line read (default "
            f"{DEFAULT_MAX_SAVE_BYTES}, 16 MiB); raise it to import events that large"
        ),
    )
    _add_json(parser, "the counts as one JSON object")


def _read_lines(source: BinaryIO, progress: _Progress, limit: int) -> Iterator[bytes]:
    """The lines of ``source``, each read with a bound: a longer one (or a file without
    newlines, like /dev/zero) is cut at ``limit + 1`` bytes, which the import refuses."""
    count = 0
    while line := source.readline(limit + 1):
        count += 1
        progress(count)
        yield line
    progress.show(f"import: {_plural(max(count - 2, 0), 'event')} checked and written")


def _existing_files(path: Path) -> set[Path]:
    """Which of the database's files (itself, -wal, -shm, -journal) exist now."""
    return {file for file in store_files(str(path)) if os.path.lexists(file)}


def _remove_new_files(path: Path, before: set[Path]) -> None:
    """Remove the database files an import made, and only those: a -wal that was there
    before (another database's, which the open refused) is not the import's to remove."""
    for file in store_files(str(path)):
        if file not in before:
            file.unlink(missing_ok=True)


async def _import(
    path: str,
    resolved: Path | None,
    source: BinaryIO,
    options: tuple[bool, set[Path], int],
) -> int:
    as_json, before, max_save_bytes = options
    try:
        async with eventmem.open(path, max_save_bytes=max_save_bytes) as store:
            with _Progress.for_command("import", quiet=as_json, unit="lines read") as progress:
                limit = max_line_bytes(store.max_save_bytes)
                sessions, events = await store.import_events(_read_lines(source, progress, limit))
    except EventmemError:
        if resolved is not None and resolved not in before:
            _remove_new_files(resolved, before)  # a refused import leaves no new file
        raise
    if as_json:
        _print_json({"sessions": sessions, "events": events})
    else:
        shown = _shown(path)
        print(f"imported {_plural(sessions, 'session')}, {_plural(events, 'event')} into {shown}")
    return EXIT_OK


def _run_import(args: argparse.Namespace) -> int:
    # A PostgreSQL store is created in its schema (and stays, empty, if the import is
    # refused); a SQLite file the import created is removed again.
    resolved = None if is_postgres_url(args.db) else _creatable(args.db)
    if resolved is None:
        _shown(args.db)  # a malformed URL is refused before connecting
    before = set() if resolved is None else _existing_files(resolved)
    options = (args.json, before, args.max_save_bytes)
    if args.file == "-":
        return anyio.run(_import, args.db, resolved, sys.stdin.buffer, options, backend="asyncio")
    with open(args.file, "rb") as source:  # a missing FILE fails before the DB is created
        return anyio.run(_import, args.db, resolved, source, options, backend="asyncio")


# -- stats -------------------------------------------------------------------------------


class _Stats(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What ``stats`` reports. The file figures are a SQLite file's, ``schema_bytes`` a
    PostgreSQL schema's; the figures a store does not have are left out of the JSON."""

    path: str
    schema_version: int
    file_bytes: int | None = None
    page_size: int | None = None
    page_count: int | None = None
    freelist_pages: int | None = None
    wal_bytes: int | None = None
    schema_bytes: int | None = None
    sessions: int
    events: int
    events_by_kind: dict[str, int]
    messages_entered: int  # messages that ever entered a buffer
    visible_messages: int
    first_event: datetime | int | None
    last_event: datetime | int | None


def _configure_stats(parser: argparse.ArgumentParser) -> None:
    _add_db(parser)
    _add_json(parser, "the figures as one JSON object")


async def _stats(path: str, file_bytes: int | None, wal_bytes: int | None, as_json: bool) -> int:
    async with _open_existing(path, read_only=True) as store:
        figures = await store.stats()
    url = is_postgres_url(path)
    stats = _Stats(
        path=_shown(path),
        schema_version=figures.schema_version,
        file_bytes=file_bytes,
        page_size=figures.page_size,
        page_count=figures.page_count,
        freelist_pages=figures.freelist_pages,
        wal_bytes=wal_bytes,
        schema_bytes=figures.storage_bytes if url else None,
        sessions=figures.sessions,
        events=sum(figures.events_by_kind.values()),
        events_by_kind=figures.events_by_kind,
        messages_entered=figures.messages_entered,
        visible_messages=figures.visible_messages,
        first_event=figures.first_event,
        last_event=figures.last_event,
    )
    if as_json:
        _print_json(stats)
        return EXIT_OK
    kinds = ", ".join(f"{kind} {count}" for kind, count in stats.events_by_kind.items())
    rows = [("database", stats.path), ("schema version", str(stats.schema_version))]
    if url:
        rows.append(("schema size", f"{stats.schema_bytes} bytes (tables, indexes and TOAST)"))
    else:
        rows += [
            (
                "file size",
                f"{stats.file_bytes} bytes ({_plural(stats.page_count or 0, 'page')} of "
                f"{stats.page_size} bytes, {stats.freelist_pages} free)",
            ),
            ("WAL size", f"{stats.wal_bytes} bytes"),
        ]
    rows += [
        ("sessions", str(stats.sessions)),
        ("events", f"{stats.events} ({kinds})" if kinds else "0"),
        (
            "messages",
            f"{stats.messages_entered} entered buffers, {stats.visible_messages} visible, "
            f"{stats.messages_entered - stats.visible_messages} pruned",
        ),
        ("first event", "-" if stats.first_event is None else _utc_seconds(stats.first_event)),
        ("last event", "-" if stats.last_event is None else _utc_seconds(stats.last_event)),
    ]
    for label, value in rows:
        print(f"{label:<15} {value}")
    return EXIT_OK


def _run_stats(args: argparse.Namespace) -> int:
    if is_postgres_url(args.db):  # no file: the schema's size is read from the server
        return anyio.run(_stats, args.db, None, None, args.json, backend="asyncio")
    target = Path(args.db).expanduser()
    # Sizes first, as they were before the store was opened.
    file_bytes = target.stat().st_size if target.is_file() else 0
    return anyio.run(_stats, args.db, file_bytes, _wal_bytes(target), args.json, backend="asyncio")


COMMANDS: tuple[Command, ...] = (
    Command(
        name="demo",
        help="save a scripted conversation and show the pruned buffer and the full log",
        description=(
            "Save a scripted 10-turn travel-planning chat (no LLM, no network) through the "
            "async API into a SQLite file (or a PostgreSQL store), one new session per run. "
            "Shows the token-bounded buffer after every turn, the final buffer, proof that the "
            "log keeps every message, and that the buffer is identical after reopening the "
            "store."
        ),
        configure=_configure_demo,
        run=_run_demo,
    ),
    Command(
        name="sessions",
        help="list the sessions: events, visible messages, buffer tokens, last activity",
        description=(
            "List every session of the database, oldest first: its number of events, the "
            "messages visible in its buffer, the buffer's token count (as eventmem counted "
            "it when pruning) and the time of its last event (UTC)."
        ),
        configure=_configure_sessions,
        run=_run_sessions,
    ),
    Command(
        name="log",
        help="show a session's events, and which of their messages the buffer still holds",
        description=(
            "Show every event of SESSION in order: position, time (UTC), kind, tokens, "
            "whether its messages are visible in the buffer now or were pruned (pending: a "
            "live step whose turn is not saved yet; abandoned: a step a dead run left), and "
            "a summary. The log keeps everything; pruning only moves the buffer."
        ),
        configure=_configure_log,
        run=_run_log,
    ),
    Command(
        name="buffer",
        help="print a session's buffer: now, as of a position, or replayed under a limit",
        description=(
            "Print the messages of SESSION's buffer in LangChain's buffer-string form, then "
            "their count and tokens. --at POSITION gives the buffer exactly as a load right "
            "after that event returned it; --limit N and/or --model M replay the history "
            "under another max_token_limit or tokenizer (what-if; nothing is written)."
        ),
        configure=_configure_buffer,
        run=_run_buffer,
    ),
    Command(
        name="verify",
        help="check every hash chain and buffer; exit 1 if anything was tampered with",
        description=(
            "Check that the triggers keeping the log immutable are in place, re-compute "
            "every session's hash chain from its events, and check every stored head and "
            "buffer row against the fold of the events. Prints 'ok: ...' (exit 0) or each "
            "problem with the first bad position of the session (exit 1). What the chain "
            "cannot prove: see docs/operations.md."
        ),
        configure=_configure_verify,
        run=_run_verify,
    ),
    Command(
        name="rebuild",
        help="recompute every buffer from the events alone",
        description=(
            "Recompute every session's buffer (the projection) from its events, in one "
            "transaction. The events are not touched. Use after 'verify' reports "
            "projection_mismatch. Refused (exit 1, nothing written) while the chains show "
            "edited, moved or removed events, unless --force."
        ),
        configure=_configure_rebuild,
        run=_run_rebuild,
    ),
    Command(
        name="export",
        help="write the events as JSON Lines (see docs/export-format.md)",
        description=(
            "Write an export file to stdout (or FILE): a header line, one line per event "
            "in global order, each with its stored JSON and hash, so 'import' can "
            "re-verify every chain, and an end line with the event count. FILE is written "
            "aside and renamed once complete; it is refused if it is (or resolves to) DB "
            "or one of its -wal/-shm files, any SQLite database, a directory, or an "
            "existing file without --force."
        ),
        configure=_configure_export,
        run=_run_export,
    ),
    Command(
        name="import",
        help="import an export file, re-verifying every hash (creates DB if missing)",
        description=(
            "Import an export file into DB (created if missing) in one transaction, reading "
            "it line by line. Every hash is re-verified and every event checked against the "
            "rules a save obeys; a tampered or malformed file, or a session DB already has "
            "(so importing twice), is refused with exit 1, naming the line, and nothing is "
            "written."
        ),
        configure=_configure_import,
        run=_run_import,
    ),
    Command(
        name="stats",
        help="show database figures: sizes, schema version, events by kind, messages",
        description=(
            "Show the database's schema version and size (a SQLite file's size, pages and "
            "WAL; a PostgreSQL schema's tables, indexes and TOAST), its sessions, events by "
            "kind, and the messages that entered buffers, are visible and were pruned."
        ),
        configure=_configure_stats,
        run=_run_stats,
    ),
)


# -- entry point -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``eventmem`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Durable, auditable, token-bounded conversation memory for LLM agents. "
            "Every save is an immutable event in SQLite or PostgreSQL; the buffer is a "
            "projection. DB is a SQLite file or a postgresql:// URL."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {eventmem.__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description
        )
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventmem`` command; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help and --version (0), usage errors (2)
        if e.code is None:
            return EXIT_OK
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except EventmemError as e:
        _error(str(e))
        return EXIT_PROBLEM
    except BrokenPipeError:  # e.g. `eventmem demo | head`: the reader left, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PROBLEM
    except OSError as e:
        _error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"{PROG}: error: {first_line}", file=sys.stderr)
