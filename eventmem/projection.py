"""The projection: how events turn into the buffer the model sees. Pure, no I/O.

A session's buffer is the messages after its watermark. ``apply`` folds one event
into a ``Buffer`` and its ``HeadState`` (the session's scalars: one struct, one row of
the ``sessions`` table); the live path runs it over a buffer backed by the database
(which reads only the rows it prunes), while replay, time travel and rebuild run the
very same function over ``MemoryBuffer``. There is no second implementation of the
rules, and `eventmem._decide` chooses which events a write appends.

The rules are LangChain's ``ConversationTokenBufferMemory``: a save appends its messages,
then, while the buffer's token count exceeds the limit in force, the oldest message is
dropped. A buffer's count is ``overhead + sum(message tokens)``, so pruning needs only
the counts of the messages it drops. A summary buffer's
[`SummaryRecorded`][eventmem.SummaryRecorded] follows its turn: the fold checks it covers
exactly what that turn pruned and keeps it as the running summary (a clear ends it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from eventmem.errors import CorruptDatabaseError, ErasedSessionError
from eventmem.events import (
    GENESIS_HASH,
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWritesSaved,
    ContentErased,
    Event,
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    SessionErased,
    SessionForked,
    SessionSealed,
    StepRecorded,
    SummaryRecorded,
    TurnSaved,
    ViewRef,
    ViewRewound,
)
from eventmem.messages import Message

__all__ = [
    "HEAD_FIELDS",
    "Archive",
    "Buffer",
    "BufferEntry",
    "HeadState",
    "MemoryBuffer",
    "apply",
    "fold",
    "needs_recount",
    "orphaned_prefix",
    "rewind_point",
    "rewind_targets",
]


# A slotted dataclass, not a msgspec Struct: the fold reads and writes these fields on
# every event, and a Struct's attribute access made the in-memory fold ~25% slower.
@dataclass(slots=True)
class HeadState:
    """A session's head: what the fold of its events knows besides the buffer's
    messages. One field per column of the ``sessions`` table, in column order: the store
    reads, writes and compares it by name, and its fields generate the column list.

    `apply` keeps the buffer's fields (``next_seq`` to ``counter``) and the held steps'
    (``turn_position``, ``pending_steps``); `HeadState.chain` keeps the chain's
    (``version``, ``head_hash``, ``created_at``). Messages are numbered by ``seq``; the
    visible ones are those with ``watermark <= seq < next_seq``, and the ``pinned`` one
    (a general append's system message, see `MessagesAppended.keep_system`) when it is
    below the watermark.
    """

    session_id: str = ""
    version: int = 0  # position of the last event
    head_hash: bytes = GENESIS_HASH  # the last event's chain hash
    next_seq: int = 0  # seq of the next message appended
    watermark: int = 0  # seq of the oldest visible message
    total_tokens: int = 0  # sum of the visible messages' counts, overhead excluded
    overhead: int = 0  # the counting scheme's count for an empty buffer
    counter: str | None = None  # the counting scheme of the last turn
    created_at: int | None = None  # recorded_at of the first event
    turn_position: int = 0  # position of the last turn
    pending_steps: int = 0  # step events after it, held for the next turn
    pinned: int = -1  # seq of the pinned system message (kept below the watermark), or -1
    erased: int = 0  # position of the session's erasure tombstone (0: not erased)

    def chain(self, position: int, recorded_at: int, digest: bytes) -> None:
        """Note the event appended at ``position``, at ``recorded_at``, with hash
        ``digest``."""
        self.version = position
        self.head_hash = digest
        if self.created_at is None:
            self.created_at = recorded_at

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> HeadState:
        """The head a row of values in column order (``HEAD_FIELDS``) holds."""
        return cls(*row)

    def row(self) -> tuple[Any, ...]:
        """The values in column order (``HEAD_FIELDS``)."""
        values: tuple[Any, ...] = _row_of(self)
        return values


# The columns of the ``sessions`` table, in order.
HEAD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(HeadState))
_row_of = attrgetter(*HEAD_FIELDS)


class Buffer(Protocol):
    """What ``apply`` needs from a buffer: its head, and its messages by ``seq``.

    Besides the head, the fold keeps the running summary of a summary buffer (see
    [`SummaryRecorded`][eventmem.SummaryRecorded]): ``summary`` and the position of the
    event that made it, ``summary_position`` (0: none); ``last_prune``, what the last
    write pruned: ``(its position, first seq pruned, seq after the last)``; and
    ``what_if``, whether it is a what-if replay's.
    """

    state: HeadState
    summary: str
    summary_position: int
    last_prune: tuple[int, int, int] | None
    # A what-if replay under other settings (`fold(replaying=True)`): a summary is not
    # checked against what the replay pruned (the model is not asked again), a pop takes
    # at most what the replayed view holds, and a rewind restores the replay's own view.
    what_if: bool

    def append(self, message: Message, tokens: int, position: int, index: int) -> None:
        """Add a message at ``next_seq`` and advance it; it is ``messages[index]`` of the
        session's event at ``position`` (where a stored buffer finds its text)."""
        ...

    def drop_oldest(self) -> None:
        """Move the watermark past the oldest visible message (the buffer is not empty)."""
        ...

    def drop_all(self) -> None:
        """Move the watermark to ``next_seq`` (and unpin: nothing stays visible)."""
        ...

    def pin_oldest(self) -> None:
        """Move the watermark past the oldest visible message, which is the pinned one:
        it stays visible, below the watermark."""
        ...

    def drop_pinned(self) -> None:
        """Prune the pinned message, below the watermark, and unpin."""
        ...

    def drop_newest(self) -> None:
        """Remove the newest visible message; its ``seq`` is the next one appended (the
        pinned one, below the watermark, just leaves)."""
        ...

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Replace the counts of the visible messages, oldest first."""
        ...

    def visible(self) -> list[Message]:
        """The visible messages, oldest first."""
        ...

    def add_pending(self, position: int, step: StepRecorded) -> None:
        """Hold a recorded step until its turn is saved."""
        ...

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        """The held steps with their positions, in order; none are held afterwards."""
        ...

    def recall(self, position: int, index: int) -> Message:
        """``messages[index]`` of the event at ``position`` of the session's history
        (for a rewind, which brings back messages that had left the view)."""
        ...

    def recall_summary(self, position: int) -> str:
        """The summary of the [`SummaryRecorded`][eventmem.SummaryRecorded] at
        ``position``."""
        ...

    def restores(self, event: ViewRewound) -> ViewRewound:
        """The rewind as this fold applies it: ``event`` itself, checked against the
        view the fold had after ``event.to`` (the live path, which built the event from
        the fold, trusts it); in a what-if replay, a rewind to the view this fold had
        there."""
        ...


# What a rewind restores: the visible messages' (position, index, tokens), oldest first;
# whether the first is pinned; the overhead and counter of their counts; the position of
# the summary in force (0: none).
RewindPoint = tuple[tuple[tuple[int, int, int], ...], bool, int, "str | None", int]


def rewind_point(buffer: Buffer, entries: Iterable[BufferEntry]) -> RewindPoint:
    """The `RewindPoint` of ``buffer``, whose visible messages are ``entries``."""
    state = buffer.state
    return (
        tuple((e.position, e.index, e.tokens) for e in entries),
        state.pinned >= 0,
        state.overhead,
        state.counter,
        buffer.summary_position,
    )


def _point_of(event: ViewRewound) -> RewindPoint:
    return (
        tuple((r.position, r.index, r.tokens) for r in event.view),
        event.pinned,
        event.overhead,
        event.counter,
        event.summary,
    )


def needs_recount(state: HeadState, counter: str) -> bool:
    """Whether a save counted by ``counter`` must first re-count the visible messages."""
    return state.counter is not None and state.counter != counter and visible_count(state) > 0


def visible_count(state: HeadState) -> int:
    """Number of messages in the buffer."""
    return state.next_seq - state.watermark + (0 <= state.pinned < state.watermark)


def _pinned_below(state: HeadState) -> bool:
    return 0 <= state.pinned < state.watermark


def apply(buffer: Buffer, event: Event, position: int) -> None:
    """Fold the event at ``position`` of its session into ``buffer``."""
    if buffer.state.erased:
        raise CorruptDatabaseError(
            f"an event at position {position}, after the session's erasure at {buffer.state.erased}"
        )
    if isinstance(event, TurnSaved):
        _apply_turn(buffer, event, position)
    elif isinstance(event, StepRecorded):
        buffer.add_pending(position, event)
        buffer.state.pending_steps += 1
    elif isinstance(event, MessagesAppended):
        _apply_messages(buffer, event, position)
    elif isinstance(event, MessagesRetracted):
        _apply_retract(buffer, event)
    elif isinstance(event, MemoryCleared):
        buffer.drop_all()
        buffer.summary, buffer.summary_position = "", 0
    elif isinstance(event, SummaryRecorded):
        _apply_summary(buffer, event, position)
    elif isinstance(event, ViewRewound):
        _apply_rewind(buffer, event, position)
    elif isinstance(event, SessionForked):
        _apply_fork(buffer, event, position)
    elif isinstance(event, SessionSealed):
        _apply_seal(buffer, event, position)
    elif isinstance(event, SessionErased):
        _apply_erasure(buffer, position)
    elif isinstance(event, ContentErased):
        raise ErasedSessionError(
            f"the content of the event at position {position} was erased or sealed; the "
            "session's tombstone or seal says when and why"
        )
    elif isinstance(event, (CheckpointSaved, CheckpointWritesSaved, CheckpointsDeleted)):
        pass  # a LangGraph checkpoint: its own projection (eventmem.checkpoint_index)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown event {type(event).__name__}")


def _recount(buffer: Buffer, recount: tuple[int, ...] | None) -> None:
    state = buffer.state
    if recount is not None:
        if len(recount) != visible_count(state):
            raise CorruptDatabaseError(
                f"recount has {len(recount)} counts for {visible_count(state)} visible messages"
            )
        buffer.set_counts(recount)


def _unpin(buffer: Buffer) -> None:
    """Make the pinned message an ordinary one (pruned already if below the watermark)."""
    state = buffer.state
    if _pinned_below(state):
        buffer.drop_pinned()
    state.pinned = -1


def _apply_messages(buffer: Buffer, event: MessagesAppended, position: int) -> None:
    """A general append: the messages enter, then the oldest leave while the view is over
    ``max_tokens``, a pinned system message excepted; pair-safe pruning then drops the
    results whose calls left."""
    state = buffer.state
    _recount(buffer, event.recount)
    state.counter = event.counter
    state.overhead = event.overhead
    if not event.keep_system:
        _unpin(buffer)
    elif (
        state.pinned < 0
        and state.next_seq == state.watermark  # the view is empty: this begins it
        and event.messages
        and event.messages[0].role in _SYSTEM_ROLES
    ):
        state.pinned = state.next_seq
    if len(event.messages) != len(event.tokens):
        raise CorruptDatabaseError(
            f"{len(event.messages)} messages but {len(event.tokens)} token counts"
        )
    for index, (message, count) in enumerate(zip(event.messages, event.tokens)):  # noqa: B905
        buffer.append(message, count, position, index)  # (lengths checked above)
    if event.max_tokens is None:
        buffer.last_prune = None
        return
    limit = event.max_tokens - state.overhead
    # What pruning drops is one run of seqs from here (past a pinned message at the
    # watermark, which it passes over): what a summary of this append covers.
    start = state.watermark + 1 if state.pinned == state.watermark else state.watermark
    pruned = False
    while state.total_tokens > limit and state.next_seq > state.watermark:
        _drop_unpinned(buffer)
        pruned = True
    if event.prune == "pair_safe" and (
        pruned or any(m.role in ("tool", "function") for m in event.messages)
    ):
        first = 1 if state.pinned >= 0 else 0  # the pinned message is the oldest visible
        for _ in range(orphaned_prefix(buffer.visible()[first:])):
            _drop_unpinned(buffer)
    buffer.last_prune = (position, start, max(start, state.watermark))


_SYSTEM_ROLES = frozenset({"system", "developer"})


def _drop_unpinned(buffer: Buffer) -> None:
    """Prune the oldest visible message that is not pinned."""
    state = buffer.state
    if state.watermark == state.pinned:
        buffer.pin_oldest()
    if state.next_seq > state.watermark:
        buffer.drop_oldest()


def _apply_retract(buffer: Buffer, event: MessagesRetracted) -> None:
    state = buffer.state
    if buffer.what_if and event.count > visible_count(state) > 0:
        event = MessagesRetracted(visible_count(state))  # the replayed view holds fewer
    elif buffer.what_if and not visible_count(state):
        return
    if event.count < 1 or event.count > visible_count(state):
        raise CorruptDatabaseError(
            f"a retraction of {event.count} messages from a view of {visible_count(state)}"
        )
    for _ in range(event.count):
        buffer.drop_newest()


def _apply_summary(buffer: Buffer, event: SummaryRecorded, position: int) -> None:
    """A summary replaces the one in force; it must cover exactly what the turn right
    before it pruned, and extend the summary in force."""
    if buffer.what_if:
        buffer.last_prune = None  # what the replay pruned was never summarised
        return
    pruned = buffer.last_prune
    covered = (position - 1, event.first_seq, event.end_seq)
    if pruned is None or pruned != covered or event.first_seq >= event.end_seq:
        what = "nothing" if pruned is None else f"seqs {pruned[1]} to {pruned[2]} at {pruned[0]}"
        raise CorruptDatabaseError(
            f"the summary covers seqs {event.first_seq} to {event.end_seq} after position "
            f"{position - 1}, but the write before it pruned {what}"
        )
    if event.previous != buffer.summary_position:
        raise CorruptDatabaseError(
            f"the summary extends the one at position {event.previous}, but the summary in "
            f"force is at {buffer.summary_position}"
        )
    buffer.summary, buffer.summary_position = event.summary, position
    buffer.last_prune = None


def _apply_rewind(buffer: Buffer, event: ViewRewound, position: int) -> None:
    """The view becomes the one the event carries: what it was right after ``to``."""
    state = buffer.state
    if not 0 <= event.to < position:
        raise CorruptDatabaseError(f"a rewind at position {position} to position {event.to}")
    if state.pending_steps:
        raise CorruptDatabaseError(f"a rewind while {state.pending_steps} steps are pending")
    event = buffer.restores(event)
    _restore(buffer, event)


def _restore(buffer: Buffer, event: ViewRewound | SessionSealed) -> None:
    """The view becomes the one a rewind or a seal carries (its messages enter again,
    as new seqs, pointing at the events that hold them)."""
    state = buffer.state
    restored = [(buffer.recall(r.position, r.index), r) for r in event.view]
    buffer.drop_all()
    for message, ref in restored:
        buffer.append(message, ref.tokens, ref.position, ref.index)
    if event.pinned:
        state.pinned = state.watermark
    state.overhead, state.counter = event.overhead, event.counter
    buffer.summary = buffer.recall_summary(event.summary) if event.summary else ""
    buffer.summary_position = event.summary
    buffer.last_prune = None


def _apply_seal(buffer: Buffer, event: SessionSealed, position: int) -> None:
    """A seal: the view is the one it carries (the same as before it, which held none of
    the sealed events' messages), so a fold may start over from here."""
    pending = buffer.state.pending_steps
    if event.before > position or pending:
        raise CorruptDatabaseError(
            f"a seal at position {position} of the events before {event.before}"
            + (" while steps are pending" if pending else "")
        )
    if any(not event.before <= r.position < position for r in event.view):
        raise CorruptDatabaseError(f"the seal at {position} keeps a message it sealed")
    state = buffer.state
    buffer.drop_all()
    state.next_seq = state.watermark = event.next_seq  # (a fold starting here has 0)
    state.turn_position = event.turn_position
    _restore(buffer, event)


def _apply_erasure(buffer: Buffer, position: int) -> None:
    """An erasure's tombstone: the buffer is empty and the head starts over, whatever
    the erased events held (the fold of a store reads them as `ContentErased`)."""
    buffer.drop_all()
    buffer.take_pending()
    state = buffer.state
    state.next_seq = state.watermark = state.total_tokens = state.overhead = 0
    state.turn_position = state.pending_steps = 0
    state.counter, state.pinned, state.erased = None, -1, position
    buffer.summary, buffer.summary_position, buffer.last_prune = "", 0, None


def _apply_fork(buffer: Buffer, event: SessionForked, position: int) -> None:
    """A fork's first event follows the parent's history up to ``at``: the buffer is
    the parent's after ``at`` already."""
    if position != event.at + 1:
        raise CorruptDatabaseError(f"a fork at {event.at} is at position {position}")
    if buffer.state.pending_steps:
        raise CorruptDatabaseError(f"a fork while {buffer.state.pending_steps} steps are pending")
    buffer.last_prune = None


def _apply_turn(buffer: Buffer, event: TurnSaved, position: int) -> None:
    held = buffer.take_pending()
    state = buffer.state
    if state.pinned >= 0:
        _unpin(buffer)  # a LangChain turn prunes as LangChain does: nothing is pinned
    state.turn_position, state.pending_steps = position, 0  # the held steps are its own
    if event.recount is not None:
        _recount(buffer, event.recount)
    state.counter = event.counter
    state.overhead = event.overhead
    if held or event.steps or event.abandoned:
        messages, tokens, sources = _with_steps(held, event, position)
        if len(messages) != len(tokens):
            raise CorruptDatabaseError(f"{len(messages)} messages but {len(tokens)} token counts")
        for message, count, (source, index) in zip(messages, tokens, sources):  # noqa: B905
            buffer.append(message, count, source, index)
    else:  # a conversation turn: the common case, kept cheap for rebuild and verify
        if len(event.messages) != len(event.tokens):
            raise CorruptDatabaseError(
                f"{len(event.messages)} messages but {len(event.tokens)} token counts"
            )
        for index, (message, count) in enumerate(zip(event.messages, event.tokens)):  # noqa: B905
            buffer.append(message, count, position, index)
    limit = event.max_token_limit - state.overhead
    start = state.watermark
    while state.total_tokens > limit and state.next_seq > state.watermark:
        buffer.drop_oldest()
    if event.prune == "pair_safe":
        for _ in range(orphaned_prefix(buffer.visible())):
            buffer.drop_oldest()
    buffer.last_prune = (position, start, state.watermark)


def orphaned_prefix(messages: Sequence[Message]) -> int:
    """How many leading messages to drop so no tool/function result outlives its call:
    the pair-safe rule, for adapters that trim a framework's own history the same way.

    A result whose call is not visible before it is an orphan the OpenAI API rejects
    with a 400. Dropping up to an orphan can orphan later results of the calls it drops,
    so the start moves forward until every visible result has its call.
    """
    start = 0
    while True:
        calls: dict[str, int] = {}  # tool_call_id -> index of the AI message calling it
        last_function_call = -1
        orphan = -1
        for index in range(start, len(messages)):
            message = messages[index]
            if message.role == "ai":
                ids = [c.id for c in message.tool_calls]
                ids += [c.id for c in message.invalid_tool_calls]
                calls.update((call_id, index) for call_id in ids if call_id is not None)
                if message.function_call is not None or ids:
                    last_function_call = index  # a function result answers the last call
            elif (message.role == "tool" and message.tool_call_id not in calls) or (
                message.role == "function" and last_function_call < start
            ):
                orphan = index
        if orphan < 0:
            return start
        start = orphan + 1


def _with_steps(
    held: list[tuple[int, StepRecorded]], event: TurnSaved, position: int
) -> tuple[list[Message], list[int], list[tuple[int, int]]]:
    """The turn's messages in buffer order (input, its steps, output), their counts, and
    where each is held: (position of its event, index in the event's messages)."""
    pending = [(p, step) for p, step in held if p not in event.abandoned]
    if tuple(p for p, _ in pending) != event.steps or len(held) - len(pending) != len(
        event.abandoned
    ):
        raise CorruptDatabaseError(
            f"the turn names steps {event.steps} and abandons {event.abandoned}, but the "
            f"steps held are {tuple(p for p, _ in held)}"
        )
    step_messages = [m for _, step in pending for m in step.messages]
    step_tokens = (
        list(event.step_recount)
        if event.step_recount is not None
        else [t for _, step in pending for t in step.tokens]
    )
    step_sources = [(p, index) for p, step in pending for index in range(len(step.messages))]
    own = [(position, index) for index in range(len(event.messages))]
    messages = [*event.messages[:1], *step_messages, *event.messages[1:]]
    tokens = [*event.tokens[:1], *step_tokens, *event.tokens[1:]]
    return messages, tokens, [*own[:1], *step_sources, *own[1:]]


class BufferEntry(msgspec.Struct, frozen=True, gc=False):  # untracked: see messages.py
    """A visible message with its sequence number and token count, and where the log
    holds it: ``messages[index]`` of the session's event at ``position``."""

    seq: int
    message: Message
    tokens: int
    position: int = 0
    index: int = 0


T = TypeVar("T")


class _HeadField(Generic[T]):
    """A field of a buffer's ``HeadState``, read through the buffer. Read-only: the
    fold writes the state itself."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, buffer: MemoryBuffer, owner: type | None = None) -> T:
        value: T = getattr(buffer.state, self._name)
        return value

    def __set__(self, buffer: MemoryBuffer, value: T) -> None:
        raise AttributeError(f"{self._name} is read-only; set buffer.state.{self._name}")


class MemoryBuffer:
    """An in-memory ``Buffer`` for replay, time travel and rebuild."""

    def __init__(self, session_id: str = "") -> None:
        self.state = HeadState(session_id)
        self.entries: deque[BufferEntry] = deque()
        self.pending: list[tuple[int, StepRecorded]] = []
        self.summary = ""  # the running summary of a summary buffer ("" : none)
        self.summary_position = 0  # the position of the event that made it (0: none)
        self.last_prune: tuple[int, int, int] | None = None
        self.archive: Archive | None = None  # what a fold over rewinds keeps
        self.what_if = False

    def append(self, message: Message, tokens: int, position: int = 0, index: int = 0) -> None:
        """Add a message at ``next_seq`` (``messages[index]`` of the event at ``position``)."""
        state = self.state
        self.entries.append(BufferEntry(state.next_seq, message, tokens, position, index))
        state.next_seq += 1
        state.total_tokens += tokens

    def drop_oldest(self) -> None:
        """Prune the message at the watermark (after the pinned one, if it is below)."""
        state, entries = self.state, self.entries
        if 0 <= state.pinned < state.watermark:  # _pinned_below, inline (once a message)
            state.total_tokens -= entries[1].tokens
            del entries[1]
        else:
            state.total_tokens -= entries.popleft().tokens
        state.watermark += 1

    def drop_all(self) -> None:
        """Prune every visible message."""
        self.entries.clear()
        self.state.total_tokens = 0
        self.state.watermark = self.state.next_seq
        self.state.pinned = -1

    def pin_oldest(self) -> None:
        """Keep the pinned message (the oldest entry) below the watermark."""
        self.state.watermark += 1

    def drop_pinned(self) -> None:
        """Prune the pinned message."""
        self.state.total_tokens -= self.entries.popleft().tokens
        self.state.pinned = -1

    def drop_newest(self) -> None:
        """Remove the newest visible message (its ``seq`` is reused, unless it is the
        pinned one below the watermark)."""
        state = self.state
        entry = self.entries.pop()
        state.total_tokens -= entry.tokens
        if entry.seq == state.pinned:
            state.pinned = -1
        if entry.seq >= state.watermark:
            state.next_seq = entry.seq

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Replace the visible messages' counts."""
        self.entries = deque(
            BufferEntry(e.seq, e.message, t, e.position, e.index)
            for e, t in zip(self.entries, tokens, strict=True)
        )
        self.state.total_tokens = sum(tokens)

    def visible(self) -> list[Message]:
        """The visible messages."""
        return self.messages

    def add_pending(self, position: int, step: StepRecorded) -> None:
        """Hold a step for its turn."""
        self.pending.append((position, step))

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        """Release the held steps (none held: the empty list itself, not a new one)."""
        taken = self.pending
        if taken:
            self.pending = []
        return taken

    def held(self) -> list[tuple[int, StepRecorded]]:
        """The held steps, still held."""
        return list(self.pending)

    def recall(self, position: int, index: int) -> Message:
        """A message of an earlier event, from the fold's `Archive`."""
        return self._archive().recall(position, index)

    def recall_summary(self, position: int) -> str:
        """A summary of an earlier event, from the fold's `Archive`."""
        return self._archive().recall_summary(position)

    def restores(self, event: ViewRewound) -> ViewRewound:
        """The rewind checked against (or, replaying, made from) the view the fold's
        `Archive` noted after ``event.to``."""
        known = self._archive().point(event.to)
        if self.what_if:
            view, pinned, overhead, counter, summary = known
            refs = tuple(ViewRef(*ref) for ref in view)
            return ViewRewound(event.to, refs, pinned, overhead, counter, summary)
        if known != _point_of(event):
            raise CorruptDatabaseError(
                f"the rewind restores a view that is not the one after position {event.to}"
            )
        return event

    def _archive(self) -> Archive:
        if self.archive is None:
            raise CorruptDatabaseError("a rewind is folded without the history it goes back to")
        return self.archive

    @property
    def messages(self) -> list[Message]:
        """The visible messages, oldest first."""
        return [e.message for e in self.entries]

    # The head's buffer fields, read through the buffer (callers read a folded buffer).
    watermark = _HeadField[int]()
    next_seq = _HeadField[int]()
    total_tokens = _HeadField[int]()
    overhead = _HeadField[int]()
    counter = _HeadField[str | None]()


class Archive:
    """What a fold over a history with rewinds keeps, so it can apply them: the messages
    of every event by position, the summaries, and the view right after each position a
    rewind goes back to (its ``targets``), to check each rewind against."""

    def __init__(self, targets: Iterable[int]) -> None:
        self.targets = set(targets)
        self.messages: dict[int, Sequence[Any]] = {}
        self.summaries: dict[int, str] = {}
        self.points: dict[int, RewindPoint] = {0: ((), False, 0, None, 0)}

    def keep(self, buffer: MemoryBuffer, event: Event, position: int) -> None:
        """Note the event just folded at ``position`` (and the view after it, if a
        rewind goes back there)."""
        if isinstance(event, (TurnSaved, StepRecorded, MessagesAppended)):
            self.messages[position] = event.messages
        elif isinstance(event, SummaryRecorded):
            self.summaries[position] = event.summary
        if position in self.targets:
            self.points[position] = rewind_point(buffer, buffer.entries)

    def recall(self, position: int, index: int) -> Message:
        """``messages[index]`` of the event at ``position``."""
        messages = self.messages.get(position, ())
        if not 0 <= index < len(messages):
            raise CorruptDatabaseError(
                f"a rewind restores message {index} of position {position}, which holds "
                f"{len(messages)} messages"
            )
        message: Message = messages[index]
        return message

    def recall_summary(self, position: int) -> str:
        """The summary made at ``position``."""
        summary = self.summaries.get(position)
        if summary is None:
            raise CorruptDatabaseError(f"a rewind names a summary at {position}, which is not one")
        return summary

    def point(self, position: int) -> RewindPoint:
        """The view after ``position`` (one of the targets, or 0)."""
        found = self.points.get(position)
        if found is None:
            raise CorruptDatabaseError(f"no view was noted after position {position}")
        return found


def rewind_targets(events: Iterable[Event]) -> set[int]:
    """The positions the rewinds among ``events`` go back to."""
    return {event.to for event in events if type(event) is ViewRewound}


def fold(events: Iterable[Event], *, replaying: bool = False) -> MemoryBuffer:
    """The buffer after a session's events (positions 1, 2, ...), from an empty start.
    (With rewinds among them, the fold keeps an `Archive` of the history to apply them;
    with a seal, it starts over at the last one, the history before it only kept;
    ``replaying``: a what-if replay, see `Buffer.what_if`.)"""
    history = events if isinstance(events, list) else list(events)
    targets = rewind_targets(history)
    seals = [i for i, event in enumerate(history) if type(event) is SessionSealed]
    buffer = MemoryBuffer()
    buffer.what_if = replaying
    if not targets and not seals:
        for position, event in enumerate(history, start=1):
            apply(buffer, event, position)
        return buffer
    archive = buffer.archive = Archive(targets)
    start = seals[-1] if seals else 0
    for position, event in enumerate(history[:start], start=1):
        archive.keep(buffer, event, position)  # sealed or superseded: only kept
    for position, event in enumerate(history[start:], start=start + 1):
        apply(buffer, event, position)
        archive.keep(buffer, event, position)
    return buffer
