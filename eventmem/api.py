"""The public async entry point: [`open`][eventmem.open] and [`Store`][eventmem.Store]."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable
from types import TracebackType
from typing import Any

import msgspec

from eventmem.audit import (
    EXPORT_FORMAT,
    ExportEnd,
    ExportHeader,
    ExportReader,
    VerifyReport,
    rewrite_for_replay,
)
from eventmem.errors import InvalidInputError, MissingDependencyError
from eventmem.events import Event, PruneMode, StoredEvent
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory
from eventmem.messages import Message
from eventmem.projection import fold
from eventmem.rules import (
    DEFAULT_MAX_SAVE_BYTES,
    check_limit,
    check_max_save_bytes,
    validate_session_id,
)
from eventmem.store.base import (
    Backend,
    Durability,
    Progress,
    SessionSummary,
    StoreStats,
    TriggerMode,
    is_postgres_url,
)
from eventmem.store.sqlite import SQLiteBackend
from eventmem.tokens import TokenCounter, resolve_counter

__all__ = ["Store", "open"]

_EVENT_PAGE = 500
_EXPORT_PAGE = 5000


class Store:
    """An eventmem store: many sessions' event logs and buffers in one database.

    Get one with [`eventmem.open`][eventmem.open]; close it with ``aclose()`` or ``async with``.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def token_buffer(
        self,
        session_id: str,
        *,
        max_token_limit: int = 2000,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
        memory_key: str = "history",
        return_messages: bool = False,
        human_prefix: str = "Human",
        ai_prefix: str = "AI",
        input_key: str | None = None,
        output_key: str | None = None,
    ) -> TokenBufferMemory:
        """A ``ConversationTokenBufferMemory``-compatible memory for ``session_id``.

        Creating it writes nothing; a session exists once something is saved. Another
        limit or model than before on an existing session is fine: each save records
        the limit and counting scheme in force.
        """
        return TokenBufferMemory(
            self._backend,
            session_id,
            max_token_limit=max_token_limit,
            model=model,
            token_counter=token_counter,
            memory_key=memory_key,
            return_messages=return_messages,
            human_prefix=human_prefix,
            ai_prefix=ai_prefix,
            input_key=input_key,
            output_key=output_key,
        )

    def agent_token_buffer(
        self,
        session_id: str,
        *,
        max_token_limit: int = 12000,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
        memory_key: str = "history",
        return_messages: bool = True,
        human_prefix: str = "Human",
        ai_prefix: str = "AI",
        input_key: str | None = None,
        output_key: str = "output",
        intermediate_steps_key: str = "intermediate_steps",
        format_as_tools: bool = False,
        prune: PruneMode = "langchain",
    ) -> AgentTokenBufferMemory:
        """An ``AgentTokenBufferMemory``-compatible memory for ``session_id``.

        Each intermediate step becomes an event; ``arecord_step`` records one live.
        ``prune="pair_safe"`` keeps tool calls and their results together.
        """
        return AgentTokenBufferMemory(
            self._backend,
            session_id,
            max_token_limit=max_token_limit,
            model=model,
            token_counter=token_counter,
            memory_key=memory_key,
            return_messages=return_messages,
            human_prefix=human_prefix,
            ai_prefix=ai_prefix,
            input_key=input_key,
            output_key=output_key,
            intermediate_steps_key=intermediate_steps_key,
            format_as_tools=format_as_tools,
            prune=prune,
        )

    async def events(self, session_id: str) -> AsyncIterator[StoredEvent]:
        """Every event of the session, in order (read in pages, not all at once)."""
        session_id = validate_session_id(session_id)
        after = 0
        while True:
            page = await self._backend.read_events(session_id, after, _EVENT_PAGE)
            for event in page:
                yield event
            if len(page) < _EVENT_PAGE:
                return
            after = page[-1].position

    async def messages(self, session_id: str, *, as_of: int | None = None) -> list[Message]:
        """The session's buffer: now, or exactly as a load right after position ``as_of``
        returned it (time travel; folds the events up to there)."""
        session_id = validate_session_id(session_id)
        if as_of is None:
            return await self._backend.load_view(session_id)
        if isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0:
            raise InvalidInputError(f"as_of must be a position (an int >= 0), got {as_of!r}")
        version = await self._backend.version(session_id)
        if as_of > version:
            raise InvalidInputError(
                f"session {session_id!r} has {version} events; as_of={as_of} is in its future"
            )
        events: list[Event] = []
        while len(events) < as_of:
            page = await self._backend.read_events(
                session_id, len(events), min(_EVENT_PAGE, as_of - len(events))
            )
            events.extend(e.data for e in page)
        return fold(events).messages

    async def replay(
        self,
        session_id: str,
        *,
        max_token_limit: int | None = None,
        model: str | None = None,
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> list[Message]:
        """What-if: the buffer the full history would give under another limit or tokenizer.

        Unset arguments keep what each save recorded. Nothing is written.
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
        return fold(rewrite_for_replay(events, max_token_limit, counter)).messages

    async def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """Check the whole store: the triggers that keep the log immutable, every hash
        chain, and every projection row (session heads and buffer rows, also those of
        sessions without events) against the fold of the events.

        ``report.problems`` names the first bad position of each damaged session. What
        the chain can and cannot prove: ``docs/operations.md``.
        """
        return await self._backend.verify(progress)

    async def rebuild(self, *, progress: Progress | None = None, force: bool = False) -> int:
        """Recompute the projections from the events alone; return how many sessions were
        rebuilt.

        The chains are checked first: if events were edited, moved or removed (any
        finding of `verify` except ``projection_mismatch``), nothing is written and
        `RebuildRefusedError` names the findings. ``force=True`` rebuilds
        every other session and leaves the damaged ones' rows as they are, so
        `verify` keeps reporting them.
        """
        if not isinstance(force, bool):
            raise InvalidInputError(f"force must be a bool, got {force!r}")
        return await self._backend.rebuild(progress, force)

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
        yield msgspec.json.encode(ExportHeader(EXPORT_FORMAT, 1)) + b"\n"
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

    async def import_events(self, lines: Iterable[bytes | str]) -> tuple[int, int]:
        """Import an export (see [`export`][eventmem.Store.export]) in one transaction.

        Returns ``(sessions, events)``, the numbers imported.

        ``lines`` is any iterable of the file's lines, ``bytes`` or ``str`` (a file opened
        in binary mode is one); they are read one at a time, on the database's thread,
        and none longer than the line limit that ``max_save_bytes`` sets is copied. Every
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

    @property
    def closed(self) -> bool:
        """Whether the store has been closed."""
        return self._backend.closed

    @property
    def max_save_bytes(self) -> int:
        """The most bytes one write may store (see [`open`][eventmem.open])."""
        return self._backend.max_save_bytes

    @property
    def read_only(self) -> bool:
        """Whether the store was opened with ``read_only=True``."""
        return self._backend.read_only

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


