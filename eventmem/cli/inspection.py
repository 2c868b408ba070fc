"""The commands that show what a store holds: ``sessions``, ``log`` and ``buffer``.

They open the store read-only and print what `eventmem.Store` and `eventmem.timeline`
return; where each event's messages went and the buffer's figures come from the fold.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import cast

from eventmem import SessionSummary, Store, timeline
from eventmem.cli.args import (
    add_db,
    add_json_or_csv,
    add_session,
    model_name,
    non_negative_int,
)
from eventmem.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    PROG,
    Style,
    arrow,
    clip,
    error,
    plural,
    print_csv_row,
    print_json,
    printable,
    utc_seconds,
)
from eventmem.cli.stores import open_existing, require_session, shell_arg, shown
from eventmem.errors import EventmemError
from eventmem.events import (
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWritesSaved,
    ContentErased,
    Event,
    MessagesAppended,
    MessagesRetracted,
    SessionErased,
    SessionForked,
    SessionSealed,
    StepRecorded,
    StoredEvent,
    SummaryRecorded,
    TurnSaved,
    ViewRewound,
)
from eventmem.messages import Message, buffer_string
from eventmem.rules import stored_time
from eventmem.timeline import BufferView, FoldError

__all__ = [
    "configure_buffer",
    "configure_log",
    "configure_sessions",
    "run_buffer",
    "run_log",
    "run_sessions",
]


def _verify_hint(e: FoldError) -> EventmemError:
    return EventmemError(f"{e}; run '{PROG} verify'")


# -- sessions ----------------------------------------------------------------------------


SESSION_ORDERS = ("created", "id", "events", "last")


def configure_sessions(parser: argparse.ArgumentParser) -> None:
    """Add the ``sessions`` arguments."""
    add_db(parser)
    parser.add_argument(
        "--sort",
        choices=SESSION_ORDERS,
        default="created",
        help=(
            "order: created (oldest first, the default), id (by session id), events (most "
            "first) or last (latest activity first)"
        ),
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=non_negative_int,
        help="show at most N sessions, the first N in --sort order (default: all)",
    )
    add_json_or_csv(parser, "one JSON object per session (JSON Lines)", "one CSV row per session")


SESSION_COLUMNS: tuple[str, ...] = SessionSummary.__struct_fields__
"""The columns of ``sessions --csv``: the keys of its ``--json`` objects."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _microseconds(moment: datetime | int | None) -> int | None:
    """A stored time as microseconds since the epoch (a raw value is one already)."""
    if moment is None or isinstance(moment, int):
        return moment
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _sorted_sessions(rows: list[SessionSummary], order: str) -> list[SessionSummary]:
    """``rows`` (oldest first) in ``order``; ties keep the oldest first."""
    if order == "id":
        return sorted(rows, key=lambda r: r.session_id)
    if order == "events":
        return sorted(rows, key=lambda r: -r.events)
    if order == "last":
        times = [_microseconds(r.last_activity) for r in rows]
        # latest first; a session without events (no time) last
        ranked = sorted(range(len(rows)), key=lambda i: (times[i] is None, -(times[i] or 0)))
        return [rows[i] for i in ranked]
    return rows


