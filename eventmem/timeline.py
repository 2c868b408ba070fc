"""A session's history read back through the fold: where each event's messages went in
the buffer, and the buffer with its token count at any position or under a what-if.

Everything here folds with `eventmem.projection.apply`, the one fold the live path,
replay, time travel and rebuild run; nothing here restates its rules. Where the messages
of an event land is observed while `apply` appends them, not predicted. Only public
`eventmem.Store` methods are used, so this works on every backend and on read-only
stores, and it writes nothing.

A fork's history is read as `Store.events` yields it: its parent's events, then its own.
A rewind brings back messages of earlier events, so a fold that meets one must have kept
them (`HistoryBuffer`); a session without rewinds is folded without keeping anything,
and one with rewinds is read again, keeping its history, once the first is met.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from eventmem.audit import rewrite_for_replay
from eventmem.errors import CorruptDatabaseError, InvalidInputError
from eventmem.events import (
    ContentErased,
    Event,
    MessagesAppended,
    MessagesRetracted,
    SessionForked,
    SessionSealed,
    StepRecorded,
    StoredEvent,
    TurnSaved,
    ViewRewound,
)
from eventmem.messages import Message
from eventmem.projection import Archive, Buffer, MemoryBuffer, apply, rewind_targets
from eventmem.tokens import TokenCounter, resolve_counter

if TYPE_CHECKING:
    from eventmem.api import Store

__all__ = [
    "BufferView",
    "FoldError",
    "HistoryBuffer",
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
    """`eventmem.projection.apply`, with a refusal of the event raised as `FoldError`
    (and, for a `HistoryBuffer`, the event kept for the rewinds after it)."""
    if isinstance(buffer, HistoryBuffer):
        buffer.fold(event, position, session_id)
        return
    try:
        apply(buffer, event, position)
    except (ValueError, CorruptDatabaseError) as e:
        raise FoldError(session_id, position, str(e)) from None


class _HistoryNeeded(Exception):
    """A rewind met by a fold that kept no history: fold again, keeping it."""


class HistoryBuffer(MemoryBuffer):
    """A `MemoryBuffer` for a fold that may meet rewinds.

    With ``keep`` it keeps the messages and summaries of every event it folds (an
    `eventmem.projection.Archive`), which a rewind brings back; the view after each of
    ``targets`` is noted too, and a rewind to one is checked against it. A rewind to a
    position not noted is applied as its event says (`Store.verify` checks every one).
    Without ``keep`` it keeps nothing, and a rewind raises `_HistoryNeeded`.
    """

    def __init__(
        self, *, keep: bool = False, targets: Iterable[int] = (), replaying: bool = False
    ) -> None:
        """``replaying``: a what-if replay (see `eventmem.projection.Buffer.what_if`)."""
        super().__init__()
        self.archive = Archive(targets) if keep else None
        self.what_if = replaying

    def fold(self, event: Event, position: int, session_id: str) -> None:
        """Fold ``event`` (at ``position``), then keep it; `FoldError` if refused."""
        archive = self.archive
        kind = type(event)
        if kind is ContentErased:
            return  # erased or sealed: nothing to fold (a tombstone or a seal follows)
        if archive is None and kind in (ViewRewound, SessionSealed):
            raise _HistoryNeeded
        try:
            apply(self, event, position)
        except (ValueError, CorruptDatabaseError) as e:
            raise FoldError(session_id, position, str(e)) from None
        if archive is not None:
            archive.keep(self, event, position)

    def restores(self, event: ViewRewound) -> ViewRewound:
        """The rewind checked against the view noted after its position; one to a
        position not noted, as its event says."""
        if self.archive is not None and event.to not in self.archive.points:
            return event
        return super().restores(event)


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
    saved yet. The buffer now is ``watermark <= seq < next_seq``; a message a rewind
    brought back got a new ``seq``, which replaces its old one.

    ``rewound`` maps each position a rewind rewound over (those after the position it
    went back to, before its own) to the position of the first rewind that did.
    ``inherited`` lists, for a fork, the sessions holding the positions it inherited:
    ``(session, first, last)``, oldest first; ``fork`` is the fork's own first event.
    """

    version: int = 0  # the last position placed
    seqs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    abandoned: set[int] = field(default_factory=set)
    watermark: int = 0
    next_seq: int = 0
    pinned: int = -1
    rewound: dict[int, int] = field(default_factory=dict)
    restored: int = 0  # messages a rewind brought back (each took a new seq)
    inherited: list[tuple[str, int, int]] = field(default_factory=list)
    fork: SessionForked | None = None

    @property
    def entered(self) -> int:
        """How many messages entered the buffer (one a rewind brought back, once)."""
        return self.next_seq - self.restored

    @property
    def visible(self) -> int:
        """How many messages the buffer holds now."""
        return self.next_seq - self.watermark + (0 <= self.pinned < self.watermark)

    def visibility(self, position: int, event: Event) -> tuple[str, list[bool]]:
        """The event's marker and whether each of its messages is in the buffer now.

        The marker is ``visible``, ``pruned``, ``k/n visible``, ``popped`` (taken out
        by a pop; ``, k popped`` when some were), ``rewound`` (out of the view since a
        rewind rewound over the event), ``pending`` (a step whose turn is not saved
        yet), ``abandoned``, ``erased`` (its content was erased or sealed), or ``-``
        (no messages: a clear, a pop, a fork, a rewind, a seal, a tombstone, a LangGraph
        checkpoint event).
        """
        if isinstance(event, ContentErased):
            return "erased", []
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
        if shown == 0 and position in self.rewound:
            marker = "rewound"
        else:
            marker = "pruned" if shown == 0 else f"{shown}/{len(flags)} visible"
        return (f"{marker}, {popped} popped" if popped else marker), flags


