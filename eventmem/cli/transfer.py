"""The commands that move a log between stores: ``export`` and ``import``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import anyio

import eventmem
from eventmem._files import check_stream, safe_output, store_files
from eventmem.audit import max_line_bytes
from eventmem.cli.args import add_db, add_json, save_bytes
from eventmem.cli.common import EXIT_OK, Progress, discard_stdout, plural, print_json
from eventmem.cli.stores import (
    creatable,
    keys_from_environment,
    open_existing,
    require_session,
    shown,
)
from eventmem.errors import EventmemError
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store.base import is_postgres_url

__all__ = ["configure_export", "configure_import", "run_export", "run_import"]


# -- export ------------------------------------------------------------------------------


def configure_export(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` arguments."""
    add_db(parser)
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
    with Progress.for_command("export", quiet=quiet) as progress:
        return await store.export_to(sink, session, progress=lambda done: progress(done, total))


async def _export(
    path: str, session: str | None, sink: BinaryIO, quiet: bool = False
) -> tuple[int, int]:
    """Write the export to ``sink``; return (events, sessions) written."""
    async with open_existing(path, read_only=True) as store:
        if session is not None:
            total = await require_session(store, session, path)
            sessions = 1
        else:
            total = await store.count_events()
            sessions = len(await store.sessions())
        return await _export_to(store, session, sink, total, quiet), sessions


def run_export(args: argparse.Namespace) -> int:
    """Run ``export``: the export file to stdout, or written aside and renamed."""
    output: str | None = args.output
    if output is None or output == "-":
        check_stream(sys.stdout.buffer, protect=[args.db])
        # No progress line over the export itself when both go to the same terminal.
        quiet = sys.stdout.isatty()
        sys.stdout.flush()
        try:
            anyio.run(_export, args.db, args.session, sys.stdout.buffer, quiet, backend="asyncio")
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # The reader left (`eventmem export DB | head -1`): it has what it wanted, and
            # the export, which only reads, ended its snapshot. Stop quietly; what is still
            # buffered goes nowhere rather than into a traceback at exit.
            discard_stdout()
        return EXIT_OK
    # Checked before the store is opened; written aside and renamed once complete, so an
    # export cut short (an error, Ctrl-C) never leaves a file that looks whole.
    with safe_output(output, force=args.force, protect=[args.db]) as sink:
        events, sessions = anyio.run(_export, args.db, args.session, sink, backend="asyncio")
    print(f"exported {plural(events, 'event')} of {plural(sessions, 'session')} to {output}")
    return EXIT_OK


# -- import ------------------------------------------------------------------------------


def configure_import(parser: argparse.ArgumentParser) -> None:
    """Add the ``import`` arguments."""
    add_db(parser, creates=True)
    parser.add_argument("file", metavar="FILE", help="export file to read ('-' for standard input)")
    parser.add_argument(
        "--max-save-bytes",
        type=save_bytes,
        default=DEFAULT_MAX_SAVE_BYTES,
        metavar="N",
        help=(
            "the store's max_save_bytes: bounds every line read (default "
            f"{DEFAULT_MAX_SAVE_BYTES}, 16 MiB); raise it to import events that large"
        ),
    )
    add_json(parser, "the counts as one JSON object")


def _read_lines(source: BinaryIO, progress: Progress, limit: int) -> Iterator[bytes]:
    """The lines of ``source``, each read with a bound: a longer one (or a file without
    newlines, like /dev/zero) is cut at ``limit + 1`` bytes, which the import refuses."""
    count = filled = 0
    while line := source.readline(limit + 1):
        count += 1
        if not line.isspace():  # the import skips blank lines; the others are the
            filled += 1  # header, the events and the end line
        progress(count)
        yield line
    progress.show(f"import: {plural(max(filled - 2, 0), 'event')} read; writing")


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
        keys = keys_from_environment()
        async with eventmem.open(path, max_save_bytes=max_save_bytes, encryption=keys) as store:
            with Progress.for_command("import", quiet=as_json, unit="lines read") as progress:
                limit = max_line_bytes(store.max_save_bytes)
                sessions, events = await store.import_events(_read_lines(source, progress, limit))
    except EventmemError:
        if resolved is not None and resolved not in before:
            _remove_new_files(resolved, before)  # a refused import leaves no new file
        raise
    if as_json:
        print_json({"sessions": sessions, "events": events})
    else:
        where = shown(path)
        print(f"imported {plural(sessions, 'session')}, {plural(events, 'event')} into {where}")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    """Run ``import``; a SQLite file a refused import created is removed again."""
    # A PostgreSQL store is created in its schema (and stays, empty, if the import is
    # refused); a SQLite file the import created is removed again.
    resolved = None if is_postgres_url(args.db) else creatable(args.db)
    if resolved is None:
        shown(args.db)  # a malformed URL is refused before connecting
    before = set() if resolved is None else _existing_files(resolved)
    options = (args.json, before, args.max_save_bytes)
    if args.file == "-":
        return anyio.run(_import, args.db, resolved, sys.stdin.buffer, options, backend="asyncio")
    with open(args.file, "rb") as source:  # a missing FILE fails before the DB is created
        return anyio.run(_import, args.db, resolved, source, options, backend="asyncio")