async def run_sessions(args: argparse.Namespace) -> int:
    """Run ``sessions``: one line (or JSON object) per session summary, in ``--sort``
    order, at most ``--limit`` of them."""
    path: str = args.db
    limit: int | None = args.limit
    async with open_existing(path, read_only=True) as store:
        every = await store.session_summaries()
    rows = _sorted_sessions(every, args.sort)[:limit]
    if args.json:
        for row in rows:
            print_json(row)
        return EXIT_OK
    if args.csv:
        print_csv_row(SESSION_COLUMNS)
        for row in rows:
            print_csv_row([getattr(row, column) for column in SESSION_COLUMNS])
        return EXIT_OK
    if not every:
        print(f"no sessions in {shown(path)}")
        return EXIT_OK
    style = Style.for_stream(sys.stdout)
    names = [printable(r.session_id) for r in rows]
    width = max([len("session"), *(len(session) for session in names)])
    header = f"{'session':<{width}}  events  visible  tokens  last activity"
    print(style.dim(header))
    for session, r in zip(names, rows, strict=True):
        last = "-" if r.last_activity is None else utc_seconds(r.last_activity)
        print(f"{session:<{width}}  {r.events:>6}  {r.visible_messages:>7}  {r.tokens:>6}  {last}")
    total = sum(r.events for r in every)
    if len(rows) < len(every):
        shown_events = sum(r.events for r in rows)
        print(
            f"{len(rows)} of {plural(len(every), 'session')} shown ({plural(shown_events, 'event')}"
            f" of {total})"
        )
    else:
        print(f"{plural(len(every), 'session')}, {plural(total, 'event')}")
    return EXIT_OK


# -- log ---------------------------------------------------------------------------------


def _gist(message: Message, width: int) -> str:
    prefix = {"human": "Human", "ai": "AI"}.get(message.role, message.role.capitalize())
    text = message.text
    if not isinstance(message.content, str) and len(message.content) > (1 if text else 0):
        kinds = [p.get("type", "?") for p in message.content if isinstance(p, dict)]
        text += f" [{', '.join(str(k) for k in kinds if k != 'text')}]" if kinds else ""
    if not text.strip() and (message.tool_calls or message.function_call):
        names = [call.name for call in message.tool_calls]
        if message.function_call is not None:
            names.append(str(message.function_call.get("name", "?")))
        text = "calls " + ", ".join(names)
    return f"{prefix}: {clip(text, width)}"


def _summary(event: Event, pointer: str, width: int = 40) -> str:
    if isinstance(event, TurnSaved):
        messages = event.messages
        text = _gist(messages[0], width) if messages else "(no messages)"
        if len(messages) > 1:
            text += f" {pointer} {_gist(messages[-1], width)}"
        if event.steps:
            text += f" +{plural(len(event.steps), 'step')}"
        if event.abandoned:
            text += f" ({len(event.abandoned)} abandoned)"
        return text
    if isinstance(event, StepRecorded):
        text = f"tool({clip(event.action.tool, width)}) {pointer} {clip(event.observation, width)}"
        return text + " (live)" if event.live else text
    if isinstance(event, MessagesAppended):
        messages = event.messages
        text = _gist(messages[0], width) if messages else "(no messages)"
        if len(messages) > 1:
            text += f" {pointer} {_gist(messages[-1], width)}"
            if len(messages) > 2:
                text += f" ({len(messages)} messages)"
        return text
    if isinstance(event, MessagesRetracted):
        return f"popped {plural(event.count, 'message')}"
    if isinstance(event, (CheckpointSaved, CheckpointWritesSaved, CheckpointsDeleted)):
        return _checkpoint_summary(event, width)
    if isinstance(event, SummaryRecorded):
        return (
            f"summary of {plural(event.end_seq - event.first_seq, 'message')} (positions "
            f"{event.first_position}-{event.last_position}) by {clip(event.model, width)}: "
            f"{clip(event.summary, width)}"
        )
    if isinstance(event, SessionForked):
        return f"fork of {clip(event.parent, width)} at position {event.at}"
    if isinstance(event, ViewRewound):
        return f"rewind to {event.to}, {plural(len(event.view), 'message')} restored"
    if isinstance(event, SessionErased):
        by = f" by {clip(event.by, width)}" if event.by else ""
        return f"erased {plural(event.events, 'event')}{by}: {clip(event.reason, width)}"
    if isinstance(event, SessionSealed):
        return f"sealed the events before {event.before} ({event.events} emptied)"
    if isinstance(event, ContentErased):
        return "(content erased)"
    return "cleared"