RETRACTED = -2  # the seq of a message a pop took out of the view (seqs are >= 0)


class _PlacingBuffer(HistoryBuffer):
    """A `HistoryBuffer` that notes which event each appended message came from (`apply`
    names it with each message)."""

    def __init__(self, *, keep: bool = False) -> None:
        super().__init__(keep=keep)
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

    def __init__(self, session_id: str, *, keep: bool = False) -> None:
        self.session_id = session_id
        self.buffer = _PlacingBuffer(keep=keep)
        self.placement = Placement()

    def add(self, position: int, event: Event, holder: str | None = None) -> None:
        """Place the event at ``position``, held by session ``holder`` (None: this one)."""
        buffer, placement = self.buffer, self.placement
        if holder is not None and holder != self.session_id:
            self._inherit(holder, position)
        elif type(event) is SessionForked and placement.fork is None:
            placement.fork = event
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
            retracted = list(buffer.entries)[-event.count :]
            fold_event(buffer, event, position, self.session_id)
            self._mark_retracted({(e.position, e.seq) for e in retracted})
        elif isinstance(event, (ViewRewound, SessionSealed)):
            fold_event(buffer, event, position, self.session_id)
            self._mark_restored(event, position)
        else:
            fold_event(buffer, event, position, self.session_id)
        placement.version = position
        placement.watermark, placement.next_seq = buffer.watermark, buffer.next_seq
        placement.pinned = buffer.state.pinned

    def _mark_retracted(self, retracted: set[tuple[int, int]]) -> None:
        """Mark the ``retracted`` seqs (the newest visible ones, with the positions of
        the events holding them) in those events: the next appends may reuse them."""
        seqs = self.placement.seqs
        for position in {position for position, _ in retracted}:
            gone = {seq for held_by, seq in retracted if held_by == position}
            placed = seqs.get(position, ())
            seqs[position] = tuple(RETRACTED if seq in gone else seq for seq in placed)

    def _mark_restored(self, event: ViewRewound | SessionSealed, position: int) -> None:
        """Give the messages the rewind (or seal) brought back their new seqs, and mark
        the events a rewind rewound over."""
        seqs = self.placement.seqs
        self.placement.restored += len(self.buffer.entries)
        for entry in self.buffer.entries:  # the view is the restored messages alone
            placed = list(seqs.get(entry.position, ()))
            if entry.index < len(placed):
                placed[entry.index] = entry.seq
                seqs[entry.position] = tuple(placed)
        if isinstance(event, ViewRewound):
            for over in range(event.to + 1, position):
                self.placement.rewound.setdefault(over, position)

    def _inherit(self, holder: str, position: int) -> None:
        """Note that ``holder`` holds ``position`` of the fork's history."""
        inherited = self.placement.inherited
        if inherited and inherited[-1][0] == holder:
            inherited[-1] = (holder, inherited[-1][1], position)
        else:
            inherited.append((holder, position, position))


