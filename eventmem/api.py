"""The public async entry point: :func:`open` and :class:`Store`."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Any

from eventmem.events import PruneMode, StoredEvent
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory, validate_session_id
from eventmem.messages import Message
from eventmem.store.sqlite import Durability, SQLiteBackend
from eventmem.tokens import TokenCounter

__all__ = ["Store", "open"]

_EVENT_PAGE = 500


class Store:
    """An eventmem store: many sessions' event logs and buffers in one database.

    Get one with :func:`eventmem.open`; close it with ``aclose()`` or ``async with``.
    """

    def __init__(self, backend: SQLiteBackend) -> None:
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

    async def messages(self, session_id: str) -> list[Message]:
        """The session's current buffer (empty for an unknown session)."""
        return await self._backend.load_view(validate_session_id(session_id))

    async def sessions(self) -> list[str]:
        """The ids of every session in the store, in order of creation."""
        return await self._backend.session_ids()

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
        return f"<eventmem.Store {self._backend._where!r}>"


class _Opening:
    """What :func:`open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str | os.PathLike[str], options: dict[str, Any]) -> None:
        self._path = path
        self._options = options
        self._store: Store | None = None

    async def _open(self) -> Store:
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
) -> _Opening:
    """Open the store in the SQLite file ``path`` (created if missing, unless ``create=False``).

    ``durability="normal"`` (the default) survives a process crash but may lose the last
    commits on power loss; ``"full"`` syncs every commit. Use as
    ``async with eventmem.open(path) as store:`` or ``store = await eventmem.open(path)``.
    """
    return _Opening(
        path, {"create": create, "durability": durability, "busy_timeout": busy_timeout}
    )
