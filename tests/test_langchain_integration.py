"""``eventmem.integrations.langchain`` with real LangChain objects and no network.

The drop-in memories are checked against LangChain's own classes (counting with
``ChatOpenAI(model=...).get_num_tokens_from_messages``, or a fake model's own counter),
inside legacy chains and ``AgentExecutor`` driven by fake chat models, from blocking
and from async code. The chat history runs inside ``RunnableWithMessageHistory``.
Conversion is property-tested both ways. Every ``python`` block of ``docs/langchain.md``
runs too. The tests that store anything run against both backends (``target``).
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_classic.base_memory import BaseMemory
from langchain_classic.chains import ConversationChain, LLMChain
from langchain_classic.memory import (
    ConversationTokenBufferMemory as LangChainConversationTokenBufferMemory,
)
from langchain_classic.memory.chat_memory import BaseChatMemory
from langchain_core.agents import AgentAction, AgentActionMessageLog
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    get_buffer_string,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import _convert_message_to_dict
from pydantic import SecretStr, ValidationError

import eventmem
from eventmem import InvalidToolCall, Message, ToolCall
from eventmem.events import StepRecorded, TurnSaved
from eventmem.integrations.langchain import (
    AgentTokenBufferMemory,
    ConversationTokenBufferMemory,
    EventSourcedChatMessageHistory,
    counting_for,
    from_langchain,
    to_langchain,
)
from eventmem.messages import Role

pytestmark = pytest.mark.postgres_sample(3, across="module")

with warnings.catch_warnings():
    # Importing langchain_classic.agents imports langchain_community when it is installed,
    # which warns (DeprecationWarning) on import.
    warnings.filterwarnings("ignore", "`langchain-community` is being sunset", DeprecationWarning)
    from langchain_classic.agents import AgentExecutor, create_openai_tools_agent
    from langchain_classic.agents.format_scratchpad import (
        format_to_openai_function_messages,
        format_to_tool_messages,
    )
    from langchain_classic.agents.output_parsers.tools import ToolAgentAction

ROOT = Path(__file__).resolve().parent.parent
_HYPOTHESIS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def gpt(model: str = "gpt-4o") -> ChatOpenAI:
    """The reference counter (never called: no network)."""
    return ChatOpenAI(model=model, api_key=SecretStr("test"))


@pytest.fixture
def store(target: str) -> Iterator[eventmem.SyncStore]:
    """A blocking store on ``target`` (each backend in turn)."""
    with eventmem.connect(target) as sync_store:
        yield sync_store


def turns_of(events: Sequence[eventmem.StoredEvent]) -> list[str]:
    return [event.kind for event in events]


# --- fake models ----------------------------------------------------------------------


class WordCountingChatModel(FakeListChatModel):
    """A non-OpenAI model with its own counting: 1 + per message (2 + words)."""

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        return 1 + sum(2 + len(get_buffer_string([m]).split()) for m in messages)


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages every chat model call was given."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.prompts.append(list(messages[0]))


class StreamingToolModel(GenericFakeChatModel):
    """Replies with scripted AI messages and streams tool calls as OpenAI models do
    (one ``AIMessageChunk`` with ``tool_call_chunks``), so agents see chunks."""

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._generate(messages, stop=stop).generations[0].message
        chunks = [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
            for i, c in enumerate(getattr(reply, "tool_calls", []))
        ]
        yield ChatGenerationChunk(
            message=AIMessageChunk(content=reply.content, id=reply.id, tool_call_chunks=chunks)
        )


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# --- conversion -----------------------------------------------------------------------

_names = st.text(min_size=1, max_size=8)
_ids = st.none() | st.text(max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_args = st.dictionaries(st.text(max_size=6), _json, max_size=3)
_opt_text = st.none() | st.text(max_size=10)


ROLES: list[Role] = ["human", "ai", "system", "developer", "function", "tool"]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Every shape of :class:`Message` that a LangChain message can carry."""
    role = draw(st.sampled_from(ROLES))
    content = draw(st.text(max_size=30))
    message_id = draw(_ids)
    if role == "ai":
        tool_calls = draw(st.lists(st.builds(ToolCall, _names, _args, _ids), max_size=2))
        invalid = draw(
            st.lists(st.builds(InvalidToolCall, _opt_text, _opt_text, _opt_text, _opt_text))
        )
        function_call = None if tool_calls else draw(st.none() | _args)
        return Message(
            role="ai",
            content=content,
            name=draw(st.none() | _names),
            id=message_id,
            tool_calls=tuple(tool_calls),
            invalid_tool_calls=tuple(invalid[:2]),
            function_call=function_call,
        )
    if role == "tool":
        return Message(
            role="tool",
            content=content,
            tool_call_id=draw(st.text(max_size=10)),
            name=draw(st.none() | _names),
            id=message_id,
        )
    name = draw(_names) if role == "function" else draw(st.none() | _names)
    return Message(role=role, content=content, name=name, id=message_id)


