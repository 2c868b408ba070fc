"""A pydantic-ai message history kept in an eventmem session."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic_ai.messages import ModelMessage

from eventmem.api import Store
from eventmem.errors import InvalidInputError
from eventmem.events import MemoryCleared, MessagesAppended
from eventmem.integrations.pydantic_ai.convert import METADATA_KEY, from_eventmem, to_eventmem
from eventmem.integrations.pydantic_ai.processor import TokenBoundedHistory, TokenBudget
from eventmem.messages import Message
from eventmem.tokens import TokenCounter

__all__ = ["EventmemHistory"]


class EventmemHistory:
    """The message history of one eventmem session, as pydantic-ai's ``ModelMessage`` s.

    ```
    history = EventmemHistory("user-42", store)
    result = await agent.run(prompt, message_history=await history.load())
    await history.save(result.new_messages())
    ```

    ``store`` is an async [`Store`][eventmem.Store] (``await eventmem.open(path)``).
    Each [`save`][eventmem.integrations.pydantic_ai.EventmemHistory.save] is one
    atomic event; [`load`][eventmem.integrations.pydantic_ai.EventmemHistory.load]
    returns what was saved since the last
    [`clear`][eventmem.integrations.pydantic_ai.EventmemHistory.clear], equal to it. The
    log keeps every message saved (``store.events(session_id)``).

    With ``max_tokens``, each save prunes the session's view, and ``load`` returns it:
    counted like ``ChatOpenAI(model=model)`` (or by ``token_counter``), pruned oldest
    first, pair-safe (no tool return without its call), keeping the system prompt that
    begins the history, and starting with a request at a user prompt (responses and
    tool returns left at the front of the view by pruning are dropped; if that would
    leave no user prompt, the latest one before the view is kept instead). A request
    some of whose parts were pruned comes back with the others. The same bound for the
    history inside a run: [`budget`][eventmem.integrations.pydantic_ai.EventmemHistory.budget]
    (a capability) or [`processor`][eventmem.integrations.pydantic_ai.EventmemHistory.processor]
    (a history processor).
    """

    def __init__(
        self,
        session_id: str,
        store: Store,
        *,
        max_tokens: int | None = None,
        model: str = "gpt-4o",
        token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise InvalidInputError(
                "store must be an eventmem.Store (from await eventmem.open(path)), "
                f"got {type(store).__name__}"
            )
        self._store = store
        self.history = store.history(
            session_id,
            max_tokens=max_tokens,
            model=model,
            token_counter=token_counter,
            prune="pair_safe",
            keep_system=True,
        )
        """The core [`History`][eventmem.History] of the session, in eventmem messages."""
        self._model, self._token_counter = model, token_counter

    @property
    def max_tokens(self) -> int | None:
        """The bound on the session's view (``None``: none)."""
        return self.history.max_tokens

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self.history.session_id

    @property
    def budget(self) -> TokenBudget:
        """A [`TokenBudget`][eventmem.integrations.pydantic_ai.TokenBudget] capability
        with this history's bound and counting, for ``Agent(capabilities=[history.budget])``:
        each request sends at most ``max_tokens``, the run's own history stays whole.
        Without ``max_tokens``: [`InvalidInputError`][eventmem.InvalidInputError]."""
        return TokenBudget(self._bound(), model=self._model, token_counter=self._token_counter)

    @property
    def processor(self) -> TokenBoundedHistory:
        """A history processor with this history's bound and counting (see
        [`TokenBoundedHistory`][eventmem.integrations.pydantic_ai.TokenBoundedHistory]),
        for ``Agent(capabilities=[ProcessHistory(history.processor)])``.
        Without ``max_tokens``: [`InvalidInputError`][eventmem.InvalidInputError]."""
        return TokenBoundedHistory(
            self._bound(), model=self._model, token_counter=self._token_counter
        )

    def _bound(self) -> int:
        bound = self.max_tokens
        if bound is None:
            raise InvalidInputError(
                "this history has no max_tokens; pass max_tokens= or use TokenBudget(...)"
            )
        return bound

    async def save(self, messages: Sequence[ModelMessage]) -> int:
        """Append ``messages`` (e.g. ``result.new_messages()``) as one event; the
        session's new version. Nothing is written if they cannot be stored
        ([`InvalidInputError`][eventmem.InvalidInputError]) or if there are none."""
        return await self.history.append(to_eventmem(messages))

    async def load(self) -> list[ModelMessage]:
        """The history to pass as ``message_history=``."""
        view = await self.history.view()
        if self.max_tokens is not None:
            view = await self._from_a_request(view)
        return from_eventmem(view)

    async def _from_a_request(self, view: list[Message]) -> list[Message]:
        """``view`` starting, after the system prompt that begins it, at a user prompt:
        what pruning left before the first one (responses, tool returns) goes. With no
        user prompt left (a long tool loop), the latest one before the view stays."""
        first_group = _group(view[0]) if view else None
        pinned = 0
        while (
            pinned < len(view)
            and view[pinned].role == "system"
            and _group(view[pinned]) == first_group
        ):
            pinned += 1
        start = pinned
        while start < len(view) and view[start].role not in ("human", "system"):
            start += 1
        if start < len(view) or pinned == len(view):
            return view[:pinned] + view[start:]
        # Rare (the view holds no user prompt at all), so reading the log here does not
        # make a load cost O(history) in general.
        question = await self._latest_question(view[pinned])
        if question is None:
            return view[:pinned]
        return [*view[:pinned], question, *view[pinned:]]

    async def _latest_question(self, first: Message) -> Message | None:
        """The newest ``human`` message appended since the last clear and before
        ``first``, from the log."""
        latest: Message | None = None
        async for event in self._store.events(self.session_id):
            if isinstance(event.data, MemoryCleared):
                latest = None
            elif isinstance(event.data, MessagesAppended):
                for message in event.data.messages:
                    if message == first:
                        return latest
                    if message.role == "human":
                        latest = message
        return None

    async def messages(self, as_of: int | None = None) -> list[ModelMessage]:
        """The view as it was right after version ``as_of`` (a version
        [`save`][eventmem.integrations.pydantic_ai.EventmemHistory.save] returned), or now:
        time travel. Unlike ``load``, the view as stored, pruning's leftovers included."""
        return from_eventmem(await self.history.messages(as_of=as_of))

    async def clear(self) -> int:
        """Empty the history (the log keeps everything); the session's new version."""
        return await self.history.clear()

    def __repr__(self) -> str:
        return f"EventmemHistory({self.session_id!r}, max_tokens={self.max_tokens})"


def _group(message: Message) -> object:
    metadata = message.metadata
    extra = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return extra.get("group") if isinstance(extra, dict) else None
