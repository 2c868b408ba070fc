"""Real LangGraph agents on `EventmemSaver`, on both backends.

The graphs are LangChain's ``create_agent`` (a model node and a tool node) and a
``StateGraph`` with ``ToolNode`` and a human-review node that calls ``interrupt()``; the
model is LangChain's ``GenericFakeChatModel`` replaying scripted replies (a tool call,
then an answer, per question). What is checked: a thread continues on a new store and in
a new process with the same state; an interrupted run resumes on a new store; time
travel lists every checkpoint newest first and forks from an old one leave the original
branch as it was; verify covers the checkpoint events and finds tampering; the lookup
projection is rebuilt; export and import move a thread between SQLite and PostgreSQL;
``eventmem log`` shows the events readably; several processes writing shared threads
lose and reorder nothing; hostile inputs raise typed errors and write nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import subprocess
import sys
import time
import traceback
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, StateSnapshot, interrupt

import eventmem
from eventmem.integrations.langgraph import EventmemSaver
from eventmem.rules import MAX_SESSION_ID_LENGTH
from tests.backends import backend_of, fresh_target, raw_database
from tests.test_cli import ok, run

pytestmark = pytest.mark.postgres_sample(3, across="module")

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS_PER_TURN = 5  # input, the question, the tool call, the tool's result, the answer


# -- the agent ------------------------------------------------------------------------------


class ToolCallingFakeModel(GenericFakeChatModel):
    """LangChain's fake chat model, usable by agents that bind tools to their model."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:
        return self


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"result for {query}"


def replies(*questions: str) -> list[AIMessage]:
    """What the model says to each question: a call of ``lookup``, then an answer."""
    said: list[AIMessage] = []
    for q in questions:
        call = {"name": "lookup", "args": {"query": q}, "id": f"call-{q}", "type": "tool_call"}
        said.append(AIMessage("", tool_calls=[call], id=f"ai-{q}-call"))
        said.append(AIMessage(f"answer to {q}", id=f"ai-{q}-answer"))
    return said


def agent(saver: EventmemSaver, *questions: str) -> Any:
    """LangChain's tool-calling agent, checkpointed by ``saver``, whose model answers
    ``questions`` in turn."""
    model = ToolCallingFakeModel(messages=iter(replies(*questions)))
    return create_agent(model, [lookup], checkpointer=saver)


def reviewed_agent(saver: EventmemSaver, said: list[AIMessage]) -> Any:
    """A StateGraph whose tool calls wait for a human's decision (``interrupt``)."""
    model = ToolCallingFakeModel(messages=iter(said))

    def call_model(state: MessagesState) -> dict[str, list[AnyMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    def after_model(state: MessagesState) -> Literal["review", "__end__"]:
        last = state["messages"][-1]
        return "review" if isinstance(last, AIMessage) and last.tool_calls else "__end__"

    def review(state: MessagesState) -> Command[Literal["tools", "model"]]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        decision = interrupt({"run": [call["name"] for call in last.tool_calls]})
        if decision == "approve":
            return Command(goto="tools")
        denied = [ToolMessage("denied", tool_call_id=str(c["id"])) for c in last.tool_calls]
        return Command(goto="model", update={"messages": denied})

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("review", review)
    builder.add_node("tools", ToolNode([lookup]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", after_model, ["review", "__end__"])
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=saver)


def config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}}


def turn(question: str) -> list[tuple[str, str]]:
    """What one answered question adds to the thread: (type, content) of each message."""
    return [
        ("human", question),
        ("ai", ""),
        ("tool", f"result for {question}"),
        ("ai", f"answer to {question}"),
    ]


def said(messages: list[AnyMessage]) -> list[tuple[str, str]]:
    return [(m.type, str(m.content)) for m in messages]


def snapshot_key(s: StateSnapshot) -> tuple[Any, ...]:
    """What a history entry says: its checkpoint, parent, step, next nodes and messages."""
    parent = s.parent_config["configurable"]["checkpoint_id"] if s.parent_config else None
    messages = [m.model_dump() for m in s.values.get("messages", [])]
    return (s.config["configurable"]["checkpoint_id"], parent, s.metadata, s.next, messages)


def checkpoint_id(c: Any) -> str:
    found: str = c["configurable"]["checkpoint_id"]
    return found


async def ahistory(graph: Any, thread: str) -> list[StateSnapshot]:
    return [s async for s in graph.aget_state_history(config(thread))]


def assert_linear_history(history: list[StateSnapshot], checkpoints: int) -> None:
    """Newest first, every checkpoint once, each one's parent the next in the list."""
    ids = [checkpoint_id(s.config) for s in history]
    assert len(ids) == checkpoints
    assert ids == sorted(ids, reverse=True)
    assert [s.metadata["step"] for s in history if s.metadata] == list(
        range(checkpoints - 2, -2, -1)
    )
    assert [checkpoint_id(s.parent_config) for s in history[:-1]] == ids[1:]
    assert history[-1].parent_config is None


# -- 4a, 4d: a thread continues on a new store --------------------------------------------


@pytest.mark.anyio
async def test_an_async_agent_continues_its_thread_on_a_new_store(target: str) -> None:
    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q1", "q2")
        await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("t"))
        first = await graph.ainvoke({"messages": [HumanMessage("q2")]}, config("t"))
        assert said(first["messages"]) == turn("q1") + turn("q2")
        before = await graph.aget_state(config("t"))
        snapshots = await ahistory(graph, "t")
        assert_linear_history(snapshots, 2 * CHECKPOINTS_PER_TURN)
        history = [snapshot_key(s) for s in snapshots]

    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q3")
        again = await graph.aget_state(config("t"))
        assert again.values == before.values
        assert again.config == before.config
        assert [snapshot_key(s) for s in await ahistory(graph, "t")] == history
        after = await graph.ainvoke({"messages": [HumanMessage("q3")]}, config("t"))
        assert after["messages"][:8] == before.values["messages"]
        assert said(after["messages"]) == turn("q1") + turn("q2") + turn("q3")
        assert_linear_history(await ahistory(graph, "t"), 3 * CHECKPOINTS_PER_TURN)
        kinds = [e.kind async for e in store.events("t")]
        assert kinds.count("checkpoint") == 3 * CHECKPOINTS_PER_TURN
        assert set(kinds) == {"checkpoint", "writes"}
        assert (await store.verify()).ok