@st.composite
def langchain_messages(draw: st.DrawFn) -> BaseMessage:
    """The message objects LangChain itself builds (memories, formatters, models)."""
    kind = draw(st.sampled_from(["human", "ai", "ai_function", "system", "function", "tool"]))
    content = draw(st.text(max_size=30))
    message_id = draw(_ids)
    if kind == "human":
        return HumanMessage(content=content, id=message_id, name=draw(st.none() | _names))
    if kind == "system":
        return SystemMessage(content=content, id=message_id, name=draw(st.none() | _names))
    if kind == "function":
        return FunctionMessage(content=content, name=draw(_names), id=message_id)
    if kind == "tool":
        name = draw(st.none() | _names)
        return ToolMessage(
            content=content,
            tool_call_id=draw(st.text(max_size=10)),
            id=message_id,
            additional_kwargs={} if name is None else {"name": name},
        )
    if kind == "ai_function":
        call = {"name": draw(_names), "arguments": json.dumps(draw(_args))}
        return AIMessage(content=content, id=message_id, additional_kwargs={"function_call": call})
    calls = draw(st.lists(st.builds(tool_call, name=_names, args=_args, id=_ids), max_size=2))
    invalid = draw(
        st.lists(
            st.builds(
                invalid_tool_call, name=_opt_text, args=_opt_text, id=_opt_text, error=_opt_text
            ),
            max_size=2,
        )
    )
    return AIMessage(
        content=content,
        id=message_id,
        name=draw(st.none() | _names),
        tool_calls=calls,
        invalid_tool_calls=invalid,
    )


@_HYPOTHESIS
@given(messages())
def test_messages_convert_to_langchain_and_back_losslessly(message: Message) -> None:
    converted = to_langchain(message)
    assert isinstance(converted, BaseMessage)
    assert from_langchain(converted) == message


@_HYPOTHESIS
@given(langchain_messages())
def test_langchain_messages_convert_to_eventmem_and_back_unchanged(lc: BaseMessage) -> None:
    assert to_langchain(from_langchain(lc)) == lc


@_HYPOTHESIS
@given(st.lists(langchain_messages(), max_size=6))
def test_conversion_keeps_what_the_model_sees_and_its_token_count(
    lcs: list[BaseMessage],
) -> None:
    back = [to_langchain(from_langchain(m)) for m in lcs]
    assert [_convert_message_to_dict(m) for m in back] == [_convert_message_to_dict(m) for m in lcs]
    assert get_buffer_string(back) == get_buffer_string(lcs)


@_HYPOTHESIS
@given(st.lists(messages(), max_size=5), st.text(max_size=5), st.text(max_size=5))
def test_eventmem_renders_buffers_exactly_like_get_buffer_string(
    stored: list[Message], human_prefix: str, ai_prefix: str
) -> None:
    # The memories render string buffers with eventmem.buffer_string (faster).
    assert eventmem.buffer_string(stored, human_prefix, ai_prefix) == get_buffer_string(
        [to_langchain(m) for m in stored], human_prefix=human_prefix, ai_prefix=ai_prefix
    )


def test_provider_metadata_is_kept_and_the_api_payload_is_identical() -> None:
    # What ChatOpenAI returns: raw tool calls, refusal, response and usage metadata.
    from_api = AIMessage(
        content="",
        id="chatcmpl-1",
        additional_kwargs={
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                }
            ],
            "refusal": None,
        },
        response_metadata={"model_name": "gpt-4o", "finish_reason": "tool_calls"},
        usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    )
    assert from_api.tool_calls[0]["args"] == {"a": 1, "b": 2}
    stored = from_langchain(from_api)
    assert stored.metadata is not None
    assert stored.metadata["langchain"]["usage_metadata"]["total_tokens"] == 15
    back = to_langchain(stored)
    assert back == from_api
    assert back.additional_kwargs["refusal"] is None
    assert _convert_message_to_dict(back) == _convert_message_to_dict(from_api)
    llm = gpt()
    assert llm.get_num_tokens_from_messages([back]) == llm.get_num_tokens_from_messages([from_api])


def test_chunks_convert_like_the_messages_they_stand_for() -> None:
    chunk = AIMessageChunk(
        content="thinking",
        id="run-1",
        tool_call_chunks=[tool_call_chunk(name="add", args='{"a": 1}', id="c1", index=0)],
    )
    stored = from_langchain(chunk)
    assert msgspec.structs.replace(stored, metadata=None) == Message(
        role="ai", content="thinking", id="run-1", tool_calls=(ToolCall("add", {"a": 1}, "c1"),)
    )
    # What LangChain keeps comes back: the chunk, with its tool call chunks as streamed.
    back = to_langchain(stored)
    assert isinstance(back, AIMessageChunk)
    assert back == chunk


def test_steps_whose_message_log_holds_chunks_are_stored(store: eventmem.SyncStore) -> None:
    chunk = AIMessageChunk(
        content="",
        tool_call_chunks=[tool_call_chunk(name="add", args='{"a": 1}', id="c1", index=0)],
    )
    action = {"tool": "add", "tool_input": {"a": 1}, "message_log": [chunk], "tool_call_id": "c1"}
    memory = AgentTokenBufferMemory(store=store, session_id="s", format_as_tools=True)
    memory.save_context({"input": "q"}, {"output": "a", "intermediate_steps": [(action, 1)]})
    assert memory.buffer[1:3] == [
        AIMessage(content="", tool_calls=[tool_call(name="add", args={"a": 1}, id="c1")]),
        ToolMessage(content="1", tool_call_id="c1", additional_kwargs={"name": "add"}),
    ]


@pytest.mark.parametrize(
    "message",
    [ChatMessage(role="critic", content="meh")],
    ids=["custom-role"],
)
def test_messages_eventmem_cannot_store_are_refused(message: BaseMessage) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        from_langchain(message)


def test_returned_messages_are_fresh_objects(store: eventmem.SyncStore) -> None:
    memory = AgentTokenBufferMemory(store=store, session_id="s", format_as_tools=True)
    memory.save_context({"input": "1+2?"}, {"output": "3", "intermediate_steps": steps(1)})
    first = memory.buffer[1]
    assert isinstance(first, AIMessage)
    first.tool_calls[0]["args"]["a"] = 999
    again = memory.buffer[1]
    assert isinstance(again, AIMessage)
    assert again.tool_calls[0]["args"] == {"a": 1, "b": 2}


