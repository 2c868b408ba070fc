"""``AgentTokenBufferMemory``: parity with LangChain, steps as events, pair-safe pruning.

The reference is LangChain's own ``AgentTokenBufferMemory`` class, formatters and
``ChatOpenAI(model=M).get_num_tokens_from_messages``. Its ``save_context`` in
langchain-classic 1.x is broken (``add_messages`` with a ``str`` raises AttributeError,
see :func:`test_langchain_classic_save_context_is_broken`), so :class:`ReferenceMemory`
restores LangChain 0.3's documented ``save_context`` and nothing else.

Every test that opens a store runs against both backends (the ``backend``, ``target``
and ``store`` fixtures), each hypothesis example on a store of its own; PostgreSQL draws
fewer random examples (``examples_for``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from langchain_core.agents import AgentAction, AgentActionMessageLog
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai.chat_models.base import _convert_message_to_dict

import eventmem
from eventmem.events import StepRecorded, TurnSaved
from eventmem.steps import to_action
from tests.agent_strategies import AgentConfig, Turn, build_steps, configs, turns, weather_steps
from tests.backends import fresh_target
from tests.reference import chat_openai, examples_for

pytestmark = pytest.mark.postgres_sample(3, across="module")

with warnings.catch_warnings():
    # Importing langchain_classic.agents imports langchain_community when it is installed,
    # which warns on import.
    warnings.filterwarnings("ignore", "`langchain-community` is being sunset", DeprecationWarning)
    from langchain_classic.agents.format_scratchpad import (
        format_to_openai_function_messages,
        format_to_tool_messages,
    )
    from langchain_classic.agents.openai_functions_agent.agent_token_buffer_memory import (
        AgentTokenBufferMemory as LangChainAgentTokenBufferMemory,
    )
    from langchain_classic.agents.output_parsers.tools import ToolAgentAction

SESSION = "agent-run"
ROOT = Path(__file__).resolve().parent.parent
RESULT_ROLES = ("tool", "function")


# --- the reference ---------------------------------------------------------------------


class ReferenceMemory(LangChainAgentTokenBufferMemory):
    """LangChain's ``AgentTokenBufferMemory`` with LangChain 0.3's ``save_context``."""

    def save_context(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        input_str, output_str = self._get_input_output(inputs, outputs)
        self.chat_memory.add_user_message(input_str)
        format_to_messages = (
            format_to_tool_messages if self.format_as_tools else format_to_openai_function_messages
        )
        steps = format_to_messages(outputs[self.intermediate_steps_key])
        for msg in steps:
            self.chat_memory.add_message(msg)
        self.chat_memory.add_ai_message(output_str)
        # Prune buffer if it exceeds max token limit
        buffer = self.chat_memory.messages
        curr_buffer_length = self.llm.get_num_tokens_from_messages(buffer)
        if curr_buffer_length > self.max_token_limit:
            while curr_buffer_length > self.max_token_limit:
                buffer.pop(0)
                curr_buffer_length = self.llm.get_num_tokens_from_messages(buffer)


def reference_memory(config: AgentConfig) -> Any:
    return ReferenceMemory(
        llm=chat_openai(config.model),
        max_token_limit=config.max_token_limit,
        format_as_tools=config.format_as_tools,
        return_messages=config.return_messages,
    )


def memory_options(config: AgentConfig, **extra: Any) -> dict[str, Any]:
    """``agent_token_buffer(...)`` keyword arguments for ``config``."""
    return {
        "max_token_limit": config.max_token_limit,
        "model": config.model,
        "format_as_tools": config.format_as_tools,
        "return_messages": config.return_messages,
        **extra,
    }


def scratchpad(steps: Sequence[tuple[Any, Any]], as_tools: bool) -> list[Any]:
    """LangChain's formatting of one turn's intermediate steps."""
    if as_tools:
        return list(format_to_tool_messages(steps))
    return list(format_to_openai_function_messages(steps))


# --- comparing buffers -----------------------------------------------------------------


def assert_same_message(ours: eventmem.Message, theirs: Any, where: str) -> None:
    """Field by field, and as the dict langchain-openai sends to the API."""
    assert (ours.role, ours.content) == (theirs.type, theirs.content), where
    assert ours.name == (theirs.name or theirs.additional_kwargs.get("name")), where
    assert ours.id == theirs.id, where
    if theirs.type == "ai":
        assert [(c.name, c.args, c.id) for c in ours.tool_calls] == [
            (c["name"], c["args"], c["id"]) for c in theirs.tool_calls
        ], where
        assert [(c.name, c.args, c.id, c.error) for c in ours.invalid_tool_calls] == [
            (c["name"], c["args"], c["id"], c["error"]) for c in theirs.invalid_tool_calls
        ], where
        assert ours.function_call == theirs.additional_kwargs.get("function_call"), where
    if theirs.type == "tool":
        assert ours.tool_call_id == theirs.tool_call_id, where
    assert ours.to_openai() == _convert_message_to_dict(theirs), where


def assert_same_buffer(
    ours: Sequence[eventmem.Message], theirs: Sequence[Any], model: str, where: str
) -> None:
    """Same messages, same token count."""
    assert [m.role for m in ours] == [m.type for m in theirs], where
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert_same_message(a, b, f"{where}, message {i}")
    assert eventmem.count_tokens(ours, model) == chat_openai(model).get_num_tokens_from_messages(
        list(theirs)
    ), where


async def assert_matches_reference(
    store: eventmem.Store,
    mem: eventmem.AgentTokenBufferMemory,
    reference: Any,
    config: AgentConfig,
    where: str,
) -> None:
    loaded = await mem.aload_memory_variables({})
    expected = reference.load_memory_variables({})
    assert list(loaded) == list(expected) == ["history"]
    if config.return_messages:
        assert_same_buffer(loaded["history"], expected["history"], config.model, where)
    else:
        assert loaded["history"] == expected["history"], where
    assert_same_buffer(await store.messages(SESSION), reference.buffer, config.model, where)


async def events_of(store: eventmem.Store, session: str = SESSION) -> list[eventmem.StoredEvent]:
    return [e async for e in store.events(session)]


# --- 1. parity with LangChain over random agent runs -----------------------------------


async def play(target: str, config: AgentConfig, run: Sequence[Turn]) -> bool:
    """Play ``run`` on eventmem and on the reference, comparing after every save.

    Returns whether the final buffer was pruned.
    """
    reference = reference_memory(config)
    written = appended = 0
    store = await eventmem.open(target)
    try:
        mem = store.agent_token_buffer(SESSION, **memory_options(config))
        for t, turn in enumerate(run):
            where = f"turn {t}"
            if turn.reopen:
                await store.aclose()
                store = await eventmem.open(target)
                mem = store.agent_token_buffer(SESSION, **memory_options(config))
            steps = build_steps(turn, t)
            before = await store.messages(SESSION)
            for action, observation in steps[: turn.live]:
                written += 1
                assert await mem.arecord_step(action, observation) == written, where
            assert await store.messages(SESSION) == before, f"{where}: live steps in the buffer"

            outputs = {"output": turn.output, "intermediate_steps": steps}
            reference.save_context({"input": turn.input}, outputs)
            await mem.asave_context(
                {"input": turn.input}, {"output": turn.output} if turn.omit_key else outputs
            )

            written += len(steps) - turn.live + 1
            events = await events_of(store)
            assert len(events) == written, f"{where}: event count"
            turn_event = events[-1].data
            assert isinstance(turn_event, TurnSaved), where
            first_step = written - len(steps)
            assert turn_event.steps == tuple(range(first_step, written)), where
            assert [e.kind for e in events[first_step - 1 : -1]] == ["step"] * len(steps), where
            await assert_matches_reference(store, mem, reference, config, where)
            appended += len(scratchpad(steps, config.format_as_tools)) + 2
        return len(reference.buffer) < appended
    finally:
        await store.aclose()


parity_limits = st.one_of(
    st.integers(20, 80), st.integers(20, 200), st.integers(20, 1500), st.just(12000)
)


def test_random_agent_runs_match_langchain(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=150, postgresql=50)
    @given(config=configs(parity_limits), run=st.lists(turns(), min_size=1, max_size=6))
    def example(config: AgentConfig, run: list[Turn]) -> None:
        with fresh_target(backend, tmp_path) as target:
            pruned = anyio.run(play, target, config, run)
        event(f"pruned: {pruned}")
        event(f"steps: {sum(len(turn.observations) for turn in run)}")

    example()


@pytest.mark.postgres_sample(3)
@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
@pytest.mark.parametrize("return_messages", [True, False])
@pytest.mark.parametrize(("model", "limit"), [("gpt-4o", 20), ("gpt-4", 75), ("gpt-4o", 12000)])
async def test_fixed_run_matches_langchain(
    target: str, format_as_tools: bool, return_messages: bool, model: str, limit: int
) -> None:
    """Parallel calls, a function call and a plain action, saved three times."""
    config = AgentConfig(model, limit, format_as_tools, return_messages)
    reference = reference_memory(config)
    async with eventmem.open(target) as store:
        mem = store.agent_token_buffer(SESSION, **memory_options(config))
        extra: list[tuple[Any, Any]] = [
            (AgentAction(tool="lookup", tool_input="x", log="Thought: look it up 🔎"), {1, 2}),
            (function_call_action("lookup", {"q": "日本"}), None),
        ]
        for i, steps in enumerate([weather_steps(), extra, []]):
            outputs = {"output": f"answer {i} ✓", "intermediate_steps": steps}
            reference.save_context({"input": f"question {i} ❓"}, outputs)
            await mem.asave_context({"input": f"question {i} ❓"}, outputs)
            await assert_matches_reference(store, mem, reference, config, f"save {i}")


def function_call_action(tool: str, args: dict[str, Any], **message: Any) -> Any:
    """An ``AgentActionMessageLog`` as the OpenAI functions agent makes it."""
    arguments = json.dumps(args, ensure_ascii=False)
    return AgentActionMessageLog(
        tool=tool,
        tool_input=args,
        log=f"\nInvoking: `{tool}` with `{args}`\n\n\n",
        message_log=[
            AIMessage(
                content=message.pop("content", ""),
                additional_kwargs={"function_call": {"name": tool, "arguments": arguments}},
                **message,
            )
        ],
    )


def test_langchain_classic_save_context_is_broken() -> None:
    """Why :class:`ReferenceMemory` exists: langchain-classic 1.x cannot save at all."""
    memory = LangChainAgentTokenBufferMemory(llm=chat_openai("gpt-4o"))
    with pytest.raises(AttributeError, match="'str' object has no attribute"):
        memory.save_context({"input": "hi"}, {"output": "hello", "intermediate_steps": []})


def test_defaults_are_langchains() -> None:
    """``agent_token_buffer()`` with no options is configured like LangChain's class."""
    fields = LangChainAgentTokenBufferMemory.model_fields
    # agent_token_buffer's keywords take their defaults from the options struct.
    signature_defaults = {
        f.name: f.default for f in dataclasses.fields(eventmem.AgentBufferOptions)
    }
    for name in (
        "max_token_limit",
        "memory_key",
        "return_messages",
        "human_prefix",
        "ai_prefix",
        "output_key",
        "intermediate_steps_key",
        "format_as_tools",
    ):
        assert signature_defaults[name] == fields[name].default, name


