"""PURE: would a provider accept this view? The rules eventmem checks, per provider.

A view that breaks one of these is refused by the provider's API with a 400 (the quoted
messages are the APIs' own), so ``verify(provider=...)`` replays every past view of every
session and names the first position of each run of views that would have been refused.

``openai`` (Chat Completions):

* a tool result follows the assistant message that made its call (only other results of
  that message between them): "messages with role 'tool' must be a response to a
  preceding message with 'tool_calls'";
* every call of an assistant message has its result right after it: "An assistant
  message with 'tool_calls' must be followed by tool messages responding to each
  'tool_call_id'" (also when the call ends the view).

``anthropic`` (Messages, as LangChain's ``ChatAnthropic`` sends a view): both rules above
(a ``tool_use`` needs its ``tool_result`` in the next turn), and

* system (and developer) messages only at the start, where they become the system prompt;
* the first other message is the user's: "first message must use the "user" role";
* no human or assistant message is empty (no text, no parts, no tool calls): "text content
  blocks must be non-empty";
* no function message (OpenAI's legacy function calling has no Anthropic form).

Function messages are not checked for ``openai``. Nothing here judges content parts,
sizes or token limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from eventmem.messages import Message

__all__ = ["PROVIDERS", "Provider", "rejection"]

Provider = Literal["openai", "anthropic"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic")


def _tool_pairing(view: Sequence[Message]) -> str | None:
    for i, message in enumerate(view):
        if message.role == "tool":
            j = i - 1
            while j >= 0 and view[j].role == "tool":
                j -= 1
            caller = view[j] if j >= 0 else None
            ids = {call.id for call in caller.tool_calls} if caller is not None else set()
            if caller is None or caller.role != "ai" or message.tool_call_id not in ids:
                return (
                    f"message {i + 1} is a tool result (call {message.tool_call_id!r}) that "
                    "does not follow the assistant message that made the call"
                )
        elif message.role == "ai" and message.tool_calls:
            answered = set()
            j = i + 1
            while j < len(view) and view[j].role == "tool":
                answered.add(view[j].tool_call_id)
                j += 1
            missing = [call.id for call in message.tool_calls if call.id not in answered]
            if missing:
                return (
                    f"message {i + 1} makes tool call(s) {', '.join(map(repr, missing))} with "
                    "no result right after it"
                )
    return None


def _anthropic_shape(view: Sequence[Message]) -> str | None:
    start = 0
    while start < len(view) and view[start].role in ("system", "developer"):
        start += 1
    for i, message in enumerate(view[start:], start=start):
        if message.role in ("system", "developer"):
            return f"message {i + 1} is a system message after the conversation started"
        if message.role == "function":
            return f"message {i + 1} is a function message, which has no Anthropic form"
        if message.role in ("human", "ai") and not message.tool_calls and _empty(message):
            return f"message {i + 1} is empty (no text, no content parts, no tool calls)"
    # tool results travel in the user's turn (as tool_result blocks)
    if start < len(view) and view[start].role not in ("human", "tool"):
        return f"the first message after the system prompt (message {start + 1}) is not the user's"
    return None


def _empty(message: Message) -> bool:
    content = message.content
    if isinstance(content, str):
        return not content.strip()
    return not content


def rejection(view: Sequence[Message], provider: Provider) -> str | None:
    """Why ``provider`` would refuse ``view`` (the first rule it breaks), or None."""
    if provider == "anthropic":
        found = _anthropic_shape(view)
        if found is not None:
            return found
    return _tool_pairing(view)