# --- token counting -------------------------------------------------------------------


def test_chat_openai_counts_with_eventmem_for_its_model() -> None:
    assert counting_for(gpt("gpt-4o"), "ignored") == ("gpt-4o", None)
    assert counting_for(gpt("gpt-3.5-turbo-0301"), "x") == ("gpt-3.5-turbo-0301", None)
    renamed = ChatOpenAI(model="my-proxy", tiktoken_model_name="gpt-4", api_key=SecretStr("t"))
    assert counting_for(renamed, "x") == ("gpt-4", None)
    assert counting_for(None, "gpt-4.1") == ("gpt-4.1", None)


def test_a_chat_openai_subclass_with_its_own_counting_is_asked() -> None:
    class Padded(ChatOpenAI):
        def get_num_tokens_from_messages(self, messages: Any, *args: Any, **kwargs: Any) -> int:
            return 100 + len(messages)

    _, counter = counting_for(Padded(model="gpt-4o", api_key=SecretStr("t")), "gpt-4o")
    assert counter is not None
    assert counter.name == "langchain:Padded:gpt-4o"
    assert (counter.overhead, counter.count_message(Message(role="human", content="x"))) == (100, 1)


def test_an_unknown_openai_model_fails_at_construction(store: eventmem.SyncStore) -> None:
    with pytest.raises(eventmem.UnknownModelError):
        ConversationTokenBufferMemory(store=store, session_id="s", llm=gpt("llama-3"))


SCRIPT = [
    ("hi", "hello! how can I help?"),
    ("what's the weather like in Paris today?", "Sunny, 24°C, light wind from the west."),
    ("and tomorrow? " * 6, "Rain is expected in the afternoon; take an umbrella. " * 3),
    ("Tell me a joke about databases", "Why did the DBA leave? Too many relationships."),
    ("<|endoftext|> is just text here", "Noted."),
    ("日本語でお願いします", "はい、わかりました。"),
    ("x", "y"),
]


def reference(llm: Any, **options: Any) -> Any:
    return LangChainConversationTokenBufferMemory(llm=llm, **options)


@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize("return_messages", [False, True])
@pytest.mark.parametrize("limit", [3, 40, 90, 2000])
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-3.5-turbo-0301"])
def test_conversation_memory_matches_langchain_token_for_token(
    store: eventmem.SyncStore, model: str, limit: int, return_messages: bool
) -> None:
    llm = gpt(model)
    options: dict[str, Any] = {
        "max_token_limit": limit,
        "return_messages": return_messages,
        "human_prefix": "User",
        "ai_prefix": "Bot",
        "memory_key": "chat_history",
    }
    theirs = reference(llm, **options)
    ours = ConversationTokenBufferMemory(store=store, session_id="s", llm=llm, **options)
    script = [(q, a) for q, a in SCRIPT if "<|" not in q]  # LangChain raises on special tokens
    for question, answer in script:
        theirs.save_context({"question": question}, {"answer": answer})
        ours.save_context({"question": question}, {"answer": answer})
        assert ours.load_memory_variables({}) == theirs.load_memory_variables({})
        assert ours.buffer == theirs.buffer
        assert ours.buffer_as_str == theirs.buffer_as_str
        assert ours.buffer_as_messages == theirs.buffer_as_messages
        assert ours.chat_memory.messages == theirs.chat_memory.messages
    assert turns_of(store.events("s")) == ["turn"] * len(script)


def test_special_tokens_count_as_text(store: eventmem.SyncStore) -> None:
    ours = ConversationTokenBufferMemory(store=store, session_id="s", llm=gpt(), max_token_limit=40)
    ours.save_context({"input": "<|endoftext|> and <|fim_prefix|>"}, {"output": "ok"})
    assert "<|endoftext|>" in ours.buffer_as_str
    with pytest.raises(ValueError, match="special token"):
        gpt().get_num_tokens_from_messages(ours.buffer_as_messages)


def test_another_model_counts_with_its_own_method(store: eventmem.SyncStore) -> None:
    llm = WordCountingChatModel(responses=["unused"])
    theirs = reference(llm, max_token_limit=20, return_messages=True)
    ours = ConversationTokenBufferMemory(
        store=store, session_id="s", llm=llm, max_token_limit=20, return_messages=True
    )
    for question, answer in SCRIPT:
        theirs.save_context({"input": question}, {"output": answer})
        ours.save_context({"input": question}, {"output": answer})
        assert ours.buffer == theirs.buffer
    saves = [e.data for e in store.events("s") if isinstance(e.data, TurnSaved)]
    assert {(t.counter, t.overhead, t.model) for t in saves} == {
        ("langchain:WordCountingChatModel", 1, None)
    }


def test_key_rules_are_langchains(store: eventmem.SyncStore) -> None:
    ours = ConversationTokenBufferMemory(store=store, session_id="s")
    theirs = reference(gpt())
    for memory in (ours, theirs):
        with pytest.raises(ValueError, match="One input key expected"):
            memory.save_context({"a": "1", "b": "2"}, {"output": "x"})
        with pytest.warns(UserWarning, match="multiple output keys"):
            memory.save_context({"input": "q", "stop": ["\n"]}, {"output": "a", "other": "b"})
        with pytest.raises(ValueError, match="Please set the 'output_key'"):
            memory.save_context({"input": "q"}, {"x": "a", "y": "b"})
    assert ours.buffer == theirs.buffer == "Human: q\nAI: a"
    keyed = ConversationTokenBufferMemory(store=store, session_id="k", input_key="q")
    with pytest.raises(KeyError):
        keyed.save_context({"input": "x"}, {"output": "y"})
    assert store.events("k") == []