def test_a_blocking_agent_continues_its_thread_on_a_new_store(target: str) -> None:
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), "q1")
        graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        before = graph.get_state(config("t"))
        history = [snapshot_key(s) for s in graph.get_state_history(config("t"))]
        assert_linear_history(list(graph.get_state_history(config("t"))), CHECKPOINTS_PER_TURN)

    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), "q2")
        assert graph.get_state(config("t")).values == before.values
        assert [snapshot_key(s) for s in graph.get_state_history(config("t"))] == history
        after = graph.invoke({"messages": [HumanMessage("q2")]}, config("t"))
        assert after["messages"][:4] == before.values["messages"]
        assert said(after["messages"]) == turn("q1") + turn("q2")
        assert_linear_history(list(graph.get_state_history(config("t"))), 2 * CHECKPOINTS_PER_TURN)
        assert store.verify().ok


def _continue_in_child(target: str, thread: str, question: str) -> None:
    """Run in a new Python process: print the thread's messages, ask ``question``, print
    them again (JSON lines)."""
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), question)
        found = graph.get_state(config(thread)).values["messages"]
        print(json.dumps([m.model_dump() for m in found]))
        state = graph.invoke({"messages": [HumanMessage(question)]}, config(thread))
        print(json.dumps([m.model_dump() for m in state["messages"]]))


@pytest.mark.slow
def test_a_new_process_continues_the_thread(target: str) -> None:
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), "q1", "q2")
        graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        graph.invoke({"messages": [HumanMessage("q2")]}, config("t"))
        before = [m.model_dump() for m in graph.get_state(config("t")).values["messages"]]
    code = (
        "import sys; from tests.test_langgraph import _continue_in_child; "
        "_continue_in_child(sys.argv[1], 't', 'q3')"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    seen, after = (json.loads(line) for line in child.stdout.splitlines())
    assert seen == json.loads(json.dumps(before))
    assert after[:8] == seen
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store))
        state = graph.get_state(config("t")).values["messages"]
        assert json.loads(json.dumps([m.model_dump() for m in state])) == after
        assert said(state) == turn("q1") + turn("q2") + turn("q3")
        assert_linear_history(list(graph.get_state_history(config("t"))), 3 * CHECKPOINTS_PER_TURN)
        assert store.verify().ok


def test_the_async_graph_methods_work_on_a_blocking_store(target: str) -> None:
    """A saver over ``eventmem.connect`` also serves ``ainvoke`` (its async methods run the
    blocking ones in a worker thread), and a later blocking run continues the thread."""

    async def ask() -> Any:
        graph = agent(EventmemSaver(store), "q1")
        await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("t"))
        return [s async for s in graph.aget_state_history(config("t"))]

    with eventmem.connect(target) as store:
        history = anyio.run(ask, backend="asyncio")
        assert_linear_history(history, CHECKPOINTS_PER_TURN)
        graph = agent(EventmemSaver(store), "q2")
        done = graph.invoke({"messages": [HumanMessage("q2")]}, config("t"))
        assert said(done["messages"]) == turn("q1") + turn("q2")
        assert store.verify().ok


@pytest.mark.anyio
async def test_a_blocking_run_on_an_async_store_in_its_loop_is_refused(target: str) -> None:
    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q1")
        with pytest.raises(eventmem.SyncInAsyncContextError):
            graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        assert await store.count_events() == 0


@pytest.mark.anyio
async def test_a_copied_thread_continues_and_a_deleted_one_starts_over(target: str) -> None:
    async with eventmem.open(target) as store:
        saver = EventmemSaver(store)
        graph = agent(saver, "q1", "q2", "q3")
        await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("a"))
        original = [snapshot_key(s) for s in await ahistory(graph, "a")]
        await saver.acopy_thread("a", "b")
        copied = await ahistory(graph, "b")
        assert [k[1:] for k in map(snapshot_key, copied)] == [k[1:] for k in original]
        done = await graph.ainvoke({"messages": [HumanMessage("q2")]}, config("b"))
        assert said(done["messages"]) == turn("q1") + turn("q2")
        assert [snapshot_key(s) for s in await ahistory(graph, "a")] == original

        await saver.adelete_thread("a")
        assert await ahistory(graph, "a") == []
        assert (await graph.aget_state(config("a"))).values == {}
        again = await graph.ainvoke({"messages": [HumanMessage("q3")]}, config("a"))
        assert said(again["messages"]) == turn("q3")
        kinds = [e.kind async for e in store.events("a")]
        assert kinds.count("checkpoints_deleted") == 1
        assert kinds.count("checkpoint") == 2 * CHECKPOINTS_PER_TURN  # the log keeps both
        assert (await store.verify()).ok


