"""LangGraph adapter (the ``langgraph`` extra: ``pip install 'eventmem[langgraph]'``).

* [`EventmemSaver`][eventmem.integrations.langgraph.EventmemSaver]: a LangGraph
  checkpointer (``graph.compile(checkpointer=EventmemSaver(store))``) whose every
  ``put`` and ``put_writes`` is an event in the thread's session, hash-chained and
  verifiable like every other event, and whose reads are projections of them. A
  message list is stored as the messages new since its previous version.

The core never imports this package. See ``docs/langgraph.md``.
"""

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "eventmem.integrations.langgraph needs LangGraph's checkpoint package: "
        "pip install 'eventmem[langgraph]'"
    ) from e

from eventmem.integrations.langgraph.saver import EventmemSaver

__all__ = ["EventmemSaver"]
