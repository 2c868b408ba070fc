"""The summary buffer: LangChain's ``ConversationSummaryBufferMemory``, event-sourced.

A save appends ``Human(input)`` and ``AI(output)``; if the buffer's tokens then exceed
``max_token_limit``, the oldest messages leave it, oldest first, until it fits, and the
model writes a new running summary from the one in force and the lines that left
(LangChain's ``predict_new_summary``, with its prompt). The buffer loads as the summary
(a system message, unless ``summary_role`` says otherwise) followed by the messages.

Every summary is an event ([`SummaryRecorded`][eventmem.SummaryRecorded]) naming what
it summarises (seqs, positions and chain hashes) and what made it (model, prompt
digest); the summarised messages stay in the log. The model is called between reading
the session and writing, never inside a transaction; the write is refused, and the save
planned again, if another save got in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from eventmem import _tracing
from eventmem._options import Option, SummaryBufferOptions
from eventmem._summarizer import call_model
from eventmem._time_travel import fold_to
from eventmem.errors import ConcurrencyError
from eventmem.memory import _check_version, _TokenBuffer, count_all
from eventmem.messages import Message, Role, buffer_string
from eventmem.store.base import Backend, SummaryText, TurnRequest

__all__ = ["SummaryBufferMemory"]

# How many times a save is planned again when another write to its session got in
# between its plan and its write (each time the model is asked again).
_ATTEMPTS = 5


class SummaryBufferMemory(_TokenBuffer):
    """Token-bounded memory with a running summary of what was pruned: LangChain's
    ``ConversationSummaryBufferMemory``.

    Created by [`Store.summary_buffer`][eventmem.Store.summary_buffer]. The buffer, the
    loaded variables and ``moving_summary_buffer`` equal LangChain's class after every
    save; unlike it, ``asave_context`` and ``save_context`` prune alike, the summary
    survives restarts (reopening never calls the model), and a model that raises leaves
    nothing written ([`SummarizerError`][eventmem.SummarizerError]).
    """

    options: SummaryBufferOptions
    llm = Option[Any]()
    prompt = Option[Any]()
    summary_role = Option[Role]()

    def __init__(self, backend: Backend, session_id: str, options: SummaryBufferOptions) -> None:
        super().__init__(backend, session_id, options)
        # Steps recorded live by agent memories of this session are never this save's.
        self.run_id = uuid.uuid4().hex
        # The summary in force at a version this memory saw (its own save's, or a
        # load's): a version names one log, so a load at that version needs only the view.
        self._known: tuple[int, str] | None = None

    async def _load(self) -> tuple[int, str, list[Message]]:
        known = self._known
        if known is not None:
            version, messages = await self._backend.load_view_at(self.session_id)
            if version == known[0]:
                return version, known[1], messages
        version, summary, messages = await self._backend.load_summary_view(self.session_id)
        self._known = (version, summary)
        return version, summary, messages

    @_tracing.save("clear")
    async def aclear(self, *, expected_version: int | None = None) -> None:
        """Empty the buffer and end the summary (one event; the log keeps everything).

        With ``expected_version``, raise [`ConcurrencyError`][eventmem.ConcurrencyError]
        (and write nothing) unless the session is still at that version.
        """
        position = await self._backend.append_clear(
            self.session_id, _check_version(expected_version)
        )
        self._known = (position, "")
        if _tracing.ON:
            await _tracing.wrote(self._backend, self.session_id, position)

    def _with_summary(self, summary: str, messages: list[Message]) -> list[Message]:
        if not summary:
            return messages
        return [Message(role=self.summary_role, content=summary), *messages]

    @_tracing.load
    async def amessages(self, *, as_of: int | None = None) -> list[Message]:
        """The buffer as messages: the summary (if there is one), then the messages; now,
        or exactly as they were right after position ``as_of``."""
        if as_of is not None:
            buffer = await fold_to(self._backend, self.session_id, as_of)
            return self._with_summary(buffer.summary, buffer.messages)
        version, summary, messages = await self._load()
        if _tracing.ON:
            await _tracing.viewed(self._backend, self.session_id, messages, version)
        return self._with_summary(summary, messages)

    async def achat_messages(self) -> list[Message]:
        """The buffer's messages without the summary: the session's view (LangChain's
        ``chat_memory.messages``)."""
        return (await self._load())[2]

    async def amoving_summary_buffer(self) -> str:
        """The running summary (LangChain's ``moving_summary_buffer``; ``""``: none)."""
        return (await self._load())[1]

    async def abuffer(self) -> str | list[Message]:
        """The buffer as ``aload_memory_variables`` returns it (LangChain's ``abuffer``)."""
        buffer: str | list[Message] = (await self.aload_memory_variables({}))[self.memory_key]
        return buffer

    async def apredict_new_summary(self, messages: list[Message], existing_summary: str) -> str:
        """Ask the model for the summary of ``existing_summary`` followed by
        ``messages`` (LangChain's ``apredict_new_summary``). Writes nothing."""
        new_lines = buffer_string(messages, self.human_prefix, self.ai_prefix)
        prompt = self.options.template.format(summary=existing_summary, new_lines=new_lines)
        return await call_model(self.llm, prompt)

    @_tracing.save("save_context")
    async def asave_context(
        self,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Append this exchange; if the buffer is then over the limit, prune it and
        record the new summary of what left, in the same write.

        With ``expected_version``, raise [`ConcurrencyError`][eventmem.ConcurrencyError]
        (and write nothing, calling no model) unless the session is still at that
        version. Without it, a save that another write got ahead of (while the model
        was summarising) is planned again.
        """
        messages = self._exchange(inputs, outputs)
        options = self.options
        expected = _check_version(expected_version)
        turn = TurnRequest(
            messages=messages,
            counter=options.counter,
            max_token_limit=options.max_token_limit,
            model=options.recorded_model,
            expected_version=expected,
            tokens=await count_all(options.counter, messages),
            run=self.run_id,
        )
        for attempt in range(1, _ATTEMPTS + 1):
            plan = await self._backend.plan_summary_turn(self.session_id, turn)
            summary = None
            if plan.pruned:
                text = await self.apredict_new_summary(list(plan.pruned), plan.summary)
                summary = SummaryText(text, options.recorded_llm, options.prompt_sha256)
            try:
                position = await self._backend.append_summary_turn(
                    self.session_id, turn, plan, summary
                )
            except ConcurrencyError:
                if expected is not None or attempt == _ATTEMPTS:
                    raise
                continue
            self._known = (position, plan.summary if summary is None else summary.summary)
            if _tracing.ON:
                await _tracing.wrote(self._backend, self.session_id, position)
            return

    async def aload_memory_variables(
        self, inputs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``{memory_key: buffer}``: the summary then the messages, as a str (LangChain's
        ``get_buffer_string``) or a list of [`Message`][eventmem.Message] if
        ``return_messages``."""
        return await super().aload_memory_variables(inputs)
