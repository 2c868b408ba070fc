"""Random sequences of saves (an agent memory's and a summary buffer's, on one session),
live steps, clears, reopenings and limit/model changes, checked after every step against
a naive in-memory model of LangChain's rules, on each backend (one machine per backend,
the same number of examples each)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import eventmem
from eventmem._summarizer import SUMMARY_TEMPLATE
from eventmem.messages import Message, buffer_string
from tests.backends import check_postgres, drop_target, new_target
from tests.summarizers import answer_for

texts = st.text(st.characters(codec="utf-8"), max_size=40)
observations = st.one_of(texts, st.integers(), st.lists(st.integers(), max_size=3), st.none())


class Model:
    """LangChain's AgentTokenBufferMemory, written the naive way: recount on every pop."""

    def __init__(self) -> None:
        self.buffer: list[Message] = []
        self.summary = ""  # ConversationSummaryBufferMemory's moving_summary_buffer

    def save_summarised(self, human: str, ai: str, limit: int, model: str) -> bool:
        """A summary buffer's save: the pruned messages are summarised (and True)."""
        before = list(self.buffer)
        self.save(human, ai, [], limit, model)
        entered = [*before, Message(role="human", content=human), Message(role="ai", content=ai)]
        pruned = entered[: len(entered) - len(self.buffer)]
        if pruned:
            prompt = SUMMARY_TEMPLATE.format(summary=self.summary, new_lines=buffer_string(pruned))
            self.summary = answer_for(prompt)
        return bool(pruned)

    def save(
        self, human: str, ai: str, steps: list[tuple[dict[str, Any], Any]], limit: int, model: str
    ) -> None:
        self.buffer.append(Message(role="human", content=human))
        for action, observation in steps:
            if "message_log" not in action:
                self.buffer.append(Message(role="ai", content=action["log"]))
                continue
            text = (
                observation
                if isinstance(observation, str)
                else json.dumps(observation, ensure_ascii=False)
            )
            self.buffer.append(Message(role="function", content=text, name=action["tool"]))
        self.buffer.append(Message(role="ai", content=ai))
        while self.buffer and eventmem.count_tokens(self.buffer, model) > limit:
            self.buffer.pop(0)


class MemoryMachine(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.tmp = tempfile.TemporaryDirectory()
        self.target = new_target(self.backend, Path(self.tmp.name))
        self.model = Model()
        self.limit = 80
        self.model_name = "gpt-4o"
        self.live: list[tuple[dict[str, Any], Any]] = []
        self.store: eventmem.Store | None = None
        self.events = 0

    @initialize()
    def open_store(self) -> None:
        self.store = self.portal.call(self._open)
        self._new_memory()

    async def _open(self) -> eventmem.Store:
        return await eventmem.open(self.target)

    def _new_memory(self) -> None:
        assert self.store is not None
        self.memory = self.store.agent_token_buffer(
            "s", max_token_limit=self.limit, model=self.model_name
        )
        self.summarising = self.store.summary_buffer(
            "s", llm=answer_for, max_token_limit=self.limit, model=self.model_name
        )
        self.live = []  # a new memory object does not adopt the old one's live steps

    @rule(
        human=texts,
        ai=texts,
        extra=st.lists(
            st.tuples(st.booleans(), st.sampled_from(["search", "calc"]), observations),
            max_size=3,
        ),
    )
    def save(self, human: str, ai: str, extra: list[tuple[bool, str, Any]]) -> None:
        steps = list(self.live) + [
            (
                {"tool": tool, "log": f"use {tool}", "message_log": []}
                if with_log
                else {"tool": tool, "log": f"thinking about {tool}"},
                obs,
            )
            for with_log, tool, obs in extra
        ]
        self.portal.call(
            self.memory.asave_context,
            {"input": human},
            {"output": ai, "intermediate_steps": steps},
        )
        self.model.save(human, ai, steps, self.limit, self.model_name)
        self.events += 1 + len(extra)
        self.live = []

    @rule(human=texts, ai=texts)
    def save_summarised(self, human: str, ai: str) -> None:
        self.portal.call(self.summarising.asave_context, {"input": human}, {"output": ai})
        summarised = self.model.save_summarised(human, ai, self.limit, self.model_name)
        self.events += 2 if summarised else 1
        self.live = []  # the agent memory's live steps are not this save's: abandoned

    @rule(tool=st.sampled_from(["search", "calc"]), observation=observations)
    def record_step(self, tool: str, observation: Any) -> None:
        action = {"tool": tool, "log": f"live {tool}", "message_log": []}
        self.portal.call(self.memory.arecord_step, action, observation)
        self.live.append((action, observation))
        self.events += 1

    @rule()
    def clear(self) -> None:
        self.portal.call(self.memory.aclear)
        self.model.buffer = []
        self.model.summary = ""
        self.events += 1

    @rule(limit=st.integers(0, 300))
    def change_limit(self, limit: int) -> None:
        self.limit = limit
        self._new_memory()

    @rule(model=st.sampled_from(["gpt-4o", "gpt-4", "gpt-3.5-turbo-0301"]))
    def change_model(self, model: str) -> None:
        self.model_name = model
        self._new_memory()

    @rule()
    def reopen(self) -> None:
        assert self.store is not None
        self.portal.call(self.store.aclose)
        self.store = self.portal.call(self._open)
        self._new_memory()

    @invariant()
    def buffer_matches_the_model(self) -> None:
        if self.store is None:
            return
        stored = self.portal.call(self.store.messages, "s")
        assert [(m.role, m.content, m.name) for m in stored] == [
            (m.role, m.content, m.name) for m in self.model.buffer
        ]
        assert self.portal.call(self.store.count_events) == self.events
        assert self.portal.call(self.summarising.amoving_summary_buffer) == self.model.summary

    def teardown(self) -> None:
        try:
            if self.store is not None:
                report = self.portal.call(self.store.verify)
                assert report.ok, report.problems
                self.portal.call(self.store.aclose)
        finally:
            self.portal_cm.__exit__(None, None, None)
            self.tmp.cleanup()
            drop_target(self.target)


class PostgresMemoryMachine(MemoryMachine):
    backend = "postgresql"


# The fast loop runs a few programs; the full count is marked slow.
QUICK = settings(max_examples=3, stateful_step_count=25, deadline=None)
FULL = settings(max_examples=40, stateful_step_count=25, deadline=None)


class TestMemoryMachineSQLiteQuick(MemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = QUICK


@pytest.mark.slow
class TestMemoryMachineSQLiteFull(MemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = FULL


class _NeedsPostgres:
    """Not a TestCase itself (pytest would collect any TestCase subclass)."""

    def setUp(self) -> None:
        check_postgres()  # an unreachable server fails the test with how to start it


class TestMemoryMachinePostgreSQLQuick(_NeedsPostgres, PostgresMemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = QUICK


@pytest.mark.slow
class TestMemoryMachinePostgreSQLFull(_NeedsPostgres, PostgresMemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = FULL
