"""Time travel: a session's buffer (and running summary) as it was right after a
position, folded from its events by the same projection the live path applies."""

from __future__ import annotations

from eventmem.errors import CorruptDatabaseError, InvalidInputError
from eventmem.events import Event
from eventmem.projection import MemoryBuffer, fold
from eventmem.store.base import Backend

__all__ = ["EVENT_PAGE", "fold_to"]

EVENT_PAGE = 500  # events read per call


async def fold_to(backend: Backend, session_id: str, as_of: object) -> MemoryBuffer:
    """The session's buffer right after position ``as_of`` (its history read up a fork's
    line). Raises `InvalidInputError` unless ``as_of`` is a position the session has."""
    if isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0:
        raise InvalidInputError(f"as_of must be a position (an int >= 0), got {as_of!r}")
    version = await backend.version(session_id)
    if as_of > version:
        raise InvalidInputError(
            f"session {session_id!r} has {version} events; as_of={as_of} is in its future"
        )
    events: list[Event] = []
    while len(events) < as_of:
        page = await backend.read_events(
            session_id, len(events), min(EVENT_PAGE, as_of - len(events))
        )
        if not page:
            raise CorruptDatabaseError(
                f"session {session_id!r} has {version} events but its log ends at "
                f"{len(events)}; run verify"
            )
        events.extend(e.data for e in page)
    return fold(events)
