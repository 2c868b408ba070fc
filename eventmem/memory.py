"""The memories: LangChain's ``ConversationTokenBufferMemory`` and
``AgentTokenBufferMemory``, event-sourced.

Same parameters, same key rules, same buffers token for token; every save is an event
in the store, and the buffer survives restarts. Unlike LangChain's, ``asave_context``
prunes too, and a save never re-counts the buffer.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import msgspec

from eventmem import _tracing
from eventmem._options import AgentBufferOptions, BufferOptions, Option
from eventmem.errors import InputKeyError, InvalidInputError, MissingKeyError
from eventmem.events import PruneMode
from eventmem.messages import BufferLines, Message
from eventmem.rules import check_save_chars, validate_session_id
from eventmem.steps import format_step, observation_text, split_step, to_action
from eventmem.store.base import Backend, StepRequest, TurnRequest
from eventmem.tokens import OpenAIChatCounter, TokenCounter, count_each

__all__ = ["AgentTokenBufferMemory", "TokenBufferMemory", "validate_session_id"]

# Texts up to this size are counted by the built-in counter right away on the caller's
# thread, where tiktoken (which releases the GIL) overlaps with the database thread's work;
# longer ones, and every text a custom counter counts (it may be slow), go to a worker
# thread so they never stall the event loop.
_COUNT_INLINE_CHARS = 32_768


def count_inline(counter: TokenCounter, messages: tuple[Message, ...]) -> tuple[int, ...] | None:
    """Each message's token count, or None if it is to be counted in a worker thread
    (``count_all``)."""
    if (
        isinstance(counter, OpenAIChatCounter)
        and sum([len(m.text) for m in messages]) <= _COUNT_INLINE_CHARS
    ):
        return count_each(counter, messages)
    return None


async def count_all(counter: TokenCounter, messages: tuple[Message, ...]) -> tuple[int, ...]:
    """Each message's token count."""
    tokens = count_inline(counter, messages)
    if tokens is not None:
        return tokens
    return await anyio.to_thread.run_sync(count_each, counter, messages)


def _check_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"expected_version must be an int >= 0, got {value!r}")
    return value