def test_langchain_str_subclasses_are_stored_as_text(store: eventmem.SyncStore) -> None:
    # AIMessage.text is a TextAccessor (a str subclass); ConversationChain outputs it.
    text = AIMessage(content="plain").text
    assert type(text) is not str
    memory = AgentTokenBufferMemory(store=store, session_id="s", format_as_tools=True)
    (action, _), *_ = steps(1)
    memory.save_context({"input": text}, {"output": text, "intermediate_steps": [(action, text)]})
    assert [m.content for m in memory.buffer] == ["plain", "", "plain", "plain"]


# --- the drop-in memories -------------------------------------------------------------


def test_they_are_real_langchain_memories(store: eventmem.SyncStore) -> None:
    conversation = ConversationTokenBufferMemory(store=store, session_id="s")
    agent = AgentTokenBufferMemory(store=store, session_id="a")
    for memory in (conversation, agent):
        assert isinstance(memory, BaseMemory)
        assert isinstance(memory, BaseChatMemory)
        assert isinstance(memory.chat_memory, BaseChatMessageHistory)
        assert memory.memory_variables == ["history"]
    assert (conversation.max_token_limit, conversation.return_messages) == (2000, False)
    assert (agent.max_token_limit, agent.return_messages, agent.output_key) == (
        12000,
        True,
        "output",
    )


def test_the_drop_ins_take_their_defaults_from_the_options_struct() -> None:
    import dataclasses

    for memory, options in (
        (ConversationTokenBufferMemory, eventmem.BufferOptions),
        (AgentTokenBufferMemory, eventmem.AgentBufferOptions),
    ):
        defaults = {f.name: f.default for f in dataclasses.fields(options) if f.init}
        for name, field in memory.model_fields.items():
            if name in defaults and name != "token_counter":
                assert field.default == defaults[name], (memory.__name__, name)
    history = inspect.signature(EventSourcedChatMessageHistory).parameters
    assert history["max_token_limit"].default == eventmem.BufferOptions.max_token_limit
    assert history["model"].default == eventmem.BufferOptions.model


def test_one_from_langchain_and_two_distinct_agent_memories() -> None:
    import eventmem.integrations.langchain as integration
    import eventmem.messages

    assert integration.from_langchain is eventmem.messages.from_langchain
    assert not issubclass(integration.AgentTokenBufferMemory, eventmem.AgentTokenBufferMemory)
    assert issubclass(integration.AgentTokenBufferMemory, BaseMemory)


def test_a_drop_in_hands_its_options_to_the_core_memory(store: eventmem.SyncStore) -> None:
    memory = AgentTokenBufferMemory(
        store=store, session_id="s", max_token_limit=99, prune="pair_safe", format_as_tools=True
    )
    core = memory.chat_memory._session.memory  # type: ignore[attr-defined]
    assert core.options == eventmem.AgentBufferOptions(
        max_token_limit=99,
        prune="pair_safe",
        format_as_tools=True,
        token_counter=core.options.token_counter,
        model=core.options.model,
    )
    memory.prune = "langchain"
    memory.load_memory_variables({})  # the next use rebuilds the core memory
    assert memory.chat_memory._session.memory.prune == "langchain"  # type: ignore[attr-defined]


def test_bad_construction_is_refused_clearly(store: eventmem.SyncStore, tmp_path: Path) -> None:
    with pytest.raises(eventmem.InvalidInputError, match=r"eventmem\.SyncStore .*connect"):
        ConversationTokenBufferMemory(store=cast(Any, str(tmp_path / "x.db")), session_id="s")
    with pytest.raises(ValidationError):
        ConversationTokenBufferMemory(
            store=store, session_id="s", max_token_limit=cast(Any, "many")
        )
    with pytest.raises(eventmem.InvalidInputError, match="chat_memory cannot be given"):
        ConversationTokenBufferMemory(
            store=store,
            session_id="s",
            chat_memory=EventSourcedChatMessageHistory(store, "s"),
        )
    with pytest.raises(eventmem.InvalidInputError, match="max_token_limit"):
        ConversationTokenBufferMemory(store=store, session_id="s", max_token_limit=-1)
    with pytest.raises(eventmem.InvalidInputError, match="session id"):
        ConversationTokenBufferMemory(store=store, session_id="")
    assert store.sessions() == []


def test_changing_a_field_takes_effect_at_the_next_save(store: eventmem.SyncStore) -> None:
    memory = ConversationTokenBufferMemory(store=store, session_id="s", llm=gpt())
    memory.save_context({"input": "hello there"}, {"output": "general kenobi"})
    memory.max_token_limit = 15
    memory.save_context({"input": "again"}, {"output": "yes"})
    assert memory.buffer == "Human: again\nAI: yes"
    assert gpt().get_num_tokens_from_messages(memory.buffer_as_messages) <= 15


def test_the_buffer_survives_reopening_the_store(target: str) -> None:
    with eventmem.connect(target) as first:
        memory = ConversationTokenBufferMemory(store=first, session_id="u1", llm=gpt())
        memory.save_context({"input": "my name is Ada"}, {"output": "hi Ada"})
    with eventmem.connect(target) as second:
        again = ConversationTokenBufferMemory(store=second, session_id="u1", llm=gpt())
        assert again.load_memory_variables({}) == {"history": "Human: my name is Ada\nAI: hi Ada"}
        again.clear()
        assert again.buffer == ""
        assert turns_of(second.events("u1")) == ["turn", "clear"]


