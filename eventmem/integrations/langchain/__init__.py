"""LangChain adapters (the ``langchain`` extra: ``pip install 'eventmem[langchain]'``).

* [`ConversationTokenBufferMemory`][eventmem.integrations.langchain.ConversationTokenBufferMemory]
  and [`AgentTokenBufferMemory`][eventmem.integrations.langchain.AgentTokenBufferMemory]:
  drop-in, durable replacements for LangChain's classes of the same names (real
  langchain-classic memories, for legacy chains and ``AgentExecutor``), taking the same
  parameters plus ``store`` and ``session_id``;
  [`ConversationSummaryBufferMemory`][eventmem.integrations.langchain.ConversationSummaryBufferMemory]
  likewise, each summary an event of the session.
* [`EventSourcedChatMessageHistory`][eventmem.integrations.langchain.EventSourcedChatMessageHistory]
  (a ``BaseChatMessageHistory``) for ``RunnableWithMessageHistory``, showing the
  token-bounded buffer.
* [`EventmemMiddleware`][eventmem.integrations.langchain.EventmemMiddleware]: middleware
  for LangChain 1.x agents (``create_agent``): every message of a run recorded once in
  a session, and the model handed the session's token-bounded view. Imported on first
  use (it needs ``langchain`` 1.x, which the extra installs).
* [`to_langchain`][eventmem.integrations.langchain.to_langchain] /
  [`from_langchain`][eventmem.integrations.langchain.from_langchain]: lossless message
  conversion.

The core never imports this package. See ``docs/langchain.md``.
"""

from typing import TYPE_CHECKING, Any

try:
    import langchain_classic  # noqa: F401
    import langchain_core  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "eventmem.integrations.langchain needs langchain-core and langchain-classic: "
        "pip install 'eventmem[langchain]'"
    ) from e

from eventmem.integrations.langchain.convert import from_langchain, to_langchain
from eventmem.integrations.langchain.counting import counting_for
from eventmem.integrations.langchain.history import EventSourcedChatMessageHistory
from eventmem.integrations.langchain.memory import (
    AgentTokenBufferMemory,
    ConversationSummaryBufferMemory,
    ConversationTokenBufferMemory,
)

if TYPE_CHECKING:
    from eventmem.integrations.langchain.middleware import EventmemMiddleware

__all__ = [
    "AgentTokenBufferMemory",
    "ConversationSummaryBufferMemory",
    "ConversationTokenBufferMemory",
    "EventSourcedChatMessageHistory",
    "EventmemMiddleware",
    "counting_for",
    "from_langchain",
    "to_langchain",
]


def __getattr__(name: str) -> Any:
    # The agent middleware needs langchain 1.x (and langgraph), which the memories do not.
    if name == "EventmemMiddleware":
        try:
            from eventmem.integrations.langchain.middleware import EventmemMiddleware
        except ImportError as e:  # pragma: no cover - exercised only without langchain
            raise ImportError(
                "EventmemMiddleware needs langchain 1.x: pip install 'eventmem[langchain]'"
            ) from e
        return EventmemMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
