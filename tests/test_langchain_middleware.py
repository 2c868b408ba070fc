"""``EventmemMiddleware`` in real LangChain 1.x agents (``create_agent``), offline.

The agents run a scripted fake chat model (LangChain's ``GenericFakeChatModel``, taught
``bind_tools``) that calls real ``@tool`` s; it keeps what it was handed on each call.
Blocking runs use a SyncStore (``eventmem.connect``), async runs an async Store
(``eventmem.open``), each on both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

import eventmem
from eventmem.events import MessagesAppended
from eventmem.integrations.langchain import EventmemMiddleware, from_langchain, to_langchain

pytestmark = pytest.mark.postgres_sample(3, across="module")

SYSTEM = "You add numbers."


@pytest.fixture
def sync_store(target: str) -> Iterator[eventmem.SyncStore]:
    """A blocking store on ``target`` (each backend in turn)."""
    with eventmem.connect(target) as opened:
        yield opened


class ScriptedModel(GenericFakeChatModel):
    """A chat model that answers with its script, in order, and keeps what it was handed."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def lookup(key: str) -> str:
    """Look a key up (a long answer)."""
    return f"{key}: " + "lorem ipsum dolor sit amet " * 12


@tool(return_direct=True)
def shout(text: str) -> str:
    """Say it loud; the run ends with this."""
    return text.upper()


def calls(*calls: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": n, "args": a, "id": i, "type": "tool_call"} for n, a, i in calls],
    )


def scripted(*replies: AIMessage | str) -> ScriptedModel:
    return ScriptedModel(messages=iter(replies))


def agent_for(
    model: ScriptedModel,
    middleware: EventmemMiddleware,
    *,
    checkpointer: bool = True,
    saver: InMemorySaver | None = None,
) -> Any:
    """An agent on ``model`` with the tools, the system prompt and ``middleware``; with a
    checkpointer (``saver``, or a new one) unless ``checkpointer=False``."""
    return create_agent(
        model,
        [add, lookup, shout],
        system_prompt=SYSTEM,
        middleware=[middleware],
        checkpointer=(saver if saver is not None else InMemorySaver()) if checkpointer else None,
    )


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def logged(events: Sequence[eventmem.StoredEvent]) -> list[BaseMessage]:
    """Every message the session's log holds, in order, as LangChain messages."""
    return [
        to_langchain(m)
        for event in events
        if isinstance(event.data, MessagesAppended)
        for m in event.data.messages
    ]


def handed(model: ScriptedModel) -> list[list[BaseMessage]]:
    """What each model call was handed, after the system prompt (checked to be first)."""
    out = []
    for messages in model.received:
        assert messages[0] == SystemMessage(SYSTEM)
        out.append(messages[1:])
    return out


def assert_pair_safe(messages: Sequence[BaseMessage]) -> None:
    """No tool result without its call before it; no call without its result after it."""
    assert messages
    assert not isinstance(messages[0], ToolMessage)
    called: set[str | None] = set()
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for message in messages:
        if isinstance(message, AIMessage):
            ids = {c["id"] for c in message.tool_calls}
            assert ids <= answered, "a call whose result is not handed"
            called |= ids
        if isinstance(message, ToolMessage):
            assert message.tool_call_id in called, "a result whose call is not handed"


def assert_once(messages: Sequence[BaseMessage]) -> None:
    ids = [m.id for m in messages]
    assert None not in ids
    assert len(ids) == len(set(ids))


def tool_loop() -> list[AIMessage | str]:
    return [
        calls(("add", {"a": 1, "b": 2}, "c1")),
        calls(("add", {"a": 3, "b": 4}, "c2"), ("lookup", {"key": "x"}, "c3")),
        "1+2 is 3, 3+4 is 7.",
    ]


# --- recording ------------------------------------------------------------------------


def test_a_blocking_run_records_each_message_once_in_order(
    sync_store: eventmem.SyncStore,
) -> None:
    model = scripted(*tool_loop(), calls(("add", {"a": 7, "b": 1}, "c4")), "8.")
    agent = agent_for(model, EventmemMiddleware(sync_store))
    first = agent.invoke({"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t1"))
    assert logged(sync_store.events("t1")) == first["messages"]
    kinds = [m.type for m in first["messages"]]
    assert kinds == ["human", "ai", "tool", "ai", "tool", "tool", "ai"]
    # The checkpointer gives the second run the first run's messages again.
    second = agent.invoke({"messages": [{"role": "user", "content": "and +1?"}]}, thread("t1"))
    log = logged(sync_store.events("t1"))
    assert log == second["messages"]
    assert_once(log)
    assert len(log) == len(first["messages"]) + 4


