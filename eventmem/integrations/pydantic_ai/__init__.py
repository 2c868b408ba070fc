"""pydantic-ai adapters (the ``pydantic-ai`` extra: ``pip install 'eventmem[pydantic-ai]'``).

* [`EventmemHistory`][eventmem.integrations.pydantic_ai.EventmemHistory]: a session's
  message history as pydantic-ai ``ModelMessage`` s: ``save(result.new_messages())``,
  ``load()`` for ``message_history=``, losslessly; optionally token-bounded.
* [`TokenBudget`][eventmem.integrations.pydantic_ai.TokenBudget]: a capability that
  keeps what each model request sends within a token budget, pair-safe, keeping the
  system prompt, and leaves the run's history whole;
  [`token_bounded`][eventmem.integrations.pydantic_ai.token_bounded] is the same as a
  history processor (``ProcessHistory(...)``).
* [`to_eventmem`][eventmem.integrations.pydantic_ai.to_eventmem] /
  [`from_eventmem`][eventmem.integrations.pydantic_ai.from_eventmem]: the conversion.

The core never imports this package. See ``docs/pydantic-ai.md``.
"""

try:
    import pydantic_ai  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "eventmem.integrations.pydantic_ai needs pydantic-ai: pip install 'eventmem[pydantic-ai]'"
    ) from e

from eventmem.integrations.pydantic_ai.convert import METADATA_KEY, from_eventmem, to_eventmem
from eventmem.integrations.pydantic_ai.history import EventmemHistory
from eventmem.integrations.pydantic_ai.processor import (
    TokenBoundedHistory,
    TokenBudget,
    token_bounded,
)

__all__ = [
    "METADATA_KEY",
    "EventmemHistory",
    "TokenBoundedHistory",
    "TokenBudget",
    "from_eventmem",
    "to_eventmem",
    "token_bounded",
]
