"""The SQLite backend, on aiosqlite.

Each operation is one plain function run on aiosqlite's worker thread: a whole
transaction (BEGIN IMMEDIATE ... COMMIT) is a single thread hop. That keeps a save to
one round trip, and means a caller cancelled while it awaits cannot leave a transaction
half-open on the shared connection: the function runs to COMMIT or ROLLBACK regardless.

``sqlite3`` errors are translated into eventmem's in exactly one place, :func:`_translate`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite
import anyio
import msgspec

from eventmem.audit import (
    ChainChecker,
    ExportLine,
    Problem,
    SessionFold,
    VerifyReport,
    export_line,
)
from eventmem.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    ImportRefusedError,
    InvalidInputError,
    NotAnEventmemDatabaseError,
    ReadOnlyDatabaseError,
    StorageError,
)
from eventmem.events import (
    GENESIS_HASH,
    Event,
    MemoryCleared,
    StepRecorded,
    StoredEvent,
    TurnSaved,
    chain_hash,
    decode_event,
    encode_event,
    micros_to_datetime,
)
from eventmem.messages import Message
from eventmem.projection import apply, needs_recount
from eventmem.store.base import StepRequest, TurnRequest
from eventmem.store.cache import ViewCache
from eventmem.store.migrate import apply_migrations
from eventmem.tokens import TokenCounter

__all__ = ["Durability", "SQLiteBackend"]

Durability = Literal["normal", "full"]
T = TypeVar("T")

_encode_message = msgspec.json.Encoder().encode
_decode_message = msgspec.json.Decoder(Message).decode


def _now_us() -> int:
    return time.time_ns() // 1000


class _SessionHead:
    """A session's projection row, used as the :class:`~eventmem.projection.Buffer`
    of the live path: it reads only the rows it prunes and writes its changes on flush.
    """

    def __init__(self, conn: sqlite3.Connection, session_id: str) -> None:
        self._conn = conn
        self.session_id = session_id
        row = conn.execute(
            "SELECT version, head_hash, next_seq, watermark, total_tokens, overhead, counter,"
            " created_at, turn_position, pending_steps FROM sessions WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        self.exists = row is not None
        if row is None:
            row = (0, GENESIS_HASH, 0, 0, 0, 0, None, None, 0, 0)
        self.version: int = row[0]
        self.head_hash: bytes = row[1]
        self.next_seq: int = row[2]
        self.watermark: int = row[3]
        self.total_tokens: int = row[4]
        self.overhead: int = row[5]
        self.counter: str | None = row[6]
        self.created_at: int | None = row[7]
        self.turn_position: int = row[8]  # position of the last turn
        self.pending_steps: int = row[9]  # step events after it, not yet in a turn
        self._stored_version = self.version
        self._stored_next_seq = self.next_seq  # rows below this are in view_messages
        self._stored_watermark = self.watermark
        self._new: list[tuple[int, int, str]] = []  # (seq, tokens, message json)
        self._new_messages: list[Message] = []

    # -- Buffer protocol -------------------------------------------------------------
    def append(self, message: Message, tokens: int) -> None:
        self._new.append((self.next_seq, tokens, _encode_message(message).decode()))
        self._new_messages.append(message)
        self.next_seq += 1
        self.total_tokens += tokens

    def drop_oldest(self) -> None:
        seq = self.watermark
        if seq >= self._stored_next_seq:
            tokens = self._new[seq - self._stored_next_seq][1]
        else:
            tokens = self._conn.execute(
                "SELECT tokens FROM view_messages WHERE session_id = ? AND seq = ?",
                (self.session_id, seq),
            ).fetchone()[0]
        self.total_tokens -= tokens
        self.watermark += 1

    def drop_all(self) -> None:
        self.watermark = self.next_seq
        self.total_tokens = 0

    def oldest_role(self) -> str:
        seq = self.watermark
        if seq >= self._stored_next_seq:
            role: str = self._new_messages[seq - self._stored_next_seq].role
            return role
        row = self._conn.execute(
            "SELECT message FROM view_messages WHERE session_id = ? AND seq = ?",
            (self.session_id, seq),
        ).fetchone()
        message: Message = _decode_message(row[0])
        return message.role

    def add_pending(self, position: int, step: StepRecorded) -> None:
        self.pending_steps += 1  # the event row itself is what is held

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        taken: list[tuple[int, StepRecorded]] = []
        if self.pending_steps:
            for position, data in self._conn.execute(
                "SELECT position, data FROM events WHERE session_id = ? AND position > ?"
                " AND kind = 'step' ORDER BY position",
                (self.session_id, self.turn_position),
            ):
                step = decode_event(data)
                assert isinstance(step, StepRecorded)
                taken.append((position, step))
        self.pending_steps = 0
        self.turn_position = self.version
        return taken

    def pending(self) -> list[tuple[int, StepRecorded]]:
        """The steps held for the next turn, without releasing them."""
        saved = (self.pending_steps, self.turn_position)
        taken = self.take_pending()
        self.pending_steps, self.turn_position = saved
        return taken

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        self._conn.executemany(
            "UPDATE view_messages SET tokens = ? WHERE session_id = ? AND seq = ?",
            [(t, self.session_id, self.watermark + i) for i, t in enumerate(tokens)],
        )
        self.total_tokens = sum(tokens)

    # -- persistence -----------------------------------------------------------------
    def visible_messages(self) -> list[Message]:
        return [
            _decode_message(row[0])
            for row in self._conn.execute(
                "SELECT message FROM view_messages WHERE session_id = ? AND seq >= ? ORDER BY seq",
                (self.session_id, self.watermark),
            )
        ]

    def append_event(self, event: Event, now_us: int) -> int:
        data = encode_event(event)
        position = self.version + 1
        digest = chain_hash(self.head_hash, self.session_id, position, now_us, data)
        self._conn.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.session_id,
                position,
                event.__struct_config__.tag,
                now_us,
                data.decode(),
                digest,
            ),
        )
        self.version, self.head_hash = position, digest
        if self.created_at is None:
            self.created_at = now_us
        return position

    def update_cache(self, cache: ViewCache) -> None:
        """Tell the cache what this (committed) write changed."""
        first_new = self._stored_next_seq
        cache.advance(
            self.session_id,
            self._stored_version,
            self.version,
            self.watermark,
            [(first_new + i, m) for i, m in enumerate(self._new_messages)],
        )

    def flush(self) -> None:
        if self.watermark > self._stored_watermark and self._stored_next_seq > (
            self._stored_watermark
        ):
            self._conn.execute(
                "DELETE FROM view_messages WHERE session_id = ? AND seq < ?",
                (self.session_id, min(self.watermark, self._stored_next_seq)),
            )
        kept = [row for row in self._new if row[0] >= self.watermark]
        if kept:
            self._conn.executemany(
                "INSERT INTO view_messages (session_id, seq, tokens, message) VALUES (?, ?, ?, ?)",
                [(self.session_id, *row) for row in kept],
            )
        self._conn.execute(
            "INSERT INTO sessions (session_id, version, head_hash, next_seq, watermark,"
            " total_tokens, overhead, counter, created_at, turn_position, pending_steps)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET version = excluded.version,"
            " head_hash = excluded.head_hash, next_seq = excluded.next_seq,"
            " watermark = excluded.watermark, total_tokens = excluded.total_tokens,"
            " overhead = excluded.overhead, counter = excluded.counter,"
            " turn_position = excluded.turn_position, pending_steps = excluded.pending_steps",
            (
                self.session_id,
                self.version,
                self.head_hash,
                self.next_seq,
                self.watermark,
                self.total_tokens,
                self.overhead,
                self.counter,
                self.created_at,
                self.turn_position,
                self.pending_steps,
            ),
        )


def _check_expected(head: _SessionHead, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != head.version:
        raise ConcurrencyError(
            f"session {head.session_id!r} is at version {head.version}, "
            f"not the expected {expected_version}"
        )


def _write(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """Run ``body`` in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _translate(error: sqlite3.Error, where: str) -> EventmemError:
    """The one place sqlite3 errors become eventmem errors."""
    text = str(error)
    lowered = text.lower()
    if "file is not a database" in lowered:
        return NotAnEventmemDatabaseError(f"{where} is not a SQLite database ({text})")
    if "malformed" in lowered or "corrupt" in lowered:
        return CorruptDatabaseError(f"{where} is corrupt: {text}")
    if "locked" in lowered or "busy" in lowered:
        return DatabaseLockedError(
            f"{where}: another connection held the write lock past the busy timeout ({text})"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return ReadOnlyDatabaseError(f"{where} cannot be written: {text}")
    if "full" in lowered:
        return DiskFullError(f"{where}: no space left, the write was rolled back ({text})")
    if "unable to open" in lowered:
        return StorageError(f"cannot open {where}: {text}")
    return StorageError(f"{where}: SQLite error: {text}")


class _Queued:
    """A write waiting for (or done with) its batch."""

    __slots__ = ("op", "outcome")

    def __init__(self, op: WriteOp) -> None:
        self.op = op
        self.outcome: int | BaseException | None = None


class SQLiteBackend:
    """Event logs and buffer projections in one SQLite file (WAL mode)."""

    def __init__(self, conn: aiosqlite.Connection, where: str, cache_sessions: int = 1024) -> None:
        self._conn = conn
        self._where = where
        self._closed = False
        self._cache = ViewCache(cache_sessions)
        self._queue: list[_Queued] = []
        self._write_lock = anyio.Lock()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        durability: Durability = "normal",
        busy_timeout: float = 30.0,
        cache_sessions: int = 1024,
    ) -> SQLiteBackend:
        """Open (and, if ``create``, create) the database and bring its schema up to date."""
        where = os.fspath(path)
        database = await anyio.to_thread.run_sync(_database_uri, where, create)
        synchronous = {"normal": "NORMAL", "full": "FULL"}[durability]
        conn = aiosqlite.connect(database, uri=True, isolation_level=None)
        try:
            await conn
        except sqlite3.Error as e:
            # aiosqlite stops its thread on a failed connect; let it finish while the loop
            # still runs, or it reports to a closed loop later.
            await anyio.to_thread.run_sync(conn._thread.join, 5.0)
            raise _translate(e, where) from e
        backend = cls(conn, where, cache_sessions)
        try:
            await backend._run(_configure, int(busy_timeout * 1000), synchronous)
        except BaseException:
            await conn.close()
            raise
        return backend

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the connection's thread."""
        if self._closed:
            raise ClosedError("the store is closed")
        conn = self._conn

        def call() -> T:
            raw: sqlite3.Connection = conn._conn  # aiosqlite keeps it for its own thread
            try:
                return fn(raw, *args)
            except sqlite3.Error as e:
                raise _translate(e, self._where) from e

        result: T = await conn._execute(call)  # type: ignore[no-untyped-call]
        return result

    # -- writes ----------------------------------------------------------------------
    async def _submit(self, op: WriteOp) -> int:
        """Queue a write; whoever holds the write lock commits everything queued so far
        in one transaction, so concurrent saves share commits."""
        if self._closed:
            raise ClosedError("the store is closed")
        entry = _Queued(op)
        self._queue.append(entry)
        try:
            async with self._write_lock:
                if entry.outcome is None:
                    batch, self._queue = self._queue, []
                    # Shielded: once handed to the connection thread the batch runs to
                    # its end, and every caller in it must learn how it ended.
                    with anyio.CancelScope(shield=True):
                        try:
                            outcomes: list[int | BaseException] = list(
                                await self._run(_write_batch, self._cache, [e.op for e in batch])
                            )
                        except Exception as e:
                            outcomes = [e] * len(batch)
                    for queued, outcome in zip(batch, outcomes, strict=True):
                        queued.outcome = outcome
        except BaseException:
            if entry.outcome is None and entry in self._queue:
                self._queue.remove(entry)  # cancelled before it ran: it never will
            raise
        if isinstance(entry.outcome, BaseException):
            raise entry.outcome
        assert entry.outcome is not None
        return entry.outcome

    async def append_turn(self, session_id: str, turn: TurnRequest) -> int:
        """Append one save (its messages counted, the buffer pruned) atomically."""
        return await self._submit(_turn_op(session_id, turn))

    async def append_step(
        self,
        session_id: str,
        step: StepRequest,
        counter: TokenCounter,
        as_tools: bool,
        run: str | None = None,
    ) -> int:
        """Append a step recorded live, before its turn is saved."""
        return await self._submit(_step_op(session_id, step, counter, as_tools, run))

    async def append_clear(self, session_id: str, expected_version: int | None = None) -> int:
        """Append a clear: the watermark moves to the end of the session."""
        return await self._submit(_clear_op(session_id, expected_version))

    # -- reads -----------------------------------------------------------------------
    async def load_view(self, session_id: str) -> list[Message]:
        """The visible messages of the session."""
        return await self._run(_load_view, self._cache, session_id)

    async def read_events(
        self, session_id: str, after_position: int, limit: int
    ) -> list[StoredEvent]:
        """A page of the session's events."""
        return await self._run(_read_events, session_id, after_position, limit)

    async def session_ids(self) -> list[str]:
        """Every session, in order of creation."""
        return await self._run(_session_ids)

    async def version(self, session_id: str) -> int:
        """The session's last position (0 if none)."""
        return await self._run(_version, session_id)

    # -- audit -----------------------------------------------------------------------
    async def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Check every chain, head and projection against the events."""
        return await self._run(_verify, progress)

    async def rebuild(self, progress: Progress | None = None) -> int:
        """Recompute every projection from the events; return the number of sessions."""
        return await self._run(_rebuild, self._cache, progress)

    async def export_page(
        self, session_id: str | None, after_id: int, limit: int
    ) -> tuple[int, list[bytes]]:
        """Export lines of events with global position > ``after_id``, and the last id."""
        return await self._run(_export_page, session_id, after_id, limit)

    async def import_lines(self, lines: list[bytes]) -> tuple[int, int]:
        """Import export lines (header excluded) in one transaction: (sessions, events)."""
        return await self._run(_import, self._cache, lines)

    async def count_events(self) -> int:
        """Number of events in the store."""
        return await self._run(_count_events)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            await self._conn.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


def _database_uri(target: str, create: bool) -> str:
    if target == ":memory:":
        return "file::memory:"
    resolved = Path(target).expanduser().absolute()
    if resolved.is_dir():
        raise StorageError(f"cannot open {target}: it is a directory")
    if not create and not resolved.exists():
        raise StorageError(f"cannot open {target}: no such database file")
    return resolved.as_uri() + ("" if create else "?mode=rw")


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int, synchronous: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    apply_migrations(conn)  # refuses foreign files before anything below writes to them
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")


def _counted(counter: TokenCounter, step: StepRequest) -> tuple[tuple[Message, int], ...]:
    return tuple((m, counter.count_message(m)) for m in step.messages)


def _new_step(
    step: StepRequest,
    counted: tuple[tuple[Message, int], ...],
    seen: list[Message],
    as_tools: bool,
    counter: TokenCounter,
    live: bool,
    run: str | None = None,
) -> StepRecorded:
    """The step event; in tools format without messages this turn already carries."""
    kept = [(m, t) for m, t in counted if not (as_tools and m in seen)]
    seen.extend(m for m, _ in kept)
    return StepRecorded(
        action=step.action,
        observation=step.observation,
        messages=tuple(m for m, _ in kept),
        tokens=tuple(t for _, t in kept),
        counter=counter.name,
        live=live,
        run=run,
    )


def _match_live_steps(
    recorded: list[tuple[int, StepRecorded]], given: tuple[StepRequest, ...]
) -> None:
    if len(given) < len(recorded):
        raise InvalidInputError(
            f"{len(recorded)} steps were recorded live for this turn, but intermediate_steps "
            f"has {len(given)}; pass the run's full intermediate_steps or leave the key out"
        )
    for index, ((position, step), request) in enumerate(zip(recorded, given, strict=False)):
        if step.action != request.action or step.observation != request.observation:
            raise InvalidInputError(
                f"intermediate step {index} differs from the step recorded live at position "
                f"{position} (tool {step.action.tool!r}); live steps must be the first steps "
                "of the turn, in order"
            )


# A write: called on the connection's thread outside any transaction (to count tokens,
# without holding the lock), it returns the body to run inside the batch's transaction.
WriteOp = Callable[[sqlite3.Connection], Callable[[], _SessionHead]]


def _write_batch(
    conn: sqlite3.Connection, cache: ViewCache, ops: list[WriteOp]
) -> list[int | EventmemError]:
    """Run several writes in one transaction (group commit); each is all or nothing.

    A write that fails with an :class:`EventmemError` is rolled back to its savepoint and
    reported alone; a storage error fails the whole batch.
    """
    bodies: list[Callable[[], _SessionHead] | EventmemError] = []
    for op in ops:
        try:
            bodies.append(op(conn))
        except EventmemError as e:
            bodies.append(e)
    isolate = len(bodies) > 1
    outcomes: list[_SessionHead | EventmemError] = []

    def run_all() -> None:
        for body in bodies:
            if isinstance(body, EventmemError):
                outcomes.append(body)
                continue
            if isolate:
                conn.execute("SAVEPOINT eventmem_write")
            try:
                outcomes.append(body())
            except EventmemError as e:
                if not isolate:
                    raise
                conn.execute("ROLLBACK TO eventmem_write")
                outcomes.append(e)
            if isolate:
                conn.execute("RELEASE eventmem_write")

    if any(not isinstance(body, EventmemError) for body in bodies):
        try:
            _write(conn, run_all)
        except EventmemError as e:
            outcomes = [e]  # a single write failed: nothing was written
    else:
        outcomes = list(bodies)  # type: ignore[arg-type]
    results: list[int | EventmemError] = []
    for outcome in outcomes:
        if isinstance(outcome, _SessionHead):
            outcome.update_cache(cache)
            results.append(outcome.version)
        else:
            results.append(outcome)
    return results


def _turn_op(session_id: str, turn: TurnRequest) -> WriteOp:
    def prepare(conn: sqlite3.Connection) -> Callable[[], _SessionHead]:
        counter = turn.counter
        tokens = tuple(counter.count_message(m) for m in turn.messages)
        step_counts = [_counted(counter, step) for step in turn.steps or ()]

        def body() -> _SessionHead:
            head = _SessionHead(conn, session_id)
            _check_expected(head, turn.expected_version)
            recount = None
            if needs_recount(head, counter.name):
                recount = tuple(counter.count_message(m) for m in head.visible_messages())
            held = head.pending()
            # Steps another run recorded live and never saved (it crashed, or raised):
            # kept in the log as evidence, left out of the buffer.
            abandoned = tuple(p for p, step in held if step.run != turn.run)
            live = [(p, step) for p, step in held if step.run == turn.run]
            new_steps: tuple[StepRequest, ...] = ()
            if turn.steps is not None:
                _match_live_steps(live, turn.steps)
                new_steps = turn.steps[len(live) :]
            seen = [m for _, step in live for m in step.messages]
            steps = list(live)
            now = _now_us()
            for request, counted in zip(new_steps, step_counts[len(live) :], strict=True):
                step_event = _new_step(request, counted, seen, turn.as_tools, counter, live=False)
                position = head.append_event(step_event, now)
                apply(head, step_event, position)
                steps.append((position, step_event))
            step_recount = None
            if any(step.counter != counter.name for _, step in steps):
                # Steps recorded live under another counting scheme: count them under this one.
                step_recount = tuple(
                    t
                    for _, step in steps
                    for t in (
                        step.tokens
                        if step.counter == counter.name
                        else [counter.count_message(m) for m in step.messages]
                    )
                )
            event = TurnSaved(
                messages=turn.messages,
                tokens=tokens,
                counter=counter.name,
                overhead=counter.overhead,
                max_token_limit=turn.max_token_limit,
                model=turn.model,
                recount=recount,
                steps=tuple(position for position, _ in steps),
                step_recount=step_recount,
                prune=turn.prune,
                abandoned=abandoned,
            )
            position = head.append_event(event, now)
            apply(head, event, position)
            head.flush()
            return head

        return body

    return prepare


def _step_op(
    session_id: str, step: StepRequest, counter: TokenCounter, as_tools: bool, run: str | None
) -> WriteOp:
    def prepare(conn: sqlite3.Connection) -> Callable[[], _SessionHead]:
        counted = _counted(counter, step)

        def body() -> _SessionHead:
            head = _SessionHead(conn, session_id)
            seen = [
                m
                for _, recorded in head.pending()
                if recorded.run == run
                for m in recorded.messages
            ]
            event = _new_step(step, counted, seen, as_tools, counter, live=True, run=run)
            position = head.append_event(event, _now_us())
            apply(head, event, position)
            head.flush()
            return head

        return body

    return prepare


def _clear_op(session_id: str, expected_version: int | None) -> WriteOp:
    def prepare(conn: sqlite3.Connection) -> Callable[[], _SessionHead]:
        def body() -> _SessionHead:
            head = _SessionHead(conn, session_id)
            _check_expected(head, expected_version)
            event = MemoryCleared()
            position = head.append_event(event, _now_us())
            apply(head, event, position)
            head.flush()
            return head

        return body

    return prepare


def _load_view(conn: sqlite3.Connection, cache: ViewCache, session_id: str) -> list[Message]:
    conn.execute("BEGIN")  # version and rows from one snapshot, even while others write
    try:
        row = conn.execute(
            "SELECT version, watermark FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        if row is None:
            return []
        version, watermark = row
        cached = cache.get(session_id, version)
        if cached is not None:
            return cached
        messages = [
            _decode_message(message)
            for (message,) in conn.execute(
                "SELECT message FROM view_messages WHERE session_id = ? AND seq >= ? ORDER BY seq",
                (session_id, watermark),
            )
        ]
    finally:
        conn.execute("COMMIT")
    cache.put(session_id, version, watermark, messages)
    return messages


def _read_events(
    conn: sqlite3.Connection, session_id: str, after_position: int, limit: int
) -> list[StoredEvent]:
    rows = conn.execute(
        "SELECT position, id, recorded_at, data, hash FROM events"
        " WHERE session_id = ? AND position > ? ORDER BY position LIMIT ?",
        (session_id, after_position, limit),
    ).fetchall()
    return [
        StoredEvent(
            session_id=session_id,
            position=position,
            global_position=global_position,
            recorded_at=micros_to_datetime(recorded_at),
            data=decode_event(data),
            hash=bytes(digest).hex(),
        )
        for position, global_position, recorded_at, data, digest in rows
    ]


def _session_ids(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT session_id FROM sessions ORDER BY created_at")]


def _version(conn: sqlite3.Connection, session_id: str) -> int:
    row = conn.execute(
        "SELECT version FROM sessions WHERE session_id = ?", (session_id,)
    ).fetchone()
    return 0 if row is None else int(row[0])


# -- audit: verify, rebuild, export, import ---------------------------------------------

Progress = Callable[[int, int], None]
_PROGRESS_EVERY = 20_000


def _count_events(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _event_rows(
    conn: sqlite3.Connection, progress: Progress | None
) -> Iterator[tuple[str, int, int, bytes, bytes]]:
    total = _count_events(conn) if progress else 0
    cursor = conn.execute(
        "SELECT session_id, position, recorded_at, data, hash FROM events"
        " ORDER BY session_id, position"
    )
    done = 0
    while rows := cursor.fetchmany(5000):
        for session_id, position, recorded_at, data, digest in rows:
            yield session_id, position, recorded_at, data.encode(), bytes(digest)
        done += len(rows)
        if progress and done % _PROGRESS_EVERY < len(rows):
            progress(done, total)
    if progress:
        progress(done, total)


def _head_row(fold: SessionFold) -> tuple[object, ...]:
    buffer = fold.buffer
    return (
        fold.session_id,
        fold.version,
        fold.head_hash,
        buffer.next_seq,
        buffer.watermark,
        buffer.total_tokens,
        buffer.overhead,
        buffer.counter,
        fold.created_at,
        fold.turn_position,
        len(buffer.pending),
    )


def _view_rows(fold: SessionFold) -> list[tuple[str, int, int, str]]:
    return [
        (fold.session_id, e.seq, e.tokens, _encode_message(e.message).decode())
        for e in fold.buffer.entries
    ]


_HEAD_COLUMNS = (
    "session_id, version, head_hash, next_seq, watermark, total_tokens, overhead, counter,"
    " created_at, turn_position, pending_steps"
)


def _write_projection(conn: sqlite3.Connection, fold: SessionFold) -> None:
    conn.execute(
        f"INSERT INTO sessions ({_HEAD_COLUMNS}) VALUES ({', '.join('?' * 11)})", _head_row(fold)
    )
    conn.executemany(
        "INSERT INTO view_messages (session_id, seq, tokens, message) VALUES (?, ?, ?, ?)",
        _view_rows(fold),
    )


def _check_projection(conn: sqlite3.Connection, fold: SessionFold) -> Problem | None:
    stored_head = conn.execute(
        f"SELECT {_HEAD_COLUMNS} FROM sessions WHERE session_id = ?", (fold.session_id,)
    ).fetchone()
    if stored_head is None:
        return Problem(
            fold.session_id,
            fold.version,
            "projection_mismatch",
            "the session has events but no projection row; run rebuild",
        )
    stored_head = tuple(bytes(v) if isinstance(v, bytes) else v for v in stored_head)
    if stored_head[1] > fold.version:
        return Problem(
            fold.session_id,
            fold.version + 1,
            "truncated",
            f"the session's head names position {stored_head[1]} but the log ends at "
            f"{fold.version}: events at the end were removed",
        )
    if stored_head != _head_row(fold):
        return Problem(
            fold.session_id,
            fold.version,
            "projection_mismatch",
            "the stored buffer head differs from the fold of the events; run rebuild",
        )
    stored_view = conn.execute(
        "SELECT session_id, seq, tokens, message FROM view_messages WHERE session_id = ?"
        " ORDER BY seq",
        (fold.session_id,),
    ).fetchall()
    if stored_view != _view_rows(fold):
        return Problem(
            fold.session_id,
            fold.version,
            "projection_mismatch",
            "the stored buffer differs from the fold of the events; run rebuild",
        )
    return None


def _verify(conn: sqlite3.Connection, progress: Progress | None) -> VerifyReport:
    conn.execute("BEGIN")  # one snapshot for the whole check
    try:
        checker = ChainChecker()
        seen: set[str] = set()

        def check(folds: Iterable[SessionFold]) -> None:
            for fold in folds:
                seen.add(fold.session_id)
                if not fold.broken and (problem := _check_projection(conn, fold)):
                    checker.report.problems.append(problem)

        check(checker.feed(_event_rows(conn, progress)))
        check(checker.finish())
        for (session_id,) in conn.execute("SELECT session_id FROM sessions"):
            if session_id not in seen:
                checker.report.problems.append(
                    Problem(
                        session_id,
                        1,
                        "orphan_projection",
                        "the session has a projection but no events: its log was removed",
                    )
                )
    finally:
        conn.execute("COMMIT")
    return checker.report


def _folds(conn: sqlite3.Connection, progress: Progress | None) -> Iterator[SessionFold]:
    """Every session folded from its events (no hash check: rebuild trusts the log)."""
    current: SessionFold | None = None
    for session_id, position, recorded_at, data, digest in _event_rows(conn, progress):
        if current is None or current.session_id != session_id:
            if current is not None:
                yield current
            current = SessionFold(session_id)
        current.fold(position, recorded_at, decode_event(data), digest)
    if current is not None:
        yield current


def _rebuild(conn: sqlite3.Connection, cache: ViewCache, progress: Progress | None) -> int:
    cache.clear()

    def body() -> int:
        conn.execute("DELETE FROM view_messages")
        conn.execute("DELETE FROM sessions")
        count = 0
        for fold in _folds(conn, progress):
            _write_projection(conn, fold)
            count += 1
        return count

    return _write(conn, body)


def _export_page(
    conn: sqlite3.Connection, session_id: str | None, after_id: int, limit: int
) -> tuple[int, list[bytes]]:
    if session_id is None:
        rows = conn.execute(
            "SELECT id, session_id, position, recorded_at, kind, data, hash FROM events"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT id, session_id, position, recorded_at, kind, data, hash FROM events"
            " WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
            (session_id, after_id, limit),
        ).fetchall()
    lines = [
        export_line(sid, position, recorded_at, kind, data.encode(), bytes(digest))
        for _, sid, position, recorded_at, kind, data, digest in rows
    ]
    return (rows[-1][0] if rows else after_id), lines


def _import(conn: sqlite3.Connection, cache: ViewCache, lines: list[bytes]) -> tuple[int, int]:
    cache.clear()

    def body() -> tuple[int, int]:
        folds: dict[str, SessionFold] = {}
        rows = []
        for number, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            try:
                item = _decode_export_line(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise ImportRefusedError(f"line {number} is not an export line: {e}") from None
            fold = folds.get(item.session_id)
            if fold is None:
                exists = conn.execute(
                    "SELECT 1 FROM events WHERE session_id = ? LIMIT 1", (item.session_id,)
                ).fetchone()
                if exists:
                    raise ImportRefusedError(
                        f"session {item.session_id!r} already exists in this store; "
                        "an import never merges into or duplicates a session"
                    )
                fold = folds[item.session_id] = SessionFold(item.session_id)
            data = bytes(item.data)
            try:
                digest = bytes.fromhex(item.hash)
            except ValueError:
                raise ImportRefusedError(f"line {number}: hash is not hex") from None
            problem = fold.add(item.position, item.recorded_at, data, digest)
            if problem is not None:
                raise ImportRefusedError(
                    f"line {number}: session {problem.session_id!r} position "
                    f"{problem.position}: {problem.kind}: {problem.detail}"
                )
            if decode_event(data).__struct_config__.tag != item.kind:
                raise ImportRefusedError(f"line {number}: kind {item.kind!r} does not match data")
            rows.append(
                (item.session_id, item.position, item.kind, item.recorded_at, data.decode(), digest)
            )
        conn.executemany(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        for fold in folds.values():
            conn.execute("DELETE FROM view_messages WHERE session_id = ?", (fold.session_id,))
            conn.execute("DELETE FROM sessions WHERE session_id = ?", (fold.session_id,))
            _write_projection(conn, fold)
        return len(folds), len(rows)

    return _write(conn, body)


_decode_export_line = msgspec.json.Decoder(ExportLine).decode
