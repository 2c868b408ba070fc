"""The ``eventmem`` command (also ``python -m eventmem``).

Subcommands register themselves in :data:`COMMANDS`; each one adds its arguments to a
subparser and names the function that runs it. A command returns its exit status:

* 0 -- everything is fine;
* 1 -- a problem was found (any :class:`~eventmem.EventmemError`, an unreadable file...);
* 2 -- usage error (bad arguments; argparse reports them).

Errors are printed to stderr as one line, ``eventmem: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import anyio

import eventmem
from eventmem.errors import EventmemError
from eventmem.events import StepRecorded, TurnSaved
from eventmem.messages import Message

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
        help=f"SQLite file to write (created if missing; default: ./{DEFAULT_DEMO_DB})",
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
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


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

    async with eventmem.open(path, create=False) as store:
        reopened = await store.messages(session)
    if reopened != messages:
        _error(
            f"reopened {path}: the buffer differs "
            f"({len(reopened)} messages instead of {len(messages)})"
        )
        return EXIT_PROBLEM
    print(f"reopened {path}: buffer identical")
    print()
    noun = "session" if len(sessions) == 1 else "sessions"
    print(f"database: {resolved} ({len(sessions)} {noun}; each run adds one)")
    query = "SELECT session_id, position, kind FROM events ORDER BY id"
    print(f"inspect it: sqlite3 {shlex.quote(path)} {shlex.quote(query)}")
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    path: str = args.db
    limit: int = args.limit
    model: str = args.model
    resolved = Path(path).expanduser().resolve()
    if not resolved.parent.is_dir():
        # Checked here for a clear message (and because aiosqlite's worker thread can
        # print a stray traceback after a failed connect once the event loop is gone).
        raise EventmemError(f"cannot create {path}: directory {resolved.parent} does not exist")
    return anyio.run(_demo, path, str(resolved), limit, model, backend="asyncio")


COMMANDS: tuple[Command, ...] = (
    Command(
        name="demo",
        help="save a scripted conversation and show the pruned buffer and the full log",
        description=(
            "Save a scripted 10-turn travel-planning chat (no LLM, no network) through the "
            "async API into a SQLite file, one new session per run. Shows the token-bounded "
            "buffer after every turn, the final buffer, proof that the log keeps every "
            "message, and that the buffer is identical after reopening the file."
        ),
        configure=_configure_demo,
        run=_run_demo,
    ),
)


# -- entry point -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``eventmem`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Durable, auditable, token-bounded conversation memory for LLM agents. "
            "Every save is an immutable event in SQLite; the buffer is a projection."
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
