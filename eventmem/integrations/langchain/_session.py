"""One session of a store, reachable from blocking and from async code.

LangChain calls a memory's blocking methods (``chain.invoke``) and its async ones
(``chain.ainvoke``). eventmem has two stores (``eventmem.integrations._stores``):
[`SyncStore`][eventmem.SyncStore] (``eventmem.connect``: its event loop runs in a private
thread) and the async [`Store`][eventmem.Store] (``eventmem.open``: it lives on the
application's loop).

* SyncStore: blocking calls go straight to it. Async calls run that blocking call in a
  worker thread (``anyio.to_thread``), so the caller's loop keeps running meanwhile.
* Store: async calls await it directly, on its loop. Blocking calls from another
  thread are submitted to that loop and waited for; from the loop's own thread they
  raise [`SyncInAsyncContextError`][eventmem.SyncInAsyncContextError] (waiting there
  would deadlock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio.to_thread

from eventmem._options import BufferOptions
from eventmem.api import Store
from eventmem.history import History
from eventmem.integrations._stores import AnyStore, call_blocking, check_store, note_loop
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory
from eventmem.messages import Message
from eventmem.summary import SummaryBufferMemory
from eventmem.sync import (
    SyncAgentTokenBufferMemory,
    SyncHistory,
    SyncStore,
    SyncSummaryBufferMemory,
    SyncTokenBufferMemory,
)

__all__ = ["AnyStore", "Session", "call_blocking", "check_store", "note_loop"]


class Session:
    """A core memory for ``session_id`` plus the means to call it from any context."""

    def __init__(self, store: AnyStore, session_id: str, options: BufferOptions) -> None:
        check_store(store)
        self.store = store
        self._sync: (
            SyncTokenBufferMemory | SyncAgentTokenBufferMemory | SyncSummaryBufferMemory | None
        )
        self.memory: TokenBufferMemory | AgentTokenBufferMemory | SummaryBufferMemory
        if isinstance(store, SyncStore):
            self._sync = store._memory(session_id, options)
            self.memory = self._sync.memory
            self._async_store: Store | None = None
        else:
            self._sync = None
            self._async_store = store
            self.memory = store._memory(session_id, options)
            note_loop(store)

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self.memory.session_id

    # -- the operations ----------------------------------------------------------------
    def save_context(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Append a turn (and prune)."""
        self._call("save_context", inputs, outputs)

    async def asave_context(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Append a turn (and prune)."""
        await self._acall("save_context", inputs, outputs)

    def save_exchange(self, human: str, ai: str) -> None:
        """Append ``Human(human)``, ``AI(ai)`` as one turn, whatever the configured keys."""
        self.save_context(*self._exchange(human, ai))

    async def asave_exchange(self, human: str, ai: str) -> None:
        """Append ``Human(human)``, ``AI(ai)`` as one turn, whatever the configured keys."""
        await self.asave_context(*self._exchange(human, ai))

    def append(self, messages: Sequence[Message], *, bounded: bool) -> None:
        """Append ``messages`` as one general event: ``bounded``, pruned to the memory's
        limit (pair-safe, a leading system message kept); else not pruned, as LangChain's
        chat histories append (the next save prunes, as LangChain's memories do)."""
        history = self._history(bounded)
        if isinstance(history, SyncHistory):
            history.append(messages)
        else:
            self._blocking("add_messages", history.append, messages)

    async def aappend(self, messages: Sequence[Message], *, bounded: bool) -> None:
        """``append`` for async code."""
        history = self._history(bounded)
        if isinstance(history, SyncHistory):
            await anyio.to_thread.run_sync(history.append, messages)
            return
        if self._async_store is not None:
            note_loop(self._async_store)
        await history.append(messages)

    def _history(self, bounded: bool) -> History | SyncHistory:
        options = self.memory.options
        if bounded:
            return self.store.history(
                self.session_id,
                max_tokens=options.max_token_limit,
                model=options.model,
                token_counter=options.token_counter,
            )
        return self.store.history(
            self.session_id,
            prune="langchain",
            keep_system=False,
            model=options.model,
            token_counter=options.token_counter,
        )

    def messages(self) -> list[Message]:
        """The token-bounded buffer (a summary buffer's without its summary)."""
        result: list[Message] = self._call(self._view)
        return result

    async def amessages(self) -> list[Message]:
        """The token-bounded buffer (a summary buffer's without its summary)."""
        result: list[Message] = await self._acall(self._view)
        return result

    def loaded(self) -> list[Message]:
        """The buffer as the memory loads it (a summary buffer's summary first)."""
        result: list[Message] = self._call("messages")
        return result

    async def aloaded(self) -> list[Message]:
        """The buffer as the memory loads it (a summary buffer's summary first)."""
        result: list[Message] = await self._acall("messages")
        return result

    @property
    def _view(self) -> str:
        return "chat_messages" if isinstance(self.memory, SummaryBufferMemory) else "messages"

    def moving_summary(self) -> str:
        """A summary buffer's running summary."""
        memory, sync = self._summary_memory()
        if sync is not None:
            return sync.moving_summary_buffer
        result: str = self._blocking("moving_summary_buffer", memory.amoving_summary_buffer)
        return result

    async def amoving_summary(self) -> str:
        """A summary buffer's running summary."""
        memory, sync = self._summary_memory()
        if sync is not None:
            return await anyio.to_thread.run_sync(lambda: sync.moving_summary_buffer)
        if self._async_store is not None:
            note_loop(self._async_store)
        return await memory.amoving_summary_buffer()

    def _summary_memory(self) -> tuple[SummaryBufferMemory, SyncSummaryBufferMemory | None]:
        memory, sync = self.memory, self._sync
        if not isinstance(memory, SummaryBufferMemory):  # pragma: no cover - internal
            raise TypeError("a running summary needs a summary buffer")
        return memory, sync if isinstance(sync, SyncSummaryBufferMemory) else None

    def clear(self) -> None:
        """Empty the buffer (one event)."""
        self._call("clear")

    async def aclear(self) -> None:
        """Empty the buffer (one event)."""
        await self._acall("clear")

    def record_step(self, action: Any, observation: Any) -> int:
        """Record one intermediate step live (agent sessions only)."""
        self._agent()
        position: int = self._call("record_step", action, observation)
        return position

    async def arecord_step(self, action: Any, observation: Any) -> int:
        """Record one intermediate step live (agent sessions only)."""
        self._agent()
        position: int = await self._acall("record_step", action, observation)
        return position

    def call(self, op: str, *args: Any) -> Any:
        """The memory's method ``op`` from blocking code (its ``a``-prefixed twin on an
        async store)."""
        return self._call(op, *args)

    async def acall(self, op: str, *args: Any) -> Any:
        """The memory's method ``op`` from async code."""
        return await self._acall(op, *args)

    # -- plumbing ----------------------------------------------------------------------
    def _agent(self) -> None:
        if not isinstance(self.memory, AgentTokenBufferMemory):  # pragma: no cover - internal
            raise TypeError("record_step needs an agent memory")

    def _exchange(self, human: str, ai: str) -> tuple[dict[str, str], dict[str, str]]:
        memory = self.memory
        return {memory.input_key or "input": human}, {memory.output_key or "output": ai}

    def _call(self, op: str, *args: Any) -> Any:
        if self._sync is not None:
            return getattr(self._sync, op)(*args)
        return self._blocking(op, getattr(self.memory, "a" + op), *args)

    async def _acall(self, op: str, *args: Any) -> Any:
        if self._sync is not None:
            # The blocking facade waits on its own loop's thread; wait for it in a
            # worker thread, never on the caller's loop.
            return await anyio.to_thread.run_sync(getattr(self._sync, op), *args)
        if self._async_store is not None:
            note_loop(self._async_store)
        return await getattr(self.memory, "a" + op)(*args)

    def _blocking(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self._async_store is None:  # pragma: no cover - the sync store never blocks here
            raise TypeError("only an async store's calls are submitted to its loop")
        return call_blocking(self._async_store, op, fn, *args)
