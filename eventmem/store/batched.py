"""What both backends share: group commit, the buffer cache and every operation.

A backend supplies how its connection is opened, how a function runs on it (a whole
transaction on a worker thread: ``BatchedBackend._run``), how it closes, and how an
export reads one snapshot; every operation is a plain function of
``eventmem.store.writes``, ``reads`` or
``maintenance`` run that way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import msgspec

from eventmem.audit import ExportReader, VerifyReport
from eventmem.errors import (
    ClosedError,
    ErasedSessionError,
    EventmemError,
    ReadOnlyStoreError,
    StorageError,
    UnprotectedLogError,
)
from eventmem.events import StoredEvent
from eventmem.messages import Message
from eventmem.rules import DEFAULT_MAX_SAVE_BYTES
from eventmem.store import checkpoints, importing, maintenance, reads, summaries
from eventmem.store.base import (
    AppendRequest,
    ErasureReceipt,
    ExportPage,
    Progress,
    SealResult,
    SessionSummary,
    StepRequest,
    StoreStats,
    SummaryPlan,
    SummaryText,
    TriggerMode,
    TurnRequest,
)
from eventmem.store.cache import ViewCache
from eventmem.store.content import PLAIN, Content, use_content
from eventmem.store.erasure import erase_op, seal_op
from eventmem.store.forks import fork_op, rewind_op
from eventmem.store.partition import FoldSpread
from eventmem.store.sql import Connection
from eventmem.store.worker import Worker
from eventmem.store.writes import (
    WriteOp,
    append_op,
    clear_op,
    retract_op,
    step_op,
    turn_op,
    write_batch,
)
from eventmem.tokens import TokenCounter

if TYPE_CHECKING:
    from eventmem.encryption import KeyStore

__all__ = ["BatchedBackend"]


def _purge_copies(conn: Connection) -> bool:
    return conn.purge_copies()


def _prepare_key(conn: Connection, session_id: str) -> None:
    conn.content.prepare(session_id)


def _destroy_key(conn: Connection, session_id: str) -> bool:
    return conn.content.destroy(session_id)


T = TypeVar("T")


class _Queued:
    """A write waiting for (or done with) its batch. ``wake`` (for a caller that waits)
    resolves when its batch has ended, or when it is handed the turn to commit."""

    __slots__ = ("op", "outcome", "wake")

    def __init__(self, op: WriteOp) -> None:
        self.op = op
        self.outcome: int | BaseException | None = None
        self.wake: anyio.Event | None = None


class BatchedBackend:
    """The operations of a backend whose connection runs one transaction at a time on a
    worker thread; concurrent writes are committed together (see ``_submit``)."""

    def __init__(
        self,
        where: str,
        cache_sessions: int = 1024,
        max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
        read_only: bool = False,
        worker: Worker | None = None,
    ) -> None:
        self._where = where
        self._max_save_bytes = max_save_bytes
        self._read_only = read_only
        self._closed = False
        self._cache = ViewCache(cache_sessions)
        self._lists = checkpoints.ListCache()  # checkpoint lists rebuilt from their deltas
        self._queue: list[_Queued] = []
        self._committing = False  # a caller holds the turn to commit the queue
        self._content: Content = PLAIN  # how content is kept (set on open)
        self._encrypted = False
        # The connection's thread: one call (a whole transaction) at a time.
        self._worker = worker if worker is not None else Worker()

    async def _run(self, fn: Callable[..., T], *args: Any, pipelined: bool = False) -> T:
        """Run ``fn(connection, *args)`` on the worker thread: one transaction.

        ``pipelined`` says the operation reads none of its writes' results, so a
        networked driver may send them without waiting for each reply (PostgreSQL's
        pipeline mode); a backend without a network ignores it.
        """
        raise NotImplementedError

    def export_snapshot(self) -> AbstractAsyncContextManager[ExportPage]:
        """An ``export_page`` whose pages all read one view of the log."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        raise NotImplementedError

    @property
    def read_only(self) -> bool:
        """Whether the store was opened ``read_only``: every write is refused."""
        return self._read_only

    def _spread(self, processes: int | None) -> FoldSpread | None:
        """What spreads a whole-store fold over other processes (None: this one folds
        it all, as here: a backend that can run parts elsewhere says how)."""
        return None

    def _refuse_if_read_only(self, what: str) -> None:
        """Refuse a write before anything of it runs (the connection would refuse it
        too: this says why, with the same error on both backends)."""
        if self._closed:
            raise ClosedError("the store is closed")
        if self._read_only:
            raise ReadOnlyStoreError(
                f"{self._where} was opened read-only, so {what} was refused; nothing was written"
            )

    # -- writes ----------------------------------------------------------------------
    async def _submit_content(self, op: WriteOp) -> int:
        """`_submit` for a write that holds content: in an encrypted store, the session's
        data key is got first, on the connection's thread but outside any transaction
        (making a new one syncs the keyring's file: inside a write transaction it would
        hold the database's write lock meanwhile). On a thread of its own instead, the
        first saves of many new sessions came back at staggered times and group commit
        batched fewer of them together: 50 new sessions saving at once, ~20% fewer
        saves/s."""
        content = self._content
        if content.encrypted and not content.holds_key(op.session_id):
            self._refuse_if_read_only("a write")
            await self._run(_prepare_key, op.session_id)
        return await self._submit(op)

    async def _submit(self, op: WriteOp) -> int:
        """Queue a write and wait until it is committed (or refused).

        Group commit: one caller at a time holds the turn to commit. It lets the callers
        that are already runnable queue their writes too, then commits everything
        queued as one batch on the connection thread; writes queued meanwhile wait. When
        the batch ends the turn passes to the first queued caller, before the batch's
        callers are woken, so the connection thread gets the next batch at once. Each
        waiting caller waits on an event of its own that is set once: no lock is handed
        from caller to caller.
        """
        self._refuse_if_read_only("a write")
        entry = _Queued(op)
        self._queue.append(entry)
        try:
            if self._committing:
                entry.wake = anyio.Event()
                await entry.wake.wait()
            else:
                self._committing = True
                await anyio.lowlevel.checkpoint()  # callers already runnable join this batch
        except BaseException:
            if entry.outcome is None and entry in self._queue:
                # cancelled before its batch started: it never will run
                self._queue.remove(entry)
                if entry.wake is None or entry.wake.is_set():
                    self._pass_turn()  # it held the turn to commit
            raise
        if entry.outcome is None:  # this caller holds the turn: commit the queue
            await self._commit_queue()
        if isinstance(entry.outcome, BaseException):
            raise entry.outcome
        assert entry.outcome is not None
        return entry.outcome

    async def _commit_queue(self) -> None:
        """Commit every queued write in one transaction, then pass the turn on."""
        batch, self._queue = self._queue, []
        try:
            outcomes = await self._write([e.op for e in batch])
            for queued, outcome in zip(batch, outcomes, strict=True):
                queued.outcome = outcome
            self._after_writes(len(batch))
        finally:
            for queued in batch:
                if queued.outcome is None:  # interrupted (KeyboardInterrupt, ...)
                    queued.outcome = StorageError(
                        f"{self._where}: the write was interrupted while its batch was on "
                        "the connection thread; it may or may not have been committed"
                    )
            self._pass_turn()
            for queued in batch:
                if queued.wake is not None:
                    queued.wake.set()

    async def _write(self, ops: list[WriteOp]) -> list[int | BaseException]:
        """Each write's outcome: on the caller's thread if the backend can write there
        at once (no await, so nothing can cancel it), else on the connection's."""
        try:
            here = self._write_here(ops)
        except Exception as e:
            return [e] * len(ops)
        if here is not None:
            return list(here)
        # Shielded: once handed to the connection thread the batch runs to its end, and
        # every caller in it must learn how it ended.
        outcomes: list[int | BaseException]
        with anyio.CancelScope(shield=True):
            try:
                outcomes = list(await self._run_writes(ops))
            except Exception as e:
                outcomes = [e] * len(ops)
        return outcomes

    def _write_here(self, ops: list[WriteOp]) -> Sequence[int | BaseException] | None:
        """The batch written on the caller's thread, where the backend can do that
        without waiting (None: it goes to the connection's thread)."""
        return None

    async def _run_writes(self, ops: list[WriteOp]) -> list[int | EventmemError]:
        """One batch of writes in one transaction, on the connection's thread."""
        return await self._run(write_batch, self._cache, ops, pipelined=True)

    def _after_writes(self, count: int) -> None:
        """Told after each batch (``count`` writes) and after a rebuild or an import
        (a large ``count``): a backend with housekeeping to schedule does it here."""

    def _pass_turn(self) -> None:
        """Hand the turn to commit to the first queued caller, or end it. (Callers
        cancelled while queued have left the queue: their writes never run.)"""
        if self._queue:
            wake = self._queue[0].wake
            assert wake is not None  # only the caller holding the turn has none
            wake.set()
        else:
            self._committing = False

    async def append_turn(self, session_id: str, turn: TurnRequest) -> int:
        """Append one save (its messages counted, the buffer pruned) atomically."""
        return await self._submit_content(turn_op(session_id, turn, self._max_save_bytes))

    async def plan_summary_turn(
        self, session_id: str, turn: TurnRequest | AppendRequest
    ) -> SummaryPlan:
        """What writing ``turn`` (a turn or a general append) would prune, and the
        summary in force (nothing written)."""
        self._refuse_if_read_only("a save")
        return await self._run(summaries.plan_turn, session_id, turn)

    async def append_summary_turn(
        self,
        session_id: str,
        turn: TurnRequest | AppendRequest,
        plan: SummaryPlan,
        summary: SummaryText | None,
    ) -> int:
        """Append a summarised turn or general append and its summary, as planned,
        atomically."""
        return await self._submit_content(
            summaries.summary_turn_op(session_id, turn, plan, summary, self._max_save_bytes)
        )

    async def load_summary_view(self, session_id: str) -> tuple[int, str, list[Message]]:
        """The version, the summary in force and the visible messages (one snapshot)."""
        if self._closed:
            raise ClosedError("the store is closed")
        return await self._run(summaries.load_summary_view, self._cache, session_id)

    async def append_step(
        self,
        session_id: str,
        step: StepRequest,
        counter: TokenCounter,
        as_tools: bool,
        run: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append a step recorded live, before its turn is saved."""
        return await self._submit_content(
            step_op(
                session_id, step, counter, as_tools, run, expected_version, self._max_save_bytes
            )
        )

    async def append_clear(self, session_id: str, expected_version: int | None = None) -> int:
        """Append a clear: the watermark moves to the end of the session."""
        return await self._submit(clear_op(session_id, expected_version))

    async def append_messages(self, session_id: str, request: AppendRequest) -> int:
        """Append a general append (its messages counted, the view pruned) atomically."""
        return await self._submit_content(append_op(session_id, request, self._max_save_bytes))

    async def retract(
        self, session_id: str, count: int, expected_version: int | None = None
    ) -> tuple[int, list[Message]]:
        """Retract the newest ``count`` visible messages; return them."""
        retracted: list[Message] = []
        version = await self._submit(retract_op(session_id, count, expected_version, retracted))
        return version, retracted

    async def fork(self, parent: str, session_id: str, at: int | None) -> int:
        """Begin ``session_id`` as ``parent`` after position ``at`` (None: its last)."""
        return await self._submit(fork_op(parent, session_id, at))

    async def rewind(self, session_id: str, to: int, expected_version: int | None = None) -> int:
        """Make the view what it was after position ``to``, by appending a rewind."""
        return await self._submit(rewind_op(session_id, to, expected_version, self._max_save_bytes))

    async def erase(self, session_id: str, reason: str, by: str | None) -> ErasureReceipt:
        """Erase the session's content (a tombstone, every hash kept), then purge what
        copies the database keeps outside its rows where it can."""
        receipts: list[ErasureReceipt] = []
        try:
            await self._submit(erase_op(session_id, reason, by, receipts))
        except ErasedSessionError:
            if self._encrypted:  # erased before, its key maybe not destroyed: now it is
                await self._run(_destroy_key, session_id)
            raise
        # The key goes after the erasure committed: a refused erasure keeps it.
        destroyed = await self._run(_destroy_key, session_id) if self._encrypted else None
        purged = await self._run(_purge_copies)
        return msgspec.structs.replace(receipts[0], purged=purged, key_destroyed=destroyed)

    async def seal(
        self, session_id: str, before: int | None, older_than_us: int | None
    ) -> SealResult:
        """Seal the session's content before ``before`` (or older than the time given),
        then purge what copies the database keeps outside its rows where it can."""
        results: list[SealResult] = []
        await self._submit(seal_op(session_id, before, older_than_us, results))
        if results[0].events:
            await self._run(_purge_copies)
        return results[0]

    # -- LangGraph checkpoints (eventmem.integrations.langgraph) ------------------------
    async def checkpoint_write(self, session_id: str, decide: checkpoints.Decide) -> int:
        """Append the checkpoint events ``decide`` chooses inside the write's transaction
        (see ``checkpoints.checkpoint_op``); return the session's version."""
        return await self._submit_content(
            checkpoints.checkpoint_op(session_id, decide, self._max_save_bytes)
        )

    async def checkpoint_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the checkpoint read ``fn(connection, lists, *args)`` on the connection's
        thread (``lists``: the cache of lists rebuilt from deltas)."""
        return await self._run(fn, self._lists, *args)

    # -- reads -----------------------------------------------------------------------
    async def load_view(self, session_id: str) -> list[Message]:
        """The visible messages of the session."""
        return (await self.load_view_at(session_id))[1]

    async def load_view_at(self, session_id: str) -> tuple[int, list[Message]]:
        """The visible messages, and the version they are the view after (one snapshot)."""
        if self._closed:
            raise ClosedError("the store is closed")
        served = self._cached_view(session_id)
        if served is not None:
            return served
        return await self._run(reads.load_view_at, self._cache, session_id)

    def _cached_view(self, session_id: str) -> tuple[int, list[Message]] | None:
        """The view served from the cache without a thread hop, where the backend can
        read the session's version cheaply on the caller's thread (None: ask the worker)."""
        return None

    async def read_events(
        self, session_id: str, after_position: int, limit: int
    ) -> list[StoredEvent]:
        """A page of the session's events."""
        return await self._run(reads.read_events, session_id, after_position, limit)

    async def session_ids(self) -> list[str]:
        """Every session, in order of creation."""
        return await self._run(reads.session_ids)

    async def version(self, session_id: str) -> int:
        """The session's last position (0 if none)."""
        return await self._run(reads.version, session_id)

    # -- audit -----------------------------------------------------------------------
    async def verify(
        self, progress: Progress | None = None, processes: int | None = None
    ) -> VerifyReport:
        """Check the triggers, every chain, head and projection row against the events."""
        return await self._run(maintenance.verify, progress, self._spread(processes))

    async def verify_session(self, session_id: str) -> VerifyReport:
        """`verify` for one session (and the triggers), reading only its rows."""
        return await self._run(maintenance.verify_session, session_id)

    async def rebuild(
        self, progress: Progress | None = None, force: bool = False, processes: int | None = None
    ) -> int:
        """Recompute the projections from the events; return the number rebuilt."""
        self._refuse_if_read_only("rebuild")
        self._lists.clear()
        try:
            return await self._run(
                maintenance.rebuild, self._cache, progress, force, self._spread(processes)
            )
        finally:
            self._after_writes(1_000_000)

    async def repair_triggers(self) -> list[str]:
        """Make the log's triggers the schema's again; return what was wrong."""
        self._refuse_if_read_only("repairing triggers")
        return await self._run(maintenance.restore_triggers)

    async def _finish_open(self, triggers: TriggerMode, keys: KeyStore | None = None) -> None:
        """The last steps of opening: check the log's triggers, and take the store's
        content as it is kept (``keys``: encrypted); a refusal closes the store."""
        try:
            await self._check_triggers(triggers)
            self._content = await self._run(use_content, keys, self._read_only)
            self._encrypted = self._content.encrypted
        except BaseException:
            await self.close()
            raise

    async def _check_triggers(self, mode: TriggerMode) -> None:
        """On open: refuse (``"require"``) or repair (``"repair"``) a log whose triggers
        are not the schema's; ``"report"`` leaves that to verify."""
        if mode == "report":
            return
        findings = await self._run(maintenance.trigger_findings)
        if not findings:
            return
        if mode == "repair":
            await self.repair_triggers()
            return
        raise UnprotectedLogError(
            f"{self._where}: the log is unprotected ({'; '.join(findings)}): something "
            "outside eventmem switched off the triggers that keep events immutable, and "
            "may have changed the log meanwhile. Run 'eventmem verify --repair-triggers' "
            "on it (or open it with triggers='repair') to restore them and check the log"
        )

    async def export_page(
        self, session_id: str | None, after_id: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """Export lines of events with global position > ``after_id``, and the last id."""
        return await self._run(maintenance.export_page, session_id, after_id, limit)

    async def import_lines(self, reader: ExportReader) -> tuple[int, int]:
        """Import an export file in one transaction, read on the connection's thread
        (so reading it never blocks the event loop): (sessions, events)."""
        self._refuse_if_read_only("an import")
        self._lists.clear()
        try:
            return await self._run(importing.import_lines, self._cache, reader)
        finally:
            self._after_writes(1_000_000)

    async def anchor_heads(self) -> list[tuple[str, int, bytes]]:
        """Each session's last event: (session, position, hash)."""
        return await self._run(maintenance.anchor_heads)

    async def anchored_state(self, heads: list[tuple[str, int]]) -> list[tuple[int, bytes | None]]:
        """For each anchored ``(session, position)``: its last position now, and the
        hash of its event at ``position`` (None if there is none)."""
        return await self._run(maintenance.anchored_state, heads)

    async def count_events(self) -> int:
        """Number of events in the store."""
        return await self._run(reads.count_events)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    @property
    def max_save_bytes(self) -> int:
        """The most bytes one write may store."""
        return self._max_save_bytes

    async def session_summaries(self) -> list[SessionSummary]:
        """Every session's summary, oldest first."""
        return await self._run(reads.session_summaries)

    async def session_page(
        self, search: str, order: str, descending: bool, offset: int, limit: int
    ) -> tuple[int, list[SessionSummary]]:
        """The matching sessions' count and one page of their summaries."""
        return await self._run(reads.session_page, search, order, descending, offset, limit)

    async def stats(self) -> StoreStats:
        """Figures about the whole store, from one snapshot."""
        return await self._run(reads.stats)
