"""Parity of ``TokenBufferMemory`` with LangChain's ``ConversationTokenBufferMemory``.

The reference is ``langchain_classic.memory.ConversationTokenBufferMemory`` counting with
``ChatOpenAI(model=M).get_num_tokens_from_messages``, driven through its *sync* methods:
its ``asave_context`` never prunes (a LangChain bug eventmem does not copy). After every
operation of a random conversation the buffers must be identical — the string buffer
character for character, the message buffer as (role, content) pairs — and the store must
hold exactly one event per save and per clear, across reopening the store. Every test
that opens a store runs against both backends (the ``backend`` fixture), each hypothesis
example on a store of its own; PostgreSQL draws fewer random examples (``examples_for``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st
from langchain_classic.memory import ConversationTokenBufferMemory

import eventmem
from tests.backends import fresh_target
from tests.reference import chat_openai, examples_for
from tests.strategies import (
    Clear,
    Config,
    Reopen,
    Save,
    SetLimit,
    configs,
    operations,
    saves,
)

pytestmark = pytest.mark.postgres_sample(3, across="module")

Op = Save | Clear | Reopen | SetLimit
Buffer = str | list[tuple[str, str]]


# --- the two sides ---------------------------------------------------------------------


def reference(
    config: Config, *, input_key: str | None = None, output_key: str | None = None
) -> Any:
    """LangChain's memory configured like ``config``."""
    return ConversationTokenBufferMemory(
        llm=chat_openai(config.model),
        max_token_limit=config.max_token_limit,
        return_messages=config.return_messages,
        human_prefix=config.human_prefix,
        ai_prefix=config.ai_prefix,
        memory_key=config.memory_key,
        input_key=input_key,
        output_key=output_key,
    )


def options(config: Config, **keys: str | None) -> dict[str, Any]:
    """``token_buffer(...)`` keyword arguments for ``config``."""
    return {
        "max_token_limit": config.max_token_limit,
        "model": config.model,
        "return_messages": config.return_messages,
        "human_prefix": config.human_prefix,
        "ai_prefix": config.ai_prefix,
        "memory_key": config.memory_key,
        **keys,
    }


def reference_buffer(ref: Any, config: Config) -> Buffer:
    """LangChain's loaded buffer, in the comparable form."""
    loaded = ref.load_memory_variables({})
    assert list(loaded) == [config.memory_key]
    value = loaded[config.memory_key]
    if config.return_messages:
        return [(m.type, m.content) for m in value]
    assert isinstance(value, str)
    return value


def eventmem_buffer(loaded: dict[str, Any], config: Config) -> Buffer:
    """eventmem's loaded buffer, in the comparable form."""
    assert list(loaded) == [config.memory_key]
    value = loaded[config.memory_key]
    if config.return_messages:
        assert isinstance(value, list)
        assert all(isinstance(m, eventmem.Message) for m in value)
        return [(m.role, m.content) for m in value]
    assert isinstance(value, str)
    return value


def switch(ref: Any, config: Config, op: SetLimit) -> Config:
    """Give LangChain's memory the new limit and model; return the new config."""
    ref.max_token_limit = op.max_token_limit
    ref.llm = chat_openai(op.model)
    return replace(config, max_token_limit=op.max_token_limit, model=op.model)


def note_save(ref: Any, before: int, save: Save) -> None:
    """Label the example for ``--hypothesis-show-statistics``: what did this save do?"""
    if not currently_in_test_context():
        return
    after = len(ref.chat_memory.messages)
    if after == 0:
        event("a save pruned everything")
    elif after < before + 2:
        event("a save pruned some messages")
    if before:
        event("a save onto a non-empty buffer")
    if max(len(save.input), len(save.output)) >= 1000:
        event("a text of 1000+ characters")


# --- drivers: one random conversation through each facade ------------------------------