def place(events: Iterable[Event], session_id: str = "") -> Placement:
    """The `Placement` of a session's events (positions 1, 2, ...); ``session_id`` only
    names the session in a `FoldError`."""
    history = list(events)
    placer = _Placer(session_id, keep=bool(rewind_targets(history)))
    for position, event in enumerate(history, start=1):
        placer.add(position, event)
    return placer.placement


async def placement(store: Store, session_id: str) -> Placement:
    """The `Placement` of every event the session has (read in pages, folded as read;
    read again, keeping its history, if it holds a rewind)."""
    try:
        return await _placement(store, session_id, keep=False)
    except _HistoryNeeded:
        return await _placement(store, session_id, keep=True)


async def _placement(store: Store, session_id: str, *, keep: bool) -> Placement:
    placer = _Placer(session_id, keep=keep)
    async with aclosing(_events(store, session_id)) as events:
        async for stored in events:
            placer.add(stored.position, stored.data, stored.session_id)
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
    try:
        buffer, in_force = await _fold_upto(
            store, session_id, upto, max_token_limit, counter, keep=False
        )
    except _HistoryNeeded:
        buffer, in_force = await _fold_upto(
            store, session_id, upto, max_token_limit, counter, keep=True
        )
    limit, recorded_model = in_force.limit, in_force.model
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


@dataclass
class _InForce:
    """The limit in force and the model of the last save, as a fold goes."""

    limit: int | None = None
    model: str | None = None

    def note(self, event: Event) -> None:
        if isinstance(event, TurnSaved):
            self.limit, self.model = event.max_token_limit, event.model
        elif isinstance(event, MessagesAppended):
            self.limit, self.model = event.max_tokens, event.model


async def _fold_upto(
    store: Store,
    session_id: str,
    upto: int,
    max_token_limit: int | None,
    counter: TokenCounter | None,
    *,
    keep: bool,
) -> tuple[HistoryBuffer, _InForce]:
    """The buffer after positions 1..``upto`` (replayed under ``max_token_limit`` and
    ``counter`` if given), with the limit in force and the model the last save recorded.

    With ``keep`` the history is read first, so that every rewind is checked against the
    fold's view after its position, and a what-if replay restores its own view there.
    """
    history: list[Event] = []
    what_if = max_token_limit is not None or counter is not None
    buffer, in_force = HistoryBuffer(replaying=what_if), _InForce()
    async with aclosing(_events(store, session_id)) as events:
        async for stored in events:
            if stored.position > upto:
                break
            if keep:
                history.append(stored.data)
                continue
            for event in rewrite_for_replay([stored.data], max_token_limit, counter):
                fold_event(buffer, event, stored.position, session_id)
                in_force.note(event)
    if keep:
        buffer = HistoryBuffer(keep=True, targets=rewind_targets(history), replaying=what_if)
        replayed = rewrite_for_replay(history, max_token_limit, counter)
        for position, event in enumerate(replayed, start=1):
            fold_event(buffer, event, position, session_id)
            in_force.note(event)
    return buffer, in_force
