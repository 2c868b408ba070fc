"""The ``eventmem`` command (also ``python -m eventmem``).

Each command group has a module that parses its arguments and prints what the public
API returns: `demo`, `inspection` (``sessions``, ``log``, ``buffer``), `forking` (``fork``,
``rewind``), `erasing` (``erase``, ``seal``), `integrity`
(``verify``, ``rebuild``), `anchoring` (``anchor``), `transfer` (``export``, ``import``),
`keyring`, `stats` and `viewer` (``ui``, ``report``); `common` and `stores` hold what
they share.
Each command is a `Command` listed in ``COMMANDS``: it adds its arguments to a subparser
and names the function that runs it. A command returns its exit status:

* 0 -- everything is fine;
* 1 -- a problem was found (any [`EventmemError`][eventmem.EventmemError], an unreadable file...);
* 2 -- usage error (bad arguments; argparse reports them).

Errors are printed to stderr as one line, ``eventmem: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

import eventmem
from eventmem.cli.anchoring import configure_anchor, run_anchor
from eventmem.cli.common import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, PROG, discard_stdout, error
from eventmem.cli.demo import (
    DEFAULT_DEMO_DB,
    DEFAULT_DEMO_LIMIT,
    DEMO_CONVERSATION,
    configure_demo,
    run_demo,
)
from eventmem.cli.erasing import configure_erase, configure_seal, run_erase, run_seal
from eventmem.cli.forking import configure_fork, configure_rewind, run_fork, run_rewind
from eventmem.cli.inspection import (
    configure_buffer,
    configure_log,
    configure_sessions,
    run_buffer,
    run_log,
    run_sessions,
)
from eventmem.cli.integrity import configure_rebuild, configure_verify, run_rebuild, run_verify
from eventmem.cli.keyring import configure_keyring, run_keyring
from eventmem.cli.stats import configure_stats, run_stats
from eventmem.cli.transfer import configure_export, configure_import, run_export, run_import
from eventmem.cli.viewer import configure_report, configure_ui, run_report, run_ui
from eventmem.errors import EventmemError

__all__ = [
    "COMMANDS",
    "DEFAULT_DEMO_DB",
    "DEFAULT_DEMO_LIMIT",
    "DEMO_CONVERSATION",
    "Command",
    "build_parser",
    "main",
]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, and how it adds arguments and runs.

    ``run`` returns the exit status, or is a coroutine function that ``main`` runs in
    an event loop.
    """

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | Awaitable[int]]


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
        configure=configure_demo,
        run=run_demo,
    ),
    Command(
        name="sessions",
        help="list the sessions: events, visible messages, buffer tokens, last activity",
        description=(
            "List every session of the database, oldest first: its number of events, the "
            "messages visible in its buffer, the buffer's token count (as eventmem counted "
            "it when pruning) and the time of its last event (UTC)."
        ),
        configure=configure_sessions,
        run=run_sessions,
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
        configure=configure_log,
        run=run_log,
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
        configure=configure_buffer,
        run=run_buffer,
    ),
    Command(
        name="fork",
        help="begin a new session as another one was at a position (one event written)",
        description=(
            "Begin session NEW as SOURCE was right after position --at N (default: its "
            "last): the same buffer and the same history up to N, nothing copied. One "
            "event is written, a fork at position N+1 of NEW; SOURCE is not changed. "
            "Prints NEW's version. Refused (exit 1, nothing written) if NEW has events, "
            "SOURCE has none, N is past SOURCE's end, or agent steps wait for their turn "
            "there."
        ),
        configure=configure_fork,
        run=run_fork,
    ),
    Command(
        name="rewind",
        help="make a session's buffer what it was at an earlier position (one event written)",
        description=(
            "Make SESSION's buffer what it was right after position --to N by appending "
            "one rewind event that carries that view: nothing is deleted, the events after "
            "N stay in the log ('log' marks them rewound) and later saves continue from "
            "the restored buffer. Prints the new version. Refused (exit 1, nothing "
            "written) for an unknown session, a position past its end, a stale "
            "--expected-version, or while agent steps wait for their turn."
        ),
        configure=configure_rewind,
        run=run_rewind,
    ),
    Command(
        name="erase",
        help="remove a session's content for good, keeping every hash (a tombstone written)",
        description=(
            "Erase SESSION: append a tombstone (--reason, --by, how many events, the last "
            "one's hash) and replace the content of every earlier event of the session by "
            "an erased marker, each event keeping its digest and chain hash, so 'verify' "
            "still passes. Its buffer goes; it takes no more writes. Prints the receipt "
            "(tombstone position and hash, whether the database kept no copy). Refused "
            "(exit 1, nothing written) for an unknown session, one erased already, or one "
            "with forks (erase them first). --receipt FILE is refused, before anything is "
            "erased, if it is (or resolves to) DB or one of its -wal/-shm files, any "
            "SQLite database, a directory, or an existing file without --force."
        ),
        configure=configure_erase,
        run=run_erase,
    ),
    Command(
        name="seal",
        help="retention: remove old content the view no longer holds, keeping every hash",
        description=(
            "Seal SESSION before position --before N, or, with --older-than-days DAYS, "
            "every session (or SESSION) as far back as its events are that old: the "
            "content of those events is replaced by an erased marker, each keeping its "
            "digest and chain hash, and a seal event carrying the view is appended. "
            "Refused (exit 1, nothing written) when the view, the summary in force or a "
            "fork still holds any of it, so the view never changes. Prints what each "
            "session's seal did."
        ),
        configure=configure_seal,
        run=run_seal,
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
        configure=configure_verify,
        run=run_verify,
    ),
    Command(
        name="anchor",
        help="sign every session's head with a key, for 'verify --anchors' later",
        description=(
            "Write an anchor: each session's last position and that event's hash, signed "
            "with --key-file (an HMAC secret, or a PEM Ed25519 private key). Keep it away "
            "from the store; 'verify DB --anchors FILE --key-file KEY' then finds what the "
            "hash chain alone cannot: a cut tail, a deleted session, a re-chained history. "
            "The key is never printed."
        ),
        configure=configure_anchor,
        run=run_anchor,
    ),
    Command(
        name="keyring",
        help="make a master key for encryption at rest, or rotate a keyring's master key",
        description=(
            "--new-master-key prints a new random master key (base64) to keep in a "
            "secrets manager and hand to the commands as EVENTMEM_MASTER_KEY, with "
            "EVENTMEM_KEYRING naming the keyring file. --rotate KEYRING wraps every data "
            "key of the keyring under EVENTMEM_NEW_MASTER_KEY instead of "
            "EVENTMEM_MASTER_KEY, in one transaction; the store does not change. A key is "
            "never printed otherwise, not even in an error. See docs/encryption.md."
        ),
        configure=configure_keyring,
        run=run_keyring,
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
        configure=configure_rebuild,
        run=run_rebuild,
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
        configure=configure_export,
        run=run_export,
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
        configure=configure_import,
        run=run_import,
    ),
    Command(
        name="stats",
        help="show database figures: sizes, schema version, events by kind, messages",
        description=(
            "Show the database's schema version and size (a SQLite file's size, pages and "
            "WAL; a PostgreSQL schema's tables, indexes and TOAST), its sessions, events by "
            "kind, and the messages that entered buffers, are visible and were pruned."
        ),
        configure=configure_stats,
        run=run_stats,
    ),
    Command(
        name="ui",
        help="browse the store in a local, read-only web viewer (needs eventmem[ui])",
        description=(
            "Serve a read-only web viewer of DB_OR_URL on 127.0.0.1 (this machine only, "
            "unless --host says otherwise): the sessions (searchable, sortable, paged), "
            "each session's timeline, its buffer at any position (pruned messages greyed "
            "with the reason), the diff of two positions' buffers, a token-use chart and "
            "the session's verify status. Only GET is served; the store is opened "
            "read-only. Needs the 'ui' extra (Starlette and uvicorn; see docs/ui.md)."
        ),
        configure=configure_ui,
        run=run_ui,
    ),
    Command(
        name="report",
        help="write one session's viewer pages as a self-contained HTML file",
        description=(
            "Write SESSION's overview (verify status, token chart), its buffer at the last "
            "position and its whole timeline as one HTML file that loads nothing (styles "
            "and script inlined; works offline). FILE is written aside and renamed once "
            "complete; it is refused if it is (or resolves to) DB or one of its -wal/-shm "
            "files, any SQLite database, a directory, or an existing file without --force."
        ),
        configure=configure_report,
        run=run_report,
    ),
)


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
    run: Callable[[argparse.Namespace], int | Awaitable[int]] = args.run
    try:
        status = run(args)
        return status if isinstance(status, int) else anyio.run(_wait, status, backend="asyncio")
    except EventmemError as e:
        error(str(e))
        return EXIT_PROBLEM
    except BrokenPipeError:  # e.g. `eventmem demo | head`: the reader left, stop quietly
        discard_stdout()
        return EXIT_PROBLEM
    except OSError as e:
        error(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        error("interrupted")
        return 130


async def _wait(status: Awaitable[int]) -> int:
    return await status
