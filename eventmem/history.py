"""The general history: any messages, a token-bounded view, pop and clear as events.

[`History`][eventmem.History] is what an agent framework's memory hook calls: it
appends any sequence of messages (system, developer, human, ai with tool calls, tool,
function; text or content parts) as one event, pops the newest ones and clears with
events of their own, and loads the view the model sees: the messages since the last
clear, pruned oldest first to ``max_tokens``, by the same fold the LangChain-shaped
memories use. The log keeps everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from eventmem import _tracing
from eventmem._options import SUMMARY_ROLES
from eventmem._summarizer import NO_PROMPT_SHA256, call_summarize, check_summarize, model_name
from eventmem._time_travel import fold_to
from eventmem.errors import ConcurrencyError, InvalidInputError
from eventmem.events import PruneMode
from eventmem.memory import _check_version, count_all
from eventmem.messages import Message, Role, check_text, from_langchain, from_openai
from eventmem.rules import check_limit, check_save_chars
from eventmem.store.base import AppendRequest, SummaryText
from eventmem.tokens import TokenCounter, resolve_counter

if TYPE_CHECKING:
    from eventmem.api import Store

__all__ = ["History", "HistoryArgs", "HistoryOptions", "as_message"]

_PRUNE_MODES = ("pair_safe", "langchain")
_ATTEMPTS = 5  # plans of a summarised append that other writes may get ahead of


@dataclasses.dataclass(frozen=True, kw_only=True)
class HistoryOptions:
    """How a [`History`][eventmem.History] counts and prunes its view, checked when built.

    ``max_tokens`` bounds the view's tokens (``None``: no bound, the view is every
    message since the last clear), counted like ``ChatOpenAI(model=model)`` unless
    ``token_counter`` counts. ``prune="pair_safe"`` (the default) never leaves a tool or
    function result in the view without the call it answers; ``"langchain"`` prunes as
    ``ConversationTokenBufferMemory`` does, message by message. ``keep_system`` pins a
    system or developer message that begins the view (appended to an empty view):
    pruning passes over it, as ``trim_messages(include_system=True)`` keeps it. An append
    with ``keep_system=False`` gives the pin up: a pinned message that pruning had passed
    over (that only the pin kept) leaves the view then.

    ``summarize`` replaces what pruning drops with a running summary instead of losing
    it: ``summarize(summary, pruned)`` (sync or async; a blocking one runs off the event
    loop) gets the summary so far (``""`` at first) and the messages an append prunes,
    oldest first, and returns the new summary. It needs ``max_tokens``. Each summary is a
    [`SummaryRecorded`][eventmem.SummaryRecorded] written with its append, naming the
    function (``summarizer_name``, default its qualified name) and the pruned range;
    the view then begins with it, as a message of role ``summary_role``. The summary is
    not counted against ``max_tokens`` (as LangChain's summary buffer does not count its
    own). A pinned system message given up by ``keep_system=False`` leaves unsummarised.
    """

    max_tokens: int | None = None
    model: str = "gpt-4o"
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None
    prune: PruneMode = "pair_safe"
    keep_system: bool = True
    summarize: Callable[[str, list[Message]], str | Awaitable[str]] | None = None
    summary_role: Role = "system"
    summarizer_name: str | None = None
    counter: TokenCounter = dataclasses.field(init=False, repr=False, compare=False)
    recorded_model: str | None = dataclasses.field(init=False, repr=False, compare=False)
    recorded_summarizer: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
                raise InvalidInputError(
                    f"max_tokens must be an int or None, got {type(self.max_tokens).__name__}"
                )
            object.__setattr__(self, "max_tokens", check_limit(self.max_tokens))
        object.__setattr__(self, "counter", resolve_counter(self.model, self.token_counter))
        recorded = str.__str__(self.model) if self.token_counter is None else None
        object.__setattr__(self, "recorded_model", recorded)
        if self.prune not in _PRUNE_MODES:
            raise InvalidInputError(f"prune must be one of {_PRUNE_MODES}, got {self.prune!r}")
        if not isinstance(self.keep_system, bool):
            raise InvalidInputError(
                f"keep_system must be a bool, got {type(self.keep_system).__name__}"
            )
        object.__setattr__(self, "recorded_summarizer", "")
        if self.summarize is not None:
            self._check_summarizing()

    def _check_summarizing(self) -> None:
        check_summarize(self.summarize)
        if self.max_tokens is None:
            raise InvalidInputError(
                "summarize needs max_tokens: without a bound nothing is pruned to summarise"
            )
        if self.summary_role not in SUMMARY_ROLES:
            raise InvalidInputError(
                f"summary_role must be one of {SUMMARY_ROLES}, got {self.summary_role!r}"
            )
        name = model_name(self.summarize) if self.summarizer_name is None else self.summarizer_name
        if not isinstance(name, str) or not name:
            raise InvalidInputError("summarizer_name must be a non-empty str")
        check_text(name, "summarizer_name")
        object.__setattr__(self, "recorded_summarizer", str.__str__(name))


class HistoryArgs(TypedDict, total=False):
    """The keyword arguments of [`Store.history`][eventmem.Store.history]: the fields of
    [`HistoryOptions`][eventmem.HistoryOptions], which holds their defaults."""

    max_tokens: int | None
    model: str
    token_counter: TokenCounter | Callable[[list[Message]], int] | None
    prune: PruneMode
    keep_system: bool
    summarize: Callable[[str, list[Message]], str | Awaitable[str]] | None
    summary_role: Role
    summarizer_name: str | None


def as_message(message: Any) -> Message:
    """A [`Message`][eventmem.Message] as given, a chat-completions dict
    ([`from_openai`][eventmem.from_openai]), or a LangChain message
    ([`from_langchain`][eventmem.from_langchain])."""
    if isinstance(message, Message):
        return message
    if isinstance(message, Mapping):
        return from_openai(message)
    return from_langchain(message)


class History:
    """A session's general history and its token-bounded view. Get one with
    [`Store.history`][eventmem.Store.history]; creating it writes nothing."""

    def __init__(self, store: Store, session_id: str, options: HistoryOptions) -> None:
        self._store = store
        self.session_id = session_id
        self.options = options

    @property
    def max_tokens(self) -> int | None:
        """The bound on the view's tokens (``None``: unbounded)."""
        return self.options.max_tokens

    @property
    def counter(self) -> TokenCounter:
        """The token counter in force."""
        return self.options.counter

    @_tracing.save("append")
    async def append(self, messages: Iterable[Any], *, expected_version: int | None = None) -> int:
        """Append ``messages`` as one event (all of them or none), then prune the view;
        return the session's version.

        Each message is a [`Message`][eventmem.Message], a chat-completions dict or a
        LangChain message (see [`as_message`][eventmem.history.as_message]); all are
        converted and checked before anything is written. An empty list writes nothing.
        ``expected_version`` refuses the write with `ConcurrencyError` unless the
        session is at that version.
        """
        if isinstance(messages, (str, bytes, Mapping, Message)) or not isinstance(
            messages, Iterable
        ):
            raise InvalidInputError(
                f"append takes a list of messages, not a {type(messages).__name__}"
            )
        converted = tuple(as_message(m) for m in messages)
        backend = self._store._backend
        if not converted:
            version = await backend.version(self.session_id)
            if _tracing.ON:
                await _tracing.wrote(backend, self.session_id, version)
            return version
        check_save_chars(sum(len(m.text) for m in converted), backend.max_save_bytes, "the append")
        options = self.options
        tokens = await count_all(options.counter, converted)
        request = AppendRequest(
            messages=converted,
            counter=options.counter,
            max_tokens=options.max_tokens,
            model=options.recorded_model,
            prune=options.prune,
            keep_system=options.keep_system,
            expected_version=_check_version(expected_version),
            tokens=tokens,
        )
        if options.summarize is None:
            position = await backend.append_messages(self.session_id, request)
        else:
            position = await self._append_summarised(request)
        if _tracing.ON:
            await _tracing.wrote(backend, self.session_id, position)
        return position

    async def _append_summarised(self, request: AppendRequest) -> int:
        """The append and, if it prunes, the summary of what it pruned, in one write.
        Planned first (nothing written), the summariser is called outside any
        transaction; an append another write got ahead of meanwhile is planned again
        (unless ``expected_version`` was given)."""
        backend, options = self._store._backend, self.options
        for attempt in range(1, _ATTEMPTS + 1):
            plan = await backend.plan_summary_turn(self.session_id, request)
            summary = None
            if plan.pruned:
                text = await call_summarize(options.summarize, plan.summary, list(plan.pruned))
                summary = SummaryText(text, options.recorded_summarizer, NO_PROMPT_SHA256)
            try:
                return await backend.append_summary_turn(self.session_id, request, plan, summary)
            except ConcurrencyError:
                if request.expected_version is not None or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @_tracing.load
    async def view(self) -> list[Message]:
        """The view the model sees: the visible messages, oldest first (after the running
        summary, when the history summarises)."""
        backend = self._store._backend
        if self.options.summarize is not None:
            version, summary, messages = await backend.load_summary_view(self.session_id)
            if _tracing.ON:
                await _tracing.viewed(backend, self.session_id, messages, version)
            return self._with_summary(summary, messages)
        if _tracing.ON:
            version, messages = await backend.load_view_at(self.session_id)
            await _tracing.viewed(backend, self.session_id, messages, version)
        else:
            messages = await backend.load_view(self.session_id)
        return messages

    @_tracing.save("pop")
    async def pop(self, n: int = 1, *, expected_version: int | None = None) -> list[Message]:
        """Retract the newest ``n`` messages of the view with one event and return them,
        oldest first (fewer if the view holds fewer; none, and nothing written, when it
        is empty). They stay in the log; messages pruned before do not come back."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"n must be an int >= 1, got {n!r}")
        backend = self._store._backend
        position, retracted = await backend.retract(
            self.session_id, n, _check_version(expected_version)
        )
        if _tracing.ON:
            await _tracing.wrote(backend, self.session_id, position)
        return retracted

    @_tracing.save("clear")
    async def clear(self, *, expected_version: int | None = None) -> int:
        """Empty the view with one event (the log keeps everything); return the version."""
        backend = self._store._backend
        position = await backend.append_clear(self.session_id, _check_version(expected_version))
        if _tracing.ON:
            await _tracing.wrote(backend, self.session_id, position)
        return position

    async def messages(self, *, as_of: int | None = None) -> list[Message]:
        """The view now, or exactly as it was right after position ``as_of`` (with the
        summary then in force first, when the history summarises)."""
        if self.options.summarize is None:
            return await self._store.messages(self.session_id, as_of=as_of)
        if as_of is None:
            return await self.view()
        buffer = await fold_to(self._store._backend, self.session_id, as_of)
        return self._with_summary(buffer.summary, buffer.messages)

    async def summary(self) -> str:
        """The running summary in force (``""``: none yet, or since the last clear)."""
        return (await self._store._backend.load_summary_view(self.session_id))[1]

    def _with_summary(self, summary: str, messages: list[Message]) -> list[Message]:
        if not summary:
            return messages
        return [Message(role=self.options.summary_role, content=summary), *messages]

    async def version(self) -> int:
        """The session's version: the position of its last event (0: none yet)."""
        return await self._store._backend.version(self.session_id)

    def __repr__(self) -> str:
        return f"<eventmem.History {self.session_id!r} max_tokens={self.max_tokens}>"