# --- 2. steps are events -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
async def test_a_save_appends_its_steps_then_its_turn(
    store: eventmem.Store, format_as_tools: bool
) -> None:
    mem = store.agent_token_buffer(SESSION, format_as_tools=format_as_tools)
    steps = weather_steps()
    await mem.asave_context({"input": "weather?"}, {"output": "mild", "intermediate_steps": steps})
    await mem.asave_context({"input": "thanks"}, {"output": "you're welcome"})
    await mem.asave_context({"input": "again"}, {"output": "same", "intermediate_steps": steps[2:]})

    events = await events_of(store)
    assert [(e.position, e.kind) for e in events] == [
        (1, "step"),
        (2, "step"),
        (3, "step"),
        (4, "turn"),
        (5, "turn"),
        (6, "step"),
        (7, "turn"),
    ]
    turn_steps = [e.data.steps for e in events if isinstance(e.data, TurnSaved)]
    assert turn_steps == [(1, 2, 3), (), (6,)]
    recorded = [e.data for e in events if isinstance(e.data, StepRecorded)]
    assert [(s.action.tool, s.action.tool_call_id, s.live) for s in recorded] == [
        ("get_weather", "call_w1", False),
        ("get_weather", "call_w2", False),
        ("convert", "call_c1", False),
        ("convert", "call_c1", False),
    ]
    assert [s.observation for s in recorded] == [
        '{"temp_c": 18, "sky": "晴れ ☀️"}',
        '["rain", 12.5, null, true]',
        "70.7",
        "70.7",
    ]
    # The parallel calls share one AIMessage: the tools format stores it once (LangChain's
    # format_to_tool_messages adds it once), the functions format repeats it.
    roles = [[m.role for m in s.messages] for s in recorded[:3]]
    if format_as_tools:
        assert roles == [["ai", "tool"], ["tool"], ["ai", "tool"]]
    else:
        assert roles == [["ai", "function"], ["ai", "function"], ["ai", "function"]]


