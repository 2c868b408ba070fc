"""Drop-in ``ConversationTokenBufferMemory``, ``AgentTokenBufferMemory`` and
``ConversationSummaryBufferMemory``, event-sourced.

Real langchain-classic memories (``BaseChatMemory`` subclasses: usable in legacy chains
and ``AgentExecutor``) taking LangChain's parameters plus ``store`` and ``session_id``.
Every save is an event in the store; the buffer survives restarts; ``asave_context``
prunes; a save never re-counts the buffer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from langchain_classic.memory.chat_memory import BaseChatMemory
from langchain_classic.memory.prompt import SUMMARY_PROMPT
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import BasePromptTemplate
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from eventmem._options import AgentBufferOptions, BufferOptions, SummaryBufferOptions
from eventmem.errors import InvalidInputError
from eventmem.events import PruneMode
from eventmem.integrations.langchain._session import AnyStore, Session, check_store
from eventmem.integrations.langchain.convert import (
    from_langchain,
    normalize_step,
    plain_values,
    to_langchain,
)
from eventmem.integrations.langchain.counting import counting_for
from eventmem.integrations.langchain.history import EventSourcedChatMessageHistory
from eventmem.messages import Message, buffer_string

__all__ = [
    "AgentTokenBufferMemory",
    "ConversationSummaryBufferMemory",
    "ConversationTokenBufferMemory",
]


class _EventSourcedMemory(BaseChatMemory):
    """What both memories share: the store, the session, counting, load and clear."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: AnyStore = Field(exclude=True)
    """An [`eventmem.SyncStore`][eventmem.SyncStore] (``eventmem.connect``) or an
    [`eventmem.Store`][eventmem.Store]."""
    session_id: str
    """The conversation's id in the store."""
    llm: BaseLanguageModel | None = Field(default=None, exclude=True)  # type: ignore[type-arg]
    """Counts tokens like this model (``ChatOpenAI``: exactly and fast; others: through
    its ``get_num_tokens_from_messages``). ``None``: like ``ChatOpenAI(model=model)``."""
    model: str = BufferOptions.model
    """The OpenAI model to count for when ``llm`` is None."""
    human_prefix: str = BufferOptions.human_prefix
    """The string buffer's prefix for human messages."""
    ai_prefix: str = BufferOptions.ai_prefix
    """The string buffer's prefix for AI messages."""
    memory_key: str = BufferOptions.memory_key
    """The key of the buffer in ``load_memory_variables``."""
    max_token_limit: int = BufferOptions.max_token_limit
    """Pruning keeps the buffer within this many tokens."""
    chat_memory: BaseChatMessageHistory = Field(default=None, exclude=True)  # type: ignore[assignment]
    """This session as an
    [`EventSourcedChatMessageHistory`][eventmem.integrations.langchain.EventSourcedChatMessageHistory]
    (set for you)."""

    _state: tuple[tuple[Any, ...], Session] | None = PrivateAttr(default=None)

    @field_validator("store", mode="before")
    @classmethod
    def _check_store(cls, value: Any) -> Any:
        return check_store(value)

    def __init__(self, **data: Any) -> None:
        if "chat_memory" in data:
            raise InvalidInputError(
                "chat_memory cannot be given: it is the store's session (store=, session_id=)"
            )
        if "store" in data:
            check_store(data["store"])
        super().__init__(**data)
        # Check every option now, not at the first save, raising eventmem's own errors
        # (a pydantic validator would turn them into ValidationError).
        self._session()

    # -- the session -------------------------------------------------------------------
    # The fields handed to the core memory as they are (llm and model become counting).
    _core_fields: ClassVar[tuple[str, ...]] = (
        "max_token_limit",
        "memory_key",
        "input_key",
        "output_key",
    )
    _options_type: ClassVar[type[BufferOptions]] = BufferOptions

    def _options(self) -> BufferOptions:
        model, counter = counting_for(self.llm, self.model)
        fields = {name: getattr(self, name) for name in self._core_fields}
        return self._options_type(model=model, token_counter=counter, **fields)

    def _config(self) -> tuple[Any, ...]:
        """What the core memory is built from; a change rebuilds it."""
        fields = tuple(getattr(self, name) for name in self._core_fields)
        return (id(self.store), self.session_id, id(self.llm), self.model, fields)

    def _session(self) -> Session:
        config = self._config()
        state = self._state
        if state is None or state[0] != config:
            session = Session(self.store, self.session_id, self._options())
            self._state = (config, session)
            # Bypasses validation on purpose: the field is ours to set.
            object.__setattr__(self, "chat_memory", EventSourcedChatMessageHistory._of(session))
            return session
        return state[1]

    # -- LangChain's API ---------------------------------------------------------------
    @property
    def memory_variables(self) -> list[str]:
        """``[memory_key]``."""
        return [self.memory_key]

    @property
    def buffer_as_messages(self) -> list[BaseMessage]:
        """The buffer as LangChain messages."""
        return [to_langchain(m) for m in self._session().messages()]

    @property
    def buffer_as_str(self) -> str:
        """The buffer as ``get_buffer_string`` renders it, with this memory's prefixes."""
        return self._render_str(self._session().messages())

    def _render_str(self, stored: list[Message]) -> str:
        # eventmem's rendering equals get_buffer_string of the converted messages (a
        # property test checks it) and skips building LangChain objects.
        return buffer_string(stored, self.human_prefix, self.ai_prefix)

    def _variables(self, stored: list[Message]) -> dict[str, Any]:
        if self.return_messages:
            return {self.memory_key: [to_langchain(m) for m in stored]}
        return {self.memory_key: self._render_str(stored)}

    def load_memory_variables(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``{memory_key: buffer}``: LangChain messages if ``return_messages``, else a str."""
        return self._variables(self._session().loaded())

    async def aload_memory_variables(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``{memory_key: buffer}``: LangChain messages if ``return_messages``, else a str."""
        return self._variables(await self._session().aloaded())

    def _outputs(self, outputs: Mapping[str, Any]) -> Mapping[str, Any]:
        return plain_values(outputs)  # type: ignore[no-any-return]

    def save_context(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Append this exchange as one event, then prune oldest-first to the limit."""
        self._session().save_context(plain_values(inputs), self._outputs(outputs))

    async def asave_context(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Append this exchange as one event, then prune (LangChain's does not prune here)."""
        await self._session().asave_context(plain_values(inputs), self._outputs(outputs))

    def clear(self) -> None:
        """Empty the buffer: one ``clear`` event; the log keeps every message."""
        self._session().clear()

    async def aclear(self) -> None:
        """Empty the buffer: one ``clear`` event; the log keeps every message."""
        await self._session().aclear()


class ConversationTokenBufferMemory(_EventSourcedMemory):
    """LangChain's ``ConversationTokenBufferMemory``, durable and event-sourced.

    Same parameters (``llm``, ``max_token_limit``, ``return_messages``, ``memory_key``,
    ``human_prefix``, ``ai_prefix``, ``input_key``, ``output_key``) plus ``store`` and
    ``session_id``; same buffers, token for token. ``save_context`` appends
    ``Human(input)`` and ``AI(output)``, then drops the oldest messages while the buffer
    exceeds ``max_token_limit``; so does ``asave_context``.

    ``llm`` only counts tokens (it is never called). It may be omitted: the buffer is
    then counted like ``ChatOpenAI(model=model)``.
    """

    @property
    def buffer(self) -> Any:
        """``buffer_as_messages`` if ``return_messages``, else ``buffer_as_str``."""
        return self.buffer_as_messages if self.return_messages else self.buffer_as_str


class AgentTokenBufferMemory(_EventSourcedMemory):
    """LangChain's ``AgentTokenBufferMemory``, durable and event-sourced.

    A save appends ``Human(input)``, each of ``outputs[intermediate_steps_key]`` as
    OpenAI function messages (or tool messages with ``format_as_tools=True``), then
    ``AI(output)``, and prunes oldest-first to ``max_token_limit`` (default 12000). Every
    intermediate step is an event of its own.
    [`record_step`][eventmem.integrations.langchain.AgentTokenBufferMemory.record_step]
    records a step live, during the run. ``prune="pair_safe"`` never leaves a tool result
    without its call.
    """

    max_token_limit: int = AgentBufferOptions.max_token_limit
    return_messages: bool = AgentBufferOptions.return_messages
    output_key: str = "output"  # AgentBufferOptions' default (a test checks), typed as a str
    intermediate_steps_key: str = AgentBufferOptions.intermediate_steps_key
    """The key of the agent's steps in ``outputs``."""
    format_as_tools: bool = AgentBufferOptions.format_as_tools
    """Steps as tool messages (``True``) or as OpenAI function messages."""
    prune: PruneMode = AgentBufferOptions.prune
    """``"pair_safe"`` never leaves a tool result in the buffer without its call."""

    _core_fields: ClassVar[tuple[str, ...]] = (
        *_EventSourcedMemory._core_fields,
        "intermediate_steps_key",
        "format_as_tools",
        "prune",
    )
    _options_type: ClassVar[type[BufferOptions]] = AgentBufferOptions

    def _outputs(self, outputs: Mapping[str, Any]) -> Mapping[str, Any]:
        outputs = super()._outputs(outputs)
        steps = outputs.get(self.intermediate_steps_key) if isinstance(outputs, Mapping) else None
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            return outputs  # absent or malformed: the core decides
        return {**outputs, self.intermediate_steps_key: [normalize_step(s) for s in steps]}

    @property
    def buffer(self) -> list[BaseMessage]:
        """The buffer as LangChain messages."""
        return self.buffer_as_messages

    def record_step(self, action: Any, observation: Any) -> int:
        """Record one intermediate step now, before the turn's ``save_context``.

        Durable at once (a crash mid-run leaves it in the log); it joins the buffer
        with its turn, and the turn's ``intermediate_steps`` may repeat it. Returns the
        step's position in the session.
        """
        step = normalize_step((action, observation))
        return self._session().record_step(*step)

    async def arecord_step(self, action: Any, observation: Any) -> int:
        """Async
        [`record_step`][eventmem.integrations.langchain.AgentTokenBufferMemory.record_step]."""
        step = normalize_step((action, observation))
        return await self._session().arecord_step(*step)


_SUMMARY_ROLES: dict[type[BaseMessage], Literal["system", "human", "ai"]] = {
    SystemMessage: "system",
    HumanMessage: "human",
    AIMessage: "ai",
}


class ConversationSummaryBufferMemory(_EventSourcedMemory):
    """LangChain's ``ConversationSummaryBufferMemory``, durable and event-sourced.

    Same parameters (``llm``, ``max_token_limit``, ``prompt``, ``summary_message_cls``,
    ``return_messages``, ``memory_key``, ``human_prefix``, ``ai_prefix``, ``input_key``,
    ``output_key``) plus ``store`` and ``session_id``. A save appends ``Human(input)`` and
    ``AI(output)``; when the buffer is then over ``max_token_limit``, the oldest messages
    leave it and ``llm`` writes the new ``moving_summary_buffer`` from them (LangChain's
    ``predict_new_summary``, with ``prompt``); so does ``asave_context``. Each summary is
    an event naming what it summarises; the summarised messages stay in the log, and the
    summary survives restarts. A model that raises leaves nothing written
    ([`SummarizerError`][eventmem.SummarizerError]).

    ``llm`` summarises and counts tokens (a ``ChatOpenAI`` counts with eventmem's exact
    counter). ``chat_memory`` shows the buffer's messages, without the summary.
    """

    llm: BaseLanguageModel = Field(exclude=True)  # type: ignore[type-arg]
    """Writes the summaries, and counts tokens like ``llm.get_num_tokens_from_messages``."""
    prompt: BasePromptTemplate = SUMMARY_PROMPT  # type: ignore[type-arg]
    """The summary prompt, with the variables ``summary`` and ``new_lines``."""
    summary_message_cls: type[BaseMessage] = SystemMessage
    """The class of the summary message that begins the buffer: ``SystemMessage``,
    ``HumanMessage`` or ``AIMessage``."""

    _options_type: ClassVar[type[BufferOptions]] = SummaryBufferOptions

    def _options(self) -> BufferOptions:
        model, counter = counting_for(self.llm, self.model)
        fields = {name: getattr(self, name) for name in self._core_fields}
        role = _SUMMARY_ROLES.get(self.summary_message_cls)
        if role is None:
            raise InvalidInputError(
                "summary_message_cls must be SystemMessage, HumanMessage or AIMessage, got "
                f"{getattr(self.summary_message_cls, '__name__', self.summary_message_cls)!r}"
            )
        return SummaryBufferOptions(
            model=model,
            token_counter=counter,
            llm=self.llm,
            prompt=self.prompt,
            summary_role=role,
            human_prefix=self.human_prefix,
            ai_prefix=self.ai_prefix,
            **fields,
        )

    def _config(self) -> tuple[Any, ...]:
        summarising = (id(self.prompt), self.summary_message_cls, self.human_prefix, self.ai_prefix)
        return (*super()._config(), summarising)

    @property
    def moving_summary_buffer(self) -> str:
        """The running summary (``""``: none), read from the store."""
        return self._session().moving_summary()

    async def amoving_summary_buffer(self) -> str:
        """The running summary (``""``: none), read from the store."""
        return await self._session().amoving_summary()

    @property
    def buffer(self) -> Any:
        """The buffer as ``load_memory_variables`` returns it: the summary, then the
        messages (LangChain messages if ``return_messages``, else a str)."""
        return self.load_memory_variables({})[self.memory_key]

    async def abuffer(self) -> Any:
        """Async ``buffer``."""
        return (await self.aload_memory_variables({}))[self.memory_key]

    def predict_new_summary(self, messages: list[BaseMessage], existing_summary: str) -> str:
        """Ask ``llm`` for a new summary of ``existing_summary`` and ``messages``, with
        ``prompt``, as LangChain's method does (nothing is written)."""
        converted = [from_langchain(m) for m in messages]
        summary: str = self._session().call("predict_new_summary", converted, existing_summary)
        return summary

    async def apredict_new_summary(self, messages: list[BaseMessage], existing_summary: str) -> str:
        """Async ``predict_new_summary``."""
        converted = [from_langchain(m) for m in messages]
        summary: str = await self._session().acall(
            "predict_new_summary", converted, existing_summary
        )
        return summary