@pytest.mark.anyio
async def test_a_delta_on_a_version_another_saver_deleted_is_stored_whole(target: str) -> None:
    """Saver A last wrote the list at a version saver B has since deleted: A's next put
    cannot extend it and stores the list whole."""
    async with eventmem.open(target) as one, eventmem.open(target) as other:
        a, b = EventmemSaver(one), EventmemSaver(other)
        first = _checkpoint()
        stored = await a.aput(config("t"), first, METADATA, {"messages": "1"})
        await b.adelete_thread("t")
        second = _checkpoint()
        second["channel_values"] = {"messages": [HumanMessage("hi", id="h1"), AIMessage("yo")]}
        second["channel_versions"] = {"messages": "2"}
        again = await a.aput(stored, second, METADATA, {"messages": "2"})
        found = await b.aget_tuple(again)
        assert found is not None
        assert found.checkpoint["channel_values"] == second["channel_values"]
        last = [e.data async for e in one.events("t")][-1]
        assert isinstance(last, eventmem.CheckpointSaved)
        [value] = last.values
        assert value.extends is None
        assert value.items is not None
        assert len(value.items) == 2
        assert (await one.verify()).ok


# -- 4b: interrupts -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_interrupted_run_resumes_on_a_new_store(target: str) -> None:
    call, answer = replies("q1")
    async with eventmem.open(target) as store:
        graph = reviewed_agent(EventmemSaver(store), [call])
        stopped = await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("t"))
        assert [i.value for i in stopped["__interrupt__"]] == [{"run": ["lookup"]}]
        waiting = await graph.aget_state(config("t"))
        assert waiting.next == ("review",)
        assert said(waiting.values["messages"]) == [("human", "q1"), ("ai", "")]

    async with eventmem.open(target) as store:
        graph = reviewed_agent(EventmemSaver(store), [answer])
        found = await graph.aget_state(config("t"))
        assert found.next == ("review",)
        assert [i.value for t in found.tasks for i in t.interrupts] == [{"run": ["lookup"]}]
        assert found.values == waiting.values
        done = await graph.ainvoke(Command(resume="approve"), config("t"))
        assert "__interrupt__" not in done
        assert said(done["messages"]) == turn("q1")
        assert (await graph.aget_state(config("t"))).next == ()
        assert (await store.verify()).ok


def test_a_denied_tool_call_resumes_on_a_new_blocking_store(target: str) -> None:
    call, answer = replies("q1")
    with eventmem.connect(target) as store:
        graph = reviewed_agent(EventmemSaver(store), [call])
        stopped = graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        assert [i.value for i in stopped["__interrupt__"]] == [{"run": ["lookup"]}]

    with eventmem.connect(target) as store:
        graph = reviewed_agent(EventmemSaver(store), [answer])
        assert graph.get_state(config("t")).next == ("review",)
        done = graph.invoke(Command(resume="deny"), config("t"))
        assert said(done["messages"]) == [
            ("human", "q1"),
            ("ai", ""),
            ("tool", "denied"),
            ("ai", "answer to q1"),
        ]
        assert graph.get_state(config("t")).next == ()
        assert store.verify().ok


# -- 4c: time travel and forks ------------------------------------------------------------


@pytest.mark.anyio
async def test_a_run_from_an_old_checkpoint_forks_and_leaves_the_branch(target: str) -> None:
    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q1", "q2")
        await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("t"))
        await graph.ainvoke({"messages": [HumanMessage("q2")]}, config("t"))
        history = await ahistory(graph, "t")
        assert_linear_history(history, 2 * CHECKPOINTS_PER_TURN)
        original = [snapshot_key(s) for s in history]
        head = history[0]
        old = next(s for s in history if len(s.values["messages"]) == 4)  # after q1's answer

    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q3")
        forked = await graph.ainvoke({"messages": [HumanMessage("q3")]}, old.config)
        assert forked["messages"][:4] == old.values["messages"]
        assert said(forked["messages"]) == turn("q1") + turn("q3")
        latest = await graph.aget_state(config("t"))
        assert latest.values == forked
        # the original branch is untouched, every checkpoint of it still there
        assert (await graph.aget_state(head.config)).values == head.values
        now = await ahistory(graph, "t")
        assert len(now) == len(history) + CHECKPOINTS_PER_TURN
        assert [snapshot_key(s) for s in now[CHECKPOINTS_PER_TURN:]] == original
        fork = now[:CHECKPOINTS_PER_TURN]
        assert checkpoint_id(fork[-1].parent_config) == checkpoint_id(old.config)
        assert [checkpoint_id(s.parent_config) for s in fork[:-1]] == [
            checkpoint_id(s.config) for s in fork[1:]
        ]
        assert (await store.verify()).ok


def test_update_state_on_an_old_checkpoint_forks_and_leaves_the_branch(target: str) -> None:
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), "q1", "q2")
        graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        graph.invoke({"messages": [HumanMessage("q2")]}, config("t"))
        history = list(graph.get_state_history(config("t")))
        original = [snapshot_key(s) for s in history]
        old = next(s for s in history if len(s.values["messages"]) == 4)

        edited = AIMessage("an edited answer", id="edited")
        branch = graph.update_state(old.config, {"messages": [edited]})
        fork = graph.get_state(branch)
        assert fork.values["messages"] == [*old.values["messages"], edited]
        assert fork.parent_config is not None
        assert checkpoint_id(fork.parent_config) == checkpoint_id(old.config)
        assert graph.get_state(config("t")).values == fork.values  # the thread's newest

        # the branch continues from the edit, the original is as it was
        graph = agent(EventmemSaver(store), "q3")
        more = graph.invoke({"messages": [HumanMessage("q3")]}, branch)
        assert said(more["messages"]) == [
            *turn("q1"),
            ("ai", "an edited answer"),
            *turn("q3"),
        ]
        assert graph.get_state(history[0].config).values == history[0].values
        now = [snapshot_key(s) for s in graph.get_state_history(config("t"))]
        assert now[-len(original) :] == original
        assert len(now) == len(original) + 1 + CHECKPOINTS_PER_TURN  # the edit, then q3
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store))
        assert [snapshot_key(s) for s in graph.get_state_history(config("t"))] == now
        assert store.verify().ok