@pytest.mark.anyio
async def test_live_steps_join_the_buffer_only_with_their_turn(store: eventmem.Store) -> None:
    config = AgentConfig("gpt-4o", 12000, True, True)
    reference = reference_memory(config)
    mem = store.agent_token_buffer(SESSION, **memory_options(config))
    reference.save_context({"input": "hi"}, {"output": "hello", "intermediate_steps": []})
    await mem.asave_context({"input": "hi"}, {"output": "hello", "intermediate_steps": []})
    before = await store.messages(SESSION)

    steps = weather_steps()
    assert await mem.arecord_step(*steps[0]) == 2
    assert await mem.arecord_step(*steps[1]) == 3
    assert await store.messages(SESSION) == before
    assert (await mem.aload_memory_variables({}))["history"] == before
    assert await store.version(SESSION) == 3

    outputs = {"output": "mild", "intermediate_steps": steps}
    reference.save_context({"input": "weather?"}, outputs)
    await mem.asave_context({"input": "weather?"}, outputs)
    events = await events_of(store)
    assert [e.kind for e in events] == ["turn", "step", "step", "step", "turn"]
    assert [e.data.live for e in events if isinstance(e.data, StepRecorded)] == [
        True,
        True,
        False,
    ]
    last = events[-1].data
    assert isinstance(last, TurnSaved)
    assert last.steps == (2, 3, 4)
    await assert_matches_reference(store, mem, reference, config, "after the save")