def test_asave_context_prunes_where_langchains_does_not(store: eventmem.SyncStore) -> None:
    llm = gpt()
    theirs = reference(llm, max_token_limit=30)
    ours = ConversationTokenBufferMemory(store=store, session_id="s", llm=llm, max_token_limit=30)

    async def chat() -> None:
        for question, answer in SCRIPT[:4]:
            await theirs.asave_context({"input": question}, {"output": answer})
            await ours.asave_context({"input": question}, {"output": answer})

    anyio.run(chat)
    assert llm.get_num_tokens_from_messages(theirs.chat_memory.messages) > 30
    assert llm.get_num_tokens_from_messages(ours.buffer_as_messages) <= 30
    pruned = reference(llm, max_token_limit=30)
    for question, answer in SCRIPT[:4]:
        pruned.save_context({"input": question}, {"output": answer})
    assert ours.buffer == pruned.buffer


@pytest.mark.anyio
async def test_async_methods_inside_a_running_loop_with_a_sync_store(
    store: eventmem.SyncStore,
) -> None:
    memory = ConversationTokenBufferMemory(store=store, session_id="s", return_messages=True)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(20):
            await memory.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})
        assert len((await memory.aload_memory_variables({}))["history"]) == 40
        await memory.aclear()
        tg.cancel_scope.cancel()
    # The loop kept running while the store worked: a blocked loop would tick about
    # once per await (22 of them).
    assert ticks > 60
    assert (await memory.aload_memory_variables({})) == {"history": []}
    with pytest.raises(eventmem.SyncInAsyncContextError):
        memory.load_memory_variables({})


@pytest.mark.anyio
async def test_both_apis_with_an_async_store(target: str) -> None:
    async with eventmem.open(target) as async_store:
        memory = ConversationTokenBufferMemory(store=async_store, session_id="s", llm=gpt())
        await memory.asave_context({"input": "from the loop"}, {"output": "ok"})
        # blocking methods work from another thread while the store's loop runs ...
        await anyio.to_thread.run_sync(
            memory.save_context, {"input": "from a thread"}, {"output": "ok"}
        )
        assert await anyio.to_thread.run_sync(memory.load_memory_variables, {}) == (
            await memory.aload_memory_variables({})
        )
        # ... and refuse on the loop's own thread instead of deadlocking it.
        with pytest.raises(eventmem.SyncInAsyncContextError):
            memory.save_context({"input": "x"}, {"output": "y"})
        assert [m.content for m in (await async_store.messages("s"))] == [
            "from the loop",
            "ok",
            "from a thread",
            "ok",
        ]


@pytest.mark.anyio
async def test_blocking_code_in_a_worker_thread_reaches_an_async_store(target: str) -> None:
    async with eventmem.open(target) as async_store:
        EventSourcedChatMessageHistory(async_store, "warm-up")  # seen on the store's loop

        def sync_endpoint() -> list[str]:  # e.g. a sync web handler run in a threadpool
            chain = RunnableWithMessageHistory(
                FakeListChatModel(responses=["pong"]),
                lambda session_id: EventSourcedChatMessageHistory(async_store, session_id),
            )
            chain.invoke("ping", {"configurable": {"session_id": "t"}})
            return [
                str(m.content) for m in EventSourcedChatMessageHistory(async_store, "t").messages
            ]

        assert await anyio.to_thread.run_sync(sync_endpoint) == ["ping", "pong"]


def test_blocking_methods_on_an_async_store_without_its_loop_fail_clearly(
    target: str,
) -> None:
    async def make() -> ConversationTokenBufferMemory:
        async_store = await eventmem.open(target)
        memory = ConversationTokenBufferMemory(store=async_store, session_id="s")
        await async_store.aclose()
        return memory

    memory = anyio.run(make)
    with pytest.raises(eventmem.EventmemError, match=r"eventmem\.connect"):
        memory.load_memory_variables({})


# --- legacy chains --------------------------------------------------------------------


def test_conversation_chain_remembers_across_restarts(target: str) -> None:
    recorder = PromptRecorder()
    replies = ["Hello Ada!", "You are Ada.", "Still Ada."]
    with eventmem.connect(target) as sync_store:
        chain = ConversationChain(
            llm=FakeListChatModel(responses=replies, callbacks=[recorder]),
            memory=ConversationTokenBufferMemory(
                store=sync_store, session_id="ada", llm=gpt(), max_token_limit=500
            ),
        )
        assert chain.invoke({"input": "I am Ada"})["response"] == "Hello Ada!"
        assert chain.invoke({"input": "Who am I?"})["response"] == "You are Ada."
        assert "Human: I am Ada\nAI: Hello Ada!" in recorder.prompts[1][0].content
    with eventmem.connect(target) as sync_store:  # a new process, the same store
        chain = ConversationChain(
            llm=FakeListChatModel(responses=replies[2:], callbacks=[recorder]),
            memory=ConversationTokenBufferMemory(
                store=sync_store, session_id="ada", llm=gpt(), max_token_limit=500
            ),
        )
        chain.invoke({"input": "And now?"})
        assert (
            "Human: I am Ada\nAI: Hello Ada!\nHuman: Who am I?\nAI: You are Ada."
            in recorder.prompts[2][0].content
        )
        assert turns_of(sync_store.events("ada")) == ["turn"] * 3


def chat_prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync-store", "async-store"])
async def test_llm_chain_ainvoke_with_message_memory(
    kind: str, store: eventmem.SyncStore, target: str
) -> None:
    async with eventmem.open(target) as async_store:  # a second connection to the store
        in_store = store if kind == "sync-store" else async_store
        recorder = PromptRecorder()
        memory = ConversationTokenBufferMemory(
            store=in_store, session_id="s", llm=gpt(), max_token_limit=60, return_messages=True
        )
        chain = LLMChain(
            llm=FakeListChatModel(
                responses=[f"answer {i}" for i in range(6)], callbacks=[recorder]
            ),
            prompt=chat_prompt(),
            memory=memory,
        )
        for i in range(6):
            before = (await memory.aload_memory_variables({}))["history"]
            result = await chain.ainvoke({"question": f"question number {i}?"})
            assert result["text"] == f"answer {i}"
            assert recorder.prompts[-1][1:-1] == before  # the model saw the memory
        history = (await memory.aload_memory_variables({}))["history"]
        assert history[-2:] == [
            HumanMessage(content="question number 5?"),
            AIMessage(content="answer 5"),
        ]
        assert gpt().get_num_tokens_from_messages(history) <= 60
        assert len(history) < 12  # pruned