async def run_async(target: str, session: str, config: Config, ops: Sequence[Op]) -> None:
    """Play ``ops`` on both memories, comparing after every operation."""
    ref = reference(config)
    writes = 0
    store = await eventmem.open(target)
    try:
        mem = store.token_buffer(session, **options(config))
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                before = len(ref.chat_memory.messages)
                ref.save_context(op.inputs(config), op.outputs(config))
                await mem.asave_context(op.inputs(config), op.outputs(config))
                writes += 1
                note_save(ref, before, op)
            elif isinstance(op, Clear):
                ref.clear()
                await mem.aclear()
                writes += 1
            elif isinstance(op, Reopen):
                await store.aclose()
                store = await eventmem.open(target)
                mem = store.token_buffer(session, **options(config))
            else:
                config = switch(ref, config, op)
                mem = store.token_buffer(session, **options(config))
            loaded = await mem.aload_memory_variables({})
            assert eventmem_buffer(loaded, config) == reference_buffer(ref, config), (
                f"buffers differ after operation {i} ({type(op).__name__})"
            )
            events = [e async for e in store.events(session)]
            assert len(events) == writes, f"event count wrong after operation {i}"
    finally:
        await store.aclose()


def run_sync(target: str, session: str, config: Config, ops: Sequence[Op]) -> None:
    """:func:`run_async` through the blocking facade ``eventmem.connect``."""
    ref = reference(config)
    writes = 0
    store = eventmem.connect(target)
    try:
        mem = store.token_buffer(session, **options(config))
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                before = len(ref.chat_memory.messages)
                ref.save_context(op.inputs(config), op.outputs(config))
                mem.save_context(op.inputs(config), op.outputs(config))
                writes += 1
                note_save(ref, before, op)
            elif isinstance(op, Clear):
                ref.clear()
                mem.clear()
                writes += 1
            elif isinstance(op, Reopen):
                store.close()
                store = eventmem.connect(target)
                mem = store.token_buffer(session, **options(config))
            else:
                config = switch(ref, config, op)
                mem = store.token_buffer(session, **options(config))
            loaded = mem.load_memory_variables({})
            assert eventmem_buffer(loaded, config) == reference_buffer(ref, config), (
                f"buffers differ after operation {i} ({type(op).__name__})"
            )
            assert len(store.events(session)) == writes, f"event count wrong after operation {i}"
    finally:
        store.close()


# --- 1. random conversations, async API ------------------------------------------------


