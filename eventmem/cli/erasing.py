"""``erase`` and ``seal``: remove content from the store for good, every hash kept.

One call of the public API (`eventmem.Store.erase`), which appends a tombstone and
replaces the content of the session's earlier events by the erased marker. A refusal
(an unknown session, one erased already, one with forks) is its typed error, which
``main`` prints as one line with exit status 1, and nothing is written. The receipt
file, if asked for, is checked before the erasure (so a refused path erases nothing)
and written as `eventmem._files.safe_output` writes every output file.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import anyio
import msgspec

from eventmem._files import check_output, safe_output
from eventmem.cli.args import add_db, add_json, add_session, non_negative_int
from eventmem.cli.common import EXIT_OK, plural, print_json, printable
from eventmem.cli.stores import open_existing
from eventmem.errors import InvalidInputError
from eventmem.store.base import ErasureReceipt, SealResult, is_postgres_url

__all__ = ["configure_erase", "configure_seal", "run_erase", "run_seal"]


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
    if receipt.key_destroyed is not None:
        lines.append(
            "data key: destroyed (copies of the store made before cannot read the session)"
            if receipt.key_destroyed
            else "data key: none was in the key store"
        )
    return lines


# -- seal ----------------------------------------------------------------------------------


def configure_seal(parser: argparse.ArgumentParser) -> None:
    """Add the ``seal`` arguments: one session before a position, or a policy by age."""
    add_db(parser)
    parser.add_argument(
        "session", metavar="SESSION", nargs="?", help="the session (default with --older-than: all)"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--before",
        metavar="N",
        type=non_negative_int,
        help="seal the content of SESSION's events before position N",
    )
    which.add_argument(
        "--older-than-days",
        metavar="DAYS",
        type=float,
        help="seal the events recorded more than DAYS days ago, in SESSION or every session",
    )
    add_json(parser, "what each session's seal did, one JSON object per line")


async def _seal(
    db: str, session: str | None, before: int | None, days: float | None
) -> list[SealResult]:
    async with open_existing(db) as store:
        if before is not None:
            return await store.seal(session, before=before)
        assert days is not None
        return await store.seal(session, older_than=timedelta(days=days))


def run_seal(args: argparse.Namespace) -> int:
    """Run ``seal``: `eventmem.Store.seal`, and what it did per session."""
    days: float | None = args.older_than_days
    if days is not None and not (days >= 0 and days != float("inf")):
        raise InvalidInputError(f"--older-than-days must be a number of days >= 0, not {days}")
    results = anyio.run(_seal, args.db, args.session, args.before, days, backend="asyncio")
    if args.json:
        for result in results:
            print_json(result)
        return EXIT_OK
    for result in results:
        if result.events:
            print(
                f"sealed {printable(result.session_id)} before position {result.before}: "
                f"the content of {plural(result.events, 'event')} removed, every hash kept "
                f"(seal at position {result.position})"
            )
        else:
            print(f"{printable(result.session_id)}: nothing left to seal before {result.before}")
    if not results:
        print("nothing to seal")
    return EXIT_OK