def _lineage(placed: timeline.Placement) -> str | None:
    """The line ``log`` begins a fork's events with: its parent, the fork point, and
    which sessions hold the positions it inherited (marked with them below)."""
    fork = placed.fork
    if fork is None:
        return None
    if fork.at == 0:
        return f"fork of {printable(fork.parent)} at position 0 (nothing inherited)"
    held = ", ".join(
        f"{first}-{last} from {printable(holder)}"
        if first != last
        else f"{first} from {printable(holder)}"
        for holder, first, last in placed.inherited
    )
    return f"fork of {printable(fork.parent)} at position {fork.at} (inherited: {held})"


def _marks(stored: StoredEvent, session: str, placed: timeline.Placement) -> str:
    """What ``log`` puts before an event's summary: the session holding it, if another
    (an event a fork inherited), and the rewind that rewound over it, if one did."""
    marks = []
    if stored.session_id != session:
        marks.append(f"[{printable(stored.session_id)}]")
    rewind = placed.rewound.get(stored.position)
    if rewind is not None:
        marks.append(f"[rewound at {rewind}]")
    return "".join(f"{mark} " for mark in marks)


def _checkpoint_summary(
    event: CheckpointSaved | CheckpointWritesSaved | CheckpointsDeleted, width: int
) -> str:
    """A LangGraph checkpoint event in a line: what it stores, not its serialized bytes."""
    if isinstance(event, CheckpointsDeleted):
        what = (
            "the whole thread" if event.everything else plural(len(event.checkpoints), "checkpoint")
        )
        runs = f" of {plural(len(event.run_ids), 'run')}" if event.run_ids else ""
        return f"{event.reason}: hid {what}{runs}"
    ns = f" ns {clip(event.ns, width)}" if event.ns else ""
    if isinstance(event, CheckpointWritesSaved):
        channels = ", ".join(clip(w.channel, width) for w in event.writes)
        return (
            f"task {clip(event.task_id, 12)} on {clip(event.checkpoint_id, 40)}{ns}: "
            f"{plural(len(event.writes), 'write')} ({channels})"
        )
    step = f" step {event.step}" if event.step is not None else ""
    source = f" {clip(event.source, width)}" if event.source else ""
    changed = []
    for value in event.values:
        name = clip(value.channel, width)
        if value.items is not None:
            count = len(value.items)
            changed.append(f"{name} +{count}" if value.extends is not None else f"{name} [{count}]")
        else:
            changed.append(name if value.value is not None else f"{name} emptied")
    values = f": {', '.join(changed)}" if changed else ""
    return f"{clip(event.checkpoint_id, 40)}{ns}{step}{source}{values}"


def configure_log(parser: argparse.ArgumentParser) -> None:
    """Add the ``log`` arguments, paging included."""
    add_db(parser)
    add_session(parser)
    parser.add_argument(
        "--limit",
        metavar="N",
        type=non_negative_int,
        help="show at most N events (default: all)",
    )
    parser.add_argument(
        "--offset",
        metavar="K",
        type=non_negative_int,
        default=0,
        help="skip the first K events (the last K with --reverse; default 0)",
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="newest first: --offset counts from the last event",
    )
    add_json_or_csv(
        parser,
        "one JSON object per event, with its full data (JSON Lines)",
        "one CSV row per event (its data as JSON)",
    )


LOG_COLUMNS = (
    "session_id",
    "position",
    "global_position",
    "recorded_at",
    "kind",
    "summary",
    "tokens",
    "buffer",
    "message_visible",
    "rewound_at",
    "hash",
    "data",
)
"""The keys of ``log --json``'s objects, in order, and the columns of ``log --csv``
(``session_id``: the session holding the event, a fork's parent for one it inherited;
``rewound_at``: the position of the rewind that rewound over it, or null)."""


