"""A session's history read back through the fold: where each event's messages went in
the buffer, and the buffer with its token count at any position or under a what-if.

Everything here folds with `eventmem.projection.apply`, the one fold the live path,
replay, time travel and rebuild run; nothing here restates its rules. Where the messages
of an event land is observed while `apply` appends them, not predicted. Only public
`eventmem.Store` methods are used, so this works on every backend and on read-only
stores, and it writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from eventmem.audit import rewrite_for_replay
from eventmem.errors import CorruptDatabaseError, InvalidInputError
from eventmem.events import (
    Event,
    MessagesAppended,
    MessagesRetracted,
    StepRecorded,
    StoredEvent,
    TurnSaved,
)
from eventmem.messages import Message
from eventmem.projection import Buffer, MemoryBuffer, apply
from eventmem.tokens import resolve_counter

if TYPE_CHECKING:
    from eventmem.api import Store

__all__ = [
    "BufferView",
    "FoldError",
    "Placement",
    "buffer_view",
    "event_tokens",
    "fold_event",
    "place",
    "placement",
]


class FoldError(CorruptDatabaseError):
    """A stored event the fold refuses: the session's log is damaged (`Store.verify`
    names the first bad position)."""

    def __init__(self, session_id: str, position: int, reason: str) -> None:
        super().__init__(f"session {session_id!r} position {position} does not fold ({reason})")
        self.session_id = session_id
        self.position = position
        self.reason = reason


def fold_event(buffer: Buffer, event: Event, position: int, session_id: str) -> None:
    """`eventmem.projection.apply`, with a refusal of the event raised as `FoldError`."""
    try:
        apply(buffer, event, position)
    except ValueError as e:
        raise FoldError(session_id, position, str(e)) from None


def event_tokens(event: Event) -> int:
    """The tokens an event's messages were counted at when it was saved (0 for a clear
    or a pop)."""
    if isinstance(event, (TurnSaved, StepRecorded, MessagesAppended)):
        return sum(event.tokens)
    return 0


def _events(store: Store, session_id: str) -> AsyncGenerator[StoredEvent, None]:
    # Store.events is an async generator; typed as one so it can be closed early.
    return cast(AsyncGenerator[StoredEvent, None], store.events(session_id))


# -- placement --------------------------------------------------------------------------


@dataclass
class Placement:
    """Where each event's messages went in the session's buffer sequence (``seq``).

    ``seqs`` maps the position of each turn, and of each step a turn took in, to the
    ``seq`` numbers its messages got, in message order. ``abandoned`` holds the steps a
    turn dropped (a dead run's). A step in neither is still pending: its turn is not
    saved yet. The buffer now is ``watermark <= seq < next_seq``.
    """

    version: int = 0  # the last position placed
    seqs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    abandoned: set[int] = field(default_factory=set)
    watermark: int = 0
    next_seq: int = 0
    pinned: int = -1

    @property
    def visible(self) -> int:
        """How many messages the buffer holds now."""
        return self.next_seq - self.watermark + (0 <= self.pinned < self.watermark)

    def visibility(self, position: int, event: Event) -> tuple[str, list[bool]]:
        """The event's marker and whether each of its messages is in the buffer now.

        The marker is ``visible``, ``pruned``, ``k/n visible``, ``popped`` (taken out
        by a pop; ``, k popped`` when some were), ``pending`` (a step whose turn is not
        saved yet), ``abandoned``, or ``-`` (no messages: a clear, a pop, a LangGraph
        checkpoint event).
        """
        if not isinstance(event, (TurnSaved, StepRecorded, MessagesAppended)):
            return "-", []
        if position in self.abandoned:
            return "abandoned", [False] * len(event.messages)
        seqs = self.seqs.get(position)
        if seqs is None:
            return "pending", [False] * len(event.messages)
        flags = [self.watermark <= seq < self.next_seq or seq == self.pinned >= 0 for seq in seqs]
        if not flags:
            return "-", flags
        popped = sum(seq == RETRACTED for seq in seqs)
        if popped == len(seqs):
            return "popped", flags
        shown = sum(flags)
        if shown == len(flags):
            return "visible", flags
        marker = "pruned" if shown == 0 else f"{shown}/{len(flags)} visible"
        return (f"{marker}, {popped} popped" if popped else marker), flags


RETRACTED = -2  # the seq of a message a pop took out of the view (seqs are >= 0)


class _PlacingBuffer(MemoryBuffer):
    """A `MemoryBuffer` that notes which event each appended message came from (`apply`
    names it with each message)."""

    def __init__(self) -> None:
        super().__init__()
        self.placed: dict[int, list[int]] = {}  # position -> seqs its messages got

    def forget(self) -> None:
        """Drop what was `placed`, once a turn is folded."""
        self.placed.clear()

    def append(self, message: Message, tokens: int, position: int = 0, index: int = 0) -> None:
        """Add a message, noting its ``seq`` under the event it came from."""
        self.placed.setdefault(position, []).append(self.next_seq)
        super().append(message, tokens, position, index)


class _Placer:
    """Builds a `Placement` one event at a time, in position order."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.buffer = _PlacingBuffer()
        self.placement = Placement()

    def add(self, position: int, event: Event) -> None:
        buffer, placement = self.buffer, self.placement
        if isinstance(event, TurnSaved):
            held = [step_position for step_position, _ in buffer.pending]
            fold_event(buffer, event, position, self.session_id)
            for step_position in held:
                if step_position in event.abandoned:
                    placement.abandoned.add(step_position)
                else:
                    placement.seqs[step_position] = tuple(buffer.placed.get(step_position, ()))
            placement.seqs[position] = tuple(buffer.placed.get(position, ()))
            buffer.forget()
        elif isinstance(event, MessagesAppended):
            fold_event(buffer, event, position, self.session_id)
            placement.seqs[position] = tuple(buffer.placed.get(position, ()))
            buffer.forget()
        elif isinstance(event, MessagesRetracted):
            retracted = {e.seq for e in list(buffer.entries)[-event.count :]}
            fold_event(buffer, event, position, self.session_id)
            self._mark_retracted(retracted)
        else:
            fold_event(buffer, event, position, self.session_id)
        placement.version = position
        placement.watermark, placement.next_seq = buffer.watermark, buffer.next_seq
        placement.pinned = buffer.state.pinned

    def _mark_retracted(self, retracted: set[int]) -> None:
        """Mark the ``retracted`` seqs (the newest visible ones) of the events holding
        them: the next appends may reuse them."""
        seqs = self.placement.seqs
        for position in reversed(seqs):
            placed = seqs[position]
            if any(seq in retracted for seq in placed):
                seqs[position] = tuple(RETRACTED if seq in retracted else seq for seq in placed)
            elif any(seq >= 0 for seq in placed) and max(placed) < min(retracted):
                break  # older events' seqs are lower still


def place(events: Iterable[Event], session_id: str = "") -> Placement:
    """The `Placement` of a session's events (positions 1, 2, ...); ``session_id`` only
    names the session in a `FoldError`."""
    placer = _Placer(session_id)
    for position, event in enumerate(events, start=1):
        placer.add(position, event)
    return placer.placement


async def placement(store: Store, session_id: str) -> Placement:
    """The `Placement` of every event the session has (read in pages, folded as read)."""
    placer = _Placer(session_id)
    async for stored in store.events(session_id):
        placer.add(stored.position, stored.data)
    return placer.placement


# -- the buffer at a position -----------------------------------------------------------


@dataclass(frozen=True)
class BufferView:
    """A session's buffer with the figures of the fold that produced it."""

    session_id: str
    position: int  # the last position folded
    version: int  # the session's version when it was read
    messages: list[Message]
    tokens: int  # the buffer's count: overhead + the visible messages' counts
    counter: str | None  # the counting scheme of ``tokens``
    max_token_limit: int | None  # the limit in force after ``position`` (None: no turn)
    model: str | None  # the what-if model, else the one the last turn recorded
    what_if: bool  # replayed under another limit or model
    damaged: bool = False  # the stored buffer differs from the fold (current buffer only)


async def buffer_view(
    store: Store,
    session_id: str,
    *,
    at: int | None = None,
    max_token_limit: int | None = None,
    model: str | None = None,
) -> BufferView:
    """The session's buffer now, as a load right after position ``at`` returned it, or,
    given ``max_token_limit`` and/or ``model``, replayed with them (what-if, as
    `Store.replay` does; nothing is written).

    The current buffer is what `Store.messages` returns; ``damaged`` says whether it
    differs from the fold of the events (`Store.verify` and `Store.rebuild` deal with
    that). The figures are always the fold's.
    """
    what_if = max_token_limit is not None or model is not None
    counter = resolve_counter(model) if model is not None else None
    version = await store.version(session_id)
    if at is not None and at > version:
        raise InvalidInputError(
            f"session {session_id!r} has {version} events; as_of={at} is in its future"
        )
    upto = version if at is None else at
    buffer = MemoryBuffer()
    limit: int | None = None
    recorded_model: str | None = None
    async with aclosing(_events(store, session_id)) as events:
        async for stored in events:
            if stored.position > upto:
                break
            for event in rewrite_for_replay([stored.data], max_token_limit, counter):
                fold_event(buffer, event, stored.position, session_id)
                if isinstance(event, TurnSaved):
                    limit, recorded_model = event.max_token_limit, event.model
                elif isinstance(event, MessagesAppended):
                    limit, recorded_model = event.max_tokens, event.model
    messages, damaged = buffer.messages, False
    if at is None and not what_if:
        served = await store.messages(session_id)  # what a load returns now
        damaged = await store.version(session_id) == version and served != messages
        messages = served
    return BufferView(
        session_id=session_id,
        position=upto,
        version=version,
        messages=messages,
        tokens=buffer.total_tokens + buffer.overhead,
        counter=buffer.counter,
        max_token_limit=limit,
        model=model if model is not None else recorded_model,
        what_if=what_if,
        damaged=damaged,
    )
