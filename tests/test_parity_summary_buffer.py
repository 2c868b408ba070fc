"""Parity of ``SummaryBufferMemory`` with LangChain's ``ConversationSummaryBufferMemory``.

The reference is ``langchain_classic.memory.ConversationSummaryBufferMemory`` with a
deterministic model (``tests.summarizers.FakeChatOpenAI``: langchain-openai's own token
counting, answers that depend on the whole prompt). eventmem is driven through its async
API against LangChain's async path (``asave_context``, which prunes with ``aprune`` and
``apredict_new_summary``), and through the blocking facade against LangChain's sync path.
After every operation of a random conversation: the loaded buffer (string or messages),
``moving_summary_buffer`` and every prompt either model was sent must be equal, and the
log must hold one event per save, clear and summary; reopening the store must give the
same buffer and summary without asking the model anything. Both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st
from langchain_classic.memory import ConversationSummaryBufferMemory
from langchain_classic.memory.prompt import SUMMARY_PROMPT
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import PromptTemplate

import eventmem
from eventmem.messages import buffer_string
from tests.backends import fresh_target
from tests.reference import examples_for
from tests.strategies import Clear, Config, Reopen, Save, SetLimit, configs, operations
from tests.summarizers import FakeChatOpenAI, fake_chat_openai

pytestmark = pytest.mark.postgres_sample(2, across="module")

Op = Save | Clear | Reopen | SetLimit
Buffer = str | list[tuple[str, str]]

_CLASSES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "human": HumanMessage,
    "ai": AIMessage,
}
roles = st.sampled_from(sorted(_CLASSES))


@dataclass
class Models:
    """The fakes one side has used, in order (a limit change brings a new one)."""

    used: list[FakeChatOpenAI]

    def add(self, model: str) -> FakeChatOpenAI:
        llm = fake_chat_openai(model)
        self.used.append(llm)
        return llm

    @property
    def prompts(self) -> list[str]:
        return [prompt for llm in self.used for prompt in llm.prompts]


def note(before: int, after: int, summary: str) -> None:
    """Label the example for ``--hypothesis-show-statistics``: did saves summarise?"""
    if currently_in_test_context():
        if after > before:
            event("a save summarised" + (" onto a summary" if before else ""))
        if after > before and not summary:
            event("a summary was empty")


def reference(config: Config, role: str, llm: Any) -> Any:
    """LangChain's memory configured like ``config``."""
    return ConversationSummaryBufferMemory(
        llm=llm,
        max_token_limit=config.max_token_limit,
        return_messages=config.return_messages,
        human_prefix=config.human_prefix,
        ai_prefix=config.ai_prefix,
        memory_key=config.memory_key,
        summary_message_cls=_CLASSES[role],
    )


def options(config: Config, role: str, llm: Any) -> dict[str, Any]:
    """``summary_buffer(...)`` keyword arguments for ``config``."""
    return {
        "llm": llm,
        "max_token_limit": config.max_token_limit,
        "model": config.model,
        "return_messages": config.return_messages,
        "human_prefix": config.human_prefix,
        "ai_prefix": config.ai_prefix,
        "memory_key": config.memory_key,
        "summary_role": role,
    }


def comparable(loaded: dict[str, Any], config: Config) -> Buffer:
    """A loaded buffer of either side, in one form."""
    assert list(loaded) == [config.memory_key]
    value = loaded[config.memory_key]
    if config.return_messages:
        assert isinstance(value, list)
        return [
            (m.role, m.text) if isinstance(m, eventmem.Message) else (m.type, m.content)
            for m in value
        ]
    assert isinstance(value, str)
    return value


async def run_async(
    target: str, session: str, config: Config, role: str, ops: Sequence[Op]
) -> None:
    """Play ``ops`` on both memories through their async APIs, comparing after each."""
    refs, ours = Models([]), Models([])
    ref = reference(config, role, refs.add(config.model))
    llm = ours.add(config.model)
    writes = 0
    store = await eventmem.open(target)
    try:
        mem = store.summary_buffer(session, **options(config, role, llm))
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                before = len(refs.prompts)
                await ref.asave_context(op.inputs(config), op.outputs(config))
                await mem.asave_context(op.inputs(config), op.outputs(config))
                note(before, len(refs.prompts), ref.moving_summary_buffer)
                writes += 1
            elif isinstance(op, Clear):
                await ref.aclear()
                await mem.aclear()
                writes += 1
            elif isinstance(op, Reopen):
                await store.aclose()
                store = await eventmem.open(target)
                mem = store.summary_buffer(session, **options(config, role, llm))
            else:
                config = replace(config, max_token_limit=op.max_token_limit, model=op.model)
                ref.max_token_limit, ref.llm = op.max_token_limit, refs.add(op.model)
                llm = ours.add(op.model)
                mem = store.summary_buffer(session, **options(config, role, llm))
            where = f"after operation {i} ({type(op).__name__})"
            assert ours.prompts == refs.prompts, f"prompts differ {where}"
            loaded = await mem.aload_memory_variables({})
            assert comparable(loaded, config) == comparable(
                await ref.aload_memory_variables({}), config
            ), f"buffers differ {where}"
            assert await mem.amoving_summary_buffer() == ref.moving_summary_buffer, where
            assert await mem.abuffer() == loaded[config.memory_key]
            events = [e async for e in store.events(session)]
            assert len(events) == writes + len(refs.prompts), f"event count wrong {where}"
            assert ours.prompts == refs.prompts, f"a load asked the model {where}"
        report = await store.verify()
        assert report.ok, report.problems
    finally:
        await store.aclose()