def _print_event(
    stored: StoredEvent,
    placed: timeline.Placement,
    args: argparse.Namespace,
    width: int,
    pointer: str,
) -> None:
    session: str = args.session
    event = stored.data
    marker, flags = placed.visibility(stored.position, event)
    recorded_at = stored_time(stored.recorded_at_us)  # raw if out of range
    if args.json or args.csv:
        values = (
            stored.session_id,
            stored.position,
            stored.global_position,
            recorded_at,
            stored.kind,
            _summary(event, pointer),
            timeline.event_tokens(event),
            marker,
            flags,
            placed.rewound.get(stored.position),
            stored.hash,
            event,
        )
        if args.json:
            print_json(dict(zip(LOG_COLUMNS, values, strict=True)))
        else:
            print_csv_row(values)
        return
    print(
        f"{stored.position:>{width}}  {utc_seconds(recorded_at)}  "
        f"{stored.kind:<5} {timeline.event_tokens(event):>6}  {marker:<11}  "
        f"{_marks(stored, session, placed)}{_summary(event, pointer)}"
    )


@dataclass(frozen=True)
class _Page:
    """The positions ``log`` shows of a session's ``version`` events: ``first`` to
    ``last`` (empty when ``first > last``), newest first if ``reverse``."""

    first: int
    last: int
    reverse: bool
    paged: bool  # --limit or --offset given

    @classmethod
    def of(cls, version: int, args: argparse.Namespace) -> _Page:
        """The page that ``--limit``, ``--offset`` and ``--reverse`` select."""
        limit: int | None = args.limit
        offset: int = args.offset
        count = max(version - offset, 0)  # the events past the offset
        if limit is not None:
            count = min(count, limit)
        paged = limit is not None or offset > 0
        if args.reverse:
            return cls(version - offset - count + 1, version - offset, True, paged)
        return cls(offset + 1, offset + count, False, paged)

    @property
    def count(self) -> int:
        """How many events the page shows."""
        return max(self.last - self.first + 1, 0)


async def _page_events(store: Store, session: str, page: _Page) -> AsyncIterator[StoredEvent]:
    """The events of ``page`` in the order shown. Read from the first position (the
    store reads a session from its start), and no further than ``page.last``; a reverse
    page holds its events (at most ``--limit`` of them) to show them newest first."""
    if page.count == 0:
        return
    held: list[StoredEvent] = []
    events = cast(AsyncGenerator[StoredEvent, None], store.events(session))
    async with aclosing(events):
        async for stored in events:
            if stored.position < page.first:
                continue
            if page.reverse:
                held.append(stored)
            else:
                yield stored
            if stored.position >= page.last:  # read no further (nor what came since the fold)
                break
    for stored in reversed(held):
        yield stored


async def run_log(args: argparse.Namespace) -> int:
    """Run ``log``: the session's events (all, or a page of them) with what the buffer
    holds of each."""
    path: str = args.db
    session: str = args.session
    pointer = arrow()
    style = Style.for_stream(sys.stdout)
    async with open_existing(path, read_only=True) as store:
        await require_session(store, session, path)
        try:
            placed = await timeline.placement(store, session)
        except FoldError as e:
            raise _verify_hint(e) from None
        page = _Page.of(placed.version, args)
        width = max(len(str(placed.version)), 3)
        if args.csv:
            print_csv_row(LOG_COLUMNS)
        elif not args.json:
            lineage = _lineage(placed)
            if lineage is not None:
                print(lineage)
            print(
                style.dim(
                    f"{'pos':>{width}}  time                  kind  tokens  buffer       summary"
                )
            )
        shown = cast(AsyncGenerator[StoredEvent, None], _page_events(store, session, page))
        async with aclosing(shown):
            async for stored in shown:
                _print_event(stored, placed, args, width, pointer)
    if not (args.json or args.csv):
        shown_events = (
            f"{page.count} of {plural(placed.version, 'event')} shown"
            if page.paged
            else plural(placed.version, "event")
        )
        print(
            f"{shown_events}; {plural(placed.entered, 'message')} entered "
            f"the buffer, {placed.visible} visible now"
        )
    return EXIT_OK