@pytest.mark.anyio
async def test_an_async_run_records_each_message_once_in_order(store: eventmem.Store) -> None:
    model = scripted(*tool_loop(), "again: 3 and 7.")
    agent = agent_for(model, EventmemMiddleware(store))
    await agent.ainvoke({"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t1"))
    state = await agent.ainvoke({"messages": [HumanMessage("say it again")]}, thread("t1"))
    log = logged([event async for event in store.events("t1")])
    assert log == state["messages"]
    assert_once(log)
    # Not bounded: each call is handed every message so far.
    assert handed(model)[-1] == state["messages"][:-1]


@pytest.mark.anyio
async def test_an_async_run_on_a_blocking_store(sync_store: eventmem.SyncStore) -> None:
    model = scripted(*tool_loop())
    agent = agent_for(model, EventmemMiddleware(sync_store, "s"))
    state = await agent.ainvoke({"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t"))
    assert logged(await anyio.to_thread.run_sync(sync_store.events, "s")) == state["messages"]


def test_a_blocking_run_on_an_async_store_served_by_its_loop(target: str) -> None:
    """agent.invoke in a thread while the async store's loop runs (as in a web server)."""
    model = scripted(*tool_loop())

    async def main() -> list[BaseMessage]:
        async with eventmem.open(target) as store:
            middleware = EventmemMiddleware(store, "s")
            agent = agent_for(model, middleware)
            state: dict[str, Any] = await anyio.to_thread.run_sync(
                agent.invoke, {"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t")
            )
            assert logged([event async for event in store.events("s")]) == state["messages"]
            return list(state["messages"])

    assert len(anyio.run(main)) == 7


def test_the_session_is_the_thread_unless_named(sync_store: eventmem.SyncStore) -> None:
    model = scripted("one", "two", "three")
    agent = agent_for(model, EventmemMiddleware(sync_store))
    a = agent.invoke({"messages": [HumanMessage("a")]}, thread("thread-a"))
    b = agent.invoke({"messages": [HumanMessage("b")]}, thread("thread-b"))
    assert logged(sync_store.events("thread-a")) == a["messages"]
    assert logged(sync_store.events("thread-b")) == b["messages"]
    named = agent_for(model, EventmemMiddleware(sync_store, "fixed"))
    c = named.invoke({"messages": [HumanMessage("c")]}, thread("thread-c"))
    assert logged(sync_store.events("fixed")) == c["messages"]
    assert sync_store.version("thread-c") == 0


def test_a_direct_tool_result_that_ends_the_run_is_recorded(
    sync_store: eventmem.SyncStore,
) -> None:
    model = scripted(calls(("shout", {"text": "done"}, "s1")))
    agent = agent_for(model, EventmemMiddleware(sync_store, "s"))
    state = agent.invoke({"messages": [HumanMessage("shout done")]}, thread("t"))
    assert isinstance(state["messages"][-1], ToolMessage)
    assert logged(sync_store.events("s")) == state["messages"]


def test_results_made_up_for_invalid_tool_calls_are_recorded_in_place(
    sync_store: eventmem.SyncStore,
) -> None:
    broken = AIMessage(
        content="",
        invalid_tool_calls=[invalid_tool_call(name="add", args="{oops", id="bad1", error="bad")],
    )
    model = scripted(broken, "sorry, again: 3")
    agent = agent_for(model, EventmemMiddleware(sync_store, "s"))
    agent.invoke({"messages": [HumanMessage("1+2?")]}, thread("t"))
    state = agent.invoke({"messages": [HumanMessage("try again")]}, thread("t"))
    # LangChain answers the invalid call with an error result before the next request.
    assert any(isinstance(m, ToolMessage) and m.tool_call_id == "bad1" for m in state["messages"])
    log = logged(sync_store.events("s"))
    assert log == state["messages"]
    assert_once(log)
    assert handed(model)[-1] == state["messages"][:-1]


def test_a_new_process_on_a_checkpointed_thread_records_nothing_twice(target: str) -> None:
    checkpointer = InMemorySaver()  # stands in for a durable one, shared by both processes
    first_model = scripted(*tool_loop())
    with eventmem.connect(target) as store:
        agent = agent_for(first_model, EventmemMiddleware(store), saver=checkpointer)
        agent.invoke({"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t"))
    second_model = scripted("still 7")
    with eventmem.connect(target) as store:
        agent = agent_for(second_model, EventmemMiddleware(store), saver=checkpointer)
        state = agent.invoke({"messages": [HumanMessage("and now?")]}, thread("t"))
        log = logged(store.events("t"))
    assert log == state["messages"]
    assert_once(log)


