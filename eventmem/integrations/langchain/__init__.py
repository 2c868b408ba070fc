"""LangChain adapters (the ``langchain`` extra: ``pip install 'eventmem[langchain]'``).

* [`ConversationTokenBufferMemory`][eventmem.integrations.langchain.ConversationTokenBufferMemory]
  and [`AgentTokenBufferMemory`][eventmem.integrations.langchain.AgentTokenBufferMemory]:
  drop-in, durable replacements for LangChain's classes of the same names (real
  langchain-classic memories, for legacy chains and ``AgentExecutor``), taking the same
  parameters plus ``store`` and ``session_id``.
* [`EventSourcedChatMessageHistory`][eventmem.integrations.langchain.EventSourcedChatMessageHistory]
  (a ``BaseChatMessageHistory``) for ``RunnableWithMessageHistory``, showing the
  token-bounded buffer.
* [`to_langchain`][eventmem.integrations.langchain.to_langchain] /
  [`from_langchain`][eventmem.integrations.langchain.from_langchain]: lossless message
  conversion.

The core never imports this package. See ``docs/langchain.md``.
"""

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
    ConversationTokenBufferMemory,
)

__all__ = [
    "AgentTokenBufferMemory",
    "ConversationTokenBufferMemory",
    "EventSourcedChatMessageHistory",
    "counting_for",
    "from_langchain",
    "to_langchain",
]