# -- buffer ------------------------------------------------------------------------------


def configure_buffer(parser: argparse.ArgumentParser) -> None:
    """Add the ``buffer`` arguments: time travel (``--at``) and what-if."""
    add_db(parser)
    add_session(parser)
    parser.add_argument(
        "--at",
        metavar="POSITION",
        type=non_negative_int,
        help="the buffer as a load right after this position returned it (time travel)",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=non_negative_int,
        help="what-if: replay the history with this max_token_limit (nothing is written)",
    )
    parser.add_argument(
        "--model",
        metavar="M",
        type=model_name,
        help="what-if: replay the history counting tokens for this model",
    )
    add_json_or_csv(
        parser,
        "the messages (chat-completions dicts) and the token total as JSON",
        "one CSV row per message, with the buffer's figures",
    )


BUFFER_COLUMNS = (
    "session_id",
    "position",
    "events",
    "what_if",
    "max_token_limit",
    "model",
    "counter",
    "tokens",
)
"""The first columns of ``buffer --csv``: the figures of its ``--json`` object, the same
on every row."""
MESSAGE_COLUMNS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call")
"""The last columns of ``buffer --csv``: the keys of a chat-completions message dict
(empty where a message has none; ``tool_calls`` and ``function_call`` as JSON)."""
_BUFFER_FIELDS = {"events": "version"}  # column -> BufferView attribute


def _print_view(view: BufferView, args: argparse.Namespace) -> None:
    if args.json:
        print_json(
            {
                "session_id": view.session_id,
                "position": view.position,
                "events": view.version,
                "what_if": view.what_if,
                "max_token_limit": view.max_token_limit,
                "model": view.model,
                "counter": view.counter,
                "tokens": view.tokens,
                "messages": [m.to_openai() for m in view.messages],
            }
        )
        return
    if args.csv:
        print_csv_row([*BUFFER_COLUMNS, *MESSAGE_COLUMNS])
        figures = [getattr(view, _BUFFER_FIELDS.get(c, c)) for c in BUFFER_COLUMNS]
        for message in view.messages:
            sent = message.to_openai()
            print_csv_row([*figures, *(sent.get(column) for column in MESSAGE_COLUMNS)])
        return
    style = Style.for_stream(sys.stdout)
    print(buffer_string(view.messages) if view.messages else "(the buffer is empty)")
    print()
    limit = f"/{view.max_token_limit}" if view.max_token_limit is not None else ""
    scheme = f" ({view.counter})" if view.counter else ""
    if view.what_if:
        options = (f" --limit {args.limit}" if args.limit is not None else "") + (
            f" --model {args.model}" if args.model is not None else ""
        )
        when = f"what-if replay of positions 1-{view.position} with{options}; nothing was written"
    elif args.at is not None:
        when = f"as of position {args.at} of {view.version}"
    else:
        when = f"now, after position {view.version}"
    count = plural(len(view.messages), "message")
    print(style.dim(f"{count}, {view.tokens}{limit} tokens{scheme}; {when}"))


async def run_buffer(args: argparse.Namespace) -> int:
    """Run ``buffer``: the buffer with its figures; exit 1 if the stored one is damaged."""
    path: str = args.db
    session: str = args.session
    at: int | None = args.at
    async with open_existing(path, read_only=True) as store:
        version = await require_session(store, session, path)
        if at is not None and at > version:
            raise EventmemError(
                f"session {session!r} has {version} events; --at {at} is in its future"
            )
        try:
            view = await timeline.buffer_view(
                store, session, at=at, max_token_limit=args.limit, model=args.model
            )
        except FoldError as e:
            raise _verify_hint(e) from None
    _print_view(view, args)
    if view.damaged:
        error(
            f"the stored buffer of session {session!r} differs from the fold of its events; "
            f"run '{PROG} verify {shell_arg(path)}'"
        )
        return EXIT_PROBLEM
    return EXIT_OK
