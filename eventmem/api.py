"""The public async entry point: :func:`open` and :class:`Store`."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from types import TracebackType
from typing import Any

import msgspec

from eventmem.audit import (
    EXPORT_FORMAT,
    ExportEnd,
    ExportHeader,
    VerifyReport,
    rewrite_for_replay,
)
from eventmem.errors import ImportRefusedError, InvalidInputError, MissingDependencyError
from eventmem.events import Event, PruneMode, StoredEvent
from eventmem.memory import (
    AgentTokenBufferMemory,
    TokenBufferMemory,
    check_limit,
    validate_session_id,
)
from eventmem.messages import Message
from eventmem.projection import fold
from eventmem.store.base import (
    Backend,
    Durability,
    Progress,
    SessionSummary,
    StoreStats,
    is_postgres_url,
)
from eventmem.store.sqlite import SQLiteBackend
from eventmem.tokens import TokenCounter, resolve_counter

__all__ = ["Store", "open"]

_EVENT_PAGE = 500
_EXPORT_PAGE = 5000


class Store:
    """An eventmem store: many sessions' event logs and buffers in one database.

    Get one with :func:`eventmem.open`; close it with ``aclose()`` or ``async with``.
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
        validate_session_id(session_id)
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
        validate_session_id(session_id)
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
        validate_session_id(session_id)
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
        """Check the whole store: every hash chain, every session head, every projection.

        ``report.problems`` names the first bad position of each damaged session.
        """
        return await self._backend.verify(progress)

    async def rebuild(self, *, progress: Progress | None = None) -> int:
        """Recompute every projection from the events alone; return the number of sessions."""
        return await self._backend.rebuild(progress)

    async def export(self, session_id: str | None = None) -> AsyncIterator[bytes]:
        """The export file, line by line (each ending in a newline): a header, one line per
        event in global order, and an end line with the event count (so a file cut short
        is refused on import). See ``docs/export-format.md``."""
        if session_id is not None:
            validate_session_id(session_id)
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
        """Import an export (see :meth:`export`) in one transaction; return (sessions, events).

        Every hash is re-verified; a tampered file, a session that already exists in this
        store (so importing twice), or a malformed line is refused and nothing is written.
        """
        encoded = [line.encode() if isinstance(line, str) else line for line in lines]
        encoded = [line for line in encoded if line.strip()]
        if not encoded:
            raise ImportRefusedError("the file is empty; an export starts with a header line")
        try:
            header = msgspec.json.decode(encoded[0], type=ExportHeader)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ImportRefusedError("the first line is not an eventmem export header") from None
        if header.format != EXPORT_FORMAT or header.version != 1:
            raise ImportRefusedError(
                f"unsupported export: format {header.format!r} version {header.version}"
            )
        try:
            end = msgspec.json.decode(encoded[-1], type=ExportEnd)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise ImportRefusedError(
                "the file has no end line: it was cut short (or is not a whole export)"
            ) from None
        body = encoded[1:-1]
        if end.end != EXPORT_FORMAT or end.events != len(body):
            raise ImportRefusedError(
                f"the end line announces {end.events} events but the file holds {len(body)}"
            )
        return await self._backend.import_lines(body)

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
    """What :func:`open` returns: await it, or use it with ``async with``."""

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
    validated against the stored version on every load; 0 disables the cache). Use as
    ``async with eventmem.open(path) as store:`` or ``store = await eventmem.open(path)``.

    ``read_only=True`` opens an existing, up-to-date store to read it, also on read-only
    media: it never creates or migrates a store, and every write (a save, a clear, a
    live step, ``rebuild``, ``import_events``) raises
    :class:`~eventmem.errors.ReadOnlyStoreError` and writes nothing. A SQLite file is
    read with ``mode=ro`` (``immutable=1`` where neither the file nor its directory can
    be written, so no one else can change it), and no ``-wal`` or ``-shm`` file is left
    behind; in PostgreSQL the session is ``default_transaction_read_only``.

    A path (or URL) containing a NUL character is refused with
    :class:`~eventmem.errors.InvalidInputError`, a ``ValueError``, as the built-in
    ``open()`` refuses it: the operating system would read it only up to the NUL.
    """
    if durability not in ("normal", "full"):
        raise InvalidInputError(f"durability must be 'normal' or 'full', got {durability!r}")
    for name, value in (("busy_timeout", busy_timeout), ("cache_sessions", cache_sessions)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidInputError(f"{name} must be a number >= 0, got {value!r}")
    if not isinstance(cache_sessions, int):
        raise InvalidInputError(f"cache_sessions must be an int, got {cache_sessions!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    _check_path(path)
    if not isinstance(read_only, bool):
        raise InvalidInputError(f"read_only must be True or False, got {read_only!r}")
    return _Opening(
        path,
        {
            "create": create,
            "durability": durability,
            "busy_timeout": busy_timeout,
            "cache_sessions": cache_sessions,
            "read_only": read_only,
        },
    )


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