# -- 5: verify, rebuild, export and import, the log ------------------------------------


def _run_one_turn(target: str, thread: str = "t") -> Any:
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store), "q1")
        graph.invoke({"messages": [HumanMessage("q1")]}, config(thread))
        return graph.get_state(config(thread))


def test_verify_covers_checkpoint_events_and_names_a_tampered_one(
    target: str, tmp_path: Path
) -> None:
    _run_one_turn(target)
    with eventmem.connect(target) as store:
        report = store.verify()
        assert report.ok, report.problems
        assert report.events == store.count_events() == len(store.events("t"))
    assert ok("verify", target, cwd=tmp_path) == (
        f"ok: 1 session, {report.events} events verified\n"
    )
    with eventmem.connect(target) as store:
        victim = [e for e in store.events("t") if e.kind == "checkpoint"][2]
        assert isinstance(victim.data, eventmem.CheckpointSaved)
        real = victim.data.checkpoint_id
        forged = real[:-1] + ("0" if real[-1] != "0" else "1")
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute(
            "UPDATE events SET data = replace(data, ?, ?) WHERE session_id = 't' AND position = ?",
            (victim.data.checkpoint_id, forged, victim.position),
        )
        raw.restore_triggers()
    with eventmem.connect(target) as store:
        problems = store.verify().problems
        assert [(p.session_id, p.position, p.kind) for p in problems][:1] == [
            ("t", victim.position, "hash_mismatch")
        ]
        assert {p.session_id for p in problems} == {"t"}
        with pytest.raises(eventmem.RebuildRefusedError):
            store.rebuild()
    result = run("verify", target, cwd=tmp_path)
    assert result.returncode == 1, result
    assert result.stdout.startswith(f"session t position {victim.position}: hash_mismatch: ")


def test_a_lost_lookup_row_is_found_and_rebuild_restores_it(target: str) -> None:
    before = _run_one_turn(target)
    with eventmem.connect(target) as store:
        graph = agent(EventmemSaver(store))
        history = [snapshot_key(s) for s in graph.get_state_history(config("t"))]
    with raw_database(target) as raw:
        raw.execute(
            "DELETE FROM lg_checkpoints WHERE session_id = 't' AND checkpoint_id = ?",
            (checkpoint_id(before.config),),
        )
    with eventmem.connect(target) as store:
        problems = store.verify().problems
        assert [(p.session_id, p.kind) for p in problems] == [("t", "projection_mismatch")]
        graph = agent(EventmemSaver(store))
        assert graph.get_state(config("t")).config != before.config  # the row is gone
        assert store.rebuild() == 1
        assert store.verify().ok
        assert graph.get_state(config("t")).values == before.values
        assert graph.get_state(config("t")).config == before.config
        assert [snapshot_key(s) for s in graph.get_state_history(config("t"))] == history


@pytest.mark.anyio
async def test_export_and_import_move_a_thread_to_the_other_backend(
    target: str, tmp_path: Path
) -> None:
    other = "postgresql" if backend_of(target) == "sqlite" else "sqlite"
    async with eventmem.open(target) as store:
        graph = agent(EventmemSaver(store), "q1", "q2")
        await graph.ainvoke({"messages": [HumanMessage("q1")]}, config("t"))
        await graph.ainvoke({"messages": [HumanMessage("q2")]}, config("t"))
        history = [snapshot_key(s) for s in await ahistory(graph, "t")]
        state = (await graph.aget_state(config("t"))).values
        events = await store.count_events()
        lines = [line async for line in store.export()]
    with fresh_target(other, tmp_path) as copy:
        async with eventmem.open(copy) as moved:
            assert await moved.import_events(lines) == (1, events)
            assert (await moved.verify()).ok
            graph = agent(EventmemSaver(moved), "q3")
            assert (await graph.aget_state(config("t"))).values == state
            assert [snapshot_key(s) for s in await ahistory(graph, "t")] == history
            after = await graph.ainvoke({"messages": [HumanMessage("q3")]}, config("t"))
            assert after["messages"][:8] == state["messages"]
            assert said(after["messages"]) == turn("q1") + turn("q2") + turn("q3")
            assert_linear_history(await ahistory(graph, "t"), 3 * CHECKPOINTS_PER_TURN)
            assert (await moved.verify()).ok
            # and back again: the grown thread, into a new store of the first kind
            back = [line async for line in moved.export()]
            grown = [snapshot_key(s) for s in await ahistory(graph, "t")]
        with fresh_target(backend_of(target), tmp_path) as home:
            async with eventmem.open(home) as returned:
                await returned.import_events(back)
                graph = agent(EventmemSaver(returned))
                assert [snapshot_key(s) for s in await ahistory(graph, "t")] == grown
                assert (await returned.verify()).ok


def _log_lines(target: str, thread: str, cwd: Path) -> list[str]:
    """The event lines of ``eventmem log TARGET THREAD`` (no header, no footer)."""
    lines = ok("log", target, thread, cwd=cwd).splitlines()
    return [line for line in lines[1:] if line.split()[0].isdigit() and "Z" in line.split()[1]]


