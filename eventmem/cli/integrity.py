"""The audit commands: ``verify`` checks a store, ``rebuild`` recomputes its buffers."""

from __future__ import annotations

import argparse

from eventmem.audit import Problem, VerifyReport
from eventmem.cli.anchoring import add_key_file, load_anchors, load_key
from eventmem.cli.args import add_db, add_flag, add_json, add_processes
from eventmem.cli.common import EXIT_OK, EXIT_PROBLEM, PROG, Progress, plural, print_json
from eventmem.cli.stores import open_existing, shell_arg
from eventmem.errors import InvalidInputError
from eventmem.providers import PROVIDERS

__all__ = ["configure_rebuild", "configure_verify", "run_rebuild", "run_verify"]


# -- verify ------------------------------------------------------------------------------


def configure_verify(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` arguments."""
    add_db(parser)
    add_flag(
        parser,
        "--repair-triggers",
        "first restore the triggers that keep the log immutable, if they are missing, "
        "disabled or changed (each one restored is printed)",
    )
    parser.add_argument(
        "--anchors",
        metavar="FILE",
        action="append",
        default=[],
        help="also check the anchor in FILE (from 'eventmem anchor'; repeatable): finds a "
        "cut tail, a deleted session or a re-chained history; needs --key-file",
    )
    add_key_file(parser, required=False)
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="also replay every past view of every session and report those this "
        "provider's API would refuse (orphaned tool results, calls without results, ...)",
    )
    add_processes(parser)
    add_json(parser, "the report as one JSON object")


def _problem_text(problem: Problem) -> str:
    where = f"session {problem.session_id} position {problem.position}"
    return f"{where if problem.session_id else 'store'}: {problem.kind}: {problem.detail}"


def _print_report(report: VerifyReport) -> None:
    checked = f"{plural(report.sessions, 'session')}, {plural(report.events, 'event')}"
    if report.ok:
        print(f"ok: {checked} verified")
        return
    for problem in report.problems:
        print(_problem_text(problem))
    damaged = len({p.session_id for p in report.problems if p.session_id})
    places = [plural(damaged, "session")] if damaged else []
    if any(p.kind == "trigger_mismatch" for p in report.problems):
        places.append("the store's triggers")
    if any(p.kind == "anchor_signature" for p in report.problems):
        places.append("the anchors")
    print(
        f"{plural(len(report.problems), 'problem')} in {' and '.join(places)} ({checked} checked)"
    )


async def run_verify(args: argparse.Namespace) -> int:
    """Run ``verify``: the report of `eventmem.Store.verify`; exit 1 on any problem."""
    repair: bool = args.repair_triggers
    if args.anchors and args.key_file is None:
        raise InvalidInputError("--anchors needs --key-file: the key that signed them")
    anchors = load_anchors(args.anchors)
    key = load_key(args.key_file, signing=False) if args.key_file is not None else None
    # Opened as it is: a log whose triggers are off is what verify is there to report;
    # read-only unless asked to repair them.
    async with open_existing(args.db, triggers="report", read_only=not repair) as store:
        repaired = await store.repair_triggers() if repair else []
        with Progress.for_command("verify", quiet=args.json) as progress:
            report = await store.verify(
                progress=progress,
                anchors=anchors,
                key=key,
                provider=args.provider,
                processes=args.processes,
            )
    if args.json:
        document: dict[str, object] = {
            "ok": report.ok,
            "sessions": report.sessions,
            "events": report.events,
            "problems": report.problems,
        }
        if repair:
            document["repaired_triggers"] = repaired
        print_json(document)
    else:
        for finding in repaired:
            print(f"repaired: {finding}")
        _print_report(report)
    return EXIT_OK if report.ok else EXIT_PROBLEM


# -- rebuild -----------------------------------------------------------------------------


def configure_rebuild(parser: argparse.ArgumentParser) -> None:
    """Add the ``rebuild`` arguments."""
    add_db(parser)
    add_flag(
        parser,
        "--force",
        "rebuild even though verify finds chain problems: the damaged sessions are left as "
        "they are, and verify keeps reporting them",
    )
    add_processes(parser)
    add_json(parser, "the counts as one JSON object")


async def run_rebuild(args: argparse.Namespace) -> int:
    """Run ``rebuild``: `eventmem.Store.rebuild`, and what it rebuilt."""
    path: str = args.db
    force: bool = args.force
    async with open_existing(path) as store:
        with Progress.for_command("rebuild", quiet=args.json) as progress:
            sessions = await store.rebuild(progress=progress, force=force, processes=args.processes)
        events = await store.count_events()
        # sessions with events that a forced rebuild left as they were
        left = len(await store.sessions()) - sessions if force else 0
    if args.json:
        counts = {"sessions": sessions, "events": events}
        print_json({**counts, "left_damaged": left} if force else counts)
        return EXIT_OK
    print(f"rebuilt the buffers of {plural(sessions, 'session')} from {plural(events, 'event')}")
    if left:
        print(
            f"left {plural(left, 'damaged session')} as {'they are' if left > 1 else 'it is'}"
            f": run '{PROG} verify {shell_arg(path)}'"
        )
    return EXIT_OK