class _Opening:
    """What [`open`][eventmem.open] returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str], options: dict[str, Any]) -> None:
        self._path = path
        self._options = options
        self._store: Store | None = None

    async def _open(self) -> Store:
        if is_postgres_url(self._path):
            try:
                from eventmem.store.postgres import PostgresBackend
            except ImportError as e:
                if not (e.name or "").startswith("psycopg"):
                    raise  # a real error in eventmem's own modules, not a missing driver
                raise MissingDependencyError(
                    "a PostgreSQL store needs psycopg 3: pip install 'eventmem[postgres]'"
                ) from e
            return Store(await PostgresBackend.open(str(self._path), **self._options))
        return Store(await SQLiteBackend.open(self._path, **self._options))

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.aclose()


def open(
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    durability: Durability = "normal",
    busy_timeout: float = 30.0,
    cache_sessions: int = 1024,
    triggers: TriggerMode = "require",
    max_save_bytes: int = DEFAULT_MAX_SAVE_BYTES,
    read_only: bool = False,
) -> _Opening:
    """Open the store in the SQLite file ``path`` (created if missing, unless ``create=False``),
    or, given a ``postgresql://`` URL, in a PostgreSQL database.

    A URL is a libpq URI (``postgresql://user:password@host:5432/dbname``); the store lives
    in the schema ``eventmem`` unless ``?schema=NAME`` names another. The extra
    ``eventmem[postgres]`` installs its driver.

    ``durability="normal"`` (the default) survives a process crash but may lose the last
    commits on power loss; ``"full"`` syncs every commit (in PostgreSQL the server's
    ``synchronous_commit`` decides; ``"full"`` sets it on for this connection).
    ``busy_timeout`` is how many seconds a write waits for another process's lock.
    ``cache_sessions`` bounds how many sessions' decoded buffers stay cached (each
    validated against the stored version on every load; 0 disables the cache).

    ``triggers`` is what to do when the triggers that keep the log immutable are missing,
    disabled or changed (someone switched them off, and may have changed the log):
    ``"require"`` (the default) refuses with `UnprotectedLogError`;
    ``"repair"`` restores them (see
    [`Store.repair_triggers`][eventmem.Store.repair_triggers]) and opens; ``"report"`` opens
    the store as it is, for [`Store.verify`][eventmem.Store.verify] to report.

    ``max_save_bytes`` (default 16 MiB) bounds what one write may store: the UTF-8 JSON
    of a save's events (its messages, steps and counts), or of one recorded step; a larger
    one raises `InputTooLargeError` before its text is copied or
    counted. It also bounds each line an import reads. Use as
    ``async with eventmem.open(path) as store:`` or ``store = await eventmem.open(path)``.

    ``read_only=True`` opens an existing, up-to-date store to read it, also on read-only
    media: it never creates or migrates a store, and every write (a save, a clear, a
    live step, ``rebuild``, ``import_events``) raises
    `ReadOnlyStoreError` and writes nothing. A SQLite file is
    read with ``mode=ro`` (``immutable=1`` where neither the file nor its directory can
    be written, so no one else can change it), and no ``-wal`` or ``-shm`` file is left
    behind; in PostgreSQL the session is ``default_transaction_read_only``.

    A path (or URL) containing a NUL character is refused with
    `InvalidInputError`, a ``ValueError``, as the built-in
    ``open()`` refuses it: the operating system would read it only up to the NUL.

    Every argument is checked before anything is created or connected to.
    """
    if triggers not in ("require", "repair", "report"):
        raise InvalidInputError(
            f"triggers must be 'require', 'repair' or 'report', got {triggers!r}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    _check_path(path)
    if not isinstance(read_only, bool):
        raise InvalidInputError(f"read_only must be True or False, got {read_only!r}")
    if not isinstance(create, bool):
        raise InvalidInputError(f"create must be a bool, got {type(create).__name__}")
    if durability not in ("normal", "full"):
        raise InvalidInputError(f"durability must be 'normal' or 'full', got {durability!r}")
    if (
        isinstance(busy_timeout, bool)
        or not isinstance(busy_timeout, (int, float))
        or not 0 <= busy_timeout <= _MAX_BUSY_TIMEOUT  # NaN fails this too
    ):
        raise InvalidInputError(
            f"busy_timeout must be a number of seconds from 0 to {_MAX_BUSY_TIMEOUT}, "
            f"got {busy_timeout!r}"
        )
    if (
        isinstance(cache_sessions, bool)
        or not isinstance(cache_sessions, int)
        or cache_sessions < 0
    ):
        raise InvalidInputError(f"cache_sessions must be an int >= 0, got {cache_sessions!r}")
    return _Opening(
        path,
        {
            "create": create,
            "durability": durability,
            "busy_timeout": float(busy_timeout),
            "cache_sessions": cache_sessions,
            "triggers": triggers,
            "max_save_bytes": check_max_save_bytes(max_save_bytes),
            "read_only": read_only,
        },
    )


# Both databases take the timeout in milliseconds as a signed 32-bit integer (24.8 days).
_MAX_BUSY_TIMEOUT = (2**31 - 1) // 1000


def _check_path(path: str | os.PathLike[str]) -> None:
    """Refuse a path the operating system would cut short: ``open('a.db\\0.x')`` would
    open ``a.db``, another file than the one named."""
    try:
        name = os.fspath(path)
    except TypeError as e:
        raise InvalidInputError(f"path is not a valid path: {e}") from None
    if not isinstance(name, (str, bytes)):  # pragma: no cover - os.fspath guarantees it
        raise InvalidInputError(f"path must be a str, got {type(name).__name__}")
    if isinstance(name, bytes):
        raise InvalidInputError("path must be a str (or os.PathLike of str), not bytes")
    if "\x00" in name:
        raise InvalidInputError(
            f"path contains a NUL character: {name!r}; a file name cannot hold one (the "
            "system would open the file named by what comes before it)"
        )
