"""What the viewer's pages show, read through the public `eventmem.Store` API.

Nothing here renders or serves: each function returns plain data that `eventmem.ui.pages`
turns into HTML. Every read is bounded by what the page shows (a page of sessions, a
page of events), except the fold of a session up to a position, which the buffer, the
diff and the chart need and which reads the events in pages as
`eventmem.timeline` does. The fold is `eventmem.projection.apply` over a
`MemoryBuffer` that notes where each message went: the one fold the store runs, so
what the viewer says was pruned is what was pruned.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal, cast

from eventmem.api import Store
from eventmem.audit import VerifyReport
from eventmem.errors import EventmemError
from eventmem.events import (
    MessagesAppended,
    SessionErased,
    SessionForked,
    StoredEvent,
    TurnSaved,
    ViewRewound,
)
from eventmem.messages import Message
from eventmem.store.base import SessionSummary
from eventmem.timeline import HistoryBuffer, fold_event

__all__ = [
    "BufferAt",
    "Entry",
    "Lineage",
    "NotFoundError",
    "SessionPage",
    "TimelinePage",
    "TokenPoint",
    "Trace",
    "ViewDiff",
    "buffer_at",
    "diff_views",
    "erasure",
    "find_session",
    "lineage",
    "session_page",
    "timeline_page",
    "token_series",
    "verify_session",
]

Departure = Literal["pruned", "cleared", "popped", "rewound"]


class NotFoundError(EventmemError):
    """A session or position that the store does not have (a 404, not a bad request)."""


@dataclass
class Entry:
    """One message that entered the session's buffer: ``index`` counts them from 0 in
    the order they entered (a popped message's place is not reused here)."""

    index: int
    message: Message
    tokens: int  # its count now (a recount changes it)
    position: int  # the event that brought it in (a turn, for its steps' messages)
    left: Departure | None = None  # why it is out of the buffer (None: visible)
    left_at: int | None = None  # the event at which it left
    pinned: bool = False  # a system message kept below the watermark


class _TracingBuffer(HistoryBuffer):
    """A `HistoryBuffer` (keeping the history, for rewinds) that keeps an `Entry` for
    every message it was given, and marks each one that leaves with the reason and the
    position."""

    def __init__(self) -> None:
        super().__init__(keep=True)
        self.position = 0
        self.emptied_by: Departure = "cleared"  # why drop_all empties the view
        self.all: list[Entry] = []
        self._live: dict[int, Entry] = {}  # seq -> entry, for the visible ones

    def _leave(self, seq: int, why: Departure) -> None:
        entry = self._live.pop(seq)
        entry.left, entry.left_at = why, self.position

    def append(self, message: Message, tokens: int, position: int = 0, index: int = 0) -> None:
        """Add a message, and its entry."""
        entry = Entry(len(self.all), message, tokens, self.position)
        self._live[self.state.next_seq] = entry
        self.all.append(entry)
        super().append(message, tokens, position, index)

    def drop_oldest(self) -> None:
        """Prune the oldest (unpinned) message."""
        pinned_below = 0 <= self.state.pinned < self.state.watermark
        self._leave(self.entries[1 if pinned_below else 0].seq, "pruned")
        super().drop_oldest()

    def drop_all(self) -> None:
        """Clear (or rewind): every visible message leaves."""
        for entry in self.entries:
            self._leave(entry.seq, self.emptied_by)
        super().drop_all()

    def pin_oldest(self) -> None:
        """Keep the oldest (the pinned system message) below the watermark."""
        self._live[self.entries[0].seq].pinned = True
        super().pin_oldest()

    def drop_pinned(self) -> None:
        """Prune the pinned message."""
        self._leave(self.entries[0].seq, "pruned")
        super().drop_pinned()

    def drop_newest(self) -> None:
        """Pop the newest message."""
        self._leave(self.entries[-1].seq, "popped")
        super().drop_newest()

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Recount the visible messages."""
        super().set_counts(tokens)
        for entry in self.entries:
            self._live[entry.seq].tokens = entry.tokens

    def visible_entries(self) -> list[Entry]:
        """The visible messages' entries, in buffer order."""
        return [self._live[entry.seq] for entry in self.entries]


@dataclass
class Trace:
    """The fold of a session's events from position 1, one event at a time."""

    session_id: str
    buffer: _TracingBuffer = field(default_factory=_TracingBuffer)
    limit: int | None = None  # the limit in force (None: no bound, or no save yet)
    model: str | None = None

    def add(self, stored: StoredEvent) -> None:
        """Fold the next event."""
        self.buffer.position = stored.position
        self.buffer.emptied_by = "rewound" if type(stored.data) is ViewRewound else "cleared"
        fold_event(self.buffer, stored.data, stored.position, self.session_id)
        event = stored.data
        if isinstance(event, TurnSaved):
            self.limit, self.model = event.max_token_limit, event.model
        elif isinstance(event, MessagesAppended):
            self.limit, self.model = event.max_tokens, event.model

    @property
    def tokens(self) -> int:
        """The buffer's count: overhead + the visible messages' counts."""
        state = self.buffer.state
        return state.total_tokens + state.overhead


async def _fold(
    store: Store,
    session_id: str,
    upto: int,
    after_each: Callable[[Trace, StoredEvent], None] | None = None,
) -> Trace:
    """Fold the session's events 1..``upto``, calling ``after_each`` after each one."""
    trace = Trace(session_id)
    if upto == 0:
        return trace
    events = cast(AsyncGenerator[StoredEvent, None], store.events(session_id))
    async with aclosing(events):
        async for stored in events:
            trace.add(stored)
            if after_each is not None:
                after_each(trace, stored)
            if stored.position >= upto:
                break
    return trace


# -- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPage:
    """A page of the session list."""

    matching: int  # sessions whose id contains the search
    rows: list[SessionSummary]
    page: int  # 1-based
    pages: int  # at least 1


async def session_page(
    store: Store, *, search: str, order: str, descending: bool, page: int, size: int
) -> SessionPage:
    """Page ``page`` (1-based) of ``size`` sessions, sorted and filtered by the store."""
    matching, rows = await store.session_page(
        search=search, order=order, descending=descending, offset=(page - 1) * size, limit=size
    )
    pages = max(1, -(-matching // size))
    if page > pages:
        raise NotFoundError(f"there is no page {page}: {pages} page(s) of sessions match")
    return SessionPage(matching, rows, page, pages)


async def find_session(store: Store, session_id: str) -> int:
    """The session's version; `NotFoundError` when the store has no such session."""
    version = await store.version(session_id)
    if version == 0:
        raise NotFoundError(f"no session {session_id!r} in this store")
    return version


# -- timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelinePage:
    """A page of a session's events, and which of them a later rewind rewound over."""

    version: int
    events: list[StoredEvent]
    rewound: dict[int, int]  # position -> the position of the first rewind over it


async def timeline_page(store: Store, session_id: str, first: int, size: int) -> TimelinePage:
    """The session's events ``first``..``first + size - 1``: one index lookup and a page
    read, then the rest of the session read for its rewinds (which rewind over earlier
    events)."""
    version = await find_session(store, session_id)
    if first > version:
        raise NotFoundError(f"session {session_id!r} has {version} events; no position {first}")
    shown: list[StoredEvent] = []
    last = first + size - 1
    rewound: dict[int, int] = {}
    events = cast(AsyncGenerator[StoredEvent, None], store.events(session_id, after=first - 1))
    async with aclosing(events):
        async for stored in events:
            if stored.position <= last:
                shown.append(stored)
            event = stored.data
            if type(event) is ViewRewound:
                for over in range(max(event.to + 1, first), min(stored.position, last + 1)):
                    rewound.setdefault(over, stored.position)
    return TimelinePage(version, shown, rewound)


@dataclass(frozen=True)
class Lineage:
    """Where a fork's history comes from: its first event (``fork``: None for a session
    that is not a fork) and the sessions holding the positions it inherited, as
    ``(session, first, last)``, oldest first."""

    fork: SessionForked | None
    inherited: list[tuple[str, int, int]]


async def lineage(store: Store, session_id: str) -> Lineage:
    """The session's `Lineage`: its history read up to its own first event."""
    inherited: list[tuple[str, int, int]] = []
    fork: SessionForked | None = None
    events = cast(AsyncGenerator[StoredEvent, None], store.events(session_id))
    async with aclosing(events):
        async for stored in events:
            if stored.session_id == session_id:
                fork = stored.data if isinstance(stored.data, SessionForked) else None
                break
            holder, position = stored.session_id, stored.position
            if inherited and inherited[-1][0] == holder:
                inherited[-1] = (holder, inherited[-1][1], position)
            else:
                inherited.append((holder, position, position))
    return Lineage(fork, inherited)


# -- the buffer at a position -----------------------------------------------------------


@dataclass(frozen=True)
class BufferAt:
    """The buffer right after ``position``, and every message that entered it by then."""

    session_id: str
    position: int
    version: int
    entries: list[Entry]  # every message that entered, in order, visible or not
    visible: list[Entry]  # what the model saw, in buffer order
    tokens: int
    limit: int | None
    counter: str | None
    pending_steps: int  # steps recorded whose turn is not saved yet
    damaged: bool  # (the last position only) the stored buffer differs from the fold
    erased: SessionErased | None = None  # the session's tombstone, if it was erased


async def buffer_at(store: Store, session_id: str, at: int | None) -> BufferAt:
    """The buffer as a load right after position ``at`` (None: the last) returned it."""
    version = await find_session(store, session_id)
    upto = version if at is None else at
    if not 1 <= upto <= version:
        raise NotFoundError(f"session {session_id!r} has {version} events; no position {upto}")
    trace = await _fold(store, session_id, upto)
    visible = trace.buffer.visible_entries()
    damaged = False
    tombstone = await erasure(store, session_id, version)
    if upto == version and tombstone is None:  # (an erased session serves no view)
        served = await store.messages(session_id)
        damaged = await store.version(session_id) == version and served != [
            e.message for e in visible
        ]
    return BufferAt(
        session_id=session_id,
        position=upto,
        version=version,
        entries=trace.buffer.all,
        visible=visible,
        tokens=trace.tokens,
        limit=trace.limit,
        counter=trace.buffer.state.counter,
        pending_steps=len(trace.buffer.pending),
        damaged=damaged,
        erased=tombstone,
    )


async def erasure(store: Store, session_id: str, version: int) -> SessionErased | None:
    """The session's tombstone, if it was erased (always its last event: an erased
    session takes no more writes)."""
    events = cast(AsyncGenerator[StoredEvent, None], store.events(session_id, after=version - 1))
    async with aclosing(events):
        async for stored in events:
            return stored.data if isinstance(stored.data, SessionErased) else None
    return None


@dataclass(frozen=True)
class ViewDiff:
    """The buffer at two positions ``a < b`` (or equal): what left, what came, what
    stayed (entries in entering order)."""

    session_id: str
    a: int
    b: int
    version: int
    left: list[Entry]
    came: list[Entry]
    stayed: list[Entry]
    tokens_a: int
    tokens_b: int


async def diff_views(store: Store, session_id: str, a: int, b: int) -> ViewDiff:
    """Compare the buffer after position ``a`` with the one after ``b`` (in one fold)."""
    version = await find_session(store, session_id)
    a, b = min(a, b), max(a, b)
    for position in (a, b):
        if not 0 <= position <= version:
            raise NotFoundError(
                f"session {session_id!r} has {version} events; no position {position}"
            )
    before: list[int] = []
    tokens_a = 0

    def note(trace: Trace, stored: StoredEvent) -> None:
        nonlocal before, tokens_a
        if stored.position == a:
            before = [e.index for e in trace.buffer.visible_entries()]
            tokens_a = trace.tokens

    trace = await _fold(store, session_id, b, note)
    after = {e.index for e in trace.buffer.visible_entries()}
    entries = trace.buffer.all
    seen = set(before)
    return ViewDiff(
        session_id=session_id,
        a=a,
        b=b,
        version=version,
        left=[entries[i] for i in before if i not in after],
        came=[e for e in entries if e.index in after and e.index not in seen],
        stayed=[entries[i] for i in before if i in after],
        tokens_a=tokens_a,
        tokens_b=trace.tokens,
    )


# -- token use and verify -----------------------------------------------------------------


@dataclass(frozen=True)
class TokenPoint:
    """The buffer's count and the limit in force right after ``position``."""

    position: int
    tokens: int
    limit: int | None


async def token_series(store: Store, session_id: str, *, points: int = 600) -> list[TokenPoint]:
    """The buffer's token count after each event, thinned to at most about ``points``
    points (each bucket keeps its highest count, so no peak is lost)."""
    version = await find_session(store, session_id)
    step = max(1, -(-version // points))
    series: list[TokenPoint] = []
    best: TokenPoint | None = None

    def note(trace: Trace, stored: StoredEvent) -> None:
        nonlocal best
        point = TokenPoint(stored.position, trace.tokens, trace.limit)
        if best is None or point.tokens > best.tokens:
            best = point
        if stored.position % step == 0 or stored.position == version:
            series.append(best)
            best = None

    await _fold(store, session_id, version, note)
    return series


async def verify_session(store: Store, session_id: str) -> VerifyReport:
    """The session's verify report (its chain, head and buffer rows, and the triggers)."""
    return await store.verify_session(session_id)