# --- agents ---------------------------------------------------------------------------


def steps(n: int, *, parallel: bool = False) -> list[tuple[Any, Any]]:
    """``n`` tool-calling steps as ``create_openai_tools_agent`` produces them."""
    calls = [tool_call(name="add", args={"a": i, "b": 2}, id=f"call_{i}") for i in range(1, n + 1)]
    if parallel:
        shared = AIMessage(content="", tool_calls=calls)
        return [
            (
                ToolAgentAction(
                    tool="add",
                    tool_input=c["args"],
                    log="",
                    message_log=[shared],
                    tool_call_id=c["id"],
                ),
                c["args"]["a"] + 2,
            )
            for c in calls
        ]
    return [
        (
            ToolAgentAction(
                tool="add",
                tool_input=c["args"],
                log="",
                message_log=[AIMessage(content="", tool_calls=[c])],
                tool_call_id=c["id"],
            ),
            {"sum": c["args"]["a"] + 2},
        )
        for c in calls
    ]


def function_steps(n: int) -> list[tuple[Any, Any]]:
    """OpenAI-functions steps, and a plain ``AgentAction`` (rendered as its log)."""
    result: list[tuple[Any, Any]] = [
        (
            AgentActionMessageLog(
                tool="add",
                tool_input={"a": i, "b": 1},
                log="",
                message_log=[
                    AIMessage(
                        content="",
                        additional_kwargs={
                            "function_call": {"name": "add", "arguments": f'{{"a": {i}, "b": 1}}'}
                        },
                    )
                ],
            ),
            str(i + 1),
        )
        for i in range(n)
    ]
    result.append((AgentAction(tool="add", tool_input="1 1", log="Thought: add them"), "2"))
    return result


def reference_agent_buffer(
    turns: Sequence[tuple[str, list[tuple[Any, Any]], str]],
    *,
    format_as_tools: bool,
    limit: int,
) -> list[BaseMessage]:
    """LangChain 0.3's ``AgentTokenBufferMemory.save_context`` (broken in classic 1.x)."""
    llm = gpt()
    buffer: list[BaseMessage] = []
    fmt = format_to_tool_messages if format_as_tools else format_to_openai_function_messages
    for question, intermediate, answer in turns:
        buffer.append(HumanMessage(content=question))
        buffer.extend(fmt(intermediate))
        buffer.append(AIMessage(content=answer))
        while buffer and llm.get_num_tokens_from_messages(buffer) > limit:
            buffer.pop(0)
    return buffer


@pytest.mark.parametrize("format_as_tools", [False, True])
@pytest.mark.parametrize("limit", [60, 150, 12000])
def test_agent_memory_matches_langchain(
    store: eventmem.SyncStore, format_as_tools: bool, limit: int
) -> None:
    def make(i: int) -> list[tuple[Any, Any]]:
        if format_as_tools:
            return steps(i % 3 + 1, parallel=i % 2 == 1)
        return function_steps(i % 3)

    turns = [(f"question {i}", make(i), f"the answer is {i}") for i in range(5)]
    memory = AgentTokenBufferMemory(
        store=store,
        session_id="agent",
        llm=gpt(),
        max_token_limit=limit,
        format_as_tools=format_as_tools,
    )
    for n, (question, intermediate, answer) in enumerate(turns, start=1):
        memory.save_context(
            {"input": question}, {"output": answer, "intermediate_steps": intermediate}
        )
        expected = reference_agent_buffer(turns[:n], format_as_tools=format_as_tools, limit=limit)
        assert memory.buffer == expected
        assert memory.load_memory_variables({}) == {"history": expected}
    kinds = turns_of(store.events("agent"))
    assert kinds.count("turn") == 5
    assert kinds.count("step") == sum(len(t[1]) for t in turns)
    as_text = AgentTokenBufferMemory(
        store=store,
        session_id="agent",
        llm=gpt(),
        return_messages=False,
        human_prefix="User",
        max_token_limit=limit,
    )
    assert as_text.load_memory_variables({}) == {
        "history": get_buffer_string(expected, human_prefix="User")
    }


def test_pair_safe_pruning_never_starts_with_a_tool_result(store: eventmem.SyncStore) -> None:
    memory = AgentTokenBufferMemory(
        store=store,
        session_id="a",
        llm=gpt(),
        format_as_tools=True,
        prune="pair_safe",
        max_token_limit=45,
    )
    for i in range(6):
        memory.save_context(
            {"input": f"q{i}"}, {"output": "done", "intermediate_steps": steps(2, parallel=True)}
        )
        buffer = memory.buffer
        assert buffer
        assert not isinstance(buffer[0], ToolMessage)
        assert gpt().get_num_tokens_from_messages(buffer) <= 45


def test_steps_recorded_live_are_not_recorded_twice(store: eventmem.SyncStore) -> None:
    memory = AgentTokenBufferMemory(store=store, session_id="a", format_as_tools=True)
    intermediate = steps(2)
    for action, observation in intermediate:
        memory.record_step(action, observation)
    memory.save_context({"input": "q"}, {"output": "a", "intermediate_steps": intermediate})
    events = store.events("a")
    assert turns_of(events) == ["step", "step", "turn"]
    assert all(e.data.live for e in events if isinstance(e.data, StepRecorded))
    assert memory.buffer == reference_agent_buffer(
        [("q", intermediate, "a")], format_as_tools=True, limit=12000
    )


