"""The drop-in memories keep what LangChain's keep: messages seeded through
``chat_memory`` (alone, first, system, several, list content) behave as in LangChain's
``ConversationTokenBufferMemory``, and a message comes back with everything LangChain
keeps on it. Checked against the real class after every operation of random runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_classic.memory import ConversationTokenBufferMemory as LangChainMemory
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

import eventmem
from eventmem.integrations.langchain import ConversationTokenBufferMemory
from tests.backends import fresh_target
from tests.reference import chat_openai, examples_for

words = st.lists(
    st.sampled_from(["tea", "cats", "long walks", "δέλτα", "📦", "42"]), max_size=8
).map(" ".join)
blocks = st.lists(
    st.one_of(words, words.map(lambda t: {"type": "text", "text": t})), min_size=1, max_size=3
)
api_reply = st.builds(
    lambda text, n: AIMessage(
        content=text,
        id=f"chatcmpl-{n}",
        additional_kwargs={"refusal": None},
        response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"},
        usage_metadata={"input_tokens": n, "output_tokens": 3, "total_tokens": n + 3},
    ),
    words,
    st.integers(1, 99),
)
seeded = st.one_of(
    words.map(lambda t: ("add_user_message", t)),
    words.map(lambda t: ("add_ai_message", t)),
    words.map(lambda t: ("add_message", SystemMessage(content=t))),
    api_reply.map(lambda m: ("add_message", m)),
    blocks.map(lambda b: ("add_message", HumanMessage(content=b, id="h"))),
    st.lists(st.one_of(words.map(HumanMessage), api_reply, blocks.map(AIMessage)), max_size=3).map(
        lambda ms: ("add_messages", ms)
    ),
)
operation = st.one_of(
    seeded,
    st.tuples(st.just("save"), st.tuples(words, words)),
    st.just(("clear", None)),
    st.just(("reopen", None)),
)


@dataclass(frozen=True)
class Config:
    max_token_limit: int
    return_messages: bool


# Below 3 (its count of an empty list) LangChain's pruning pops from an empty buffer.
configs = st.builds(Config, max_token_limit=st.integers(3, 120), return_messages=st.booleans())


@pytest.fixture
def store(target: str) -> Iterator[eventmem.SyncStore]:
    """A blocking store on ``target`` (each backend in turn)."""
    with eventmem.connect(target) as sync_store:
        yield sync_store


def apply(memory: Any, op: str, arg: Any) -> None:
    if op == "save":
        memory.save_context({"input": arg[0]}, {"output": arg[1]})
    elif op == "clear":
        memory.clear()
    elif op == "add_messages":
        memory.chat_memory.add_messages(list(arg))
    else:
        getattr(memory.chat_memory, op)(arg)


def test_seeding_through_chat_memory_is_langchains(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=80, postgresql=30)
    @given(config=configs, ops=st.lists(operation, min_size=1, max_size=10))
    def example(config: Config, ops: list[tuple[str, Any]]) -> None:
        with fresh_target(backend, tmp_path) as target:
            play(target, config, ops)

    example()


def play(target: str, config: Config, ops: Sequence[tuple[str, Any]]) -> None:
    llm = chat_openai("gpt-4o")
    kwargs: dict[str, Any] = {
        "max_token_limit": config.max_token_limit,
        "return_messages": config.return_messages,
    }
    theirs = LangChainMemory(llm=llm, **kwargs)
    store = eventmem.connect(target)
    try:
        ours = ConversationTokenBufferMemory(store=store, session_id="s", llm=llm, **kwargs)
        for op, arg in ops:
            if op == "reopen":  # everything added is durable
                store.close()
                store = eventmem.connect(target)
                ours = ConversationTokenBufferMemory(store=store, session_id="s", llm=llm, **kwargs)
                continue
            apply(theirs, op, arg)
            apply(ours, op, arg)
            assert ours.load_memory_variables({}) == theirs.load_memory_variables({})
            assert ours.chat_memory.messages == theirs.chat_memory.messages
        assert store.verify().ok
    finally:
        store.close()


def test_a_message_comes_back_with_what_langchain_keeps_on_it(store: eventmem.SyncStore) -> None:
    kept: list[BaseMessage] = [
        SystemMessage(content="be brief", id="s1", additional_kwargs={"name": "ops"}),
        HumanMessage(
            content=[
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source_type": "url", "url": "https://x.test/cat.png"},
            ],
            id="h1",
            example=True,
        ),
        AIMessage(
            content="",
            id="chatcmpl-1",
            tool_calls=[{"name": "look", "args": {"q": "cat"}, "id": "c1", "type": "tool_call"}],
            additional_kwargs={
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "look", "arguments": '{"q":"cat"}'},
                    }
                ],
            },
            response_metadata={"model_name": "gpt-4o", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
        ),
        ToolMessage(
            content="a cat", tool_call_id="c1", artifact={"boxes": [[1, 2, 3, 4]]}, status="error"
        ),
        AIMessageChunk(
            content="It is a cat.",
            id="run-2",
            chunk_position="last",
            response_metadata={"finish_reason": "stop"},
        ),
    ]
    memory = ConversationTokenBufferMemory(store=store, session_id="s", return_messages=True)
    memory.chat_memory.add_messages(kept)
    again = ConversationTokenBufferMemory(store=store, session_id="s", return_messages=True)
    assert again.buffer_as_messages == kept
    for ours, original in zip(again.buffer_as_messages, kept, strict=True):
        assert type(ours) is type(original)


@pytest.mark.parametrize(
    "bad",
    [
        AIMessage(content="x", additional_kwargs={"parsed": object()}),
        ToolMessage(content="x", tool_call_id="c", artifact=object()),
        AIMessage(content="x", response_metadata={"when": float("nan")}),
    ],
    ids=["object-in-kwargs", "object-artifact", "nan-metadata"],
)
def test_what_cannot_be_kept_is_refused_and_nothing_is_written(
    store: eventmem.SyncStore, bad: BaseMessage
) -> None:
    memory = ConversationTokenBufferMemory(store=store, session_id="s")
    with pytest.raises(eventmem.NotSerializableError):
        memory.chat_memory.add_messages([HumanMessage(content="fine"), bad])
    assert store.version("s") == 0
