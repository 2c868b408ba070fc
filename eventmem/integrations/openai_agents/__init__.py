"""OpenAI Agents SDK adapter (the ``openai-agents`` extra:
``pip install 'eventmem[openai-agents]'``).

* [`EventmemSession`][eventmem.integrations.openai_agents.EventmemSession]: a ``Session``
  for ``Runner.run(..., session=...)`` whose items are kept in an eventmem history,
  token-bounded if asked, with every change an event in the store's log.
* [`to_message`][eventmem.integrations.openai_agents.to_message] /
  [`to_item`][eventmem.integrations.openai_agents.to_item]: one Responses-API item to
  one eventmem message and back, losslessly.

The core never imports this package. See ``docs/openai-agents.md``.
"""

try:
    import agents  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "eventmem.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'eventmem[openai-agents]'"
    ) from e

from eventmem.integrations.openai_agents.convert import to_item, to_message
from eventmem.integrations.openai_agents.session import EventmemSession

__all__ = ["EventmemSession", "to_item", "to_message"]