def run_sync(target: str, session: str, config: Config, role: str, ops: Sequence[Op]) -> None:
    """:func:`run_async` through the blocking facade, against LangChain's sync path."""
    refs, ours = Models([]), Models([])
    ref = reference(config, role, refs.add(config.model))
    llm = ours.add(config.model)
    writes = 0
    store = eventmem.connect(target)
    try:
        mem = store.summary_buffer(session, **options(config, role, llm))
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                before = len(refs.prompts)
                ref.save_context(op.inputs(config), op.outputs(config))
                mem.save_context(op.inputs(config), op.outputs(config))
                note(before, len(refs.prompts), ref.moving_summary_buffer)
                writes += 1
            elif isinstance(op, Clear):
                ref.clear()
                mem.clear()
                writes += 1
            elif isinstance(op, Reopen):
                store.close()
                store = eventmem.connect(target)
                mem = store.summary_buffer(session, **options(config, role, llm))
            else:
                config = replace(config, max_token_limit=op.max_token_limit, model=op.model)
                ref.max_token_limit, ref.llm = op.max_token_limit, refs.add(op.model)
                llm = ours.add(op.model)
                mem = store.summary_buffer(session, **options(config, role, llm))
            where = f"after operation {i} ({type(op).__name__})"
            assert ours.prompts == refs.prompts, f"prompts differ {where}"
            loaded = mem.load_memory_variables({})
            assert comparable(loaded, config) == comparable(
                ref.load_memory_variables({}), config
            ), f"buffers differ {where}"
            assert mem.buffer == ref.buffer or config.return_messages
            assert mem.moving_summary_buffer == ref.moving_summary_buffer, where
            assert len(store.events(session)) == writes + len(refs.prompts), where
        report = store.verify()
        assert report.ok, report.problems
    finally:
        store.close()


# --- 1. random conversations -----------------------------------------------------------


def test_random_conversation_matches_langchain_async(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=120, postgresql=40)
    @given(config=configs, role=roles, ops=operations(max_size=20, with_limit_changes=True))
    def example(config: Config, role: str, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(run_async, target, "session-1", config, role, ops)

    example()


def test_random_conversation_matches_langchain_sync(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=60, postgresql=20)
    @given(config=configs, role=roles, ops=operations(max_size=15, with_limit_changes=True))
    def example(config: Config, role: str, ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            run_sync(target, "session-1", config, role, ops)

    example()


# --- 2. LangChain's own fake model, its own counting, a custom prompt -------------------

_RESPONSES = ["first summary", "", "a summary 🙂 東京", "the human greets the AI"]
_TEMPLATE = "Summary so far: {summary}\nNew:\n{new_lines}\nAnswer with the new summary."


def _bytes_of(text: str) -> list[int]:
    return list(text.encode("utf-8"))  # a deterministic tokenizer: one token per byte


def _our_count(messages: list[eventmem.Message]) -> int:
    # BaseLanguageModel.get_num_tokens_from_messages: each message's buffer line, counted
    return sum(len(_bytes_of(buffer_string([m]))) for m in messages)


@pytest.mark.anyio
@pytest.mark.parametrize("prompt", ["default", "custom"])
async def test_fake_list_llm_and_its_counting_match_langchain(target: str, prompt: str) -> None:
    template = SUMMARY_PROMPT if prompt == "default" else PromptTemplate.from_template(_TEMPLATE)

    def llm() -> FakeListLLM:
        return FakeListLLM(responses=_RESPONSES, custom_get_token_ids=_bytes_of)

    theirs, ours = llm(), llm()
    ref = ConversationSummaryBufferMemory(llm=theirs, max_token_limit=90, prompt=template)
    async with eventmem.open(target) as store:
        mem = store.summary_buffer(
            "s", llm=ours, token_counter=_our_count, max_token_limit=90, prompt=template
        )
        for n in range(12):
            exchange = {"input": f"question {n} " * (n % 4)}, {"output": f"answer {n}"}
            await ref.asave_context(*exchange)
            await mem.asave_context(*exchange)
            assert await mem.abuffer() == await ref.abuffer()
            assert await mem.amoving_summary_buffer() == ref.moving_summary_buffer
        assert ours.i == theirs.i  # both asked their model as often
        summaries = [e.data async for e in store.events("s") if e.kind == "summary"]
        assert len(summaries) >= 3
        for event in summaries:
            assert isinstance(event, eventmem.SummaryRecorded)
            assert event.model == "FakeListLLM"
        assert (await store.verify()).ok


def test_the_default_prompt_is_langchains() -> None:
    import hashlib

    from eventmem._summarizer import SUMMARY_TEMPLATE

    assert SUMMARY_PROMPT.template == SUMMARY_TEMPLATE
    options = eventmem.SummaryBufferOptions(llm=fake_chat_openai("gpt-4o"))
    assert options.prompt_sha256 == hashlib.sha256(SUMMARY_PROMPT.template.encode()).hexdigest()
    assert options.recorded_llm == "FakeChatOpenAI:gpt-4o"


@pytest.mark.anyio
async def test_a_limit_below_the_empty_buffer_prunes_all_where_langchain_raises(
    target: str,
) -> None:
    """Documented in docs/langchain.md: LangChain pops from an empty list."""
    ref = reference(
        Config("gpt-4o", 2, True, "Human", "AI", "history", "input", "output"),
        "system",
        fake_chat_openai("gpt-4o"),
    )
    with pytest.raises(IndexError):
        ref.save_context({"input": "hi"}, {"output": "hello"})
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=fake_chat_openai("gpt-4o"), max_token_limit=2)
        await memory.asave_context({"input": "hi"}, {"output": "hello"})
        assert await memory.achat_messages() == []
        summary = await memory.amoving_summary_buffer()
        assert summary
        assert await memory.amessages() == [eventmem.Message(role="system", content=summary)]