def test_two_processes_taking_turns_on_one_thread_record_nothing_twice(
    target: str,
) -> None:
    """Each keeps what it knows of the log; an append by the other makes its next
    append stale, so it reads what it missed first."""
    checkpointer = InMemorySaver()
    with eventmem.connect(target) as one, eventmem.connect(target) as two:
        agents = [
            agent_for(
                scripted(*[f"answer {i}" for i in range(3)]),
                EventmemMiddleware(store),
                saver=checkpointer,
            )
            for store in (one, two)
        ]
        state: dict[str, Any] = {}
        for turn in range(5):
            state = agents[turn % 2].invoke({"messages": [HumanMessage(f"q{turn}")]}, thread("t"))
        log = logged(one.events("t"))
    assert log == state["messages"]
    assert_once(log)
    assert len(log) == 10


def test_concurrent_runs_on_one_session_lose_and_double_nothing(
    sync_store: eventmem.SyncStore,
) -> None:
    middleware = EventmemMiddleware(sync_store, "shared")
    states: list[dict[str, Any]] = []

    def run(i: int) -> None:
        agent = agent_for(scripted(f"answer {i}"), middleware, checkpointer=False)
        states.append(agent.invoke({"messages": [HumanMessage(f"question {i}")]}))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = logged(sync_store.events("shared"))
    assert_once(log)
    assert sorted(str(m.id) for m in log) == sorted(
        str(m.id) for state in states for m in state["messages"]
    )


# --- what the model is handed ---------------------------------------------------------


def test_a_small_bound_hands_a_pair_safe_bounded_view_and_the_agent_finishes(
    sync_store: eventmem.SyncStore,
) -> None:
    limit = 120
    script: list[AIMessage | str] = []
    for i in range(4):
        script += [
            calls(("lookup", {"key": f"k{i}"}, f"l{i}")),
            calls(("add", {"a": i, "b": 1}, f"a{i}")),
        ]
    script.append("done")
    model = scripted(*script)
    agent = agent_for(model, EventmemMiddleware(sync_store, "s", max_tokens=limit))
    state = agent.invoke({"messages": [HumanMessage("look up k0..k3 and add")]}, thread("t"))
    assert state["messages"][-1].content == "done"
    everything = state["messages"]
    assert logged(sync_store.events("s")) == everything  # the log keeps it all
    views = handed(model)
    assert len(views) == len(script)
    for view in views:
        assert_pair_safe(view)
        assert eventmem.count_tokens(view, model="gpt-4o") <= limit
        # a run of the newest messages, as the state held them
        start = everything.index(view[0])
        assert everything[start : start + len(view)] == view
    assert views[-1][0] != everything[0]  # the oldest were left out
    assert views[-1][-1] == everything[-2]  # the newest was handed


def test_a_message_alone_over_the_bound_is_still_handed(sync_store: eventmem.SyncStore) -> None:
    model = scripted("ok")
    agent = agent_for(model, EventmemMiddleware(sync_store, "s", max_tokens=5))
    question = HumanMessage("a question far longer than five tokens, surely")
    state = agent.invoke({"messages": [question]}, thread("t"))
    assert handed(model) == [[state["messages"][0]]]
    assert logged(sync_store.events("s")) == state["messages"]


def test_a_second_run_without_a_checkpointer_continues_the_session(
    sync_store: eventmem.SyncStore,
) -> None:
    model = scripted(*tool_loop(), "yes, 7")
    agent = agent_for(model, EventmemMiddleware(sync_store, "s"), checkpointer=False)
    first = agent.invoke({"messages": [HumanMessage("1+2, then 3+4?")]})
    second = agent.invoke({"messages": [HumanMessage("was it 7?")]})
    assert len(second["messages"]) == 2  # the run's state holds its own messages only
    log = logged(sync_store.events("s"))
    assert log == first["messages"] + second["messages"]
    # the model saw the whole session
    assert handed(model)[-1] == first["messages"] + second["messages"][:1]


def test_a_cleared_session_is_not_refilled_from_the_checkpoint(
    sync_store: eventmem.SyncStore,
) -> None:
    model = scripted(*tool_loop(), "fresh start")
    middleware = EventmemMiddleware(sync_store, "s")
    agent = agent_for(model, middleware)
    first = agent.invoke({"messages": [HumanMessage("1+2, then 3+4?")]}, thread("t"))
    history = middleware.history()
    assert isinstance(history, eventmem.SyncHistory)
    history.clear()
    state = agent.invoke({"messages": [HumanMessage("new topic")]}, thread("t"))
    assert handed(model)[-1] == [state["messages"][-2]]
    assert_once(log := logged(sync_store.events("s")))
    assert log == state["messages"]
    assert [to_langchain(m) for m in history.view()] == state["messages"][len(first["messages"]) :]


