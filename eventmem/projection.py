"""The projection: how events turn into the buffer the model sees. Pure, no I/O.

A session's buffer is the messages after its watermark. :func:`apply` folds one event
into a :class:`Buffer`; the live path runs it over a buffer backed by the database (which
reads only the rows it prunes), while replay, time travel and rebuild run the very same
function over :class:`MemoryBuffer`. There is no second implementation of the rules.

The rules are LangChain's ``ConversationTokenBufferMemory``: a save appends its messages,
then, while the buffer's token count exceeds the limit in force, the oldest message is
dropped. A buffer's count is ``overhead + sum(message tokens)``, so pruning needs only
the counts of the messages it drops.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import msgspec

from eventmem.events import Event, MemoryCleared, TurnSaved
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
    """What :func:`apply` needs from a buffer. Messages are numbered by ``seq``.

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


def needs_recount(buffer: Buffer, counter: str) -> bool:
    """Whether a save counted by ``counter`` must first re-count the visible messages."""
    return buffer.counter is not None and buffer.counter != counter and visible_count(buffer) > 0


def visible_count(buffer: Buffer) -> int:
    """Number of messages in the buffer."""
    return buffer.next_seq - buffer.watermark


def apply(buffer: Buffer, event: Event) -> None:
    """Fold one event into ``buffer``."""
    if isinstance(event, TurnSaved):
        if event.recount is not None:
            if len(event.recount) != visible_count(buffer):
                raise ValueError(
                    f"recount has {len(event.recount)} counts for "
                    f"{visible_count(buffer)} visible messages"
                )
            buffer.set_counts(event.recount)
        buffer.counter = event.counter
        buffer.overhead = event.overhead
        for message, tokens in zip(event.messages, event.tokens, strict=True):
            buffer.append(message, tokens)
        while visible_count(buffer) > 0 and (
            buffer.total_tokens + buffer.overhead > event.max_token_limit
        ):
            buffer.drop_oldest()
    elif isinstance(event, MemoryCleared):
        buffer.drop_all()
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown event {type(event).__name__}")


class BufferEntry(msgspec.Struct, frozen=True):
    """A visible message with its sequence number and token count."""

    seq: int
    message: Message
    tokens: int


class MemoryBuffer:
    """An in-memory :class:`Buffer` for replay, time travel and rebuild."""

    def __init__(self) -> None:
        self.watermark = 0
        self.next_seq = 0
        self.total_tokens = 0
        self.overhead = 0
        self.counter: str | None = None
        self.entries: deque[BufferEntry] = deque()

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

    @property
    def messages(self) -> list[Message]:
        """The visible messages, oldest first."""
        return [e.message for e in self.entries]


def fold(events: list[Event] | tuple[Event, ...]) -> MemoryBuffer:
    """The buffer after ``events``, from an empty start."""
    buffer = MemoryBuffer()
    for event in events:
        apply(buffer, event)
    return buffer
