"""``erase``: remove a session's content from the store for good, every hash kept.

One call of the public API (`eventmem.Store.erase`), which appends a tombstone and
replaces the content of the session's earlier events by the erased marker. A refusal
(an unknown session, one erased already, one with forks) is its typed error, which
``main`` prints as one line with exit status 1, and nothing is written. The receipt
file, if asked for, is checked before the erasure (so a refused path erases nothing)
and written as `eventmem._files.safe_output` writes every output file.
"""

from __future__ import annotations

import argparse

import anyio
import msgspec

from eventmem._files import check_output, safe_output
from eventmem.cli.args import add_db, add_json, add_session
from eventmem.cli.common import EXIT_OK, plural, print_json, printable
from eventmem.cli.stores import open_existing
from eventmem.store.base import ErasureReceipt, is_postgres_url

__all__ = ["configure_erase", "run_erase"]


def configure_erase(parser: argparse.ArgumentParser) -> None:
    """Add the ``erase`` arguments."""
    add_db(parser)
    add_session(parser)
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        required=True,
        help="why the session is erased (kept in its tombstone)",
    )
    parser.add_argument(
        "--by", metavar="WHO", help="who asked for the erasure (kept in its tombstone)"
    )
    parser.add_argument(
        "--receipt",
        metavar="FILE",
        help="also write the receipt as JSON to FILE (checked before anything is erased; "
        "written aside, renamed once complete)",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace FILE if it exists (never a database)"
    )
    add_json(parser, "the receipt as one JSON object")


async def _erase(db: str, session: str, reason: str, by: str | None) -> ErasureReceipt:
    async with open_existing(db) as store:
        return await store.erase(session, reason=reason, by=by)


def run_erase(args: argparse.Namespace) -> int:
    """Run ``erase``: `eventmem.Store.erase`, then the receipt, printed and/or written."""
    receipt_file: str | None = args.receipt
    protect = [args.db]
    if receipt_file is not None:
        check_output(receipt_file, force=args.force, protect=protect)  # before erasing
    receipt = anyio.run(_erase, args.db, args.session, args.reason, args.by, backend="asyncio")
    if receipt_file is not None:
        with safe_output(receipt_file, force=args.force, protect=protect) as sink:
            sink.write(msgspec.json.encode(receipt) + b"\n")
    if args.json:
        print_json(receipt)
        return EXIT_OK
    for line in _summary(receipt, postgres=is_postgres_url(args.db)):
        print(line)
    if receipt_file is not None:
        print(f"receipt written to {printable(receipt_file)}")
    return EXIT_OK


def _summary(receipt: ErasureReceipt, *, postgres: bool) -> list[str]:
    """What the text output says of an erasure."""
    lines = [
        f"erased {printable(receipt.session_id)}: the content of "
        f"{plural(receipt.events, 'event')} removed, every hash kept",
        f"tombstone: position {receipt.position}, hash {receipt.hash}",
    ]
    if receipt.purged:
        lines.append("purged: yes (freed space zeroed, write-ahead log truncated)")
    elif postgres:
        lines.append(
            "purged: no: PostgreSQL keeps the old row versions in the table's files until "
            "'VACUUM FULL events' rewrites them (see docs/operations.md)"
        )
    else:
        lines.append(
            "purged: not yet: a reader kept the write-ahead log from being truncated; "
            "the next checkpoint truncates it, and closing the store removes it"
        )
    return lines
