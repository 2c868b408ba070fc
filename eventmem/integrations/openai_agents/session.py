"""``EventmemSession``: an OpenAI Agents SDK session on an eventmem history."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from agents.memory import SessionSettings

from eventmem.api import Store
from eventmem.errors import InvalidInputError
from eventmem.integrations.openai_agents.convert import to_item, to_message
from eventmem.messages import Message
from eventmem.tokens import TokenCounter

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

    from eventmem import History

__all__ = ["EventmemSession"]


class EventmemSession:
    """An Agents SDK ``Session`` (pass it as ``Runner.run(..., session=...)``) whose items
    are an eventmem session's history.

    ``store`` is an async [`eventmem.Store`][eventmem.Store] (``await eventmem.open(...)``).
    Each ``add_items`` call is one event in the store's log, holding every item
    verbatim: ``get_items`` returns items equal to those added. ``pop_item`` and
    ``clear_session`` are events too; the log keeps everything, and ``history`` reads it
    back as it was at any earlier version.

    With ``max_tokens``, ``get_items`` returns the newest items that fit in that many
    tokens, counted like ``model`` (or by ``token_counter``), and never a tool result
    without its call: the oldest go first. The bound is applied as items are added and
    what it leaves is stored, so every object on the same session id sees the same
    items. ``None`` (the default) keeps them all, like the SDK's ``SQLiteSession``.
    ``session_settings`` (a ``SessionSettings`` or a dict of its fields) sets the
    default ``limit`` of ``get_items``, as in the SDK's sessions.

    Items must be plain JSON, as the SDK makes them: an item that is not, or is not an
    item at all, raises [`NotSerializableError`][eventmem.NotSerializableError] or
    [`InvalidInputError`][eventmem.InvalidInputError], and nothing of that call is
    written. How each item is counted and paired is described in
    [`to_message`][eventmem.integrations.openai_agents.to_message].
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        store: Store,
        *,
        max_tokens: int | None = None,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise InvalidInputError(
                f"store must be an async eventmem.Store (from eventmem.open), got "
                f"{type(store).__name__}"
            )
        self._history = store.history(
            session_id, max_tokens=max_tokens, model=model, token_counter=token_counter
        )
        self.session_id: str = self._history.session_id
        self.session_settings = _settings(session_settings)

    @property
    def history(self) -> History:
        """The eventmem history behind this session (its view, log and time travel)."""
        return self._history

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first: the newest ``limit`` of them (by default
        ``session_settings.limit``; ``None``: all) within the token bound, if any."""
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise InvalidInputError(f"limit must be an int or None, got {type(limit).__name__}")
        view = await self._history.view()
        if limit is not None and limit >= 0:
            # A negative limit is no limit, as in SQLiteSession (SQLite's LIMIT -1).
            view = view[max(len(view) - limit, 0) :] if limit else []
        return [_item(m) for m in view]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` (one event; none: nothing is written)."""
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise InvalidInputError(f"items must be a list of items, got {type(items).__name__}")
        messages = [to_message(cast(Mapping[str, Any], item)) for item in items]
        if messages:
            await self._history.append(messages)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when there is none."""
        popped = await self._history.pop(1)
        return _item(popped[0]) if popped else None

    async def clear_session(self) -> None:
        """Empty the session (one event: the log keeps what it held)."""
        await self._history.clear()

    def __repr__(self) -> str:
        return f"EventmemSession(session_id={self.session_id!r})"


def _item(message: Message) -> TResponseInputItem:
    return cast("TResponseInputItem", to_item(message))


def _settings(value: SessionSettings | Mapping[str, Any] | None) -> SessionSettings:
    """``value`` as SessionSettings (a dict holds its fields, as the SDK's sessions take)."""
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, Mapping):
        known = {field.name for field in dataclasses.fields(SessionSettings)}
        unknown = sorted(str(key) for key in value if key not in known)
        if unknown:  # SessionSettings itself would ignore them
            raise InvalidInputError(f"session_settings has no {', '.join(unknown)}")
        try:
            return SessionSettings(**value)
        except (TypeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            raise InvalidInputError(f"session_settings: {e}") from None
    raise InvalidInputError(
        f"session_settings must be a SessionSettings or a dict, got {type(value).__name__}"
    )
