"""``EventmemMiddleware``: a LangChain 1.x agent (``create_agent``) whose messages are
kept in an eventmem session, and whose model sees that session's token-bounded view.

Where each message is recorded (always from what the agent holds, after LangChain gave
it an id):

* ``wrap_model_call``: the messages the model is about to be asked about (the user's
  input, tool results, and the results LangChain makes up for invalid tool calls), then
  the model is handed the session's view instead of the whole state;
* ``after_model``: the model's reply (with its tool calls), before any tool runs;
* ``after_agent``: whatever ended the run without a model call after it (a tool with
  ``return_direct``, a jump to the end).

A message is recorded once: the ids of the messages in the session's log are read once
per process and session, then kept up to date by this object's own appends. Every
append names the version it expects, so an append by anyone else in between (another
process on the same session, a ``clear``) makes it read the events appended since (and
only those) and try again, instead of storing a message twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import anyio.to_thread
from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, ToolMessage
from langgraph.runtime import Runtime

from eventmem.api import Store
from eventmem.errors import ConcurrencyError, InvalidInputError
from eventmem.events import MessagesAppended, StoredEvent
from eventmem.history import History, HistoryOptions
from eventmem.integrations.langchain._session import (
    AnyStore,
    call_blocking,
    check_store,
    note_loop,
)
from eventmem.integrations.langchain.convert import from_langchain, to_langchain
from eventmem.integrations.langchain.counting import counting_for
from eventmem.messages import Message
from eventmem.sync import SyncHistory, SyncStore
from eventmem.tokens import TokenCounter

__all__ = ["EventmemMiddleware"]

# How often an append refused as stale is tried again (each time after reading what was
# appended meanwhile) before the ConcurrencyError is passed on. Each refusal means that
# another writer's append went in, so this bounds contention, not progress.
_ATTEMPTS = 50

_ModelResult = ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]


@dataclass
class _Seen:
    """What this object knows of a session's log: the message ids in it, as of
    ``version`` (``None``: the log was not read yet)."""

    ids: set[str] = field(default_factory=set)
    version: int | None = None
    # Held by a blocking recording from its read to its append: threads of one process
    # take turns instead of refusing each other's appends.
    writing: threading.Lock = field(default_factory=threading.Lock)


class EventmemMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Agent middleware for ``create_agent(model, tools, middleware=[...])``: every
    message of the agent's state is recorded, once, in an eventmem session, and the
    model is handed that session's token-bounded, pair-safe view instead of the state.

    The log keeps everything the agent said and was told (the user's input, each reply
    with its tool calls, each tool result, the final answer), each message exactly as
    LangChain held it (``to_langchain`` gives back an equal message). What the model is
    handed is the session's view: the newest messages within ``max_tokens`` tokens,
    counted like ``llm`` (or like ``ChatOpenAI(model=model)``, or by
    ``token_counter``), never starting with a tool result whose call is gone
    (see [`Store.history`][eventmem.Store.history]). ``max_tokens=None`` hands it every
    message of the session since its last clear. The bound is on the messages:
    ``create_agent``'s ``system_prompt`` and the tools' schemas are sent besides them.

    The system prompt is not recorded: LangChain passes it with each request, apart
    from the messages, so it is configuration, not conversation (a ``SystemMessage``
    in the input messages is recorded, and pinned at the start of the view when it
    begins the session).

    The session is ``session_id`` if given, else the run's thread id
    (``config={"configurable": {"thread_id": ...}}``); a run with neither raises
    [`InvalidInputError`][eventmem.InvalidInputError]. With a checkpointer, the
    resumed state holds the earlier messages again: they are known by their ids and not
    recorded twice. Without one, pass only the new messages to each run: the session
    holds the rest, and the model sees it. A message without an id in the input is
    given one (as LangChain's reducer would), so the same object passed again is not
    recorded again.

    ``store`` is an [`eventmem.SyncStore`][eventmem.SyncStore] (``eventmem.connect``) or
    an async [`eventmem.Store`][eventmem.Store] (``eventmem.open``); ``agent.invoke``
    and ``agent.ainvoke`` both work with either (a blocking run on an async store
    needs that store's loop running in another thread, as for the other LangChain
    adapters). Put it first in ``middleware=[...]``: it then sees the request as the
    agent made it, and the middleware after it see the bounded view.

    A message is recorded as it is first seen: a later change to it under the same id
    (a human-in-the-loop edit) is not recorded, and a message popped or cleared from
    the session is not recorded again while the state still holds it.
    """

    def __init__(
        self,
        store: AnyStore,
        session_id: str | None = None,
        *,
        max_tokens: int | None = None,
        llm: Any = None,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> None:
        super().__init__()
        self.store = check_store(store)
        if isinstance(store, Store):
            note_loop(store)  # made on the store's loop: blocking runs can reach it
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidInputError(
                f"session_id must be a str or None, got {type(session_id).__name__}"
            )
        if token_counter is None:
            model, token_counter = counting_for(llm, model)
        elif llm is not None:
            raise InvalidInputError("pass llm= or token_counter=, not both")
        # Checked now, so a bad option fails here and not in the middle of a run.
        self.options = HistoryOptions(
            max_tokens=max_tokens, model=model, token_counter=token_counter
        )
        if session_id is not None:
            self.store.history(session_id)  # checks the id
        self.session_id = session_id
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    @property
    def max_tokens(self) -> int | None:
        """The bound on the tokens of the messages the model is handed."""
        return self.options.max_tokens

    def history(self, session_id: str | None = None) -> History | SyncHistory:
        """The eventmem history of ``session_id`` (default: the fixed ``session_id``),
        with this middleware's bound: a [`SyncHistory`][eventmem.SyncHistory] on a
        SyncStore, a [`History`][eventmem.History] on an async Store."""
        session_id = session_id if session_id is not None else self.session_id
        if session_id is None:
            raise InvalidInputError("this middleware has no fixed session_id: name one")
        options = self.options
        return self.store.history(
            session_id,
            max_tokens=options.max_tokens,
            model=options.model,
            token_counter=options.token_counter,
        )

    # -- the hooks ---------------------------------------------------------------------
    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> _ModelResult:
        """Record the request's new messages, then hand the model the session's view."""
        session_id = self._session_for(request.runtime)
        self._record(session_id, request.messages)
        view = self._blocking(session_id).view()
        return handler(request.override(messages=_handed(view, request.messages)))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> _ModelResult:
        """Record the request's new messages, then hand the model the session's view."""
        session_id = self._session_for(request.runtime)
        if isinstance(self.store, SyncStore):

            def record_and_view() -> list[Message]:
                self._record(session_id, request.messages)
                return self._blocking(session_id).view()

            view = await anyio.to_thread.run_sync(record_and_view)
        else:
            await self._arecord(session_id, request.messages)
            view = await self._async_history(session_id).view()
        return await handler(request.override(messages=_handed(view, request.messages)))

    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Record the model's reply."""
        self._record(self._session_for(runtime), state["messages"])
        return None

    async def aafter_model(
        self, state: AgentState[Any], runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Record the model's reply."""
        await self._arecord_any(self._session_for(runtime), state["messages"])
        return None

    def after_agent(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Record what ended the run (a tool result returned directly, for one)."""
        self._record(self._session_for(runtime), state["messages"])
        return None

    async def aafter_agent(
        self, state: AgentState[Any], runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Record what ended the run (a tool result returned directly, for one)."""
        await self._arecord_any(self._session_for(runtime), state["messages"])
        return None

    # -- recording ---------------------------------------------------------------------
    def _session_for(self, runtime: Runtime[Any] | None) -> str:
        if self.session_id is not None:
            return self.session_id
        info = getattr(runtime, "execution_info", None)
        thread_id = getattr(info, "thread_id", None)
        if thread_id is None:
            thread_id = _configured_thread_id()
        if thread_id is None:
            raise InvalidInputError(
                "EventmemMiddleware has no session_id and the run has no thread id: pass "
                "session_id=..., or run with config={'configurable': {'thread_id': ...}}"
            )
        return str(thread_id)

    def _pending(self, session_id: str, messages: Sequence[BaseMessage]) -> list[Message]:
        """The messages not in the log yet, converted (and so checked), in order."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise InvalidInputError(
                f"the agent's messages must be a list, got {type(messages).__name__}"
            )
        with self._lock:
            known = set(self._seen[session_id].ids)
        pending: list[Message] = []
        for message in messages:
            if not isinstance(message, BaseMessage):
                raise InvalidInputError(
                    f"the agent's messages must be LangChain messages, got {type(message).__name__}"
                )
            if message.id is None:
                # What LangChain's add_messages reducer does, done first, so the message
                # is known by this id when the state holds it.
                message.id = str(uuid.uuid4())
            if message.id in known:
                continue
            known.add(message.id)
            pending.append(from_langchain(message))
        return pending

    def _learn(self, session_id: str, events: Iterable[StoredEvent]) -> None:
        """Take in the ids of the events after the known version."""
        with self._lock:
            seen = self._seen.setdefault(session_id, _Seen())
            after = seen.version or 0
            for event in events:
                if event.position <= after:
                    continue
                seen.version = event.position
                if isinstance(event.data, MessagesAppended):
                    seen.ids.update(m.id for m in event.data.messages if m.id is not None)
            if seen.version is None:
                seen.version = 0

    def _appended(self, session_id: str, messages: Sequence[Message], version: int) -> None:
        with self._lock:
            seen = self._seen[session_id]
            seen.ids.update(m.id for m in messages if m.id is not None)
            seen.version = version

    def _version(self, session_id: str) -> int | None:
        with self._lock:
            seen = self._seen.get(session_id)
            return None if seen is None else seen.version

    def _record(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """Append the new ``messages`` (one event), from blocking code."""
        with self._lock:
            writing = self._seen.setdefault(session_id, _Seen()).writing
        with writing:
            self._record_now(session_id, messages)

    def _record_now(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        history = self._blocking(session_id)
        for _ in range(_ATTEMPTS):
            if self._version(session_id) is None:
                self._learn(session_id, self._blocking_events(session_id))
            pending = self._pending(session_id, messages)
            if not pending:
                return
            try:
                version = history.append(pending, expected_version=self._version(session_id))
            except ConcurrencyError:
                self._learn(session_id, self._blocking_events(session_id))
                continue
            self._appended(session_id, pending, version)
            return
        raise ConcurrencyError(f"session {session_id!r} kept changing while recording")

    async def _arecord(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        """Append the new ``messages`` (one event), on an async store."""
        history = self._async_history(session_id)
        for _ in range(_ATTEMPTS):
            if self._version(session_id) is None:
                self._learn(session_id, await self._async_events(session_id))
            pending = self._pending(session_id, messages)
            if not pending:
                return
            try:
                version = await history.append(pending, expected_version=self._version(session_id))
            except ConcurrencyError:
                self._learn(session_id, await self._async_events(session_id))
                continue
            self._appended(session_id, pending, version)
            return
        raise ConcurrencyError(f"session {session_id!r} kept changing while recording")

    async def _arecord_any(self, session_id: str, messages: Sequence[BaseMessage]) -> None:
        if isinstance(self.store, SyncStore):
            await anyio.to_thread.run_sync(self._record, session_id, messages)
        else:
            await self._arecord(session_id, messages)

    # -- the store, from either side ---------------------------------------------------
    def _blocking(self, session_id: str) -> SyncHistory | _BlockingHistory:
        history = self.history(session_id)
        if isinstance(history, SyncHistory):
            return history
        assert isinstance(self.store, Store)
        return _BlockingHistory(self.store, history)

    def _blocking_events(self, session_id: str) -> list[StoredEvent]:
        """The events this object does not know yet."""
        store, after = self.store, self._version(session_id) or 0
        if isinstance(store, SyncStore):
            return store.events(session_id, after=after)

        async def collect() -> list[StoredEvent]:
            return [event async for event in store.events(session_id, after=after)]

        events: list[StoredEvent] = call_blocking(store, "Store.events", collect)
        return events

    def _async_history(self, session_id: str) -> History:
        assert isinstance(self.store, Store)
        note_loop(self.store)
        history = self.history(session_id)
        assert isinstance(history, History)
        return history

    async def _async_events(self, session_id: str) -> list[StoredEvent]:
        """The events this object does not know yet."""
        assert isinstance(self.store, Store)
        after = self._version(session_id) or 0
        return [event async for event in self.store.events(session_id, after=after)]

    def __repr__(self) -> str:
        return f"EventmemMiddleware(session_id={self.session_id!r}, max_tokens={self.max_tokens})"


class _BlockingHistory:
    """An async store's History called from blocking code (on the store's loop)."""

    def __init__(self, store: Store, history: History) -> None:
        self._store = store
        self._history = history

    def append(self, messages: Sequence[Message], *, expected_version: int | None) -> int:
        append = partial(self._history.append, expected_version=expected_version)
        version: int = call_blocking(self._store, "History.append", append, messages)
        return version

    def view(self) -> list[Message]:
        view: list[Message] = call_blocking(self._store, "History.view", self._history.view)
        return view


def _configured_thread_id() -> Any:
    """``configurable.thread_id`` of the running graph's config, if any."""
    try:
        from langgraph.config import get_config

        config = get_config()
    except RuntimeError:  # not inside a graph run
        return None
    return config.get("configurable", {}).get("thread_id")


def _handed(view: Sequence[Message], messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """The messages the model is handed: the view, or, when the newest message alone is
    over the bound (the view is empty), that message with the call it answers."""
    if view:
        return [cast("AnyMessage", to_langchain(m)) for m in view]
    start = len(messages) - 1
    while start > 0 and isinstance(messages[start], ToolMessage):
        start -= 1
    return list(messages[max(start, 0) :])