class _TokenBuffer:
    """What both memories share: configuration, LangChain's key rules, load and clear."""

    options: BufferOptions
    """The memory's options, checked when it was made."""
    max_token_limit = Option[int]()
    memory_key = Option[str]()
    return_messages = Option[bool]()
    human_prefix = Option[str]()
    ai_prefix = Option[str]()
    input_key = Option[str | None]()
    output_key = Option[str | None]()

    def __init__(self, backend: Backend, session_id: str, options: BufferOptions) -> None:
        self._backend = backend
        self.session_id = validate_session_id(session_id)
        self.options = options
        self._lines: BufferLines | None = None  # the buffer string's lines, by message

    @property
    def counter(self) -> TokenCounter:
        """The token counter in force."""
        return self.options.counter

    @property
    def model(self) -> str | None:
        """The model each save records (``None`` when a custom counter counts)."""
        return self.options.recorded_model

    @property
    def memory_variables(self) -> list[str]:
        """The keys ``aload_memory_variables`` returns: ``[memory_key]``."""
        return [self.memory_key]

    def _input_output(
        self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> tuple[str, str]:
        """LangChain's key rules: the one prompt input, and the one (or ``output``) output."""
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(f"inputs must be a dict, got {type(inputs).__name__}")
        if not isinstance(outputs, Mapping):
            raise InvalidInputError(f"outputs must be a dict, got {type(outputs).__name__}")
        options = self.options  # one read: a save's hot path
        if options.input_key is None:
            candidates = [k for k in inputs if k not in (options.memory_key, "stop")]
            if len(candidates) != 1:
                raise InputKeyError(f"One input key expected got {candidates}")
            input_key = candidates[0]
        else:
            input_key = options.input_key
        if options.output_key is None:
            if len(outputs) == 1:
                output_key = next(iter(outputs))
            elif "output" in outputs:
                output_key = "output"
                warnings.warn(
                    f"'{type(self).__name__}' got multiple output keys: {list(outputs)}. "
                    "The default 'output' key is being used. If this is not desired, "
                    "please manually set 'output_key'.",
                    stacklevel=4,
                )
            else:
                raise InputKeyError(
                    f"Got multiple output keys: {list(outputs)}, cannot determine which to "
                    "store in memory. Please set the 'output_key' explicitly."
                )
        else:
            output_key = options.output_key
        return (
            _text(inputs, input_key, "inputs"),
            _text(outputs, output_key, "outputs"),
        )

    def _exchange(
        self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> tuple[Message, Message]:
        human, ai = self._input_output(inputs, outputs)
        # Before the texts are checked, copied or counted: a huge text costs nothing.
        check_save_chars(len(human) + len(ai), self._backend.max_save_bytes)
        return Message(role="human", content=human), Message(role="ai", content=ai)

    @_tracing.load
    async def amessages(self) -> list[Message]:
        """The buffer as messages."""
        if not _tracing.ON:
            return await self._backend.load_view(self.session_id)
        version, messages = await self._backend.load_view_at(self.session_id)
        await _tracing.viewed(self._backend, self.session_id, messages, version)
        return messages

    async def abuffer_as_str(self) -> str:
        """The buffer as LangChain's ``get_buffer_string`` renders it."""
        return self._render(await self.amessages())

    def _render(self, messages: list[Message]) -> str:
        """``buffer_string`` of ``messages``, each line made once per message object:
        a load after a save renders only the new messages (the cached view hands back
        the same objects)."""
        prefixes = (self.human_prefix, self.ai_prefix)
        memo = self._lines
        if memo is None or memo.prefixes != prefixes:
            memo = self._lines = BufferLines(*prefixes)
        return memo.render(messages)

    async def aload_memory_variables(
        self, inputs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``{memory_key: buffer}``: a str, or a list of [`Message`][eventmem.Message] if
        ``return_messages``."""
        messages = await self.amessages()
        if self.return_messages:
            return {self.memory_key: messages}
        return {self.memory_key: self._render(messages)}

    @_tracing.save("clear")
    async def aclear(self, *, expected_version: int | None = None) -> None:
        """Empty the buffer (one event; the cleared messages stay in the log).

        With ``expected_version``, raise [`ConcurrencyError`][eventmem.ConcurrencyError] (and write
        nothing) unless the session is still at that version.
        """
        position = await self._backend.append_clear(
            self.session_id, _check_version(expected_version)
        )
        if _tracing.ON:
            await _tracing.wrote(self._backend, self.session_id, position)

    async def aversion(self) -> int:
        """The session's version: the position of its last event (0 if none)."""
        return await self._backend.version(self.session_id)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, "
            f"max_token_limit={self.max_token_limit}, counter={self.counter.name!r})"
        )


class TokenBufferMemory(_TokenBuffer):
    """Token-bounded conversation memory for one session of a store.

    Created by [`eventmem.Store.token_buffer`][eventmem.Store.token_buffer]; LangChain's
    ``ConversationTokenBufferMemory``. ``save_context`` appends ``Human(input)`` and
    ``AI(output)``; then, while the buffer's token count exceeds ``max_token_limit``, the
    oldest message leaves the buffer (it stays in the log). Loading never prunes.
    """

    @_tracing.save("save_context")
    async def asave_context(
        self,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Append this exchange as one event and prune the buffer to the limit.

        With ``expected_version``, raise [`ConcurrencyError`][eventmem.ConcurrencyError] (and write
        nothing) unless the session is still at that version (optimistic concurrency).
        """
        messages = self._exchange(inputs, outputs)
        options = self.options
        counter = options.counter
        tokens = count_inline(counter, messages)
        if tokens is None:  # long texts: counted in a worker thread
            tokens = await count_all(counter, messages)
        turn = TurnRequest(
            messages=messages,
            counter=counter,
            max_token_limit=options.max_token_limit,
            model=options.recorded_model,
            expected_version=_check_version(expected_version),
            tokens=tokens,
        )
        position = await self._backend.append_turn(self.session_id, turn)
        if _tracing.ON:
            await _tracing.wrote(self._backend, self.session_id, position)


class AgentTokenBufferMemory(_TokenBuffer):
    """Token-bounded agent memory: LangChain's ``AgentTokenBufferMemory``, event-sourced.

    Created by [`Store.agent_token_buffer`][eventmem.Store.agent_token_buffer]. A save
    appends ``Human(input)``, each intermediate step's messages (OpenAI function messages,
    or tool messages with ``format_as_tools``), then ``AI(output)``, and prunes
    oldest-first to the limit. Every step is its own event;
    [`arecord_step`][eventmem.AgentTokenBufferMemory.arecord_step] records one live,
    during the run.
    ``prune="pair_safe"`` never leaves a tool/function result without its call.
    """

    options: AgentBufferOptions
    intermediate_steps_key = Option[str]()
    format_as_tools = Option[bool]()
    prune = Option[PruneMode]()

    def __init__(self, backend: Backend, session_id: str, options: AgentBufferOptions) -> None:
        super().__init__(backend, session_id, options)
        # Identifies this memory's live steps, so a save never adopts steps left behind
        # by another run that died between recording and saving.
        self.run_id = uuid.uuid4().hex

    def _step(self, action: Any, observation: Any) -> StepRequest:
        normalised = to_action(action)
        if self.format_as_tools and normalised.kind == "tool" and not normalised.tool_call_id:
            raise InvalidInputError("a tool action needs a non-empty tool_call_id")
        limit = self._backend.max_save_bytes
        if isinstance(observation, str):
            check_save_chars(len(observation), limit, "the observation")
        text = observation_text(observation)
        step = StepRequest(
            action=normalised,
            observation=text,
            messages=format_step(normalised, text, self.format_as_tools),
        )
        check_save_chars(_step_chars(step), limit, "the step")
        return step

    async def _counted_step(self, step: StepRequest) -> StepRequest:
        tokens = await count_all(self.counter, step.messages)
        return msgspec.structs.replace(step, tokens=tokens)

    @_tracing.save("record_step")
    async def arecord_step(
        self, action: Any, observation: Any, *, expected_version: int | None = None
    ) -> int:
        """Record one intermediate step now, before the turn's ``save_context``.

        The step is durable at once (a crash mid-run leaves it in the log); it joins the
        buffer with its turn. The turn's ``save_context`` may repeat it in
        ``intermediate_steps`` (as ``AgentExecutor`` does) without it being recorded twice.
        Steps recorded by a memory object that never saved them (its process died) are
        kept in the log but left out of the next turn. Returns the step's position.
        """
        step = await self._counted_step(self._step(action, observation))
        position = await self._backend.append_step(
            self.session_id,
            step,
            self.counter,
            self.format_as_tools,
            self.run_id,
            _check_version(expected_version),
        )
        if _tracing.ON:
            await _tracing.wrote(self._backend, self.session_id, position)
        return position

    @_tracing.save("save_context")
    async def asave_context(
        self,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Append the turn (its steps as events of their own) and prune to the limit.

        ``expected_version`` works as in
        [`TokenBufferMemory.asave_context`][eventmem.TokenBufferMemory.asave_context].
        """
        exchange = self._exchange(inputs, outputs)
        options = self.options
        steps: tuple[StepRequest, ...] | None = None
        if options.intermediate_steps_key in outputs:
            raw = outputs[options.intermediate_steps_key]
            if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
                raise InvalidInputError(
                    f"outputs[{options.intermediate_steps_key!r}] must be a list of "
                    f"(action, observation) pairs, got {type(raw).__name__}"
                )
            steps = tuple(self._step(*split_step(step)) for step in raw)
            check_save_chars(
                sum(len(m.text) for m in exchange) + sum(_step_chars(s) for s in steps),
                self._backend.max_save_bytes,
            )
            steps = tuple([await self._counted_step(step) for step in steps])
        turn = TurnRequest(
            tokens=await count_all(options.counter, exchange),
            messages=exchange,
            counter=options.counter,
            max_token_limit=options.max_token_limit,
            model=options.recorded_model,
            steps=steps,
            as_tools=options.format_as_tools,
            prune=options.prune,
            run=self.run_id,
            expected_version=_check_version(expected_version),
        )
        position = await self._backend.append_turn(self.session_id, turn)
        if _tracing.ON:
            await _tracing.wrote(self._backend, self.session_id, position)


def _step_chars(step: StepRequest) -> int:
    """Characters of a step's texts: a lower bound on the bytes it stores."""
    return len(step.observation) + sum(len(m.text) for m in step.messages)


def _text(values: Mapping[str, Any], key: str, where: str) -> str:
    try:
        value = values[key]
    except KeyError:
        raise MissingKeyError(f"key {key!r} is not in {where} (keys: {list(values)})") from None
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{where}[{key!r}] must be a str to be stored as a message, got {type(value).__name__}"
        )
    return value