def test_log_shows_checkpoint_events_readably(target: str, tmp_path: Path) -> None:
    with eventmem.connect(target) as store:
        saver = EventmemSaver(store)
        graph = agent(saver, "q1", "q2")
        graph.invoke({"messages": [HumanMessage("q1")]}, config("t"))
        graph.invoke({"messages": [HumanMessage("q2")]}, config("t"))
        events = store.events("t")
        saver.prune(["t"])
        # a subgraph's checkpoint and writes: its namespace is named
        inner: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": "inner"}}
        inner = saver.put(inner, _checkpoint(), METADATA, {"messages": "1"})
        saver.put_writes(inner, [("messages", "x"), ("branch:to:model", None)], "inner-task")
        logged = store.events("t")[len(events) :]
    lines = _log_lines(target, "t", tmp_path)
    assert len(lines) == len(events) + 3  # one line per event
    assert "ns inner" in lines[-2]
    assert "ns inner" in lines[-1]
    assert "2 writes (messages, branch:to:model)" in lines[-1]
    for event, line in zip([*events, *logged], lines, strict=True):
        assert line.split()[0] == str(event.position)
        assert event.kind in line.split()
        data = event.data
        if isinstance(data, eventmem.CheckpointSaved):
            assert data.checkpoint_id in line
            assert f"step {data.step}" in line
            assert str(data.source) in line
            for value in data.values:
                if value.items is not None and value.extends is not None:
                    assert f"{value.channel} +{len(value.items)}" in line
                elif value.items is not None:
                    assert f"{value.channel} [{len(value.items)}]" in line
                else:
                    assert value.channel in line
        elif isinstance(data, eventmem.CheckpointWritesSaved):
            assert data.task_id[:8] in line
            assert data.checkpoint_id in line
            for write in data.writes:
                assert write.channel in line
        else:
            assert isinstance(data, eventmem.CheckpointsDeleted)
            assert f"prune: hid {len(data.checkpoints)} checkpoints" in line
    # a message list is stored whole once, then as the messages each step adds
    steps = {
        e.data.step: line
        for e, line in zip(events, lines, strict=False)
        if isinstance(e.data, eventmem.CheckpointSaved)
    }
    assert "messages [1]" in steps[0]
    assert all("messages +1" in steps[step] for step in (1, 2, 3))
    assert lines[-3].endswith(f"prune: hid {2 * CHECKPOINTS_PER_TURN - 1} checkpoints")


# -- hostile inputs ---------------------------------------------------------------------

BAD_THREADS: list[tuple[str, object]] = [
    ("missing", None),
    ("float", 1.5),
    ("bytes", b"t"),
    ("list", ["t"]),
    ("bool", True),
    ("empty", ""),
    ("nul", "a\x00b"),
    ("huge", "t" * (MAX_SESSION_ID_LENGTH + 1)),
]


def _checkpoint() -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": [HumanMessage("hi", id="h1")]}
    checkpoint["channel_versions"] = {"messages": "1"}
    return checkpoint


METADATA: Any = {"source": "input", "step": -1, "parents": {}}


@pytest.mark.anyio
@pytest.mark.parametrize(("thread"), [t[1] for t in BAD_THREADS], ids=[t[0] for t in BAD_THREADS])
async def test_a_bad_thread_id_is_refused_and_writes_nothing(
    store: eventmem.Store, thread: object
) -> None:
    saver = EventmemSaver(store)
    await saver.aput(config("ok"), _checkpoint(), METADATA, {"messages": "1"})
    before = await store.count_events()
    bad: Any = {"configurable": {"thread_id": thread, "checkpoint_id": "1"}}
    with pytest.raises(eventmem.InvalidInputError):
        await saver.aput(bad, _checkpoint(), METADATA, {"messages": "1"})
    with pytest.raises(eventmem.InvalidInputError):
        await saver.aput_writes(bad, [("messages", "x")], "task")
    with pytest.raises(eventmem.InvalidInputError):
        await saver.aget_tuple(bad)
    with pytest.raises(eventmem.InvalidInputError):
        [t async for t in saver.alist(bad)]
    if thread is not None:
        for call in (
            saver.adelete_thread(thread),  # type: ignore[arg-type]
            saver.aprune([thread]),  # type: ignore[list-item]
            saver.acopy_thread("ok", thread),  # type: ignore[arg-type]
            saver.acopy_thread(thread, "ok"),  # type: ignore[arg-type]
        ):
            with pytest.raises(eventmem.InvalidInputError):
                await call
    assert await store.count_events() == before
    assert await store.sessions() == ["ok"]


@pytest.mark.anyio
async def test_other_bad_arguments_are_refused_and_write_nothing(store: eventmem.Store) -> None:
    saver = EventmemSaver(store)
    stored = await saver.aput(config("t"), _checkpoint(), METADATA, {"messages": "1"})
    before = await store.count_events()
    bad_ns: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": 7}}
    with pytest.raises(eventmem.InvalidInputError, match="checkpoint_ns"):
        await saver.aput(bad_ns, _checkpoint(), METADATA, {"messages": "1"})
    with pytest.raises(eventmem.InvalidInputError, match="checkpoint_ns"):
        await saver.aget_tuple(bad_ns)
    with pytest.raises(eventmem.InvalidInputError, match="checkpoint"):
        await saver.aput_writes(config("t"), [("messages", "x")], "task")
    with pytest.raises(eventmem.InvalidInputError, match="strategy"):
        await saver.aprune(["t"], strategy="newest")
    with pytest.raises(eventmem.InvalidInputError):
        await saver.acopy_thread("t", "t")
    no_id = _checkpoint()
    no_id["id"] = ""
    with pytest.raises(eventmem.InvalidInputError):
        await saver.aput(config("t"), no_id, METADATA, {"messages": "1"})
    bad_version = _checkpoint()
    bad_version["channel_versions"] = {"messages": [1]}
    with pytest.raises(eventmem.InvalidInputError, match="version"):
        await saver.aput(config("t"), bad_version, METADATA, {"messages": [1]})  # type: ignore[dict-item]
    assert await store.count_events() == before
    found = await saver.aget_tuple(stored)
    assert found is not None
    assert found.checkpoint["channel_values"] == {"messages": [HumanMessage("hi", id="h1")]}