def test_without_intermediate_steps_a_turn_keeps_its_live_steps(store: eventmem.SyncStore) -> None:
    memory = AgentTokenBufferMemory(store=store, session_id="a", format_as_tools=True)
    memory.save_context({"input": "hi"}, {"output": "hello"})
    (action, observation), *_ = steps(1)
    memory.record_step(action, observation)
    memory.save_context({"input": "1+2?"}, {"output": "3"})
    assert [type(m).__name__ for m in memory.buffer] == [
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert turns_of(store.events("a")) == ["turn", "step", "turn"]


def tool_agent(memory: AgentTokenBufferMemory, recorder: PromptRecorder) -> AgentExecutor:
    replies = iter(
        [
            AIMessage(
                content="", tool_calls=[tool_call(name="add", args={"a": 1, "b": 2}, id="c1")]
            ),
            AIMessage(content="1 + 2 = 3"),
            AIMessage(
                content="",
                tool_calls=[
                    tool_call(name="add", args={"a": 3, "b": 4}, id="c2"),
                    tool_call(name="add", args={"a": 5, "b": 6}, id="c3"),
                ],
            ),
            AIMessage(content="7 and 11"),
        ]
    )
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You add numbers."),
            MessagesPlaceholder("history"),
            ("human", "{input}"),
            MessagesPlaceholder("agent_scratchpad"),
        ]
    )
    model = StreamingToolModel(messages=replies, callbacks=[recorder])
    agent = create_openai_tools_agent(model, [add], prompt)
    return AgentExecutor(agent=agent, tools=[add], memory=memory, return_intermediate_steps=True)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
def test_agent_executor_keeps_tool_steps_as_events(store: eventmem.SyncStore, mode: str) -> None:
    memory = AgentTokenBufferMemory(
        store=store, session_id="run", llm=gpt(), format_as_tools=True, max_token_limit=2000
    )
    recorder = PromptRecorder()
    executor = tool_agent(memory, recorder)

    def run(question: str) -> dict[str, Any]:
        if mode == "invoke":
            result: dict[str, Any] = executor.invoke({"input": question})
            return result

        async def go() -> dict[str, Any]:
            result: dict[str, Any] = await executor.ainvoke({"input": question})
            return result

        return anyio.run(go)

    first = run("What is 1 + 2?")
    second = run("And 3 + 4, 5 + 6?")
    assert (first["output"], second["output"]) == ("1 + 2 = 3", "7 and 11")
    assert isinstance(first["intermediate_steps"][0][0].message_log[0], AIMessageChunk)
    assert turns_of(store.events("run")) == ["step", "turn", "step", "step", "turn"]
    buffer = memory.buffer
    assert [type(m).__name__ for m in buffer] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",  # one AI message with both parallel calls
        "ToolMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert [m.content for m in buffer if isinstance(m, ToolMessage)] == ["3", "7", "11"]
    assert isinstance(buffer[5], AIMessage)
    assert buffer[5].tool_calls == [
        tool_call(name="add", args={"a": 3, "b": 4}, id="c2"),
        tool_call(name="add", args={"a": 5, "b": 6}, id="c3"),
    ]
    # The second run's first model call saw the first run, tool call and result included.
    second_run_prompt = recorder.prompts[2]
    assert second_run_prompt[1:5] == buffer[:4]
    assert gpt().get_num_tokens_from_messages(buffer) <= 2000


def test_agent_executor_with_openai_functions(store: eventmem.SyncStore) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "`langchain-community` is being sunset", DeprecationWarning
        )
        from langchain_classic.agents import create_openai_functions_agent

    call = {"name": "add", "arguments": '{"a": 20, "b": 22}'}
    model = GenericFakeChatModel(  # streams the function call in pieces
        messages=iter(
            [AIMessage(content="", additional_kwargs={"function_call": call}), "It is 42."]
        )
    )
    prompt = ChatPromptTemplate.from_messages(
        [
            MessagesPlaceholder("history"),
            ("human", "{input}"),
            MessagesPlaceholder("agent_scratchpad"),
        ]
    )
    memory = AgentTokenBufferMemory(store=store, session_id="f", llm=gpt())
    executor = AgentExecutor(
        agent=create_openai_functions_agent(model, [add], prompt),
        tools=[add],
        memory=memory,
        return_intermediate_steps=True,
    )
    assert executor.invoke({"input": "20 + 22?"})["output"] == "It is 42."
    assert turns_of(store.events("f")) == ["step", "turn"]
    buffer = memory.buffer
    assert buffer == [
        HumanMessage(content="20 + 22?"),
        AIMessage(content="", additional_kwargs={"function_call": call}, id=buffer[1].id),
        FunctionMessage(name="add", content="42"),
        AIMessage(content="It is 42."),
    ]


# --- the chat history -----------------------------------------------------------------


def history_chain(recorder: PromptRecorder, get_history: Any, n: int) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    model = FakeListChatModel(responses=[f"reply number {i}" for i in range(n)])
    return RunnableWithMessageHistory(
        prompt | model,
        get_history,
        input_messages_key="input",
        history_messages_key="history",
    ).with_config(callbacks=[recorder])