def test_llm_counts_the_bound(sync_store: eventmem.SyncStore) -> None:
    """A model that is not ChatOpenAI counts with its own get_num_tokens_from_messages."""

    class WordCounter(ScriptedModel):
        def get_num_tokens_from_messages(
            self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
        ) -> int:
            return sum(len(m.text.split()) for m in messages)

    model = WordCounter(messages=iter(["one two", "three four"]))
    middleware = EventmemMiddleware(sync_store, "s", max_tokens=5, llm=model)
    agent = agent_for(model, middleware)
    agent.invoke({"messages": [HumanMessage("a b c")]}, thread("t"))
    state = agent.invoke({"messages": [HumanMessage("d")]}, thread("t"))
    # 3 + 2 + 1 words > 5: the first question is left out
    assert handed(model)[-1] == state["messages"][1:3]


# --- bad input ------------------------------------------------------------------------


def test_bad_arguments_raise_eventmem_errors(sync_store: eventmem.SyncStore) -> None:
    with pytest.raises(eventmem.InvalidInputError, match="store must be"):
        EventmemMiddleware("chat.db")  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="session_id"):
        EventmemMiddleware(sync_store, 42)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError):
        EventmemMiddleware(sync_store, "")
    with pytest.raises(eventmem.InvalidInputError, match="max_tokens"):
        EventmemMiddleware(sync_store, max_tokens="100")  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError):
        EventmemMiddleware(sync_store, max_tokens=-1)
    with pytest.raises(eventmem.InvalidInputError, match="not both"):
        EventmemMiddleware(sync_store, llm=scripted(), token_counter=len)
    with pytest.raises(eventmem.InvalidInputError, match="fixed session_id"):
        EventmemMiddleware(sync_store).history()


def test_a_run_with_no_session_raises_and_writes_nothing(sync_store: eventmem.SyncStore) -> None:
    agent = agent_for(scripted("hi"), EventmemMiddleware(sync_store), checkpointer=False)
    with pytest.raises(eventmem.InvalidInputError, match="thread id"):
        agent.invoke({"messages": [HumanMessage("hello")]})
    assert sync_store.sessions() == []


def test_a_message_eventmem_cannot_store_raises_and_writes_nothing(
    sync_store: eventmem.SyncStore,
) -> None:
    model = scripted("hi")
    agent = agent_for(model, EventmemMiddleware(sync_store, "s"))
    odd = HumanMessage("hello", additional_kwargs={"when": object()})
    with pytest.raises(eventmem.InvalidInputError):
        agent.invoke({"messages": [odd]}, thread("t"))
    assert sync_store.version("s") == 0
    assert model.received == []


@pytest.mark.anyio
async def test_blocking_runs_inside_an_event_loop_are_refused(store: eventmem.Store) -> None:
    agent = agent_for(scripted("hi"), EventmemMiddleware(store, "s"))
    with pytest.raises(eventmem.SyncInAsyncContextError):
        agent.invoke({"messages": [HumanMessage("hello")]}, thread("t"))
    assert await store.version("s") == 0


def test_a_tool_message_name_comes_back_where_it_was() -> None:
    """LangChain 1.x tools put their name in the ``name`` field; ``format_to_tool_messages``
    in ``additional_kwargs``. Both are the Message's name, and come back as they were."""
    as_field = ToolMessage("3", tool_call_id="c1", name="add", id="t1")
    as_kwarg = ToolMessage("3", tool_call_id="c1", additional_kwargs={"name": "add"}, id="t2")
    for message in (as_field, as_kwarg):
        converted = from_langchain(message)
        assert converted.name == "add"
        assert to_langchain(converted) == message


@pytest.mark.anyio
async def test_concurrent_async_runs_on_one_session_lose_and_double_nothing(
    store: eventmem.Store,
) -> None:
    middleware = EventmemMiddleware(store, "shared")
    states: list[dict[str, Any]] = []

    async def run(i: int) -> None:
        agent = agent_for(scripted(f"answer {i}"), middleware, checkpointer=False)
        states.append(await agent.ainvoke({"messages": [HumanMessage(f"question {i}")]}))

    async with anyio.create_task_group() as group:
        for i in range(4):
            group.start_soon(run, i)
    log = logged([event async for event in store.events("shared")])
    assert_once(log)
    assert sorted(str(m.id) for m in log) == sorted(
        str(m.id) for state in states for m in state["messages"]
    )
