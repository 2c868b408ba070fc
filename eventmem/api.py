"""The async store: [`Store`][eventmem.Store] (opened by [`open`][eventmem.open])."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, overload

import anyio
import msgspec

from eventmem import _tracing
from eventmem._options import (
    AgentBufferArgs,
    AgentBufferOptions,
    BufferArgs,
    BufferOptions,
    Mirror,
    SummaryBufferArgs,
    SummaryBufferOptions,
)
from eventmem._time_travel import EVENT_PAGE, fold_to
from eventmem.anchors import Anchor, AnchoredHead, AnchorKey, sign_heads, signature_ok
from eventmem.audit import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ExportEnd,
    ExportHeader,
    ExportReader,
    Problem,
    VerifyReport,
    rewrite_for_replay,
)
from eventmem.errors import ErasedSessionError, InvalidInputError
from eventmem.events import (
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    StoredEvent,
    TurnSaved,
)
from eventmem.history import History, HistoryArgs, HistoryOptions
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory
from eventmem.messages import Message
from eventmem.projection import MemoryBuffer, apply, fold
from eventmem.providers import PROVIDERS, Provider, rejection
from eventmem.rules import check_limit, stored_time, validate_session_id
from eventmem.store.base import (
    Backend,
    ErasureReceipt,
    Progress,
    SealResult,
    SessionSummary,
    StoreStats,
)
from eventmem.store.erasure import check_reason
from eventmem.store.reads import SESSION_ORDERS
from eventmem.summary import SummaryBufferMemory
from eventmem.tokens import TokenCounter, resolve_counter

if TYPE_CHECKING:  # typing.Unpack is new in Python 3.11
    from typing_extensions import Unpack

__all__ = ["Store"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_MAX_PAGE = 2**62  # offsets and limits past this are no page of any store
_EXPORT_PAGE = 5000


class Store:
    """An eventmem store: many sessions' event logs and buffers in one database.

    Get one with [`eventmem.open`][eventmem.open]; close it with ``aclose()`` or ``async with``.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def token_buffer(self, session_id: str, **options: Unpack[BufferArgs]) -> TokenBufferMemory:
        """A ``ConversationTokenBufferMemory``-compatible memory for ``session_id``.

        The options and their defaults are those of
        [`BufferOptions`][eventmem.BufferOptions]; a bad one raises `InvalidInputError`.
        Creating it writes nothing; a session exists once something is saved. Another
        limit or model than before on an existing session is fine: each save records
        the limit and counting scheme in force.
        """
        session_id = validate_session_id(session_id)
        return TokenBufferMemory(self._backend, session_id, BufferOptions(**options))

    def agent_token_buffer(
        self, session_id: str, **options: Unpack[AgentBufferArgs]
    ) -> AgentTokenBufferMemory:
        """An ``AgentTokenBufferMemory``-compatible memory for ``session_id``.

        The options and their defaults are those of
        [`AgentBufferOptions`][eventmem.AgentBufferOptions]. Each intermediate step
        becomes an event; ``arecord_step`` records one live. ``prune="pair_safe"`` keeps
        tool calls and their results together.
        """
        session_id = validate_session_id(session_id)
        return AgentTokenBufferMemory(self._backend, session_id, AgentBufferOptions(**options))

    def summary_buffer(
        self, session_id: str, **options: Unpack[SummaryBufferArgs]
    ) -> SummaryBufferMemory:
        """A ``ConversationSummaryBufferMemory``-compatible memory for ``session_id``:
        the token buffer, plus a running summary (made by ``llm``) of what it pruned.

        The options and their defaults are those of
        [`SummaryBufferOptions`][eventmem.SummaryBufferOptions]; ``llm`` is required.
        Each summary is an event of the session; the summarised messages stay in the log.
        """
        session_id = validate_session_id(session_id)
        return SummaryBufferMemory(self._backend, session_id, SummaryBufferOptions(**options))

    def history(self, session_id: str, **options: Unpack[HistoryArgs]) -> History:
        """The general history of ``session_id``: any messages appended as events, and a
        token-bounded view of them.

        The options and their defaults are those of
        [`HistoryOptions`][eventmem.HistoryOptions] (no bound by default; pair-safe
        pruning; a system message that begins the view is kept); a bad one raises
        `InvalidInputError`. Creating it writes nothing. A session holds one sequence of
        messages: a history and a memory of the same session see the same view.
        """
        session_id = validate_session_id(session_id)
        return History(self, session_id, HistoryOptions(**options))

    @overload
    def _memory(  # type: ignore[overload-overlap]  # the subclass's own memory
        self, session_id: str, options: AgentBufferOptions
    ) -> AgentTokenBufferMemory: ...
    @overload
    def _memory(  # type: ignore[overload-overlap]  # the subclass's own memory
        self, session_id: str, options: SummaryBufferOptions
    ) -> SummaryBufferMemory: ...
    @overload
    def _memory(self, session_id: str, options: BufferOptions) -> TokenBufferMemory: ...
    def _memory(
        self, session_id: str, options: BufferOptions
    ) -> TokenBufferMemory | AgentTokenBufferMemory | SummaryBufferMemory:
        """The memory that ``options`` (already checked) describe, for the adapters."""
        if isinstance(options, AgentBufferOptions):
            return AgentTokenBufferMemory(self._backend, session_id, options)
        if isinstance(options, SummaryBufferOptions):
            return SummaryBufferMemory(self._backend, session_id, options)
        return TokenBufferMemory(self._backend, session_id, options)

    async def events(self, session_id: str, *, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Every event of the session after position ``after`` (0: all of them), in order
        (read in pages, not all at once; an index lookup finds the first)."""
        session_id = validate_session_id(session_id)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInputError(f"after must be a position (an int >= 0), got {after!r}")
        while True:
            page = await self._backend.read_events(session_id, after, EVENT_PAGE)
            for event in page:
                yield event
            if len(page) < EVENT_PAGE:
                return
            after = page[-1].position

    @_tracing.load
    async def messages(self, session_id: str, *, as_of: int | None = None) -> list[Message]:
        """The session's buffer: now, or exactly as a load right after position ``as_of``
        returned it (time travel; folds the events up to there)."""
        session_id = validate_session_id(session_id)
        if as_of is None:
            if not _tracing.ON:
                return await self._backend.load_view(session_id)
            version, messages = await self._backend.load_view_at(session_id)
            await _tracing.viewed(self._backend, session_id, messages, version)
            return messages
        messages = (await fold_to(self._backend, session_id, as_of)).messages
        if _tracing.ON:
            await _tracing.viewed(self._backend, session_id, messages, as_of)
        return messages

    async def summary(self, session_id: str, *, as_of: int | None = None) -> str:
        """The running summary in force (a summary buffer's, or a summarising
        history's; ``""``: none): now, or exactly as it was right after position
        ``as_of``."""
        session_id = validate_session_id(session_id)
        if as_of is None:
            return (await self._backend.load_summary_view(session_id))[1]
        return (await fold_to(self._backend, session_id, as_of)).summary

    async def fork(self, source: str, new_session: str, *, at: int | None = None) -> int:
        """Begin ``new_session`` as ``source`` was right after position ``at`` (default:
        its last): the same view, and the same history up to ``at``, without copying
        either. One event is written, a [`SessionForked`][eventmem.SessionForked] at
        position ``at + 1`` of the new session naming the parent, the position and the
        parent's chain hash there; from then on the two sessions diverge, and
        ``source`` is untouched. Returns the new session's version (``at + 1``).

        ``events(new_session)`` and ``messages(new_session, as_of=p)`` for ``p <= at``
        read the parent's events (a fork of a fork reads up its whole line). Raises
        [`SessionExistsError`][eventmem.SessionExistsError] if ``new_session`` has
        events, [`UnknownSessionError`][eventmem.UnknownSessionError] if ``source`` has
        none, and `InvalidInputError` for a position past its end or one where agent
        steps recorded live wait for their turn. Costs a fold of ``source`` up to
        ``at`` (at its last position: a read of its view).
        """
        source = validate_session_id(source)
        new_session = validate_session_id(new_session)
        if at is not None:
            _check_position(at, "at")
        return await self._backend.fork(source, new_session, at)

    async def rewind(self, session_id: str, *, to: int, expected_version: int | None = None) -> int:
        """Make the session's view what it was right after position ``to``, by appending
        a [`ViewRewound`][eventmem.ViewRewound] that carries that view: nothing is
        deleted, the events after ``to`` stay in the log (``eventmem log`` marks them
        rewound over), and ``messages(session_id, as_of=p)`` still shows each earlier
        view. Later saves continue from the restored view. A summary buffer's summary
        in force becomes the one in force at ``to``.

        Returns the session's new version. Raises
        [`UnknownSessionError`][eventmem.UnknownSessionError] for a session without
        events, [`ConcurrencyError`][eventmem.ConcurrencyError] if ``expected_version``
        is stale, and `InvalidInputError` for a position past the end or while agent
        steps recorded live wait for their turn. Costs a fold of the history up to
        ``to``.
        """
        session_id = validate_session_id(session_id)
        _check_position(to, "to")
        if expected_version is not None:
            _check_position(expected_version, "expected_version")
        return await self._backend.rewind(session_id, to, expected_version)

    async def erase(self, session_id: str, *, reason: str, by: str | None = None) -> ErasureReceipt:
        """Erase the session's content from the store for good, keeping every hash
        verifiable: one write appends a tombstone ([`SessionErased`][eventmem.SessionErased]:
        ``reason``, ``by``, how many events, the last one's hash; its time says when),
        and replaces the content of every earlier event of the session (message text,
        tool arguments, observations, metadata: the whole event) by
        ``{"kind":"erased"}``. Each event keeps its content digest and chain hash, so
        ``verify`` still passes; the session's buffer and checkpoint index go, its
        reads raise [`ErasedSessionError`][eventmem.ErasedSessionError] and its events
        read as [`ContentErased`][eventmem.ContentErased]. Other sessions are untouched.

        SQLite zeroes what a write frees and truncates its write-ahead log afterwards
        (``receipt.purged``: nothing of the old content is left in the file or its log);
        PostgreSQL keeps the old row versions until ``VACUUM FULL events``. A fork keeps
        its fork event (a parent's events are the parent's); a session with forks is
        refused (erase them first). In a store opened with ``encryption=``, the key store
        then destroys the session's data key (``receipt.key_destroyed``), so copies of the
        database made before cannot read the session either. Raises
        `UnknownSessionError` for a session without events and `ErasedSessionError` for
        one erased already (after destroying its key, if an earlier erasure could not).
        Returns the
        [`ErasureReceipt`][eventmem.ErasureReceipt] to keep
        (``msgspec.json.encode(receipt)``).
        """
        session_id = validate_session_id(session_id)
        reason = check_reason(reason)
        if by is not None:
            by = check_reason(by, "by")
        return await self._backend.erase(session_id, reason, by)

    async def seal(
        self,
        session_id: str | None = None,
        *,
        before: int | None = None,
        older_than: timedelta | None = None,
    ) -> list[SealResult]:
        """Retention: remove the content of a session's earliest events while keeping
        their hashes, so the rest of the chain still verifies (each emptied event keeps
        its content digest and chain hash, and reads as
        [`ContentErased`][eventmem.ContentErased]).

        ``before=p`` seals the events of ``session_id`` before position ``p``; it is
        refused (`InvalidInputError`, nothing written) if the view, the summary in force
        or a fork of the session still holds any of their content, so the view is never
        changed. ``older_than=age`` seals, in ``session_id`` or in every session, the
        events recorded more than ``age`` ago, as far as that holds. One
        [`SessionSealed`][eventmem.SessionSealed] is appended per session sealed,
        carrying the view; time travel and rewinds before it are no longer possible.
        Returns what each session's seal did (sessions with nothing to seal are left
        out of a store-wide policy). SQLite purges as `erase` does; PostgreSQL keeps old
        row versions until ``VACUUM FULL events``. LangGraph threads are pruned with the
        checkpointer instead.
        """
        if (before is None) == (older_than is None):
            raise InvalidInputError("seal takes before= or older_than=, one of them")
        if before is not None:
            if session_id is None:
                raise InvalidInputError("seal(before=...) names the session to seal")
            before = _check_position(before, "before")
            if before < 1:
                raise InvalidInputError("before must be a position (>= 1)")
            session = validate_session_id(session_id)
            return [await self._backend.seal(session, before, None)]
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidInputError(f"older_than must be a timedelta >= 0, got {older_than!r}")
        cutoff = (datetime.now(timezone.utc) - older_than - _EPOCH) // timedelta(microseconds=1)
        sessions = (
            [validate_session_id(session_id)]
            if session_id is not None
            else await self._backend.session_ids()
        )
        sealed = []
        for session in sessions:
            try:
                result = await self._backend.seal(session, None, cutoff)
            except (ErasedSessionError, InvalidInputError):
                if session_id is not None:
                    raise
                continue  # erased, or steps pending, or a LangGraph thread: as it is
            if result.events or session_id is not None:
                sealed.append(result)
        return sealed

    async def replay(
        self,
        session_id: str,
        *,
        max_token_limit: int | None = None,
        model: str | None = None,
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> list[Message]:
        """What-if: the buffer the full history would give under another limit or tokenizer.

        Unset arguments keep what each save recorded. A rewind restores the view the
        replay had at its position, a fork's history is read up its line. Nothing is
        written.
        """
        session_id = validate_session_id(session_id)
        if max_token_limit is not None:
            check_limit(max_token_limit)
        counter = (
            resolve_counter(model or "gpt-4o", token_counter)
            if model is not None or token_counter is not None
            else None
        )
        events = [e.data async for e in self.events(session_id)]
        replaying = max_token_limit is not None or counter is not None
        return fold(
            rewrite_for_replay(events, max_token_limit, counter), replaying=replaying
        ).messages

    @_tracing.verify
    async def verify(
        self,
        *,
        progress: Progress | None = None,
        anchors: Iterable[Anchor] = (),
        key: AnchorKey | None = None,
        provider: Provider | None = None,
        processes: int | None = None,
    ) -> VerifyReport:
        """Check the whole store: the triggers that keep the log immutable, every hash
        chain, and every projection row (session heads and buffer rows, also those of
        sessions without events) against the fold of the events.

        With ``provider`` (``"openai"`` or ``"anthropic"``), also replay every past view of
        every session and report, as ``provider_rejects``, the first position of each run
        of views that provider's API would have refused (an orphaned tool result, a call
        without its result, a system message out of place...: the rules are those of
        ``eventmem.providers``).

        With ``anchors`` (from [`anchor`][eventmem.Store.anchor]) and the ``key`` that
        signed them, also check each anchor's signature and that every session it holds
        still has an event at the anchored position, with the anchored hash: this finds
        what the chain alone cannot (a cut tail, a deleted session, a history rewritten
        and chained again).

        ``report.problems`` names the first bad position of each damaged session. What
        the chain can and cannot prove: ``docs/operations.md``.

        ``processes``: how many processes fold the log. By default a SQLite file of
        200,000 events or more is split by session over two (one on a single-CPU
        machine): a child process folds half the sessions while this one folds the
        rest, both reading the same snapshot; ``1`` keeps it all in this process.
        PostgreSQL folds in this process.
        """
        processes = _check_processes(processes)
        anchors = list(anchors)
        if anchors and key is None:
            raise InvalidInputError("checking anchors needs the key that signed them")
        for anchor in anchors:
            if not isinstance(anchor, Anchor):
                raise InvalidInputError(
                    f"anchors are eventmem.Anchor objects, got {type(anchor).__name__}"
                )
        if provider is not None and provider not in PROVIDERS:
            raise InvalidInputError(
                f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}"
            )
        report = await self._backend.verify(progress, processes)
        for anchor in anchors:
            report.problems.extend(await self._anchor_problems(anchor, key))
        if provider is not None:
            broken = {p.session_id for p in report.problems if p.session_id}
            for session_id in await self.sessions():
                if session_id not in broken:  # a damaged chain's views prove nothing
                    report.problems.extend(await self._provider_problems(session_id, provider))
        return report

    async def _provider_problems(self, session_id: str, provider: Provider) -> list[Problem]:
        """Each run of views of the session that ``provider`` would refuse, at its start."""
        buffer = MemoryBuffer(session_id)
        problems: list[Problem] = []
        run: tuple[int, str, int] | None = None  # (first position, reason, views after it)

        def close_run() -> None:
            if run is not None:
                first, reason, more = run
                also = f" (and the {more} view(s) after it)" if more else ""
                problems.append(
                    Problem(
                        session_id,
                        first,
                        "provider_rejects",
                        f"{provider} would refuse the view after this event{also}: {reason}",
                    )
                )

        async for stored in self.events(session_id):
            apply(buffer, stored.data, stored.position)
            if not isinstance(
                stored.data, (TurnSaved, MessagesAppended, MessagesRetracted, MemoryCleared)
            ):
                continue  # a step waiting for its turn, a checkpoint: the view is the same
            reason = rejection(buffer.visible(), provider)
            if reason is None:
                close_run()
                run = None
            elif run is None:
                run = (stored.position, reason, 0)
            else:
                run = (run[0], run[1], run[2] + 1)
        close_run()
        return problems

    async def anchor(self, key: AnchorKey) -> Anchor:
        """Sign every session's head (its last position and that event's hash) with
        ``key``: an HMAC secret (``bytes``, 16 or more) or an Ed25519 private key from
        ``cryptography``. Keep the anchor outside the store; pass it to
        [`verify`][eventmem.Store.verify] later. The key is not kept anywhere."""
        heads = [
            AnchoredHead(session_id, position, digest.hex())
            for session_id, position, digest in await self._backend.anchor_heads()
        ]
        return sign_heads(heads, key, time.time_ns() // 1000)

    async def _anchor_problems(self, anchor: Anchor, key: AnchorKey) -> list[Problem]:
        def utc_text(micros: int) -> str:
            moment = stored_time(micros)
            return str(moment) if isinstance(moment, int) else moment.isoformat()

        if not signature_ok(anchor, key):
            return [
                Problem(
                    "",
                    0,
                    "anchor_signature",
                    f"the anchor made {utc_text(anchor.created_at)} (key {anchor.key_id}) "
                    "does not check with this key: it was altered or forged, or another key "
                    "signed it",
                )
            ]
        found = await self._backend.anchored_state(
            [(head.session_id, head.position) for head in anchor.heads]
        )
        problems = []
        for head, (last, digest) in zip(anchor.heads, found, strict=True):
            if last == 0:
                problems.append(
                    Problem(
                        head.session_id,
                        1,
                        "anchor_session_missing",
                        f"the anchor holds this session at position {head.position}, but the "
                        "store has no event of it: the session was deleted",
                    )
                )
            elif last < head.position:
                problems.append(
                    Problem(
                        head.session_id,
                        last + 1,
                        "anchor_truncated",
                        f"the anchor holds this session at position {head.position}, but its "
                        f"log ends at {last}: events at the end were removed",
                    )
                )
            elif digest is None or digest.hex() != head.hash:
                problems.append(
                    Problem(
                        head.session_id,
                        head.position,
                        "anchor_rewritten",
                        "the event at the anchored position is not the anchored one: the "
                        "history up to it was changed (and chained again)",
                    )
                )
        return problems

    @_tracing.verify
    async def verify_session(self, session_id: str) -> VerifyReport:
        """[`verify`][eventmem.Store.verify] for one session: the log's triggers, the
        session's hash chain, and its head and buffer rows against the fold of its
        events. Reads only that session's rows, so it costs its events, not the store's.
        An unknown session is fine (nothing to find, ``report.sessions == 0``)."""
        return await self._backend.verify_session(validate_session_id(session_id))

    async def rebuild(
        self,
        *,
        progress: Progress | None = None,
        force: bool = False,
        processes: int | None = None,
    ) -> int:
        """Recompute the projections from the events alone; return how many sessions were
        rebuilt.

        The chains are checked first: if events were edited, moved or removed (any
        finding of `verify` except ``projection_mismatch``), nothing is written and
        `RebuildRefusedError` names the findings. ``force=True`` rebuilds
        every other session and leaves the damaged ones' rows as they are, so
        `verify` keeps reporting them. ``processes`` as for
        [`verify`][eventmem.Store.verify].
        """
        if not isinstance(force, bool):
            raise InvalidInputError(f"force must be a bool, got {force!r}")
        return await self._backend.rebuild(progress, force, _check_processes(processes))

    async def repair_triggers(self) -> list[str]:
        """Restore the triggers that keep the log immutable (missing, disabled, changed or
        foreign ones) as the schema defines them; return what was wrong (empty: nothing
        was). Events changed while they were off are for `verify` to find."""
        return await self._backend.repair_triggers()

    async def export(self, session_id: str | None = None) -> AsyncGenerator[bytes, None]:
        """The export file, line by line (each ending in a newline): a header, one line per
        event in global order, and an end line with the event count (so a file cut short
        is refused on import). See ``docs/export-format.md``.

        The export reads one consistent snapshot of the log, in a transaction that stays
        open until the generator finishes: a consumer that may stop early should close it,
        e.g. ``async with contextlib.aclosing(store.export()) as lines:``."""
        if session_id is not None:
            session_id = validate_session_id(session_id)
        yield msgspec.json.encode(ExportHeader(EXPORT_FORMAT, EXPORT_VERSION)) + b"\n"
        after, count = 0, 0
        # Every page from one consistent view of the log, however long the export takes
        # and whoever writes meanwhile.
        async with self._backend.export_snapshot() as page:
            while True:
                after, lines = await page(session_id, after, _EXPORT_PAGE)
                for line in lines:
                    yield line + b"\n"
                count += len(lines)
                if len(lines) < _EXPORT_PAGE:
                    break
        yield msgspec.json.encode(ExportEnd(EXPORT_FORMAT, count)) + b"\n"

    async def export_to(
        self,
        sink: BinaryIO,
        session_id: str | None = None,
        *,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Write the export file of [`export`][eventmem.Store.export] to ``sink`` (a file
        open for writing in binary mode); return the number of events written.

        The same bytes as ``export`` yields, from one snapshot too, written a page of
        events at a time: each page is written on a worker thread (the event loop goes
        on) while the next is read, and ``progress(events_written)`` is called after
        each. A sink that fails (a full disk) ends the export and its snapshot at once.
        """
        if session_id is not None:
            session_id = validate_session_id(session_id)
        header = msgspec.json.encode(ExportHeader(EXPORT_FORMAT, EXPORT_VERSION)) + b"\n"
        send, receive = anyio.create_memory_object_stream[bytes](1)
        failed: list[Exception] = []
        count = 0

        async def write_pages() -> None:
            async with receive:
                try:
                    async for chunk in receive:
                        await anyio.to_thread.run_sync(sink.write, chunk)
                except Exception as e:  # raised below, as the sink raised it
                    failed.append(e)  # (closing the stream stops the reading)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write_pages)
            async with send, self._backend.export_snapshot() as page:
                try:
                    await send.send(header)
                    after = 0
                    while True:
                        after, lines = await page(session_id, after, _EXPORT_PAGE)
                        last = len(lines) < _EXPORT_PAGE
                        if lines:
                            count += len(lines)
                            lines.append(b"")  # each line ends in a newline
                            await send.send(b"\n".join(lines))
                            if progress is not None:
                                progress(count)
                        if last:
                            break
                    end = msgspec.json.encode(ExportEnd(EXPORT_FORMAT, count)) + b"\n"
                    await send.send(end)
                except anyio.BrokenResourceError:
                    pass  # the writer failed: its error follows
        if failed:
            raise failed[0]
        return count

    async def import_events(self, lines: Iterable[bytes | str]) -> tuple[int, int]:
        """Import an export (see [`export`][eventmem.Store.export]) in one transaction.

        Returns ``(sessions, events)``, the numbers imported.

        ``lines`` is any iterable of the file's lines, ``bytes`` or ``str`` (a file opened
        in binary mode is one); they are read one at a time, on a thread of the import's
        own while the database's thread writes those read before (so the iterable must
        not be one that only its creating thread may use), and none longer than the line
        limit that ``max_save_bytes`` sets is copied. Every
        hash is re-verified and every event checked against the rules a save obeys
        (``docs/export-format.md``); a tampered or malformed file, or one holding a
        session that already exists in this store (so importing twice), raises
        `ImportRefusedError` naming the line, and nothing is written.
        """
        if isinstance(lines, (str, bytes, bytearray)) or not isinstance(lines, Iterable):
            raise InvalidInputError(
                "import_events takes the file's lines (an iterable of bytes or str, such as "
                f"a file opened in binary mode), not a {type(lines).__name__}"
            )
        reader = ExportReader(lines, self._backend.max_save_bytes)
        return await self._backend.import_lines(reader)

    async def count_events(self) -> int:
        """The number of events in the store, across sessions."""
        return await self._backend.count_events()

    async def sessions(self) -> list[str]:
        """The ids of every session in the store, in order of creation."""
        return await self._backend.session_ids()

    async def session_summaries(self) -> list[SessionSummary]:
        """Every session at a glance, oldest first: its events, visible messages, the
        buffer's stored token count and counting scheme, its first and last event's time.
        Read from the stored heads, so it costs one row per session, not a fold."""
        return await self._backend.session_summaries()

    async def session_page(
        self,
        *,
        search: str = "",
        order: str = "created",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[SessionSummary]]:
        """One page of [`session_summaries`][eventmem.Store.session_summaries], sorted,
        filtered and cut by the database: ``(matching, rows)``, where ``matching`` counts
        the sessions whose id contains ``search`` (ignoring ASCII case; ``""``: all) and
        ``rows`` are at most ``limit`` of them after the first ``offset``, in ``order``:
        ``"created"`` (oldest first), ``"id"``, ``"events"``, ``"tokens"`` or ``"last"``
        (last activity; sessions without events last). ``descending`` reverses it (ties
        stay oldest first). Costs the page, not the store: one read snapshot."""
        if not isinstance(search, str):
            raise InvalidInputError(f"search must be a str, got {search!r}")
        if order not in SESSION_ORDERS:
            raise InvalidInputError(
                f"order must be one of {', '.join(SESSION_ORDERS)}, got {order!r}"
            )
        if not isinstance(descending, bool):
            raise InvalidInputError(f"descending must be a bool, got {descending!r}")
        for name, value in (("offset", offset), ("limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_PAGE:
                raise InvalidInputError(
                    f"{name} must be an int from 0 to {_MAX_PAGE}, got {value!r}"
                )
        return await self._backend.session_page(search, order, descending, offset, limit)

    async def stats(self) -> StoreStats:
        """Figures about the whole store, from one snapshot: schema version, sessions,
        events by kind, messages that entered buffers and are visible, first and last
        event, and the storage it occupies."""
        return await self._backend.stats()

    async def version(self, session_id: str) -> int:
        """Position of the session's last event (0 for an unknown session)."""
        return await self._backend.version(validate_session_id(session_id))

    async def aclose(self) -> None:
        """Close the database connection. Idempotent."""
        await self._backend.close()

    closed = Mirror[bool]("_backend")
    """Whether the store has been closed."""
    max_save_bytes = Mirror[int]("_backend")
    """The most bytes one write may store (see [`open`][eventmem.open])."""
    read_only = Mirror[bool]("_backend")
    """Whether the store was opened with ``read_only=True``."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        backend = getattr(self, "_backend", None)
        if backend is not None and not backend.closed:
            warnings.warn(
                f"{self!r} was never closed; use 'async with eventmem.open(...)' or "
                "'await store.aclose()'",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return f"<eventmem.Store {getattr(self._backend, '_where', '?')!r}>"


def _check_position(value: object, what: str) -> int:
    """``value`` if it is a position (an int >= 0), else raise `InvalidInputError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{what} must be a position (an int >= 0), got {value!r}")
    return value


def _check_processes(processes: object) -> int | None:
    """``processes`` for verify and rebuild: None, or a positive int."""
    if processes is None:
        return None
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidInputError(f"processes must be a positive int or None, got {processes!r}")
    return processes
