"""``EventSourcedChatMessageHistory``: a LangChain chat history on an eventmem session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from eventmem._options import BufferOptions, Mirror, Option
from eventmem.errors import InvalidInputError
from eventmem.integrations.langchain._session import AnyStore, Session
from eventmem.integrations.langchain.convert import from_langchain, to_langchain
from eventmem.integrations.langchain.counting import counting_for
from eventmem.messages import Message
from eventmem.tokens import TokenCounter

__all__ = ["EventSourcedChatMessageHistory"]


class EventSourcedChatMessageHistory(BaseChatMessageHistory):
    """A ``BaseChatMessageHistory`` whose messages are an eventmem session's view.

    For ``RunnableWithMessageHistory`` (and any code written against LangChain's chat
    history interface). ``messages`` / ``aget_messages()`` return the token-bounded
    view, as LangChain messages: the most recent messages within ``max_token_limit``
    tokens, counted like ``llm`` (or like ``ChatOpenAI(model=model)``; or with
    ``token_counter``). Everything added stays in the store's log.

    ``store`` is an [`eventmem.SyncStore`][eventmem.SyncStore] (``eventmem.connect``) or an async
    [`eventmem.Store`][eventmem.Store] (``eventmem.open``); both the blocking and the async
    methods work with either (see the LangChain guide for the rules).

    Every message LangChain has can be added (system, human, AI with tool calls, tool,
    function; text or a list of content blocks), one at a time or several in a row: each
    ``add_messages`` call is one event, durable when it returns, and the view is then
    pruned oldest first to the limit, never leaving a tool result without its call, and
    keeping a system message that begins the view (see
    [`Store.history`][eventmem.Store.history]). What LangChain keeps beyond the text
    (ids, ``additional_kwargs``, ``response_metadata``, ``usage_metadata``, a chunk's
    class) comes back as it was. Only what cannot be stored (a ``ChatMessage`` with a
    custom role, values that are not JSON) raises
    [`InvalidInputError`][eventmem.InvalidInputError], and then nothing is written.

    As the ``chat_memory`` of eventmem's memories it appends without pruning, as
    LangChain's in-memory history does: the next ``save_context`` prunes.
    """

    def __init__(
        self,
        store: AnyStore,
        session_id: str,
        *,
        max_token_limit: int = BufferOptions.max_token_limit,
        llm: Any = None,
        model: str = BufferOptions.model,
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> None:
        if token_counter is None:
            model, token_counter = counting_for(llm, model)
        elif llm is not None:
            raise InvalidInputError("pass llm= or token_counter=, not both")
        options = BufferOptions(
            max_token_limit=max_token_limit, model=model, token_counter=token_counter
        )
        self._init(Session(store, session_id, options), bounded=True)

    @classmethod
    def _of(cls, session: Session) -> EventSourcedChatMessageHistory:
        """The history of an existing session object (the memories' ``chat_memory``):
        it appends without pruning, like LangChain's in-memory history."""
        history = cls.__new__(cls)
        history._init(session, bounded=False)
        return history

    def _init(self, session: Session, *, bounded: bool) -> None:
        self._session = session
        self._bounded = bounded

    session_id = Mirror[str]("_session")
    """The eventmem session this history reads and writes."""
    store = Mirror[AnyStore]("_session")
    """The eventmem store."""

    @property
    def options(self) -> BufferOptions:
        """The options of the session's memory: its token limit and counting."""
        return self._session.memory.options

    max_token_limit = Option[int]()
    """The view's token limit."""

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The token-bounded view, oldest first."""
        return [to_langchain(m) for m in self._session.messages()]

    async def aget_messages(self) -> list[BaseMessage]:
        """The token-bounded view, oldest first."""
        return [to_langchain(m) for m in await self._session.amessages()]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` as one event (all or nothing), then prune the view."""
        self._session.append(_converted(messages), bounded=self._bounded)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` as one event (all or nothing), then prune the view."""
        await self._session.aappend(_converted(messages), bounded=self._bounded)

    def clear(self) -> None:
        """Empty the view (one ``clear`` event; the log keeps everything)."""
        self._session.clear()

    async def aclear(self) -> None:
        """Empty the view (one ``clear`` event; the log keeps everything)."""
        await self._session.aclear()


def _converted(messages: Sequence[BaseMessage]) -> list[Message]:
    """Every message converted (and so checked) before anything is written."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInputError(
            f"messages must be a sequence of messages, got {type(messages).__name__}"
        )
    return [from_langchain(m) for m in messages]
