"""Keeping the history a pydantic-ai model is sent within a token budget.

[`TokenBudget`][eventmem.integrations.pydantic_ai.TokenBudget] is a capability that
trims what each model request sends and leaves the run's own history whole, so
``result.new_messages()`` still holds every message of the run;
[`token_bounded`][eventmem.integrations.pydantic_ai.token_bounded] is the same trim as a
history processor (``ProcessHistory(...)``), which pydantic-ai also applies to the run's
history.

Both work on the eventmem messages a history maps to (one per request part, one per
response; see ``convert``), so it trims per part: a request may lose its older parts and
keep the newer ones. The rules, in order:

1. The system prompt parts that begin the history stay (``keep_system``).
2. The newest request, which is about to be sent, stays whole, with the response whose
   tool calls it answers.
3. Older messages go, oldest first, while the history is over ``max_tokens``.
4. A tool return whose call went goes too (pair safety, as eventmem's ``pair_safe``).
5. After the system prompt the history starts with a request, at a user prompt (or
   another system prompt): leading responses and orphaned tool returns go. If no user
   prompt is left before the newest exchange (a long tool loop), the latest user prompt
   before the cut stays instead, so the model still sees the question it works on.

Only 2 and 5 (and 1) may keep the history over budget: they keep what must be sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.tools import RunContext

from eventmem.errors import InvalidInputError
from eventmem.integrations.pydantic_ai.convert import Entry, check_model_messages, entries
from eventmem.messages import Message
from eventmem.projection import orphaned_prefix
from eventmem.rules import check_limit
from eventmem.tokens import TokenCounter, count_each, resolve_counter

__all__ = ["TokenBoundedHistory", "TokenBudget", "token_bounded"]


class TokenBoundedHistory:
    """A history processor: called with the run's messages, returns them trimmed to
    ``max_tokens`` (see the module's rules). Pass it to pydantic-ai as
    ``ProcessHistory(processor)`` in ``Agent(capabilities=[...])``; pydantic-ai then
    replaces the run's history with what it returns, so ``result.new_messages()`` lacks
    what was trimmed. [`TokenBudget`][eventmem.integrations.pydantic_ai.TokenBudget]
    trims the requests only.

    Messages kept whole are the very objects given (pydantic-ai tracks the newest
    request by identity); a request that loses parts is a copy with the rest.
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
        keep_system: bool = True,
    ) -> None:
        self.max_tokens = check_limit(max_tokens)
        self.counter = resolve_counter(model, token_counter)
        if not isinstance(keep_system, bool):
            raise InvalidInputError(f"keep_system must be a bool, got {type(keep_system).__name__}")
        self.keep_system = keep_system

    async def __call__(self, messages: list[ModelMessage]) -> list[ModelMessage]:
        """The trimmed history (async, so pydantic-ai calls it on its own loop)."""
        return self.trim(messages)

    def trim(self, messages: Sequence[ModelMessage]) -> list[ModelMessage]:
        """The trimmed history, from blocking code."""
        given = check_model_messages(messages)
        found = entries(given)
        keep = _kept(
            found,
            count_each(self.counter, [e.message for e in found]),
            self.max_tokens - self.counter.overhead,
            self.keep_system,
            given,
        )
        return rebuild(given, found, keep)

    def __repr__(self) -> str:
        return f"TokenBoundedHistory(max_tokens={self.max_tokens}, counter={self.counter.name!r})"


@dataclasses.dataclass
class TokenBudget(AbstractCapability[Any]):
    """A capability trimming the history each model request sends to ``max_tokens``
    (the rules of [`TokenBoundedHistory`][eventmem.integrations.pydantic_ai.TokenBoundedHistory]),
    leaving the run's history whole: ``Agent(capabilities=[TokenBudget(500)])``.
    ``result.new_messages()`` keeps everything the run produced, ready to save."""

    max_tokens: int
    _: dataclasses.KW_ONLY
    model: str = "gpt-4o"
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None
    keep_system: bool = True

    def __post_init__(self) -> None:
        self._bound = TokenBoundedHistory(
            self.max_tokens,
            model=self.model,
            token_counter=self.token_counter,
            keep_system=self.keep_system,
        )

    @classmethod
    def get_serialization_name(cls) -> str | None:
        """Not for agent specs (it may hold a counting function)."""
        return None

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        """Send the trimmed history. A new list: pydantic-ai keeps it to this request."""
        request_context.messages = self._bound.trim(request_context.messages)
        return request_context


