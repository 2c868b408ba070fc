"""The projection: how events turn into the buffer the model sees. Pure, no I/O.

A session's buffer is the messages after its watermark. ``apply`` folds one event
into a ``Buffer``; the live path runs it over a buffer backed by the database (which
reads only the rows it prunes), while replay, time travel and rebuild run the very same
function over ``MemoryBuffer``. There is no second implementation of the rules.

The rules are LangChain's ``ConversationTokenBufferMemory``: a save appends its messages,
then, while the buffer's token count exceeds the limit in force, the oldest message is
dropped. A buffer's count is ``overhead + sum(message tokens)``, so pruning needs only
the counts of the messages it drops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from eventmem.errors import CorruptDatabaseError
from eventmem.events import Event, MemoryCleared, StepRecorded, TurnSaved
from eventmem.messages import Message

__all__ = [
    "Buffer",
    "BufferEntry",
    "MemoryBuffer",
    "apply",
    "fold",
    "needs_recount",
]


class Buffer(Protocol):
    """What ``apply`` needs from a buffer. Messages are numbered by ``seq``.

    The visible messages are those with ``watermark <= seq < next_seq``.
    """

    watermark: int
    next_seq: int
    total_tokens: int  # sum of the visible messages' counts, overhead excluded
    overhead: int
    counter: str | None

    def append(self, message: Message, tokens: int) -> None:
        """Add a message at ``next_seq`` and advance it."""
        ...

    def drop_oldest(self) -> None:
        """Move the watermark past the oldest visible message (the buffer is not empty)."""
        ...

    def drop_all(self) -> None:
        """Move the watermark to ``next_seq``."""
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


def needs_recount(buffer: Buffer, counter: str) -> bool:
    """Whether a save counted by ``counter`` must first re-count the visible messages."""
    return buffer.counter is not None and buffer.counter != counter and visible_count(buffer) > 0


def visible_count(buffer: Buffer) -> int:
    """Number of messages in the buffer."""
    return buffer.next_seq - buffer.watermark


def apply(buffer: Buffer, event: Event, position: int) -> None:
    """Fold the event at ``position`` of its session into ``buffer``."""
    if isinstance(event, TurnSaved):
        _apply_turn(buffer, event)
    elif isinstance(event, StepRecorded):
        buffer.add_pending(position, event)
    elif isinstance(event, MemoryCleared):
        buffer.drop_all()
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown event {type(event).__name__}")


def _apply_turn(buffer: Buffer, event: TurnSaved) -> None:
    held = buffer.take_pending()
    messages: Sequence[Message]
    tokens: Sequence[int]
    if held or event.steps or event.abandoned:
        messages, tokens = _with_steps(held, event)
    else:  # a conversation turn: the common case, kept cheap for rebuild and verify
        messages, tokens = event.messages, event.tokens
    if event.recount is not None:
        if len(event.recount) != visible_count(buffer):
            raise CorruptDatabaseError(
                f"recount has {len(event.recount)} counts for "
                f"{visible_count(buffer)} visible messages"
            )
        buffer.set_counts(event.recount)
    buffer.counter = event.counter
    buffer.overhead = event.overhead
    if len(messages) != len(tokens):
        raise CorruptDatabaseError(f"{len(messages)} messages but {len(tokens)} token counts")
    for message, count in zip(messages, tokens):  # noqa: B905 - lengths checked above
        buffer.append(message, count)
    limit = event.max_token_limit - buffer.overhead
    while buffer.total_tokens > limit and buffer.next_seq > buffer.watermark:
        buffer.drop_oldest()
    if event.prune == "pair_safe":
        for _ in range(_orphans_end(buffer.visible())):
            buffer.drop_oldest()


def _orphans_end(messages: list[Message]) -> int:
    """How many leading messages to drop so no tool/function result outlives its call.

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
    held: list[tuple[int, StepRecorded]], event: TurnSaved
) -> tuple[list[Message], list[int]]:
    """The turn's messages in buffer order (input, its steps, output) and their counts."""
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
    messages = [*event.messages[:1], *step_messages, *event.messages[1:]]
    tokens = [*event.tokens[:1], *step_tokens, *event.tokens[1:]]
    return messages, tokens


class BufferEntry(msgspec.Struct, frozen=True, gc=False):  # untracked: see messages.py
    """A visible message with its sequence number and token count."""

    seq: int
    message: Message
    tokens: int


class MemoryBuffer:
    """An in-memory ``Buffer`` for replay, time travel and rebuild."""

    def __init__(self) -> None:
        self.watermark = 0
        self.next_seq = 0
        self.total_tokens = 0
        self.overhead = 0
        self.counter: str | None = None
        self.entries: deque[BufferEntry] = deque()
        self.pending: list[tuple[int, StepRecorded]] = []

    def append(self, message: Message, tokens: int) -> None:
        """Add a message at ``next_seq``."""
        self.entries.append(BufferEntry(self.next_seq, message, tokens))
        self.next_seq += 1
        self.total_tokens += tokens

    def drop_oldest(self) -> None:
        """Prune the oldest visible message."""
        self.total_tokens -= self.entries.popleft().tokens
        self.watermark += 1

    def drop_all(self) -> None:
        """Prune every visible message."""
        self.entries.clear()
        self.total_tokens = 0
        self.watermark = self.next_seq

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Replace the visible messages' counts."""
        self.entries = deque(
            BufferEntry(e.seq, e.message, t) for e, t in zip(self.entries, tokens, strict=True)
        )
        self.total_tokens = sum(tokens)

    def visible(self) -> list[Message]:
        """The visible messages."""
        return self.messages

    def add_pending(self, position: int, step: StepRecorded) -> None:
        """Hold a step for its turn."""
        self.pending.append((position, step))

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        """Release the held steps."""
        taken, self.pending = self.pending, []
        return taken

    @property
    def messages(self) -> list[Message]:
        """The visible messages, oldest first."""
        return [e.message for e in self.entries]


def fold(events: Iterable[Event]) -> MemoryBuffer:
    """The buffer after a session's events (positions 1, 2, ...), from an empty start."""
    buffer = MemoryBuffer()
    for position, event in enumerate(events, start=1):
        apply(buffer, event, position)
    return buffer