# The run that dies: it records the first two weather steps, converted here (as
# arecord_step converts them) so that the process needs eventmem alone, not LangChain.
CRASHING_RUN = textwrap.dedent(
    """
    import asyncio, os, sys

    import msgspec

    import eventmem
    from eventmem.steps import Action

    async def main() -> None:
        steps = msgspec.json.decode(sys.stdin.buffer.read(), type=list[tuple[Action, object]])
        store = await eventmem.open(sys.argv[1])
        mem = store.agent_token_buffer(sys.argv[2], format_as_tools=True)
        for action, observation in steps:
            await mem.arecord_step(action, observation)
        print("recorded", flush=True)
        os._exit(1)  # killed mid-run: no save_context, no close

    asyncio.run(main())
    """
)


@pytest.mark.postgres_slow
@pytest.mark.anyio
async def test_live_steps_survive_a_process_that_dies_before_saving(target: str) -> None:
    """The dead run's steps stay in the log as evidence; the next run's save abandons them.

    (Since commit b99a78c a save never adopts live steps another memory object recorded:
    the turn names them in ``abandoned`` and records its own steps.)
    """
    recorded = [(to_action(action), observation) for action, observation in weather_steps()[:2]]
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, target, SESSION],
        input=msgspec.json.encode(recorded),
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert crashed.returncode == 1, crashed.stderr.decode()
    assert crashed.stdout.strip() == b"recorded"

    config = AgentConfig("gpt-4o", 12000, True, True)
    steps = weather_steps()
    async with eventmem.open(target) as store:
        logged = await events_of(store)
        survivors = [e.data for e in logged if isinstance(e.data, StepRecorded)]
        assert len(survivors) == len(logged) == 2
        assert all(step.live for step in survivors)
        assert [(step.action.tool_call_id, step.observation) for step in survivors] == [
            ("call_w1", '{"temp_c": 18, "sky": "晴れ ☀️"}'),
            ("call_w2", '["rain", 12.5, null, true]'),
        ]
        assert await store.messages(SESSION) == []

        mem = store.agent_token_buffer(SESSION, **memory_options(config))
        outputs = {"output": "18°C and 12.5°C", "intermediate_steps": steps}
        await mem.asave_context({"input": "weather?"}, outputs)
        reference = reference_memory(config)
        reference.save_context({"input": "weather?"}, outputs)

        events = await events_of(store)
        assert [e.kind for e in events] == ["step"] * 5 + ["turn"]
        turn = events[-1].data
        assert isinstance(turn, TurnSaved)
        assert (turn.abandoned, turn.steps) == ((1, 2), (3, 4, 5))
        assert [e.data for e in events[:2]] == survivors  # the evidence is untouched
        await assert_matches_reference(store, mem, reference, config, "after the crash")


# --- 3. live steps that do not match the save -----------------------------------------


def _changed_observation(steps: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(steps[0][0], {"temp_c": 19, "sky": "晴れ ☀️"}), *steps[1:]]


