"""The drop-in ``eventmem.integrations.langchain.ConversationSummaryBufferMemory``.

Against LangChain's class (both with ``tests.summarizers.FakeChatOpenAI``): after every
operation of a random conversation, through the blocking store and the async one, the
loaded variables, ``buffer``, ``moving_summary_buffer`` and ``chat_memory.messages``
are equal, also after the store is reopened; and the two give the same answers in a
legacy ``ConversationChain``. Both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_classic.chains import ConversationChain
from langchain_classic.memory import ConversationSummaryBufferMemory as Theirs
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

import eventmem
from eventmem.integrations.langchain import ConversationSummaryBufferMemory as Ours
from tests.backends import fresh_target
from tests.reference import examples_for
from tests.strategies import Clear, Reopen, Save, limits, operations
from tests.summarizers import fake_chat_openai

_CLASSES: list[type[BaseMessage]] = [SystemMessage, HumanMessage, AIMessage]

settings_strategy = st.fixed_dictionaries(
    {
        "max_token_limit": limits,
        "return_messages": st.booleans(),
        "human_prefix": st.sampled_from(["Human", "User", "用户"]),
        "ai_prefix": st.sampled_from(["AI", "Bot"]),
        "summary_message_cls": st.sampled_from(_CLASSES),
    }
)
Op = Save | Clear | Reopen


def _same(ours: Ours, theirs: Theirs, where: str) -> None:
    assert ours.load_memory_variables({}) == theirs.load_memory_variables({}), where
    assert ours.buffer == theirs.buffer, where
    assert ours.moving_summary_buffer == theirs.moving_summary_buffer, where
    assert ours.chat_memory.messages == theirs.chat_memory.messages, where


def play_sync(target: str, settings: dict[str, Any], ops: Sequence[Op]) -> None:
    theirs = Theirs(llm=fake_chat_openai("gpt-4o"), **settings)
    llm = fake_chat_openai("gpt-4o")
    store = eventmem.connect(target)
    try:
        ours = Ours(store=store, session_id="s", llm=llm, **settings)
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                exchange = {"input": op.input}, {"output": op.output}
                theirs.save_context(*exchange)
                ours.save_context(*exchange)
            elif isinstance(op, Clear):
                theirs.clear()
                ours.clear()
            else:
                store.close()
                store = eventmem.connect(target)
                ours = Ours(store=store, session_id="s", llm=llm, **settings)
            _same(ours, theirs, f"after operation {i} ({type(op).__name__})")
        assert llm.prompts == theirs.llm.prompts  # type: ignore[attr-defined]
    finally:
        store.close()


async def play_async(target: str, settings: dict[str, Any], ops: Sequence[Op]) -> None:
    theirs = Theirs(llm=fake_chat_openai("gpt-4o"), **settings)
    llm = fake_chat_openai("gpt-4o")
    store = await eventmem.open(target)
    try:
        ours = Ours(store=store, session_id="s", llm=llm, **settings)
        for i, op in enumerate(ops):
            if isinstance(op, Save):
                exchange = {"input": op.input}, {"output": op.output}
                await theirs.asave_context(*exchange)
                await ours.asave_context(*exchange)
            elif isinstance(op, Clear):
                await theirs.aclear()
                await ours.aclear()
            else:
                await store.aclose()
                store = await eventmem.open(target)
                ours = Ours(store=store, session_id="s", llm=llm, **settings)
            where = f"after operation {i} ({type(op).__name__})"
            assert await ours.aload_memory_variables({}) == await theirs.aload_memory_variables(
                {}
            ), where
            assert await ours.abuffer() == await theirs.abuffer(), where
            assert await ours.amoving_summary_buffer() == theirs.moving_summary_buffer, where
            assert await ours.chat_memory.aget_messages() == theirs.chat_memory.messages, where
        assert llm.prompts == theirs.llm.prompts  # type: ignore[attr-defined]
    finally:
        await store.aclose()


def test_the_drop_in_matches_langchain_sync(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=40, postgresql=15)
    @given(settings=settings_strategy, ops=operations(max_size=15))
    def example(settings: dict[str, Any], ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            play_sync(target, settings, ops)

    example()


def test_the_drop_in_matches_langchain_async(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=40, postgresql=15)
    @given(settings=settings_strategy, ops=operations(max_size=15))
    def example(settings: dict[str, Any], ops: list[Op]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play_async, target, settings, ops)

    example()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainDeprecationWarning")
def test_the_drop_in_in_a_legacy_conversation_chain(target: str) -> None:
    replies = ["Hello!", "Paris.", "About 2 million people.", "You're welcome."]
    questions = ["Hi", "Capital of France?", "How many live there?", "Thanks"]
    theirs = Theirs(llm=fake_chat_openai("gpt-4o"), max_token_limit=40)
    their_chain = ConversationChain(llm=FakeListLLM(responses=replies), memory=theirs)
    with eventmem.connect(target) as store:
        ours = Ours(store=store, session_id="c", llm=fake_chat_openai("gpt-4o"), max_token_limit=40)
        our_chain = ConversationChain(llm=FakeListLLM(responses=replies), memory=ours)
        for question in questions:
            assert our_chain.invoke({"input": question}) == their_chain.invoke({"input": question})
            _same(ours, theirs, question)
        assert ours.moving_summary_buffer
        kinds = [event.kind for event in store.events("c")]
        assert kinds.count("turn") == len(questions)
        assert kinds.count("summary") >= 1
        assert store.verify().ok


def test_the_drop_in_refuses_what_langchain_refuses(tmp_path: Path) -> None:
    with eventmem.connect(tmp_path / "m.db") as store:
        llm = fake_chat_openai("gpt-4o")
        with pytest.raises(ValueError, match="llm"):
            Ours(store=store, session_id="s")  # type: ignore[call-arg]
        with pytest.raises(eventmem.InvalidInputError, match="summary_message_cls"):
            Ours(store=store, session_id="s", llm=llm, summary_message_cls=BaseMessage)
        from langchain_core.prompts import PromptTemplate

        bad = PromptTemplate.from_template("Summarise {lines}")
        with pytest.raises(ValueError, match="unexpected prompt input variables"):
            Ours(store=store, session_id="s", llm=llm, prompt=bad)
        assert store.count_events() == 0