def test_random_conversation_matches_langchain(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=200, postgresql=60)
    @given(config=configs, ops=operations(max_size=20))
    def example(config: Config, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(run_async, target, "session-1", config, ops)

    example()


# --- 2. the blocking facade ------------------------------------------------------------


def test_random_conversation_matches_langchain_sync(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=40, postgresql=15)
    @given(config=configs, ops=operations(max_size=15))
    def example(config: Config, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            run_sync(target, "session-1", config, ops)

    example()


# --- 3. changing the limit and the model mid-conversation ------------------------------


def test_limit_and_model_changes_match_langchain(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=60, postgresql=25)
    @given(config=configs, ops=operations(max_size=20, with_limit_changes=True))
    def example(config: Config, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(run_async, target, "session-1", config, ops)

    example()


def test_limit_and_model_changes_match_langchain_sync(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=15, postgresql=8)
    @given(config=configs, ops=operations(max_size=12, with_limit_changes=True))
    def example(config: Config, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            run_sync(target, "session-1", config, ops)

    example()


@pytest.mark.anyio
async def test_switching_model_and_shrinking_limit(target: str) -> None:
    """A roomy cl100k buffer, then a tight o200k limit: the next save prunes to it."""
    config = Config("gpt-4", 2000, True, "Human", "AI", "history", "input", "output")
    turns = [
        Save("日本語のテキストと中文文本", "👩‍👩‍👧‍👦 🇯🇵", stop=False, memory_var=False),
        Save("e\u0301 n\u0303 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗", "مرحبا بالعالم", stop=True, memory_var=True),
        Save("word " * 40, "reply " * 40, stop=False, memory_var=False),
    ]
    ops: list[Op] = [
        *turns,
        SetLimit(60, "gpt-4o"),  # loading never prunes: both still hold all 6 messages
        Save("short", "reply", stop=False, memory_var=False),
        SetLimit(2000, "gpt-3.5-turbo"),
        *turns,
    ]
    await run_async(target, "session-1", config, ops)

    # The switch did take effect: the buffer after the tight save was pruned.
    ref = reference(config)
    for turn in turns:
        ref.save_context(turn.inputs(config), turn.outputs(config))
    switch(ref, config, SetLimit(60, "gpt-4o"))
    assert len(ref.load_memory_variables({})["history"]) == 6
    ref.save_context({"input": "short"}, {"output": "reply"})
    assert len(ref.load_memory_variables({})["history"]) < 6


# --- 4. LangChain's key rules ----------------------------------------------------------


@dataclass(frozen=True)
class KeyCase:
    """One ``save_context`` call and what both memories must do with it."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: Literal["input", "missing"] | None = None  # ValueError / KeyError
    warns: bool = False  # UserWarning "multiple output keys"
    input_key: str | None = None
    output_key: str | None = None


KEY_CASES: dict[str, KeyCase] = {
    "two-input-keys": KeyCase({"input": "a", "question": "b"}, {"output": "o"}, "input"),
    "two-input-keys-and-stop": KeyCase(
        {"input": "a", "context": "b", "stop": ["\n"]}, {"output": "o"}, "input"
    ),
    "only-memory-key": KeyCase({"history": "h"}, {"output": "o"}, "input"),
    "only-stop": KeyCase({"stop": ["\n"]}, {"output": "o"}, "input"),
    "memory-key-and-stop": KeyCase({"history": "h", "stop": None}, {"output": "o"}, "input"),
    "no-inputs": KeyCase({}, {"output": "o"}, "input"),
    "memory-key-and-stop-ignored": KeyCase(
        {"history": "h", "input": "q", "stop": ["\n"]}, {"output": "o"}
    ),
    "outputs-several-with-output": KeyCase(
        {"input": "q"}, {"output": "o", "extra": "e"}, warns=True
    ),
    "outputs-several-output-last": KeyCase(
        {"input": "q"}, {"a": "1", "b": "2", "output": "o"}, warns=True
    ),
    "outputs-several-without-output": KeyCase(
        {"input": "q"}, {"answer": "a", "extra": "e"}, "input"
    ),
    "no-outputs": KeyCase({"input": "q"}, {}, "input"),
    "bad-inputs-and-bad-outputs": KeyCase({"a": "1", "b": "2"}, {"c": "3", "d": "4"}, "input"),
    "explicit-keys-select": KeyCase(
        {"question": "q", "context": "c", "stop": ["\n"], "history": "h"},
        {"answer": "a", "output": "o", "extra": "e"},
        input_key="question",
        output_key="answer",
    ),
    "explicit-input-key": KeyCase(
        {"question": "q", "context": "c"}, {"output": "o"}, input_key="question"
    ),
    "explicit-input-key-may-be-stop": KeyCase(
        {"stop": "halt", "input": "q"}, {"output": "o"}, input_key="stop"
    ),
    "explicit-output-key": KeyCase(
        {"input": "q"}, {"answer": "a", "extra": "e"}, output_key="extra"
    ),
    "explicit-input-key-missing": KeyCase(
        {"input": "q"}, {"output": "o"}, "missing", input_key="question"
    ),
    "explicit-output-key-missing": KeyCase(
        {"input": "q"}, {"output": "o"}, "missing", output_key="answer"
    ),
    "explicit-input-key-missing-outputs-ambiguous": KeyCase(
        {"input": "q"}, {"answer": "a", "extra": "e"}, "input", input_key="question"
    ),
    "explicit-input-key-missing-outputs-warn": KeyCase(
        {"input": "q"}, {"output": "o", "extra": "e"}, "missing", True, input_key="question"
    ),
}

KEY_CONFIG = Config("gpt-4o", 60, True, "Human", "AI", "history", "input", "output")


def first_turn(case: KeyCase) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid save under the case's key settings, so that the buffer is not empty."""
    return {case.input_key or "input": "first question"}, {case.output_key or "output": "first"}


@contextmanager
def expect(case: KeyCase, *, eventmem_side: bool) -> Iterator[None]:
    """The warning and exception ``case`` must produce on one side."""
    with ExitStack() as stack:
        if case.warns:
            stack.enter_context(pytest.warns(UserWarning, match="multiple output keys"))
        if case.error == "input":
            stack.enter_context(
                pytest.raises(eventmem.InputKeyError if eventmem_side else ValueError)
            )
        elif case.error == "missing":
            stack.enter_context(
                pytest.raises(eventmem.MissingKeyError if eventmem_side else KeyError)
            )
        yield


def test_key_errors_are_the_builtin_exceptions_langchain_raises() -> None:
    assert issubclass(eventmem.InputKeyError, ValueError)
    assert issubclass(eventmem.MissingKeyError, KeyError)


@pytest.mark.postgres_sample(4)
@pytest.mark.anyio
@pytest.mark.reuses_schema
@pytest.mark.parametrize("case", KEY_CASES.values(), ids=KEY_CASES.keys())
async def test_key_rules_match_langchain(target: str, case: KeyCase) -> None:
    keys = {"input_key": case.input_key, "output_key": case.output_key}
    ref = reference(KEY_CONFIG, **keys)
    ref.save_context(*first_turn(case))
    with expect(case, eventmem_side=False):
        ref.save_context(dict(case.inputs), dict(case.outputs))

    async with eventmem.open(target) as store:
        mem = store.token_buffer("s", **options(KEY_CONFIG, **keys))
        await mem.asave_context(*first_turn(case))
        with expect(case, eventmem_side=True):
            await mem.asave_context(dict(case.inputs), dict(case.outputs))
        loaded = await mem.aload_memory_variables({})
        assert eventmem_buffer(loaded, KEY_CONFIG) == reference_buffer(ref, KEY_CONFIG)
        events = [e async for e in store.events("s")]
        assert len(events) == (1 if case.error else 2)  # nothing written on error


@pytest.mark.postgres_sample(4)
@pytest.mark.reuses_schema
@pytest.mark.parametrize("case", KEY_CASES.values(), ids=KEY_CASES.keys())
def test_key_rules_match_langchain_sync(target: str, case: KeyCase) -> None:
    keys = {"input_key": case.input_key, "output_key": case.output_key}
    ref = reference(KEY_CONFIG, **keys)
    ref.save_context(*first_turn(case))
    with expect(case, eventmem_side=False):
        ref.save_context(dict(case.inputs), dict(case.outputs))

    with eventmem.connect(target) as store:
        mem = store.token_buffer("s", **options(KEY_CONFIG, **keys))
        mem.save_context(*first_turn(case))
        with expect(case, eventmem_side=True):
            mem.save_context(dict(case.inputs), dict(case.outputs))
        loaded = mem.load_memory_variables({})
        assert eventmem_buffer(loaded, KEY_CONFIG) == reference_buffer(ref, KEY_CONFIG)
        assert len(store.events("s")) == (1 if case.error else 2)


# --- 5. many sessions in one store -----------------------------------------------------

SESSIONS = ("alice", "alice ", "用户-三", "🤖 agent/1", "x" * 300)

_session_steps = st.lists(
    st.tuples(
        st.integers(0, len(SESSIONS) - 1),
        st.one_of(saves, saves, saves, st.sampled_from([Clear(), Reopen()])),
    ),
    min_size=1,
    max_size=40,
)


def test_sessions_are_isolated(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=30, postgresql=15)
    @given(
        session_configs=st.lists(configs, min_size=len(SESSIONS), max_size=len(SESSIONS)),
        steps=_session_steps,
    )
    def example(
        session_configs: list[Config], steps: list[tuple[int, Save | Clear | Reopen]]
    ) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play_sessions, target, session_configs, steps)

    example()


async def play_sessions(
    target: str, session_configs: list[Config], steps: list[tuple[int, Save | Clear | Reopen]]
) -> None:
    """Play ``steps`` on five sessions of one store and on five LangChain memories."""
    refs = [reference(config) for config in session_configs]
    writes = [0] * len(SESSIONS)
    store = await eventmem.open(target)
    try:
        mems = [
            store.token_buffer(session, **options(config))
            for session, config in zip(SESSIONS, session_configs, strict=True)
        ]
        for i, (n, op) in enumerate(steps):
            config = session_configs[n]
            if isinstance(op, Save):
                refs[n].save_context(op.inputs(config), op.outputs(config))
                await mems[n].asave_context(op.inputs(config), op.outputs(config))
                writes[n] += 1
            elif isinstance(op, Clear):
                refs[n].clear()
                await mems[n].aclear()
                writes[n] += 1
            else:
                await store.aclose()
                store = await eventmem.open(target)
                mems = [
                    store.token_buffer(session, **options(config))
                    for session, config in zip(SESSIONS, session_configs, strict=True)
                ]
            for session, ref, mem, config, count in zip(
                SESSIONS, refs, mems, session_configs, writes, strict=True
            ):
                loaded = await mem.aload_memory_variables({})
                assert eventmem_buffer(loaded, config) == reference_buffer(ref, config), (
                    f"session {session!r} differs after step {i}"
                )
                assert len([e async for e in store.events(session)]) == count
        assert sorted(await store.sessions()) == sorted(
            session for session, count in zip(SESSIONS, writes, strict=True) if count
        )
    finally:
        await store.aclose()