def test_runnable_with_message_history(store: eventmem.SyncStore) -> None:
    recorder = PromptRecorder()

    def get_history(session_id: str) -> EventSourcedChatMessageHistory:
        return EventSourcedChatMessageHistory(store, session_id, max_token_limit=50, llm=gpt())

    chain = history_chain(recorder, get_history, 8)
    for i in range(8):
        before = get_history("h").messages
        reply = chain.invoke(
            {"input": f"message number {i}"}, config={"configurable": {"session_id": "h"}}
        )
        assert reply.content == f"reply number {i}"
        assert recorder.prompts[-1][1:-1] == before  # the model saw the bounded view
    view = get_history("h").messages
    assert [(m.type, m.content) for m in view[-2:]] == [
        ("human", "message number 7"),
        ("ai", "reply number 7"),
    ]
    assert view[-1].id is not None  # what the model returned, id included
    assert gpt().get_num_tokens_from_messages(view) <= 50
    assert len(view) < 16
    assert turns_of(store.events("h")) == ["messages"] * 8  # one event per invocation
    assert store.sessions() == ["h"]
    streamed = "".join(
        str(chunk.content)
        for chunk in chain.stream({"input": "streaming"}, {"configurable": {"session_id": "h"}})
    )
    # A streamed reply is kept as LangChain keeps it: the chunk.
    assert [(m.type, m.content) for m in get_history("h").messages[-2:]] == [
        ("human", "streaming"),
        ("AIMessageChunk", streamed),
    ]


@pytest.mark.anyio
async def test_runnable_with_message_history_async(target: str) -> None:
    recorder = PromptRecorder()
    async with eventmem.open(target) as async_store:

        def get_history(session_id: str) -> EventSourcedChatMessageHistory:
            return EventSourcedChatMessageHistory(async_store, session_id, max_token_limit=50)

        chain = history_chain(recorder, get_history, 6)
        for i in range(6):
            config: Any = {"configurable": {"session_id": "h"}}
            await chain.ainvoke({"input": f"message number {i}"}, config=config)
        view = await get_history("h").aget_messages()
        assert gpt().get_num_tokens_from_messages(view) <= 50
        assert [e.kind async for e in async_store.events("h")] == ["messages"] * 6


def test_runnable_with_message_history_without_history_key(store: eventmem.SyncStore) -> None:
    chain = RunnableWithMessageHistory(
        FakeListChatModel(responses=["one", "two"]),
        lambda session_id: EventSourcedChatMessageHistory(store, session_id),
    )
    config: Any = {"configurable": {"session_id": "m"}}
    chain.invoke([HumanMessage(content="first")], config=config)
    chain.invoke([HumanMessage(content="second")], config=config)
    assert [m.content for m in EventSourcedChatMessageHistory(store, "m").messages] == [
        "first",
        "one",
        "second",
        "two",
    ]


def test_history_stores_every_message_and_refuses_only_what_it_cannot(
    store: eventmem.SyncStore,
) -> None:
    history = EventSourcedChatMessageHistory(store, "s", llm=gpt())
    history.add_user_message("hi")
    assert history.messages == [HumanMessage(content="hi")]
    assert turns_of(store.events("s")) == ["messages"]  # durable at once
    history.add_ai_message("hello")
    added: list[BaseMessage] = [
        SystemMessage(content="be nice"),
        HumanMessage(content="a", id="1"),
        HumanMessage(
            content=[
                {"type": "text", "text": "b"},
                {"type": "image_url", "image_url": {"url": "https://x.test/c.png"}},
            ],
            name="ada",
        ),
        AIMessage(content="", tool_calls=[tool_call(name="f", args={"x": 1}, id="c1")], id="2"),
        ToolMessage(content="r", tool_call_id="c1", artifact={"raw": [1, 2]}),
        AIMessage(content="done", response_metadata={"finish_reason": "stop"}),
    ]
    history.add_messages(added)
    assert history.messages == [HumanMessage(content="hi"), AIMessage(content="hello"), *added]
    again = EventSourcedChatMessageHistory(store, "s", llm=gpt())
    assert again.messages == history.messages  # and after a restart
    refused: list[list[Any]] = [
        [HumanMessage(content="ok"), ChatMessage(role="critic", content="meh")],
        [AIMessage(content="x", additional_kwargs={"parsed": object()})],
        ["not a message"],
    ]
    for batch in refused:
        with pytest.raises(eventmem.InvalidInputError):
            history.add_messages(batch)
    assert turns_of(store.events("s")) == ["messages"] * 3  # nothing written by refusals
    history.clear()
    assert history.messages == []
    assert turns_of(store.events("s")) == ["messages"] * 3 + ["clear"]


@pytest.mark.anyio
async def test_history_async_methods_with_a_sync_store(store: eventmem.SyncStore) -> None:
    history = EventSourcedChatMessageHistory(store, "s", max_token_limit=25, llm=gpt())
    for i in range(5):
        await history.aadd_messages(
            [HumanMessage(content=f"q{i} " * 3), AIMessage(content=f"a{i} " * 3)]
        )
    view = await history.aget_messages()
    assert 0 < gpt().get_num_tokens_from_messages(view) <= 25
    assert view == await anyio.to_thread.run_sync(lambda: history.messages)
    await history.aclear()
    assert await history.aget_messages() == []


def test_a_memory_and_its_chat_memory_share_the_session(store: eventmem.SyncStore) -> None:
    memory = ConversationTokenBufferMemory(
        store=store, session_id="s", input_key="question", output_key="answer"
    )
    memory.chat_memory.add_messages([HumanMessage(content="q"), AIMessage(content="a")])
    memory.save_context({"question": "q2", "other": "x"}, {"answer": "a2", "extra": "y"})
    assert memory.buffer == "Human: q\nAI: a\nHuman: q2\nAI: a2"
    assert memory.chat_memory.messages == memory.buffer_as_messages


# --- packaging and docs ---------------------------------------------------------------
