"""The backend interface the memories and the public store are written against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventmem.events import StoredEvent
from eventmem.messages import Message
from eventmem.tokens import TokenCounter

__all__ = ["Backend", "TurnRequest"]


class TurnRequest:
    """A ``save_context`` to append: its messages and how to count and prune them."""

    __slots__ = ("counter", "expected_version", "max_token_limit", "messages", "model")

    def __init__(
        self,
        messages: Sequence[Message],
        counter: TokenCounter,
        max_token_limit: int,
        model: str | None = None,
        expected_version: int | None = None,
    ) -> None:
        self.messages = tuple(messages)
        self.counter = counter
        self.max_token_limit = max_token_limit
        self.model = model
        self.expected_version = expected_version


class Backend(Protocol):
    """Durable storage of event logs and their buffer projections.

    Every write appends exactly one event and updates the projection in the same
    transaction: all of it or nothing.
    """

    async def append_turn(self, session_id: str, turn: TurnRequest) -> int:
        """Append a :class:`~eventmem.events.TurnSaved`; return its position."""
        ...

    async def append_clear(self, session_id: str, expected_version: int | None = None) -> int:
        """Append a :class:`~eventmem.events.MemoryCleared`; return its position."""
        ...

    async def load_view(self, session_id: str) -> list[Message]:
        """The session's visible messages, oldest first (empty for an unknown session)."""
        ...

    async def read_events(
        self, session_id: str, after_position: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of the session with position > ``after_position``."""
        ...

    async def session_ids(self) -> list[str]:
        """Every session with at least one event, in order of creation."""
        ...

    async def version(self, session_id: str) -> int:
        """Position of the session's last event (0 if it has none)."""
        ...

    async def close(self) -> None:
        """Release the connection; further calls raise :class:`~eventmem.errors.ClosedError`."""
        ...