def _ns_config(ns: object) -> Any:
    return {"configurable": {"thread_id": "t", "checkpoint_ns": ns}}


def _id_config(checkpoint: object) -> Any:
    return {"configurable": {"thread_id": "t", "checkpoint_id": checkpoint}}


def _with(**changes: Any) -> Any:
    checkpoint = _checkpoint()
    checkpoint.update(changes)
    return checkpoint


# Inputs a saver must check itself: unchecked, PostgreSQL would refuse a NUL in text and
# compare text with an int not at all (StorageError) while SQLite would store or match
# them; LangGraph's own types say they are str. Refused alike, and nothing written.
UNCHECKED: list[tuple[str, Any]] = [
    ("ns with NUL (put)", lambda s, c: s.aput(_ns_config("a\x00b"), _checkpoint(), METADATA, {})),
    ("checkpoint id with NUL", lambda s, c: s.aput(c, _with(id="x\x00"), METADATA, {})),
    (
        "channel with NUL",
        lambda s, c: s.aput(
            c,
            _with(channel_versions={"m\x00": "2"}, channel_values={"m\x00": 1}),
            METADATA,
            {"m\x00": "2"},
        ),
    ),
    ("task id with NUL", lambda s, c: s.aput_writes(c, [("messages", 1)], "task\x00")),
    (
        "write's checkpoint id with NUL",
        lambda s, c: s.aput_writes(_id_config("c\x00"), [("messages", 1)], "t"),
    ),
    ("run id with NUL", lambda s, c: s.adelete_for_runs(["r\x00"])),
    ("task id an int", lambda s, c: s.aput_writes(c, [("messages", 1)], 5)),
    ("task path an int", lambda s, c: s.aput_writes(c, [("messages", 1)], "task", 7)),
    ("write channel an int", lambda s, c: s.aput_writes(c, [(5, 1)], "task")),
    ("ns an int (list)", lambda s, c: s.alist(_ns_config(7)).__anext__()),
    ("checkpoint id an int (get)", lambda s, c: s.aget_tuple(_id_config(5))),
    ("before an int (list)", lambda s, c: s.alist(c, before=_id_config(5)).__anext__()),
    (
        "step beyond 64 bits",
        lambda s, c: s.aput(c, _with(id="step"), {**METADATA, "step": 2**70}, {}),
    ),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.anyio
@pytest.mark.parametrize("call", [u[1] for u in UNCHECKED], ids=[u[0] for u in UNCHECKED])
async def test_unchecked_inputs_are_refused_alike_on_both_backends(
    store: eventmem.Store, call: Any
) -> None:
    saver = EventmemSaver(store)
    stored = await saver.aput(config("t"), _checkpoint(), METADATA, {"messages": "1"})
    before = await store.count_events()
    with pytest.raises(eventmem.InvalidInputError):
        await call(saver, stored)
    assert await store.count_events() == before


# Calls that, unchecked, would append an event the store cannot decode (verify would
# report the thread "undecodable" for good: the log is immutable).
UNDECODABLE: list[tuple[str, Any]] = [
    ("task id an int", lambda s, c: s.aput_writes(c, [("messages", 1)], 5)),
    ("task path an int", lambda s, c: s.aput_writes(c, [("messages", 1)], "task", 7)),
    ("write channel an int", lambda s, c: s.aput_writes(c, [(5, 1)], "task")),
    (
        "version NaN",
        lambda s, c: s.aput(
            c, _with(id="nan", channel_versions={"messages": float("nan")}), METADATA, {}
        ),
    ),
    (
        "version infinite",
        lambda s, c: s.aput(
            c, _with(id="inf", channel_versions={"messages": float("inf")}), METADATA, {}
        ),
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("call", [u[1] for u in UNDECODABLE], ids=[u[0] for u in UNDECODABLE])
async def test_no_call_appends_an_event_verify_cannot_decode(
    store: eventmem.Store, call: Any
) -> None:
    saver = EventmemSaver(store)
    stored = await saver.aput(config("t"), _checkpoint(), METADATA, {"messages": "1"})
    with contextlib.suppress(eventmem.InvalidInputError):
        await call(saver, stored)
    report = await store.verify()
    assert report.ok, report.problems


def _repeat_a_list_version(target: str) -> None:
    """Run in a new Python process: two puts naming the same new version of a list
    channel, then read the thread's newest checkpoint; print its values (JSON)."""

    async def main() -> None:
        async with eventmem.open(target) as store:
            saver = EventmemSaver(store)
            stored = await saver.aput(config("t"), _checkpoint(), METADATA, {"messages": "1"})
            with contextlib.suppress(eventmem.InvalidInputError):  # refused is fine too
                await saver.aput(stored, _checkpoint(), METADATA, {"messages": "1"})
            found = await saver.aget_tuple(config("t"))
            assert found is not None
            values = found.checkpoint["channel_values"]["messages"]
            print(json.dumps([m.model_dump() for m in values]))

    anyio.run(main, backend="asyncio")


@pytest.mark.slow
def test_a_put_repeating_a_list_version_leaves_the_thread_readable(target: str) -> None:
    code = (
        "import sys; from tests.test_langgraph import _repeat_a_list_version; "
        "_repeat_a_list_version(sys.argv[1])"
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, target],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading the checkpoint did not finish in 20 s")
    assert child.returncode == 0, child.stderr
    [message] = json.loads(child.stdout)
    assert message["content"] == "hi"


@pytest.mark.anyio
async def test_a_read_only_store_refuses_every_write_and_still_reads(target: str) -> None:
    before = await anyio.to_thread.run_sync(_run_one_turn, target)
    async with eventmem.open(target, read_only=True) as store:
        events = await store.count_events()
        saver = EventmemSaver(store)
        graph = agent(saver, "q2")
        assert (await graph.aget_state(config("t"))).values == before.values
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await graph.ainvoke({"messages": [HumanMessage("q2")]}, config("t"))
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await saver.aput(config("new"), _checkpoint(), METADATA, {"messages": "1"})
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await saver.aput_writes(before.config, [("messages", "x")], "task")
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await saver.adelete_thread("t")
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await saver.acopy_thread("t", "copy")
        assert await store.count_events() == events
        assert await store.sessions() == ["t"]
        assert (await graph.aget_state(config("t"))).values == before.values


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["prune keep_latest", "prune delete", "delete_for_runs"])
async def test_a_read_only_store_refuses_prune_and_delete_for_runs_with_a_typed_error(
    target: str, call: str
) -> None:
    async with eventmem.open(target) as store:
        saver = EventmemSaver(store)
        first = await saver.aput(config("t"), _checkpoint(), METADATA, {"messages": "1"})
        second = _checkpoint()
        second["channel_versions"] = {"messages": "2"}
        metadata: Any = {**METADATA, "run_id": "r1"}
        await saver.aput(first, second, metadata, {"messages": "2"})
    async with eventmem.open(target, read_only=True) as store:
        events = await store.count_events()
        saver = EventmemSaver(store)
        if call == "delete_for_runs":
            with pytest.raises(eventmem.ReadOnlyStoreError):
                await saver.adelete_for_runs(["r1"])
        else:
            with pytest.raises(eventmem.ReadOnlyStoreError):
                await saver.aprune(["t"], strategy=call.split()[1])
        assert await store.count_events() == events


# -- 6: several processes on shared threads -----------------------------------------------


def _graph_worker(
    index: int,
    target: str,
    threads: list[str],
    turns: int,
    result_path: str,
    barrier: Barrier,
) -> None:
    """Process entry point (spawned): one task per thread, each asking ``turns``
    questions on it; record every checkpoint the graph made (JSON)."""
    result: dict[str, Any] = {"runs": [], "errors": []}
    try:
        anyio.run(_graph_work, index, target, threads, turns, barrier, result, backend="asyncio")
    except BaseException as e:  # report it, whatever it is
        result["errors"].append(f"worker {index}: {e!r}\n{traceback.format_exc()}")
    finally:
        Path(result_path).write_text(json.dumps(result))


async def _graph_work(
    index: int,
    target: str,
    threads: list[str],
    turns: int,
    barrier: Barrier,
    result: dict[str, Any],
) -> None:
    async with eventmem.open(target) as store:
        saver = EventmemSaver(store)
        await anyio.to_thread.run_sync(barrier.wait, 120.0)

        async def ask(thread: str) -> None:
            questions = [f"p{index}-{thread}-n{n}" for n in range(turns)]
            graph = agent(saver, *questions)
            for question in questions:
                run: list[list[Any]] = []
                try:
                    async for chunk in graph.astream(
                        {"messages": [HumanMessage(question)]},
                        config(thread),
                        stream_mode="checkpoints",
                    ):
                        parent = chunk["parent_config"]
                        run.append(
                            [
                                checkpoint_id(chunk["config"]),
                                checkpoint_id(parent) if parent else None,
                                chunk["metadata"]["step"],
                            ]
                        )
                except Exception as e:
                    result["errors"].append(f"{thread} {question}: {e!r}")
                    return
                result["runs"].append({"thread": thread, "question": question, "run": run})

        async with anyio.create_task_group() as group:
            for thread in threads:
                group.start_soon(ask, thread)


def _run_processes(target: str, tmp_path: Path, processes: int, threads: int, turns: int) -> None:
    shared = [f"thread-{n:02d}" for n in range(threads)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = [tmp_path / f"worker-{i}.json" for i in range(processes)]
    workers = [
        ctx.Process(target=_graph_worker, args=(i, target, shared, turns, str(results[i]), barrier))
        for i in range(processes)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
        if worker.is_alive():
            worker.kill()
            worker.join()
    assert [w.exitcode for w in workers] == [0] * processes
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    for path in results:
        result = json.loads(path.read_text())
        runs.extend(result["runs"])
        errors.extend(result["errors"])
    assert not errors, errors[:5]
    assert len(runs) == processes * threads * turns
    anyio.run(_check_runs, target, shared, runs, backend="asyncio")
    # runs that began on a checkpoint another run also began on: concurrent writers
    starts = Counter((r["thread"], r["run"][0][1]) for r in runs)
    forked = sum(n for n in starts.values() if n > 1)
    print(
        f"{backend_of(target)}: {processes} processes x {threads} shared threads x {turns} "
        f"turns: {sum(len(r['run']) for r in runs)} checkpoints in "
        f"{time.monotonic() - started:.1f} s; {forked} runs began on a shared checkpoint"
    )


async def _check_runs(target: str, threads: list[str], runs: list[dict[str, Any]]) -> None:
    async with eventmem.open(target) as store:
        report = await store.verify()
        assert report.ok, report.problems[:5]
        assert sorted(await store.sessions()) == threads
        saver = EventmemSaver(store)
        graph = agent(saver)
        for thread in threads:
            mine = [r for r in runs if r["thread"] == thread]
            made = {c[0]: c for r in mine for c in r["run"]}
            assert len(made) == sum(len(r["run"]) for r in mine)  # no id twice
            stored = {checkpoint_id(t.config): t async for t in saver.alist(config(thread))}
            assert set(stored) == set(made), thread  # none lost, none extra
            for cid, (_, parent, step) in made.items():
                found = stored[cid]
                assert (checkpoint_id(found.parent_config) if found.parent_config else None) == (
                    parent
                )
                assert found.metadata["step"] == step
            # positions: a parent is always logged before its child, each run in order
            position = {
                e.data.checkpoint_id: e.position
                async for e in store.events(thread)
                if isinstance(e.data, eventmem.CheckpointSaved)
            }
            assert len(position) == len(made)
            for r in mine:
                chain = r["run"]
                assert len(chain) == CHECKPOINTS_PER_TURN
                assert [c[2] for c in chain] == list(range(chain[0][2], chain[0][2] + 5))
                for previous, current in itertools.pairwise(chain):
                    assert current[1] == previous[0]  # each parent is the run's previous
                    assert position[current[0]] > position[previous[0]]
                if chain[0][1] is not None:
                    assert chain[0][1] in made  # the run started on a checkpoint of the thread
                    assert position[chain[0][1]] < position[chain[0][0]]
                # the run's last checkpoint holds its question answered, whatever the
                # other processes wrote to the thread meanwhile
                last = await graph.aget_state(
                    {"configurable": {"thread_id": thread, "checkpoint_id": chain[-1][0]}}
                )
                assert said(last.values["messages"][-4:]) == turn(r["question"])
            first = [r["run"][0] for r in mine if r["run"][0][1] is None]
            assert len(first) >= 1  # some process began the thread


@pytest.mark.slow  # each process imports LangGraph: ~9 s
def test_two_processes_share_threads_and_lose_nothing(target: str, tmp_path: Path) -> None:
    """The short variant: 2 processes, each asking on the same 4 threads at once."""
    _run_processes(target, tmp_path, processes=2, threads=4, turns=2)


@pytest.mark.slow
def test_four_processes_on_twenty_shared_threads_lose_nothing(target: str, tmp_path: Path) -> None:
    """4 processes, each running a task on every one of the same 20 threads at once, so
    every thread has 4 writers in 4 processes and every process 20 concurrent writers."""
    _run_processes(target, tmp_path, processes=4, threads=20, turns=3)


@pytest.mark.anyio
@pytest.mark.reuses_schema
async def test_a_long_list_grows_by_deltas_when_a_whole_copy_would_not_fit(target: str) -> None:
    """The saver copies a list whole now and then (so a read walks a short chain), but
    never a copy too big for one event: a long thread goes on by deltas instead of every
    put being refused with InputTooLargeError."""
    async with eventmem.open(target, max_save_bytes=64 * 1024) as store:
        saver = EventmemSaver(store)
        messages: list[Any] = []
        stored = config("long")
        version: str | None = None
        for step in range(150):  # ~300 messages of ~400 bytes: far more than 64 KiB in all
            messages = [
                *messages,
                HumanMessage(f"{step} " + "question " * 40, id=f"h{step}"),
                AIMessage(f"{step} " + "answer " * 40, id=f"a{step}"),
            ]
            checkpoint = empty_checkpoint()
            version = saver.get_next_version(version, None)
            checkpoint["channel_values"] = {"messages": messages}
            checkpoint["channel_versions"] = {"messages": version}
            stored = await saver.aput(stored, checkpoint, METADATA, {"messages": version})
        found = await saver.aget_tuple(config("long"))
        assert found is not None
        assert found.checkpoint["channel_values"]["messages"] == messages
        assert (await store.verify()).ok
    async with eventmem.open(target) as store:  # a new process: nothing cached
        found = await EventmemSaver(store).aget_tuple(config("long"))
        assert found is not None
        assert found.checkpoint["channel_values"]["messages"] == messages


@pytest.mark.anyio
async def test_an_encrypted_store_keeps_checkpoints_as_ciphertext(
    target: str, tmp_path: Path
) -> None:
    from eventmem.encryption import Keyring, generate_master_key

    secret = "marmot-9931-sextant"
    keys = Keyring(tmp_path / "graph.keys", master_key=generate_master_key())
    async with eventmem.open(target, encryption=keys) as store:
        graph = agent(EventmemSaver(store), secret)
        done = await graph.ainvoke({"messages": [HumanMessage(secret)]}, config("t"))
        assert said(done["messages"]) == turn(secret)
    async with eventmem.open(target, encryption=keys) as store:
        state = await agent(EventmemSaver(store)).aget_state(config("t"))
        assert said(state.values["messages"]) == turn(secret)
        assert (await store.verify()).ok
    with raw_database(target) as raw:
        stored = raw.execute("SELECT kind, data FROM events")
    assert {kind for kind, _ in stored} == {"checkpoint", "writes"}
    assert all(secret not in data and '"kind":"encrypted"' in data for _, data in stored)
