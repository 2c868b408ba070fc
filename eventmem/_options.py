"""The memories' options: one frozen struct, checked once, shared by every layer.

[`BufferOptions`][eventmem.BufferOptions] (and [`AgentBufferOptions`][eventmem.AgentBufferOptions],
which adds the agent's) holds every option a memory takes, with its default. The async
store, the blocking facade and the LangChain adapter all build one and hand it on; a bad
value raises an `InvalidInputError` (a ``ValueError``) when it is built, before anything
is written. [`BufferArgs`][eventmem.BufferArgs] and [`AgentBufferArgs`][eventmem.AgentBufferArgs]
type the keyword arguments of ``token_buffer`` / ``agent_token_buffer``: the same names,
without the defaults (those are the struct's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypedDict, TypeVar

from eventmem._summarizer import (
    SUMMARY_TEMPLATE,
    check_model,
    model_name,
    prompt_digest,
    prompt_template,
)
from eventmem.errors import InvalidInputError
from eventmem.events import PruneMode
from eventmem.messages import Message, Role, check_text
from eventmem.rules import check_limit
from eventmem.tokens import TokenCounter, resolve_counter

__all__ = [
    "SUMMARY_ROLES",
    "AgentBufferArgs",
    "AgentBufferOptions",
    "BufferArgs",
    "BufferOptions",
    "Mirror",
    "Option",
    "SummaryBufferArgs",
    "SummaryBufferOptions",
]

T = TypeVar("T")

_PRUNE_MODES = ("langchain", "pair_safe")


def _check_str(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a str, got {type(value).__name__}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a bool, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BufferOptions:
    """The options of a token-bounded memory (``ConversationTokenBufferMemory``'s), with
    their defaults, checked when the struct is built.

    ``max_token_limit`` bounds the buffer's tokens, counted like ``ChatOpenAI(model=model)``
    unless ``token_counter`` (a `TokenCounter` or a function of a message list) counts.
    ``memory_key`` names the buffer in ``load_memory_variables``; ``return_messages``
    returns it as messages rather than a string with ``human_prefix`` / ``ai_prefix``.
    ``input_key`` / ``output_key`` pick the saved texts (``None``: LangChain's key rules).

    Built from those fields, ``counter`` is the counter in force and ``recorded_model``
    the model each save records (``None`` when ``token_counter`` counts).
    """

    max_token_limit: int = 2000
    model: str = "gpt-4o"
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None
    memory_key: str = "history"
    return_messages: bool = False
    human_prefix: str = "Human"
    ai_prefix: str = "AI"
    input_key: str | None = None
    output_key: str | None = None
    counter: TokenCounter = dataclasses.field(init=False, repr=False, compare=False)
    recorded_model: str | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The order of the checks is the order of the arguments.
        object.__setattr__(self, "max_token_limit", check_limit(self.max_token_limit))
        counter = resolve_counter(self.model, self.token_counter)
        object.__setattr__(self, "counter", counter)
        # resolve_counter checked that model is a str when it is the one counting.
        recorded = str.__str__(self.model) if self.token_counter is None else None
        object.__setattr__(self, "recorded_model", recorded)
        _check_str("memory_key", self.memory_key)
        _check_str("human_prefix", self.human_prefix)
        _check_str("ai_prefix", self.ai_prefix)
        _check_str("input_key", self.input_key, optional=True)
        _check_str("output_key", self.output_key, optional=True)
        _check_bool("return_messages", self.return_messages)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentBufferOptions(BufferOptions):
    """The options of an agent memory (``AgentTokenBufferMemory``'s): those of
    [`BufferOptions`][eventmem.BufferOptions] with the agent's defaults, and three more.

    ``intermediate_steps_key`` is where ``outputs`` holds the run's steps;
    ``format_as_tools`` formats them as tool messages rather than OpenAI function
    messages; ``prune="pair_safe"`` never leaves a tool/function result without its call.
    ``output_key`` must be a str here.
    """

    max_token_limit: int = 12000
    return_messages: bool = True
    output_key: str | None = "output"
    intermediate_steps_key: str = "intermediate_steps"
    format_as_tools: bool = False
    prune: PruneMode = "langchain"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_str("output_key", self.output_key)
        _check_str("intermediate_steps_key", self.intermediate_steps_key)
        _check_bool("format_as_tools", self.format_as_tools)
        if self.prune not in _PRUNE_MODES:
            raise InvalidInputError(f"prune must be one of {_PRUNE_MODES}, got {self.prune!r}")


SUMMARY_ROLES = ("system", "human", "ai")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SummaryBufferOptions(BufferOptions):
    """The options of a summary buffer (``ConversationSummaryBufferMemory``'s): those of
    [`BufferOptions`][eventmem.BufferOptions], and the summariser's.

    ``llm`` summarises the messages a save prunes: a LangChain model or runnable (it is
    called with ``ainvoke(prompt)``), or a function of the prompt text returning the
    summary, sync (run in a worker thread) or async. ``prompt`` is the template, with
    the variables ``{summary}`` and ``{new_lines}`` (a str, or an f-string LangChain
    ``PromptTemplate``); the default is LangChain's ``SUMMARY_PROMPT``. ``summary_role``
    is the role of the summary message that begins the buffer (LangChain's
    ``summary_message_cls``: ``SystemMessage`` is ``"system"``). ``llm_name`` is how each
    summary event names the model (default: from ``llm``, e.g. ``ChatOpenAI:gpt-4o``).

    Built from those fields, ``template`` is the prompt's text, ``prompt_sha256`` its
    digest and ``recorded_llm`` the model's name, as each summary event records them.
    Tokens are counted by ``model`` / ``token_counter``, as in a token buffer (LangChain
    counts with ``llm.get_num_tokens_from_messages``: for ``ChatOpenAI(model=M)`` give
    ``model=M``).
    """

    llm: Any = None
    prompt: Any = SUMMARY_TEMPLATE
    summary_role: Role = "system"
    llm_name: str | None = None
    template: str = dataclasses.field(init=False, repr=False, compare=False)
    prompt_sha256: str = dataclasses.field(init=False, repr=False, compare=False)
    recorded_llm: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_model(self.llm)
        template = prompt_template(self.prompt)
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "prompt_sha256", prompt_digest(template))
        if self.summary_role not in SUMMARY_ROLES:
            raise InvalidInputError(
                f"summary_role must be one of {SUMMARY_ROLES}, got {self.summary_role!r}"
            )
        name = model_name(self.llm) if self.llm_name is None else self.llm_name
        _check_str("llm_name", name)
        check_text(name, "llm_name")
        if not name:
            raise InvalidInputError("llm_name must not be empty")
        object.__setattr__(self, "recorded_llm", str.__str__(name))


class BufferArgs(TypedDict, total=False):
    """The keyword arguments of ``token_buffer``: the fields of
    [`BufferOptions`][eventmem.BufferOptions], which holds their defaults."""

    max_token_limit: int
    model: str
    token_counter: TokenCounter | Callable[[list[Message]], int] | None
    memory_key: str
    return_messages: bool
    human_prefix: str
    ai_prefix: str
    input_key: str | None
    output_key: str | None


class AgentBufferArgs(BufferArgs, total=False):
    """The keyword arguments of ``agent_token_buffer``: the fields of
    [`AgentBufferOptions`][eventmem.AgentBufferOptions], which holds their defaults."""

    intermediate_steps_key: str
    format_as_tools: bool
    prune: PruneMode


class SummaryBufferArgs(BufferArgs, total=False):
    """The keyword arguments of ``summary_buffer``: the fields of
    [`SummaryBufferOptions`][eventmem.SummaryBufferOptions], which holds their defaults
    (``llm`` has none: it is required)."""

    llm: Any
    prompt: Any
    summary_role: Role
    llm_name: str | None


class Option(Generic[T]):
    """A memory attribute that reads its ``options`` field of the same name; setting it
    builds new options, so the value is checked as when the memory was made."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # the class attribute
        value: T = getattr(obj.options, self._name)
        return value

    def __set__(self, obj: Any, value: T) -> None:
        obj.options = dataclasses.replace(obj.options, **{self._name: value})


class Mirror(Generic[T]):
    """A read-only attribute that is the same attribute of a wrapped object
    (the one named ``wrapped``)."""

    def __init__(self, wrapped: str) -> None:
        self._wrapped = wrapped

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: object, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # the class attribute
        value: T = getattr(getattr(obj, self._wrapped), self._name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        raise AttributeError(f"{self._name} is read-only here; set it on {self._wrapped}")
