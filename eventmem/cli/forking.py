"""The commands that branch a history: ``fork`` begins a session as another was at a
position, ``rewind`` makes a session's view what it was at one of its positions.

Each is one call of the public API (`eventmem.Store.fork`, `eventmem.Store.rewind`),
which writes one event; a refusal (an unknown source, an existing target, a position in
the future, a stale ``--expected-version``) is its typed error, which ``main`` prints
as one line with exit status 1.
"""

from __future__ import annotations

import argparse

from eventmem.cli.args import add_db, add_json, add_session, non_negative_int
from eventmem.cli.common import EXIT_OK, plural, print_json, printable
from eventmem.cli.stores import open_existing
from eventmem.events import ViewRewound

__all__ = ["configure_fork", "configure_rewind", "run_fork", "run_rewind"]


# -- fork --------------------------------------------------------------------------------


def configure_fork(parser: argparse.ArgumentParser) -> None:
    """Add the ``fork`` arguments."""
    add_db(parser)
    parser.add_argument("source", metavar="SOURCE", help="the session to fork (it is not changed)")
    parser.add_argument("new", metavar="NEW", help="the new session's id (it must have no events)")
    parser.add_argument(
        "--at",
        metavar="N",
        type=non_negative_int,
        help="fork SOURCE as it was right after position N (default: its last position)",
    )
    add_json(parser, "the new session and its version as one JSON object")


async def run_fork(args: argparse.Namespace) -> int:
    """Run ``fork``: `eventmem.Store.fork`, and the new session's version."""
    source: str = args.source
    new: str = args.new
    async with open_existing(args.db) as store:
        version = await store.fork(source, new, at=args.at)
    at = version - 1  # the fork's own first event follows the position it forked at
    if args.json:
        print_json({"session_id": new, "parent": source, "at": at, "version": version})
        return EXIT_OK
    print(
        f"forked {printable(source)} at position {at} as {printable(new)}: "
        f"{printable(new)} is at version {version}"
    )
    return EXIT_OK


# -- rewind ------------------------------------------------------------------------------


def configure_rewind(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewind`` arguments."""
    add_db(parser)
    add_session(parser)
    parser.add_argument(
        "--to",
        metavar="N",
        type=non_negative_int,
        required=True,
        help="make the view what it was right after position N (0: empty)",
    )
    parser.add_argument(
        "--expected-version",
        metavar="V",
        type=non_negative_int,
        help="refuse (nothing written) unless SESSION is at version V",
    )
    add_json(parser, "the session, the position and the new version as one JSON object")


async def run_rewind(args: argparse.Namespace) -> int:
    """Run ``rewind``: `eventmem.Store.rewind`, and the session's new version."""
    session: str = args.session
    to: int = args.to
    async with open_existing(args.db) as store:
        version = await store.rewind(session, to=to, expected_version=args.expected_version)
        # The rewind event itself says how many messages it brought back.
        (rewind, *_) = [e.data async for e in store.events(session, after=version - 1)]
        restored = len(rewind.view) if isinstance(rewind, ViewRewound) else 0
    if args.json:
        print_json({"session_id": session, "to": to, "version": version, "restored": restored})
        return EXIT_OK
    print(
        f"rewound {printable(session)} to position {to} ({plural(restored, 'message')} "
        f"restored): "
        f"{printable(session)} is at version {version}"
    )
    return EXIT_OK
