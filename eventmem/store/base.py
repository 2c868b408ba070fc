"""The backend interface the memories and the public store are written against."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from eventmem.audit import ExportReader, VerifyReport
from eventmem.errors import InvalidInputError
from eventmem.events import PruneMode, StoredEvent
from eventmem.messages import Message
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES, check_max_save_bytes
from eventmem.steps import Action
from eventmem.tokens import TokenCounter

if TYPE_CHECKING:
    from eventmem.encryption import KeyStore

__all__ = [
    "AppendRequest",
    "Backend",
    "Durability",
    "ErasureReceipt",
    "ExportPage",
    "OpenOptions",
    "Progress",
    "SealResult",
    "SessionSummary",
    "StepRequest",
    "StoreStats",
    "SummaryPlan",
    "SummaryText",
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

# Both databases take the timeout in milliseconds as a signed 32-bit integer (24.8 days).
_MAX_BUSY_TIMEOUT = (2**31 - 1) // 1000


@dataclass(frozen=True, kw_only=True)
class OpenOptions:
    """How a store is opened: the keyword arguments of `eventmem.open` (which documents
    them), checked once, here, before anything is created or connected to; both backends
    take them as they are."""

    create: bool = True
    durability: Durability = "normal"
    busy_timeout: float = 30.0
    cache_sessions: int = 1024
    triggers: TriggerMode = "require"
    max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES
    read_only: bool = False
    encryption: KeyStore | None = None

    def __post_init__(self) -> None:
        keys = self.encryption
        if keys is not None and not (
            callable(getattr(keys, "data_key", None)) and callable(getattr(keys, "destroy", None))
        ):
            raise InvalidInputError(
                "encryption must be a key store (eventmem.encryption.Keyring, or an object "
                f"with data_key() and destroy()), got {type(keys).__name__}"
            )
        if self.triggers not in ("require", "repair", "report"):
            raise InvalidInputError(
                f"triggers must be 'require', 'repair' or 'report', got {self.triggers!r}"
            )
        for flag in ("read_only", "create"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidInputError(
                    f"{flag} must be True or False, got {getattr(self, flag)!r}"
                )
        if self.durability not in ("normal", "full"):
            raise InvalidInputError(
                f"durability must be 'normal' or 'full', got {self.durability!r}"
            )
        timeout = self.busy_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 <= timeout <= _MAX_BUSY_TIMEOUT  # NaN fails this too
        ):
            raise InvalidInputError(
                f"busy_timeout must be a number of seconds from 0 to {_MAX_BUSY_TIMEOUT}, "
                f"got {timeout!r}"
            )
        cache = self.cache_sessions
        if isinstance(cache, bool) or not isinstance(cache, int) or cache < 0:
            raise InvalidInputError(f"cache_sessions must be an int >= 0, got {cache!r}")
        object.__setattr__(self, "busy_timeout", float(timeout))
        object.__setattr__(self, "max_save_bytes", check_max_save_bytes(self.max_save_bytes))

    @property
    def busy_timeout_ms(self) -> int:
        """``busy_timeout`` in whole milliseconds, as the databases take it."""
        return int(self.busy_timeout * 1000)


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


class AppendRequest(msgspec.Struct, frozen=True):
    """A general append: any messages, and how to count and prune the view after them
    (see [`MessagesAppended`][eventmem.MessagesAppended])."""

    messages: tuple[Message, ...]
    counter: TokenCounter
    max_tokens: int | None = None
    model: str | None = None
    prune: PruneMode = "pair_safe"
    keep_system: bool = True
    expected_version: int | None = None
    tokens: tuple[int, ...] | None = None  # counts of ``messages``, if counted already


class SummaryPlan(msgspec.Struct, frozen=True):
    """What a summary buffer's save will do, read in one snapshot at ``version``: the
    session's summary in force (``summary``, made at ``previous``; 0: none) and the
    messages the turn will prune (``pruned``, oldest first: seqs ``first_seq`` up to
    ``end_seq``, held by the events at ``first_position`` and ``last_position``, whose
    chain hashes are ``first_hash`` and ``last_hash``; ``None`` for the turn itself,
    whose hash is known once it is appended). Nothing pruned: ``pruned`` is empty."""

    version: int
    previous: int
    summary: str
    pruned: tuple[Message, ...] = ()
    first_seq: int = 0
    end_seq: int = 0
    first_position: int = 0
    last_position: int = 0
    first_hash: str | None = None
    last_hash: str | None = None


class SummaryText(msgspec.Struct, frozen=True):
    """A new summary to record with its turn, and what made it."""

    summary: str
    model: str
    prompt_sha256: str


class ErasureReceipt(msgspec.Struct, frozen=True):
    """What [`Store.erase`][eventmem.Store.erase] returns: proof of an erasure to keep
    (``msgspec.json.encode(receipt)``, or ``eventmem erase --receipt FILE``).

    ``position`` and ``hash`` are the tombstone's in the session's chain, ``erased_at``
    its time; ``events`` is how many events' content went, ``last_hash`` the chain hash
    of the last of them (the session's head before the erasure). ``reason`` and ``by``
    are as given. ``purged``: the database keeps no copy of the erased content outside
    its rows (SQLite, once its write-ahead log could be truncated; PostgreSQL keeps old
    row versions until ``VACUUM FULL events``). ``key_destroyed``: in a store opened with
    ``encryption=``, whether the key store destroyed the session's data key (so a copy
    of the database made before the erasure cannot read the session either); None in a
    store without encryption.
    """

    session_id: str
    position: int
    hash: str
    erased_at: datetime
    reason: str
    by: str | None
    events: int
    last_hash: str
    purged: bool = False
    key_destroyed: bool | None = None


class SealResult(msgspec.Struct, frozen=True):
    """What one session's seal did ([`Store.seal`][eventmem.Store.seal]): the content of
    its events before ``before`` is gone (``events`` of them emptied by this seal), and
    the seal event is at ``position`` (0: nothing was left to seal, nothing written)."""

    session_id: str
    before: int
    events: int
    position: int


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
    since the epoch for a stored value beyond what a datetime can show. ``encryption``
    names the cipher of a store opened with ``encryption=`` (``"aes-256-gcm"``), None for
    a store without encryption.
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
    encryption: str | None = None


class Backend(Protocol):
    """Durable storage of event logs and their buffer projections.

    Every write appends exactly one event and updates the projection in the same
    transaction: all of it or nothing.
    """

    async def append_turn(self, session_id: str, turn: TurnRequest) -> int:
        """Append a [`TurnSaved`][eventmem.TurnSaved]; return its position."""
        ...

    async def plan_summary_turn(
        self, session_id: str, turn: TurnRequest | AppendRequest
    ) -> SummaryPlan:
        """Read, without writing, what writing ``turn`` (a turn or a general append,
        counted: ``turn.tokens``) would prune, and the session's summary in force (one
        snapshot)."""
        ...

    async def append_summary_turn(
        self,
        session_id: str,
        turn: TurnRequest | AppendRequest,
        plan: SummaryPlan,
        summary: SummaryText | None,
    ) -> int:
        """Append ``turn`` and, if it prunes, a [`SummaryRecorded`][eventmem.SummaryRecorded]
        holding ``summary``, atomically; refused with `ConcurrencyError` unless the
        session is still at ``plan.version``. Return the session's version."""
        ...

    async def load_summary_view(self, session_id: str) -> tuple[int, str, list[Message]]:
        """The session's version, its summary in force ("" if none) and its visible
        messages, read in one snapshot."""
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

    async def append_messages(self, session_id: str, request: AppendRequest) -> int:
        """Append a [`MessagesAppended`][eventmem.MessagesAppended]; return its position."""
        ...

    async def retract(
        self, session_id: str, count: int, expected_version: int | None = None
    ) -> tuple[int, list[Message]]:
        """Append a [`MessagesRetracted`][eventmem.MessagesRetracted] of the newest
        ``count`` visible messages (fewer if fewer are visible); return the session's
        version and the messages retracted, oldest first (none, and nothing written,
        from an empty view)."""
        ...

    async def fork(self, parent: str, session_id: str, at: int | None) -> int:
        """Begin ``session_id`` as ``parent`` after position ``at`` (None: its last) with
        one fork event; return the new session's version."""
        ...

    async def rewind(self, session_id: str, to: int, expected_version: int | None = None) -> int:
        """Append a rewind: the view becomes what it was after position ``to``."""
        ...

    async def erase(self, session_id: str, reason: str, by: str | None) -> ErasureReceipt:
        """Append a [`SessionErased`][eventmem.SessionErased] and remove the content of
        the session's earlier events, every hash kept; return the receipt."""
        ...

    async def seal(
        self, session_id: str, before: int | None, older_than_us: int | None
    ) -> SealResult:
        """Remove the content of the session's events before ``before`` (or, with
        ``older_than_us``, of those recorded before that time), as far as the view holds
        none of it; every hash kept."""
        ...

    async def load_view(self, session_id: str) -> list[Message]:
        """The session's visible messages, oldest first (empty for an unknown session)."""
        ...

    async def load_view_at(self, session_id: str) -> tuple[int, list[Message]]:
        """`load_view`, with the session's version the view is the one after, read in
        the same snapshot (0 for an unknown session)."""
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

    async def anchor_heads(self) -> list[tuple[str, int, bytes]]:
        """Each session's last event as the log holds it: (session, position, hash)."""
        ...

    async def anchored_state(self, heads: list[tuple[str, int]]) -> list[tuple[int, bytes | None]]:
        """For each ``(session, position)``: the session's last position now (0: none)
        and the hash of its event at ``position`` (None: there is no such event)."""
        ...

    async def verify(
        self, progress: Progress | None = None, processes: int | None = None
    ) -> VerifyReport:
        """Check the triggers, every hash chain, session head and projection row
        (``processes``: how many may fold the log; None lets the backend choose)."""
        ...

    async def verify_session(self, session_id: str) -> VerifyReport:
        """`verify` for one session (and the triggers)."""
        ...

    async def rebuild(
        self, progress: Progress | None = None, force: bool = False, processes: int | None = None
    ) -> int:
        """Recompute the projections from the events; return the number of sessions
        rebuilt. Chain findings refuse it unless ``force`` (then they are left as found).
        ``processes`` as for `verify`."""
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

    async def session_page(
        self, search: str, order: str, descending: bool, offset: int, limit: int
    ) -> tuple[int, list[SessionSummary]]:
        """How many sessions' ids contain ``search``, and a page of their summaries."""
        ...

    async def stats(self) -> StoreStats:
        """Figures about the whole store."""
        ...