def _changed_action(steps: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    action = steps[1][0].model_copy(update={"tool_call_id": "call_other"})
    return [steps[0], (action, steps[1][1]), steps[2]]


MISMATCHES: dict[str, Callable[[list[tuple[Any, Any]]], list[tuple[Any, Any]]]] = {
    "different observation": _changed_observation,
    "different action": _changed_action,
    "swapped": lambda steps: [steps[1], steps[0], steps[2]],
    "fewer steps": lambda steps: steps[:1],
    "no steps": lambda steps: [],
}


@pytest.mark.postgres_sample(3)
@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
@pytest.mark.parametrize("mismatch", list(MISMATCHES))
async def test_a_save_must_start_with_the_live_steps(
    store: eventmem.Store, format_as_tools: bool, mismatch: str
) -> None:
    mem = store.agent_token_buffer(SESSION, format_as_tools=format_as_tools)
    await mem.asave_context({"input": "hi"}, {"output": "hello", "intermediate_steps": []})
    steps = weather_steps()
    await mem.arecord_step(*steps[0])
    await mem.arecord_step(*steps[1])
    before = (await store.version(SESSION), await store.messages(SESSION))

    with pytest.raises(eventmem.InvalidInputError):
        await mem.asave_context(
            {"input": "weather?"},
            {"output": "mild", "intermediate_steps": MISMATCHES[mismatch](steps)},
        )
    assert (await store.version(SESSION), await store.messages(SESSION)) == before

    # The live steps are still held: the right save goes through.
    await mem.asave_context({"input": "weather?"}, {"output": "mild", "intermediate_steps": steps})
    assert [e.kind for e in await events_of(store)] == ["turn", "step", "step", "step", "turn"]


@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
@pytest.mark.parametrize("live", [0, 1, 3])
async def test_without_intermediate_steps_the_live_steps_are_the_turns(
    store: eventmem.Store, format_as_tools: bool, live: int
) -> None:
    config = AgentConfig("gpt-4", 12000, format_as_tools, True)
    mem = store.agent_token_buffer(SESSION, **memory_options(config))
    steps = weather_steps()[:live]
    for action, observation in steps:
        await mem.arecord_step(action, observation)
    await mem.asave_context({"input": "weather?"}, {"output": "mild"})

    reference = reference_memory(config)
    reference.save_context({"input": "weather?"}, {"output": "mild", "intermediate_steps": steps})
    events = await events_of(store)
    assert [e.kind for e in events] == ["step"] * live + ["turn"]
    last = events[-1].data
    assert isinstance(last, TurnSaved)
    assert last.steps == tuple(range(1, live + 1))
    await assert_matches_reference(store, mem, reference, config, f"{live} live steps")


# --- 4. pair-safe pruning ------------------------------------------------------------------


def pair_safe_model(messages: list[Any], limit: int, model: str) -> list[Any]:
    """LangChain's pruning, then the leading tool/function results dropped."""
    llm = chat_openai(model)
    while messages and llm.get_num_tokens_from_messages(messages) > limit:
        messages.pop(0)
    while messages and messages[0].type in RESULT_ROLES:
        messages.pop(0)
    return messages


def assert_pair_safe(buffer: Sequence[eventmem.Message], history: Sequence[Any]) -> None:
    """No result without its call, no call without the results the history gave it."""
    assert not buffer or buffer[0].role not in RESULT_ROLES, "the buffer starts with a result"
    # The buffer is the newest part of the history.
    if buffer:
        tail = history[len(history) - len(buffer) :]
        for i, (ours, theirs) in enumerate(zip(buffer, tail, strict=True)):
            assert_same_message(ours, theirs, f"buffer message {i} vs history")
    calls: set[str | None] = set()
    for i, message in enumerate(buffer):
        if message.role == "ai":
            calls |= {c.id for c in message.tool_calls}
        elif message.role == "tool":
            assert message.tool_call_id in calls, f"tool result {i} without its call"
        elif message.role == "function":
            call = buffer[i - 1]
            named = {c.name for c in call.tool_calls}
            if call.function_call is not None:
                named.add(call.function_call["name"])
            assert call.role == "ai", f"function result {i} without its call"
            assert message.name in named, f"function result {i} without its call"
    answered = {m.tool_call_id for m in history if m.type == "tool"}
    present = {m.tool_call_id for m in buffer if m.role == "tool"}
    for i, message in enumerate(buffer):
        expected = {c.id for c in message.tool_calls} & answered
        assert expected <= present, f"tool call message {i} lost results {expected - present}"


def test_pair_safe_pruning_never_orphans_a_result(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=100, postgresql=40)
    @given(
        config=configs(st.one_of(st.integers(0, 80), st.integers(0, 400), st.integers(0, 2000))),
        run=st.lists(turns(well_formed=True), min_size=1, max_size=6),
    )
    def example(config: AgentConfig, run: list[Turn]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play_pair_safe, target, config, run)

    example()


async def play_pair_safe(target: str, config: AgentConfig, run: list[Turn]) -> None:
    """Play ``run`` with ``prune="pair_safe"``, checking the buffer after every save."""
    history: list[Any] = []
    expected: list[Any] = []
    store = await eventmem.open(target)
    options = memory_options(config, prune="pair_safe")
    try:
        mem = store.agent_token_buffer(SESSION, **options)
        for t, turn in enumerate(run):
            if turn.reopen:
                await store.aclose()
                store = await eventmem.open(target)
                mem = store.agent_token_buffer(SESSION, **options)
            steps = build_steps(turn, t)
            for action, observation in steps[: turn.live]:
                await mem.arecord_step(action, observation)
            await mem.asave_context(
                {"input": turn.input}, {"output": turn.output, "intermediate_steps": steps}
            )
            new = [
                HumanMessage(content=turn.input),
                *scratchpad(steps, config.format_as_tools),
                AIMessage(content=turn.output),
            ]
            history.extend(new)
            expected = pair_safe_model([*expected, *new], config.max_token_limit, config.model)
            buffer = await store.messages(SESSION)
            assert_pair_safe(buffer, history)
            assert_same_buffer(buffer, expected, config.model, f"turn {t}")
    finally:
        await store.aclose()


def _orphaning_run() -> tuple[list[tuple[Any, Any]], int]:
    """A tools-format turn and a limit at which LangChain keeps a tool result first.

    The limit is the count of the last two messages (the result and the answer), so
    LangChain prunes the question and the tool call and stops at the result.
    """
    steps = weather_steps()[2:]
    messages = [HumanMessage(content="convert"), *scratchpad(steps, True), AIMessage("70.7 °F")]
    limit = chat_openai("gpt-4o").get_num_tokens_from_messages(messages[-2:])
    return steps, limit


@pytest.mark.anyio
async def test_default_pruning_keeps_langchains_orphan_and_pair_safe_drops_it(
    store: eventmem.Store,
) -> None:
    steps, limit = _orphaning_run()
    config = AgentConfig("gpt-4o", limit, True, True)
    reference = reference_memory(config)
    outputs = {"output": "70.7 °F", "intermediate_steps": steps}
    reference.save_context({"input": "convert"}, outputs)
    assert [m.type for m in reference.buffer] == ["tool", "ai"]  # LangChain's orphan

    default = store.agent_token_buffer(SESSION, **memory_options(config))
    await default.asave_context({"input": "convert"}, outputs)
    await assert_matches_reference(store, default, reference, config, "default pruning")

    safe = store.agent_token_buffer("safe", **memory_options(config, prune="pair_safe"))
    await safe.asave_context({"input": "convert"}, outputs)
    assert_same_buffer(await store.messages("safe"), reference.buffer[1:], "gpt-4o", "pair_safe")


@pytest.mark.anyio
async def test_pair_safe_never_splits_a_call_from_a_later_result(store: eventmem.Store) -> None:
    tokyo, zurich = (action for action, _ in weather_steps()[:2])
    plain = AgentAction(tool="note", tool_input="", log="x")
    steps = [(tokyo, "r1"), (plain, "p"), (zurich, "r2")]
    question = "q" * 40
    history = [
        HumanMessage(content=question),
        *scratchpad(steps, True),
        AIMessage(content="ok"),
    ]
    # A limit that keeps [AI(log), Tool(call_w2), AI(ok)]: the call of call_w2 is cut off.
    limit = chat_openai("gpt-4o").get_num_tokens_from_messages(history[-3:])
    mem = store.agent_token_buffer(
        SESSION, max_token_limit=limit, format_as_tools=True, prune="pair_safe"
    )
    await mem.asave_context({"input": question}, {"output": "ok", "intermediate_steps": steps})
    assert_pair_safe(await store.messages(SESSION), history)


# --- 5. message fidelity ------------------------------------------------------------------


def fidelity_steps() -> list[tuple[Any, Any]]:
    """Steps whose messages carry every field eventmem keeps."""
    shared = AIMessage(
        content="two lookups 🔎",
        name="planner",
        id="run-42-0",
        tool_calls=[
            {
                "name": "search",
                "args": {"q": "日本", "n": [1, 2.5]},
                "id": "call_a",
                "type": "tool_call",
            },
            {"name": "search", "args": {}, "id": "call_b", "type": "tool_call"},
        ],
        invalid_tool_calls=[
            {
                "name": "search",
                "args": '{"q": ',
                "id": "call_bad",
                "error": "Function search arguments are not valid JSON.",
                "type": "invalid_tool_call",
            }
        ],
    )
    first = ToolAgentAction(
        tool="search", tool_input={"q": "日本"}, log="", message_log=[shared], tool_call_id="call_a"
    )
    second = ToolAgentAction(
        tool="search", tool_input={}, log="", message_log=[shared], tool_call_id="call_b"
    )
    function = function_call_action("lookup", {"id": 7}, name="functions-bot", id="run-42-1")
    system = AgentActionMessageLog(
        tool="noop",
        tool_input="",
        log="noop",
        message_log=[SystemMessage(content="be brief", id="sys-1")],
    )
    return [(first, "A"), (second, {"b": None}), (function, [7]), (system, "")]


@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
async def test_messages_keep_every_field_across_reopening(
    target: str, format_as_tools: bool
) -> None:
    config = AgentConfig("gpt-4o", 12000, format_as_tools, True)
    steps = fidelity_steps()
    outputs = {"output": "done", "intermediate_steps": steps}
    async with eventmem.open(target) as store:
        mem = store.agent_token_buffer(SESSION, **memory_options(config))
        await mem.arecord_step(*steps[0])
        await mem.asave_context({"input": "go"}, outputs)
        before = await store.messages(SESSION)
        step_events = [e.data for e in await events_of(store)]
    async with eventmem.open(target) as store:
        after = await store.messages(SESSION)
        assert after == before
        assert [e.data for e in await events_of(store)] == step_events

    reference = reference_memory(config)
    reference.save_context({"input": "go"}, outputs)
    assert_same_buffer(after, reference.buffer, "gpt-4o", "after reopening")
    kept = {
        "tool_calls": any(m.tool_calls for m in after),
        "invalid_tool_calls": any(m.invalid_tool_calls for m in after),
        "ids": {m.id for m in after} - {None},
        "names": {m.name for m in after} - {None},
        "tool_call_ids": {m.tool_call_id for m in after} - {None},
        "function_call": any(m.function_call for m in after),
    }
    if format_as_tools:
        assert kept == {
            "tool_calls": True,
            "invalid_tool_calls": True,
            "ids": {"run-42-0"},
            "names": {"planner", "search"},
            "tool_call_ids": {"call_a", "call_b"},
            "function_call": False,
        }
    else:
        assert kept == {
            "tool_calls": True,
            "invalid_tool_calls": True,
            "ids": {"run-42-0", "run-42-1", "sys-1"},
            "names": {"planner", "functions-bot", "search", "lookup", "noop"},
            "tool_call_ids": set(),
            "function_call": True,
        }


# --- 6. bad input ---------------------------------------------------------------------------


def _tool_action_dict(tool_call_id: Any) -> dict[str, Any]:
    return {
        "tool": "search",
        "tool_input": {},
        "log": "",
        "message_log": [],
        "tool_call_id": tool_call_id,
    }


_plain = AgentAction(tool="search", tool_input="q", log="Thought: search")
_lone = "bad \ud800 text"

#: (format_as_tools, action, observation): refused by arecord_step and asave_context alike.
BAD_STEPS = [
    pytest.param(False, {"tool_input": "q", "log": "l"}, "o", id="dict without tool"),
    pytest.param(False, AgentAction(tool="", tool_input="q", log="l"), "o", id="empty tool"),
    pytest.param(
        False, SimpleNamespace(tool="", tool_input="q", log="l"), "o", id="object empty tool"
    ),
    pytest.param(True, _tool_action_dict(""), "o", id="tool_call_id empty"),
    pytest.param(True, _tool_action_dict(None), "o", id="tool_call_id None"),
    pytest.param(
        False,
        {"tool": "search", "tool_input": "q", "log": "l", "message_log": "AIMessage"},
        "o",
        id="message_log str",
    ),
    pytest.param(False, function_call_action("search", {}), _lone, id="surrogate function obs"),
    pytest.param(True, weather_steps()[0][0], {"k": _lone}, id="surrogate tool obs"),
    pytest.param(False, _plain, _lone, id="surrogate plain obs"),
    pytest.param(
        False,
        AgentAction(tool="search", tool_input=_lone, log="l"),
        "o",
        id="surrogate tool_input",
    ),
    pytest.param(
        False,
        AgentAction(tool="se\udc80rch", tool_input="", log="l"),
        "o",
        id="surrogate tool name",
    ),
]


async def _seeded(store: eventmem.Store, format_as_tools: bool) -> eventmem.AgentTokenBufferMemory:
    mem = store.agent_token_buffer(SESSION, format_as_tools=format_as_tools)
    await mem.asave_context({"input": "hi"}, {"output": "hello", "intermediate_steps": []})
    return mem


@pytest.mark.postgres_sample(5)
@pytest.mark.anyio
@pytest.mark.parametrize(("format_as_tools", "action", "observation"), BAD_STEPS)
@pytest.mark.parametrize("how", ["arecord_step", "asave_context"])
async def test_bad_steps_are_refused_and_nothing_is_written(
    store: eventmem.Store, format_as_tools: bool, action: Any, observation: Any, how: str
) -> None:
    mem = await _seeded(store, format_as_tools)
    before = await store.messages(SESSION)
    steps = [(_plain, "fine"), (action, observation)]
    outputs = {"output": "a", "intermediate_steps": steps}
    write = (
        mem.arecord_step(action, observation)
        if how == "arecord_step"
        else mem.asave_context({"input": "q"}, outputs)
    )
    with pytest.raises(eventmem.InvalidInputError):
        await write
    assert await store.version(SESSION) == 1
    assert await store.messages(SESSION) == before


#: outputs of a save that are refused before any step is looked at as a step.
BAD_OUTPUTS: dict[str, dict[str, Any]] = {
    "step is a str": {"output": "a", "intermediate_steps": ["search"]},
    "step is a 3-tuple": {"output": "a", "intermediate_steps": [(_plain, "o", "extra")]},
    "step is a 1-tuple": {"output": "a", "intermediate_steps": [(_plain,)]},
    "step is a dict": {
        "output": "a",
        "intermediate_steps": [{"action": _plain, "observation": "o"}],
    },
    "steps is a str": {"output": "a", "intermediate_steps": "search"},
    "steps is a dict": {"output": "a", "intermediate_steps": {"0": (_plain, "o")}},
    "steps is None": {"output": "a", "intermediate_steps": None},
    "output is an int": {"output": 42, "intermediate_steps": []},
    "output is None": {"output": None, "intermediate_steps": [(_plain, "o")]},
    "output is a list": {"output": ["a"], "intermediate_steps": []},
}


@pytest.mark.postgres_sample(5)
@pytest.mark.anyio
@pytest.mark.parametrize("format_as_tools", [True, False])
@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
async def test_bad_outputs_are_refused_and_nothing_is_written(
    store: eventmem.Store, format_as_tools: bool, case: str
) -> None:
    mem = await _seeded(store, format_as_tools)
    await mem.arecord_step(_plain, "live")
    before = await store.messages(SESSION)
    with pytest.raises(eventmem.InvalidInputError):
        await mem.asave_context({"input": "q"}, BAD_OUTPUTS[case])
    assert await store.version(SESSION) == 2
    assert await store.messages(SESSION) == before


@pytest.mark.anyio
@pytest.mark.parametrize(
    "options",
    [
        {"prune": "sometimes"},
        {"prune": None},
        {"format_as_tools": "yes"},
        {"format_as_tools": 1},
        {"intermediate_steps_key": 3},
    ],
    ids=repr,
)
async def test_bad_options_are_refused(store: eventmem.Store, options: dict[str, Any]) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        store.agent_token_buffer(SESSION, **options)
    assert await store.sessions() == []


# --- 7. the blocking facade ---------------------------------------------------------------


def fixed_run() -> list[tuple[str, str, list[tuple[Any, Any]], int]]:
    """(input, output, steps, how many to record live) per turn."""
    return [
        ("weather in Tokyo and Zürich?", "18 and 12.5 °C", weather_steps(), 1),
        ("and now?", "unchanged", [], 0),
        ("lookup", "found 日本", [(function_call_action("lookup", {"q": "日本"}), "🗾")], 1),
        ("again", "same", weather_steps()[2:], 0),
    ]


def _event_summary(events: Sequence[eventmem.StoredEvent]) -> list[tuple[str, bool | None]]:
    return [(e.kind, e.data.live if isinstance(e.data, StepRecorded) else None) for e in events]


def test_blocking_facade_gives_the_async_buffer(backend: str, tmp_path: Path) -> None:
    options: dict[str, Any] = {"max_token_limit": 120, "model": "gpt-4", "format_as_tools": True}
    Trace = tuple[list[int], list[eventmem.Message], dict[str, Any], list[Any]]

    async def run_async(async_target: str) -> Trace:
        positions: list[int] = []
        async with eventmem.open(async_target) as store:
            mem = store.agent_token_buffer(SESSION, **options)
            for question, answer, steps, live in fixed_run():
                for action, observation in steps[:live]:
                    positions.append(await mem.arecord_step(action, observation))
                await mem.asave_context(
                    {"input": question}, {"output": answer, "intermediate_steps": steps}
                )
            return (
                positions,
                await store.messages(SESSION),
                await mem.aload_memory_variables({}),
                _event_summary(await events_of(store)),
            )

    def run_sync(sync_target: str) -> Trace:
        positions: list[int] = []
        with eventmem.connect(sync_target) as store:
            mem = store.agent_token_buffer(SESSION, **options)
            for question, answer, steps, live in fixed_run():
                for action, observation in steps[:live]:
                    positions.append(mem.record_step(action, observation))
                mem.save_context(
                    {"input": question}, {"output": answer, "intermediate_steps": steps}
                )
            return (
                positions,
                store.messages(SESSION),
                mem.load_memory_variables({}),
                _event_summary(store.events(SESSION)),
            )

    with fresh_target(backend, tmp_path) as async_target:
        expected = anyio.run(run_async, async_target)
    with fresh_target(backend, tmp_path) as sync_target:
        assert run_sync(sync_target) == expected
    positions, messages, loaded, events = expected
    assert positions == [1, 6]
    assert loaded == {"history": messages}
    assert events == [
        ("step", True),
        ("step", False),
        ("step", False),
        ("turn", None),
        ("turn", None),
        ("step", True),
        ("turn", None),
        ("step", False),
        ("turn", None),
    ]
    reference = reference_memory(AgentConfig("gpt-4", 120, True, True))
    for question, answer, steps, _ in fixed_run():
        reference.save_context({"input": question}, {"output": answer, "intermediate_steps": steps})
    assert_same_buffer(messages, reference.buffer, "gpt-4", "blocking facade")
    assert len(messages) < sum(len(scratchpad(s, True)) + 2 for _, _, s, _ in fixed_run())


# --- known differences from LangChain -----------------------------------------------------


@pytest.mark.anyio
async def test_repeated_plain_actions_in_tools_format_match_langchain(
    store: eventmem.Store,
) -> None:
    config = AgentConfig("gpt-4o", 12000, True, True)
    retry = AgentAction(tool="_Exception", tool_input="Invalid Format", log="Could not parse")
    outputs = {"output": "gave up", "intermediate_steps": [(retry, "x"), (retry, "x")]}
    reference = reference_memory(config)
    reference.save_context({"input": "q"}, outputs)
    mem = store.agent_token_buffer(SESSION, **memory_options(config))
    await mem.asave_context({"input": "q"}, outputs)
    await assert_matches_reference(store, mem, reference, config, "repeated plain action")
