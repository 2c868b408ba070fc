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
    """A ``BaseChatMessageHistory`` whose messages are an eventmem session's buffer.

    For ``RunnableWithMessageHistory`` (and any code written against LangChain's chat
    history interface). ``messages`` / ``aget_messages()`` return the token-bounded
    view, as LangChain messages: the most recent exchanges within ``max_token_limit``
    tokens, counted like ``llm`` (or like ``ChatOpenAI(model=model)``; or with
    ``token_counter``). Everything added stays in the store's log.

    ``store`` is an [`eventmem.SyncStore`][eventmem.SyncStore] (``eventmem.connect``) or an async
    [`eventmem.Store`][eventmem.Store] (``eventmem.open``); both the blocking and the async
    methods work with either (see the LangChain guide for the rules).

    What can be added: human → AI exchanges of text messages, which is what
    ``RunnableWithMessageHistory`` adds. Each exchange is saved as one turn and pruned
    like ``ConversationTokenBufferMemory.save_context``. A human message added alone
    (``add_user_message``) waits in this object, shown at the end of ``messages``,
    until its AI reply arrives. Message ids are not kept. System, tool and function
    messages, tool calls and names cannot be added (eventmem's public API stores
    exchanges); [`InvalidInputError`][eventmem.InvalidInputError] says so and nothing is written.
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
        self._init(Session(store, session_id, options))

    @classmethod
    def _of(cls, session: Session) -> EventSourcedChatMessageHistory:
        """The history of an existing session object (the memories' ``chat_memory``)."""
        history = cls.__new__(cls)
        history._init(session)
        return history

    def _init(self, session: Session) -> None:
        self._session = session
        self._pending: Message | None = None

    session_id = Mirror[str]("_session")
    """The eventmem session this history reads and writes."""
    store = Mirror[AnyStore]("_session")
    """The eventmem store."""

    @property
    def options(self) -> BufferOptions:
        """The options of the session's memory: its token limit and counting."""
        return self._session.memory.options

    max_token_limit = Option[int]()
    """The buffer's token limit."""

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The token-bounded buffer, oldest first (plus a human message awaiting its reply)."""
        return self._render(self._session.messages())

    async def aget_messages(self) -> list[BaseMessage]:
        """The token-bounded buffer, oldest first (plus a human message awaiting its reply)."""
        return self._render(await self._session.amessages())

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append human → AI exchanges, one turn each (pruned to the limit)."""
        exchanges, pending = self._exchanges(messages)
        for human, ai in exchanges:
            self._session.save_exchange(human, ai)
            self._pending = None
        self._pending = pending

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append human → AI exchanges, one turn each (pruned to the limit)."""
        exchanges, pending = self._exchanges(messages)
        for human, ai in exchanges:
            await self._session.asave_exchange(human, ai)
            self._pending = None
        self._pending = pending

    def clear(self) -> None:
        """Empty the buffer (one ``clear`` event; the log keeps everything)."""
        self._session.clear()
        self._pending = None

    async def aclear(self) -> None:
        """Empty the buffer (one ``clear`` event; the log keeps everything)."""
        await self._session.aclear()
        self._pending = None

    def _render(self, stored: list[Message]) -> list[BaseMessage]:
        if self._pending is not None:
            stored = [*stored, self._pending]
        return [to_langchain(m) for m in stored]

    def _exchanges(
        self, messages: Sequence[BaseMessage]
    ) -> tuple[list[tuple[str, str]], Message | None]:
        """Pair the messages up (checking all of them before anything is written)."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise InvalidInputError(
                f"messages must be a sequence of messages, got {type(messages).__name__}"
            )
        pending = self._pending
        exchanges: list[tuple[str, str]] = []
        for item in messages:
            message = from_langchain(item)
            _check_storable(message)
            if message.role == "human":
                if pending is not None:
                    raise InvalidInputError(
                        "two human messages in a row: each human message must be followed "
                        "by its AI reply before the next one"
                    )
                pending = message
            elif message.role == "ai":
                if pending is None:
                    raise InvalidInputError(
                        "an AI message must follow the human message it answers; "
                        "EventSourcedChatMessageHistory stores human -> AI exchanges"
                    )
                exchanges.append((pending.text, message.text))
                pending = None
            else:
                raise InvalidInputError(
                    f"a {message.role} message cannot be added: EventSourcedChatMessageHistory "
                    "stores human -> AI exchanges (use AgentTokenBufferMemory for tool steps)"
                )
        return exchanges, pending


def _check_storable(message: Message) -> None:
    """Refuse what saving the exchange would silently drop (ids aside)."""
    dropped = [
        what
        for what, present in (
            ("a name", message.name is not None),
            ("tool calls", bool(message.tool_calls or message.invalid_tool_calls)),
            ("a function_call", message.function_call is not None),
            ("list content", not isinstance(message.content, str)),
        )
        if present
    ]
    if dropped:
        raise InvalidInputError(
            f"a {message.role} message with {' and '.join(dropped)} cannot be added: "
            "EventSourcedChatMessageHistory stores the text of human -> AI exchanges"
        )
