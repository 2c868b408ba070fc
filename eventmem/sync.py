"""The blocking facade: [`connect`][eventmem.connect] for code that is not async.

The async store runs on an event loop in a private thread (an anyio blocking portal);
each blocking call hands its coroutine to that loop and waits. Calling a blocking
method from inside a running event loop raises `SyncInAsyncContextError` instead
of stalling that loop.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from eventmem import _tracing
from eventmem._opening import open as open_store
from eventmem._options import (
    AgentBufferArgs,
    AgentBufferOptions,
    BufferArgs,
    BufferOptions,
    Mirror,
    SummaryBufferArgs,
    SummaryBufferOptions,
)
from eventmem.anchors import Anchor, AnchorKey
from eventmem.api import Store
from eventmem.audit import VerifyReport
from eventmem.errors import ClosedError, SyncInAsyncContextError
from eventmem.events import PruneMode, StoredEvent
from eventmem.history import History, HistoryArgs, HistoryOptions
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory
from eventmem.messages import Message, Role
from eventmem.providers import Provider
from eventmem.store.base import ErasureReceipt, Progress, SealResult, SessionSummary, StoreStats
from eventmem.summary import SummaryBufferMemory
from eventmem.tokens import TokenCounter

if TYPE_CHECKING:  # typing.Unpack is new in Python 3.11
    from typing_extensions import Unpack

__all__ = [
    "SyncAgentTokenBufferMemory",
    "SyncHistory",
    "SyncStore",
    "SyncSummaryBufferMemory",
    "SyncTokenBufferMemory",
    "connect",
]

T = TypeVar("T")
P = ParamSpec("P")


def _refuse_inside_event_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SyncInAsyncContextError(
        f"{what} blocks, and was called from inside a running event loop; "
        "use the async API (eventmem.open, asave_context, aload_memory_variables, aclear)"
    )


class SyncStore:
    """A [`Store`][eventmem.Store] with blocking methods. Get one with
    [`connect`][eventmem.connect]."""

    def __init__(
        self, store: Store, portal: BlockingPortal, portal_cm: AbstractContextManager[Any]
    ) -> None:
        self._store = store
        self._portal = portal
        self._portal_cm: AbstractContextManager[Any] | None = portal_cm

    def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        _refuse_inside_event_loop(what)
        if self._portal_cm is None:
            raise ClosedError("the store is closed")
        if _tracing.ON:
            fn = _tracing.carry(fn)  # the spans on the store's loop nest under the caller's
        return self._portal.call(fn, *args)

    def token_buffer(self, session_id: str, **options: Unpack[BufferArgs]) -> SyncTokenBufferMemory:
        """A blocking ``ConversationTokenBufferMemory``; options as
        [`Store.token_buffer`][eventmem.Store.token_buffer]."""
        return SyncTokenBufferMemory(self, self._store.token_buffer(session_id, **options))

    def agent_token_buffer(
        self, session_id: str, **options: Unpack[AgentBufferArgs]
    ) -> SyncAgentTokenBufferMemory:
        """A blocking ``AgentTokenBufferMemory``; options as
        [`Store.agent_token_buffer`][eventmem.Store.agent_token_buffer]."""
        return SyncAgentTokenBufferMemory(
            self, self._store.agent_token_buffer(session_id, **options)
        )

    def summary_buffer(
        self, session_id: str, **options: Unpack[SummaryBufferArgs]
    ) -> SyncSummaryBufferMemory:
        """A blocking ``ConversationSummaryBufferMemory``; options as
        [`Store.summary_buffer`][eventmem.Store.summary_buffer]."""
        return SyncSummaryBufferMemory(self, self._store.summary_buffer(session_id, **options))

    def _memory(
        self, session_id: str, options: BufferOptions
    ) -> SyncTokenBufferMemory | SyncAgentTokenBufferMemory | SyncSummaryBufferMemory:
        """The blocking memory that ``options`` (already checked) describe."""
        if isinstance(options, AgentBufferOptions):
            return SyncAgentTokenBufferMemory(self, self._store._memory(session_id, options))
        if isinstance(options, SummaryBufferOptions):
            return SyncSummaryBufferMemory(self, self._store._memory(session_id, options))
        return SyncTokenBufferMemory(self, self._store._memory(session_id, options))

    def history(self, session_id: str, **options: Unpack[HistoryArgs]) -> SyncHistory:
        """A blocking [`History`][eventmem.History]; options as
        [`Store.history`][eventmem.Store.history]."""
        return SyncHistory(self, self._store.history(session_id, **options))

    def events(self, session_id: str, *, after: int = 0) -> list[StoredEvent]:
        """Every event of the session after position ``after`` (0: all), in order."""

        async def collect() -> list[StoredEvent]:
            return [event async for event in self._store.events(session_id, after=after)]

        return self._call("SyncStore.events", collect)

    def messages(self, session_id: str, *, as_of: int | None = None) -> list[Message]:
        """The session's buffer now, or as a load right after position ``as_of`` saw it."""
        return self._call(
            "SyncStore.messages", partial(self._store.messages, as_of=as_of), session_id
        )

    def summary(self, session_id: str, *, as_of: int | None = None) -> str:
        """The running summary in force, now or right after ``as_of`` (see
        [`Store.summary`][eventmem.Store.summary])."""
        return self._call(
            "SyncStore.summary", partial(self._store.summary, as_of=as_of), session_id
        )

    def erase(self, session_id: str, *, reason: str, by: str | None = None) -> ErasureReceipt:
        """Erase the session's content, every hash kept (see
        [`Store.erase`][eventmem.Store.erase]); return the receipt."""
        erase = partial(self._store.erase, reason=reason, by=by)
        return self._call("SyncStore.erase", erase, session_id)

    def seal(
        self,
        session_id: str | None = None,
        *,
        before: int | None = None,
        older_than: timedelta | None = None,
    ) -> list[SealResult]:
        """Retention: seal the earliest events' content, hashes kept (see
        [`Store.seal`][eventmem.Store.seal])."""
        seal = partial(self._store.seal, session_id, before=before, older_than=older_than)
        return self._call("SyncStore.seal", seal)

    def fork(self, source: str, new_session: str, *, at: int | None = None) -> int:
        """Begin ``new_session`` as ``source`` was after ``at`` (see
        [`Store.fork`][eventmem.Store.fork]); return its version."""
        return self._call("SyncStore.fork", partial(self._store.fork, at=at), source, new_session)

    def rewind(self, session_id: str, *, to: int, expected_version: int | None = None) -> int:
        """Make the view what it was after ``to`` (see
        [`Store.rewind`][eventmem.Store.rewind]); return the new version."""
        rewind = partial(self._store.rewind, to=to, expected_version=expected_version)
        return self._call("SyncStore.rewind", rewind, session_id)

    def replay(
        self,
        session_id: str,
        *,
        max_token_limit: int | None = None,
        model: str | None = None,
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> list[Message]:
        """What-if buffer under another limit or tokenizer (see
        [`Store.replay`][eventmem.Store.replay])."""
        replay = partial(
            self._store.replay,
            max_token_limit=max_token_limit,
            model=model,
            token_counter=token_counter,
        )
        return self._call("SyncStore.replay", replay, session_id)

    def version(self, session_id: str) -> int:
        """Position of the session's last event (0 for an unknown session)."""
        return self._call("SyncStore.version", self._store.version, session_id)

    def count_events(self) -> int:
        """The number of events in the store."""
        return self._call("SyncStore.count_events", self._store.count_events)

    def verify(
        self,
        *,
        progress: Progress | None = None,
        anchors: Iterable[Anchor] = (),
        key: AnchorKey | None = None,
        provider: Provider | None = None,
        processes: int | None = None,
    ) -> VerifyReport:
        """Check the triggers, every hash chain, session head and projection row, any
        ``anchors`` with their ``key``, and with ``provider`` every past view, folding
        the log in up to ``processes`` processes (see
        [`Store.verify`][eventmem.Store.verify]); ``progress(done, total)`` is called
        from the store's thread."""
        verify = partial(
            self._store.verify,
            progress=progress,
            anchors=list(anchors),
            key=key,
            provider=provider,
            processes=processes,
        )
        return self._call("SyncStore.verify", verify)

    def anchor(self, key: AnchorKey) -> Anchor:
        """Sign every session's head with ``key`` (see [`Store.anchor`][eventmem.Store.anchor])."""
        return self._call("SyncStore.anchor", self._store.anchor, key)

    def verify_session(self, session_id: str) -> VerifyReport:
        """One session's checks: the triggers, its chain, its head and buffer rows (see
        [`Store.verify_session`][eventmem.Store.verify_session])."""
        return self._call(
            "SyncStore.verify_session", partial(self._store.verify_session, session_id)
        )

    def rebuild(
        self, *, progress: Progress | None = None, force: bool = False, processes: int | None = None
    ) -> int:
        """Recompute the projections from the events; return the number rebuilt. Chain
        findings refuse it unless ``force`` (see [`Store.rebuild`][eventmem.Store.rebuild])."""
        rebuild = partial(self._store.rebuild, progress=progress, force=force, processes=processes)
        return self._call("SyncStore.rebuild", rebuild)

    def repair_triggers(self) -> list[str]:
        """Restore the log's triggers; return what was wrong (see
        [`Store.repair_triggers`][eventmem.Store.repair_triggers])."""
        return self._call("SyncStore.repair_triggers", self._store.repair_triggers)

    def export(self, sink: BinaryIO, session_id: str | None = None) -> int:
        """Write the export file (see [`Store.export`][eventmem.Store.export]) to ``sink``;
        return the number of events written. Written a page at a time, as read (see
        [`Store.export_to`][eventmem.Store.export_to])."""
        return self._call("SyncStore.export", partial(self._store.export_to, sink, session_id))

    def export_to(
        self,
        sink: BinaryIO,
        session_id: str | None = None,
        *,
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Write the export file to ``sink`` a page at a time, calling
        ``progress(events_written)`` after each (see
        [`Store.export_to`][eventmem.Store.export_to]); return the number of events."""
        write = partial(self._store.export_to, sink, session_id, progress=progress)
        return self._call("SyncStore.export_to", write)

    def import_events(self, lines: Iterable[bytes | str]) -> tuple[int, int]:
        """Import an export file's lines; return (sessions, events). See
        [`Store.import_events`][eventmem.Store.import_events]."""
        return self._call("SyncStore.import_events", self._store.import_events, lines)

    def sessions(self) -> list[str]:
        """The ids of every session in the store."""
        return self._call("SyncStore.sessions", self._store.sessions)

    def session_summaries(self) -> list[SessionSummary]:
        """Every session at a glance, oldest first (see
        [`Store.session_summaries`][eventmem.Store.session_summaries])."""
        return self._call("SyncStore.session_summaries", self._store.session_summaries)

    def session_page(
        self,
        *,
        search: str = "",
        order: str = "created",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[SessionSummary]]:
        """How many sessions match ``search``, and one page of their summaries, sorted
        and cut by the database (see
        [`Store.session_page`][eventmem.Store.session_page])."""
        return self._call(
            "SyncStore.session_page",
            partial(
                self._store.session_page,
                search=search,
                order=order,
                descending=descending,
                offset=offset,
                limit=limit,
            ),
        )

    def stats(self) -> StoreStats:
        """Figures about the whole store (see [`Store.stats`][eventmem.Store.stats])."""
        return self._call("SyncStore.stats", self._store.stats)

    closed = Mirror[bool]("_store")
    """Whether the store has been closed."""
    max_save_bytes = Mirror[int]("_store")
    """The most bytes one write may store (see [`open`][eventmem.open])."""
    read_only = Mirror[bool]("_store")
    """Whether the store was opened with ``read_only=True``."""

    def close(self) -> None:
        """Close the store and stop its event-loop thread. Idempotent."""
        if self._portal_cm is None:
            return
        _refuse_inside_event_loop("SyncStore.close")
        try:
            self._portal.call(self._store.aclose)
        finally:
            cm, self._portal_cm = self._portal_cm, None
            cm.__exit__(None, None, None)

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _SyncBuffer:
    """Blocking methods shared by both sync memories."""

    memory: TokenBufferMemory | AgentTokenBufferMemory | SummaryBufferMemory

    def __init__(self, store: SyncStore) -> None:
        self._store = store

    session_id = Mirror[str]("memory")
    """The session this memory reads and writes."""
    options = Mirror[BufferOptions]("memory")
    """The memory's options, checked when it was made."""
    counter = Mirror[TokenCounter]("memory")
    """The token counter in force."""
    model = Mirror["str | None"]("memory")
    """The model each save records (``None`` when a custom counter counts)."""
    memory_variables = Mirror["list[str]"]("memory")
    """``[memory_key]``."""
    # The options, read-only here (set them on ``memory``).
    max_token_limit = Mirror[int]("memory")
    memory_key = Mirror[str]("memory")
    return_messages = Mirror[bool]("memory")
    human_prefix = Mirror[str]("memory")
    ai_prefix = Mirror[str]("memory")
    input_key = Mirror["str | None"]("memory")
    output_key = Mirror["str | None"]("memory")

    def save_context(
        self,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Append this exchange and prune the buffer to the limit."""
        self._store._call(
            "save_context",
            partial(self.memory.asave_context, expected_version=expected_version),
            inputs,
            outputs,
        )

    def load_memory_variables(self, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{memory_key: buffer}``."""
        return self._store._call(
            "load_memory_variables", self.memory.aload_memory_variables, inputs
        )

    def clear(self, *, expected_version: int | None = None) -> None:
        """Empty the buffer; the log keeps everything."""
        self._store._call("clear", partial(self.memory.aclear, expected_version=expected_version))

    def version(self) -> int:
        """The session's version (position of its last event)."""
        return self._store._call("version", self.memory.aversion)

    def messages(self) -> list[Message]:
        """The buffer as messages."""
        return self._store._call("messages", self.memory.amessages)

    def buffer_as_str(self) -> str:
        """The buffer as LangChain's ``get_buffer_string`` renders it."""
        return self._store._call("buffer_as_str", self.memory.abuffer_as_str)


class SyncTokenBufferMemory(_SyncBuffer):
    """Blocking twin of `TokenBufferMemory` (LangChain's sync API)."""

    memory: TokenBufferMemory

    def __init__(self, store: SyncStore, memory: TokenBufferMemory) -> None:
        super().__init__(store)
        self.memory = memory


class SyncAgentTokenBufferMemory(_SyncBuffer):
    """Blocking twin of `AgentTokenBufferMemory`."""

    memory: AgentTokenBufferMemory
    intermediate_steps_key = Mirror[str]("memory")
    format_as_tools = Mirror[bool]("memory")
    prune = Mirror[PruneMode]("memory")

    def __init__(self, store: SyncStore, memory: AgentTokenBufferMemory) -> None:
        super().__init__(store)
        self.memory = memory

    def record_step(
        self, action: Any, observation: Any, *, expected_version: int | None = None
    ) -> int:
        """Record one intermediate step now, before the turn's ``save_context``."""
        return self._store._call(
            "record_step",
            partial(self.memory.arecord_step, expected_version=expected_version),
            action,
            observation,
        )


class SyncSummaryBufferMemory(_SyncBuffer):
    """Blocking twin of [`SummaryBufferMemory`][eventmem.SummaryBufferMemory]
    (LangChain's sync API: ``save_context`` prunes and summarises)."""

    memory: SummaryBufferMemory
    llm = Mirror[Any]("memory")
    prompt = Mirror[Any]("memory")
    summary_role = Mirror[Role]("memory")

    def __init__(self, store: SyncStore, memory: SummaryBufferMemory) -> None:
        super().__init__(store)
        self.memory = memory

    @property
    def moving_summary_buffer(self) -> str:
        """The running summary (``""``: none), read from the store."""
        return self._store._call("moving_summary_buffer", self.memory.amoving_summary_buffer)

    @property
    def buffer(self) -> str | list[Message]:
        """The buffer as ``load_memory_variables`` returns it (LangChain's ``buffer``)."""
        return self._store._call("buffer", self.memory.abuffer)

    def chat_messages(self) -> list[Message]:
        """The buffer's messages without the summary (LangChain's ``chat_memory``)."""
        return self._store._call("chat_messages", self.memory.achat_messages)

    def messages(self, *, as_of: int | None = None) -> list[Message]:
        """The summary (if any), then the messages; now, or right after ``as_of``."""
        return self._store._call("messages", partial(self.memory.amessages, as_of=as_of))

    def predict_new_summary(self, messages: list[Message], existing_summary: str) -> str:
        """Ask the model for a new summary (see
        [`SummaryBufferMemory.apredict_new_summary`][eventmem.SummaryBufferMemory.apredict_new_summary])."""
        return self._store._call(
            "predict_new_summary", self.memory.apredict_new_summary, messages, existing_summary
        )


class SyncHistory:
    """Blocking twin of [`History`][eventmem.History]."""

    session_id = Mirror[str]("history")
    """The session this history reads and writes."""
    options = Mirror[HistoryOptions]("history")
    """The history's options, checked when it was made."""
    max_tokens = Mirror["int | None"]("history")
    """The bound on the view's tokens (``None``: unbounded)."""
    counter = Mirror[TokenCounter]("history")
    """The token counter in force."""

    def __init__(self, store: SyncStore, history: History) -> None:
        self._store = store
        self.history = history

    def append(self, messages: Iterable[Any], *, expected_version: int | None = None) -> int:
        """Append ``messages`` as one event; return the version (see
        [`History.append`][eventmem.History.append])."""
        append = partial(self.history.append, expected_version=expected_version)
        return self._store._call("History.append", append, messages)

    def view(self) -> list[Message]:
        """The token-bounded view, oldest first."""
        return self._store._call("History.view", self.history.view)

    def pop(self, n: int = 1, *, expected_version: int | None = None) -> list[Message]:
        """Retract the newest ``n`` messages and return them (see
        [`History.pop`][eventmem.History.pop])."""
        pop = partial(self.history.pop, expected_version=expected_version)
        return self._store._call("History.pop", pop, n)

    def clear(self, *, expected_version: int | None = None) -> int:
        """Empty the view (the log keeps everything); return the version."""
        clear = partial(self.history.clear, expected_version=expected_version)
        return self._store._call("History.clear", clear)

    def messages(self, *, as_of: int | None = None) -> list[Message]:
        """The view now, or as it was right after position ``as_of``."""
        return self._store._call("History.messages", partial(self.history.messages, as_of=as_of))

    def version(self) -> int:
        """The session's version (position of its last event)."""
        return self._store._call("History.version", self.history.version)

    def summary(self) -> str:
        """The running summary in force (see [`History.summary`][eventmem.History.summary])."""
        return self._store._call("History.summary", self.history.summary)


def _takes_the_arguments_of(
    opener: Callable[P, object],
) -> Callable[[Callable[..., SyncStore]], Callable[P, SyncStore]]:
    """Give the decorated function ``opener``'s parameters, for type checkers and
    ``inspect.signature``, without restating them."""

    def decorate(function: Callable[..., SyncStore]) -> Callable[P, SyncStore]:
        returns = inspect.signature(function).return_annotation
        signature = inspect.signature(opener).replace(return_annotation=returns)
        function.__signature__ = signature  # type: ignore[attr-defined]
        return function

    return decorate


@_takes_the_arguments_of(open_store)
def connect(path: str | os.PathLike[str], **options: Any) -> SyncStore:
    """Open a store for blocking code; it takes the arguments of
    [`eventmem.open`][eventmem.open], with the same defaults.

    Use as ``with eventmem.connect(path) as store:``. ``read_only=True`` opens an
    existing store whose every write raises `ReadOnlyStoreError`.
    """
    _refuse_inside_event_loop("eventmem.connect")
    # Arguments are checked here, before the event-loop thread starts.
    opening = open_store(path, **options)
    portal_cm = start_blocking_portal(backend="asyncio")
    portal = portal_cm.__enter__()
    try:
        store = portal.call(_open, opening)
    except BaseException as e:
        portal_cm.__exit__(type(e), e, e.__traceback__)
        raise
    return SyncStore(store, portal, portal_cm)


async def _open(opening: Awaitable[Store]) -> Store:
    return await opening
