"""The backend interface the memories and the public store are written against."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Literal, Protocol

import msgspec

from eventmem.audit import ExportReader, VerifyReport
from eventmem.events import PruneMode, StoredEvent
from eventmem.messages import Message
from eventmem.steps import Action
from eventmem.tokens import TokenCounter

__all__ = [
    "Backend",
    "Durability",
    "ExportPage",
    "Progress",
    "SessionSummary",
    "StepRequest",
    "StoreStats",
    "TriggerMode",
    "TurnRequest",
    "is_postgres_url",
]


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL store (a URL) rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


# How hard a commit is made to last: see eventmem.open.
Durability = Literal["normal", "full"]
# What open does about missing, disabled or changed immutability triggers: see eventmem.open.
TriggerMode = Literal["require", "repair", "report"]
# Called as progress(done, total) from the thread doing the work.
Progress = Callable[[int, int], None]
# page(session_id or None, after_id, limit) -> (last id, export lines): Backend.export_page.
ExportPage = Callable[[str | None, int, int], Awaitable[tuple[int, list[bytes]]]]


class StepRequest(msgspec.Struct, frozen=True):
    """An intermediate step to record: what the agent did, saw, and how it reads."""

    action: Action
    observation: str
    messages: tuple[Message, ...]  # formatted, before de-duplication within the turn
    tokens: tuple[int, ...] | None = None  # their counts, if the caller counted already


class TurnRequest(msgspec.Struct, frozen=True):
    """A ``save_context`` to append: its messages and how to count and prune them.

    ``messages`` is ``(human, ai)``. ``steps`` is the turn's intermediate steps (those
    recorded live must come first and match); ``None`` means the turn's steps are exactly
    the ones recorded live. ``as_tools`` de-duplicates messages shared by parallel calls.
    """

    messages: tuple[Message, ...]
    counter: TokenCounter
    max_token_limit: int
    model: str | None = None
    expected_version: int | None = None
    steps: tuple[StepRequest, ...] | None = ()
    as_tools: bool = False
    prune: PruneMode = "langchain"
    run: str | None = None  # the memory object saving; live steps of other runs are abandoned
    tokens: tuple[int, ...] | None = None  # counts of ``messages``, if counted already


class SessionSummary(msgspec.Struct, frozen=True):
    """One session at a glance, read from its stored head (no event is decoded)."""

    session_id: str
    events: int  # the session's version: positions are gapless
    visible_messages: int
    tokens: int  # the buffer's count as eventmem pruned it: overhead + visible counts
    counter: str | None  # the counting scheme of ``tokens``
    # The times of the first and last event: a UTC datetime, or the raw microseconds
    # since the epoch for a stored value beyond what a datetime can show.
    created_at: datetime | int | None
    last_activity: datetime | int | None


class StoreStats(msgspec.Struct, frozen=True):
    """Figures about a whole store, read in one snapshot.

    ``storage_bytes`` is what the store occupies: the SQLite file's pages (``page_size``
    times ``page_count``, its WAL not included), or in PostgreSQL the total size of the
    schema's tables with their indexes and TOAST. The page figures are SQLite's only
    (``None`` in PostgreSQL). The event times are UTC datetimes, or the raw microseconds
    since the epoch for a stored value beyond what a datetime can show.
    """

    schema_version: int
    sessions: int
    events_by_kind: dict[str, int]
    messages_entered: int  # messages that ever entered a buffer
    visible_messages: int
    first_event: datetime | int | None
    last_event: datetime | int | None
    storage_bytes: int
    page_size: int | None = None
    page_count: int | None = None
    freelist_pages: int | None = None


class Backend(Protocol):
    """Durable storage of event logs and their buffer projections.

    Every write appends exactly one event and updates the projection in the same
    transaction: all of it or nothing.
    """

    async def append_turn(self, session_id: str, turn: TurnRequest) -> int:
        """Append a [`TurnSaved`][eventmem.TurnSaved]; return its position."""
        ...

    async def append_step(
        self,
        session_id: str,
        step: StepRequest,
        counter: TokenCounter,
        as_tools: bool,
        run: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append a live [`StepRecorded`][eventmem.StepRecorded]; return its position."""
        ...

    async def append_clear(self, session_id: str, expected_version: int | None = None) -> int:
        """Append a [`MemoryCleared`][eventmem.MemoryCleared]; return its position."""
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

    async def count_events(self) -> int:
        """Number of events in the store."""
        ...

    async def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Check the triggers, every hash chain, session head and projection row."""
        ...

    async def rebuild(self, progress: Progress | None = None, force: bool = False) -> int:
        """Recompute the projections from the events; return the number of sessions
        rebuilt. Chain findings refuse it unless ``force`` (then they are left as found)."""
        ...

    async def repair_triggers(self) -> list[str]:
        """Make the log's triggers the schema's again; return what was wrong."""
        ...

    async def export_page(
        self, session_id: str | None, after_id: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """Export lines of the events after global position ``after_id``, and the last one."""
        ...

    def export_snapshot(self) -> AbstractAsyncContextManager[ExportPage]:
        """An ``export_page`` whose pages all read one view of the log, as it was
        when the context was entered (so none skips an event committed meanwhile)."""
        ...

    async def import_lines(self, reader: ExportReader) -> tuple[int, int]:
        """Import an export file in one transaction; return (sessions, events)."""
        ...

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        ...

    @property
    def max_save_bytes(self) -> int:
        """The most bytes one write may store (its events' JSON); see ``eventmem.open``."""
        ...

    @property
    def read_only(self) -> bool:
        """Whether the store was opened read-only (every write raises
        [`ReadOnlyStoreError`][eventmem.errors.ReadOnlyStoreError])."""
        ...

    async def close(self) -> None:
        """Release the connection; further calls raise [`ClosedError`][eventmem.ClosedError]."""
        ...

    async def session_summaries(self) -> list[SessionSummary]:
        """Every session's summary, oldest first."""
        ...

    async def stats(self) -> StoreStats:
        """Figures about the whole store."""
        ...