def token_bounded(
    max_tokens: int,
    *,
    model: str = "gpt-4o",
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    keep_system: bool = True,
) -> TokenBoundedHistory:
    """A history processor keeping a run's history within ``max_tokens``, counted like
    ``ChatOpenAI(model=model)`` (or by ``token_counter``), pair-safe, keeping the system
    prompt. See [`TokenBoundedHistory`][eventmem.integrations.pydantic_ai.TokenBoundedHistory]."""
    return TokenBoundedHistory(
        max_tokens, model=model, token_counter=token_counter, keep_system=keep_system
    )


def _is_opener(entry: Entry) -> bool:
    return entry.message.role in ("human", "system")


def _pinned(found: list[Entry], keep_system: bool, given: Sequence[ModelMessage]) -> int:
    """How many leading entries are the first request's system prompt."""
    pinned = 0
    if keep_system and given and isinstance(given[0], ModelRequest):
        while (
            pinned < len(found)
            and found[pinned].index == 0
            and found[pinned].message.role == "system"
        ):
            pinned += 1
    return pinned


def _floor(found: list[Entry], given: Sequence[ModelMessage]) -> int:
    """The first entry of the tail that must be sent: the newest message, and the
    response holding the calls its tool returns answer."""
    last = found[-1].index
    floor = next(i for i, e in enumerate(found) if e.index == last)
    answered = {e.message.tool_call_id for e in found[floor:] if e.message.role == "tool"}
    if isinstance(given[last], ModelRequest) and answered:
        for i in range(floor - 1, -1, -1):
            message = found[i].message
            ids = {c.id for c in message.tool_calls} | {c.id for c in message.invalid_tool_calls}
            if message.role == "ai" and ids & answered:
                floor = i
                answered -= ids
                if not answered:
                    break
    return floor


def _kept(
    found: list[Entry],
    tokens: tuple[int, ...],
    limit: int,
    keep_system: bool,
    given: Sequence[ModelMessage],
) -> list[int]:
    """Indices (into ``found``) of the entries the trimmed history keeps."""
    if not found:
        return []
    pinned = _pinned(found, keep_system, given)
    if pinned == len(found):  # nothing but the system prompt
        return list(range(pinned))
    floor = max(_floor(found, given), pinned)
    fixed = sum(tokens[:pinned])
    start = _to_opener(found, _cut(tokens, pinned, floor, fixed, limit), floor)
    if _is_opener(found[start]):
        return [*range(pinned), *range(start, len(found))]
    # No user prompt between the cut and the newest exchange: keep the latest one before
    # the cut, and make room for it.
    latest = next((i for i in range(start - 1, pinned - 1, -1) if _is_opener(found[i])), None)
    if latest is None:
        return [*range(pinned), *range(start, len(found))]
    start = _pair_safe(found, _cut(tokens, start, floor, fixed + tokens[latest], limit), floor)
    return [*range(pinned), latest, *range(start, len(found))]


def _to_opener(found: list[Entry], start: int, floor: int) -> int:
    """``start`` moved forward, never past ``floor``, past cut tool returns and then to a
    user prompt (or system prompt), as long as one is found."""
    while True:
        start = _pair_safe(found, start, floor)
        if _is_opener(found[start]):
            return start
        opener = next((i for i in range(start, floor + 1) if _is_opener(found[i])), None)
        if opener is None:
            return start
        start = opener


def _cut(tokens: tuple[int, ...], start: int, floor: int, fixed: int, limit: int) -> int:
    """The oldest entry kept when entries go from ``start`` on, oldest first, while the
    total is over ``limit`` (never past ``floor``)."""
    total = fixed + sum(tokens[start:])
    while total > limit and start < floor:
        total -= tokens[start]
        start += 1
    return start


def _pair_safe(found: list[Entry], start: int, floor: int) -> int:
    """``start`` moved past tool returns whose calls are cut (never past ``floor``)."""
    return min(start + orphaned_prefix([e.message for e in found[start:floor]]), floor)


def rebuild(
    given: Sequence[ModelMessage], found: list[Entry], keep: list[int]
) -> list[ModelMessage]:
    """The messages the kept entries stand for: whole messages as given, a request some
    of whose parts went as a copy with the others."""
    parts: dict[int, list[int]] = {}
    for i in keep:
        parts.setdefault(found[i].index, []).extend(found[i].parts)
    result: list[ModelMessage] = []
    for index, numbers in parts.items():
        message = given[index]
        if len(numbers) == len(message.parts) or isinstance(message, ModelResponse):
            result.append(message)
        else:
            result.append(
                dataclasses.replace(message, parts=[message.parts[n] for n in sorted(numbers)])
            )
    return result
