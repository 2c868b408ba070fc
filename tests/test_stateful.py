"""Random sequences of saves (an agent memory's and a summary buffer's), live steps,
clears, reopenings, limit/model changes, forks and rewinds, checked after every step
against a naive in-memory model of LangChain's rules, on each backend (one machine per
backend, the same number of examples each).

The model keeps every session's view and summary after each of its positions, so a
rewind restores one of them and a fork begins from its parent's, and time travel is
checked against them; at the end verify, rebuild and an export/import round trip must
keep every session as the model has it."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import eventmem
from eventmem._summarizer import SUMMARY_TEMPLATE
from eventmem.encryption import Keyring, generate_master_key
from eventmem.messages import Message, buffer_string
from tests.backends import check_postgres, drop_target, fresh_target, new_target
from tests.summarizers import answer_for

texts = st.text(st.characters(codec="utf-8"), max_size=40)
observations = st.one_of(texts, st.integers(), st.lists(st.integers(), max_size=3), st.none())
# Drawn wide and taken modulo the choices at hand (a position, a session): shrinks to 0.
picks = st.integers(0, 2**16)


@dataclass(frozen=True)
class Snapshot:
    """A session right after one position: its view, the summary in force, and whether
    agent steps recorded live waited there for their turn."""

    view: tuple[Message, ...]
    summary: str
    pending: bool


EMPTY = Snapshot((), "", False)


class Model:
    """LangChain's AgentTokenBufferMemory, written the naive way: recount on every pop;
    with the session's snapshot after every position (index: position, 0 before any)."""

    def __init__(self, snapshots: list[Snapshot], parent: tuple[str, int] | None) -> None:
        self.snapshots = snapshots
        self.parent = parent  # (session, position) a fork began from
        last = snapshots[-1]
        self.buffer: list[Message] = list(last.view)
        self.summary = last.summary  # ConversationSummaryBufferMemory's moving_summary_buffer

    @property
    def version(self) -> int:
        return len(self.snapshots) - 1

    @property
    def pending(self) -> bool:
        return self.snapshots[-1].pending

    def note(self, *, pending: bool = False) -> None:
        """One more position: the session as it is now."""
        self.snapshots.append(Snapshot(tuple(self.buffer), self.summary, pending))

    def save_summarised(self, human: str, ai: str, limit: int, model: str) -> bool:
        """A summary buffer's save: the pruned messages are summarised (and True)."""
        before = list(self.buffer)
        self.save(human, ai, [], 0, limit, model)
        entered = [*before, Message(role="human", content=human), Message(role="ai", content=ai)]
        pruned = entered[: len(entered) - len(self.buffer)]
        if pruned:
            prompt = SUMMARY_TEMPLATE.format(summary=self.summary, new_lines=buffer_string(pruned))
            self.summary = answer_for(prompt)
            self.note()  # the summary's event follows the turn's
        return bool(pruned)

    def save(
        self,
        human: str,
        ai: str,
        steps: list[tuple[dict[str, Any], Any]],
        new_steps: int,
        limit: int,
        model: str,
    ) -> None:
        """A turn with ``steps``, of which the last ``new_steps`` were not recorded live
        (each is an event of its own, before the turn's)."""
        for _ in range(new_steps):
            self.note(pending=True)
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
        self.note()

    def clear(self) -> None:
        """A clear empties the view and the summary; steps recorded live still wait."""
        self.buffer, self.summary = [], ""
        self.note(pending=self.pending)

    def rewind(self, to: int) -> None:
        """The view and summary become those after ``to``; nothing waits afterwards."""
        point = self.snapshots[to]
        self.buffer, self.summary = list(point.view), point.summary
        self.note()

    def fork(self, parent: str, at: int) -> Model:
        """A new session that begins as this one was after ``at``: its positions up to
        ``at`` are this one's, the fork's own event is ``at + 1``."""
        child = Model(self.snapshots[: at + 1], (parent, at))
        child.note()
        return child


def as_tuples(messages: list[Message] | tuple[Message, ...]) -> list[tuple[Any, ...]]:
    return [(m.role, m.content, m.name) for m in messages]


class MemoryMachine(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self.portal_cm.__enter__()
        self.tmp = tempfile.TemporaryDirectory()
        self.target = new_target(self.backend, Path(self.tmp.name))
        self.models = {"s": Model([EMPTY], None)}
        self.session = "s"  # the session the memories are on
        self.limit = 80
        self.model_name = "gpt-4o"
        self.live: list[tuple[dict[str, Any], Any]] = []
        self.store: eventmem.Store | None = None
        self.events = 0

    @property
    def model(self) -> Model:
        return self.models[self.session]

    @initialize()
    def open_store(self) -> None:
        self.store = self.portal.call(self._open, self.target)
        self._new_memory()

    async def _open(self, target: str) -> eventmem.Store:
        return await eventmem.open(target)

    def _new_memory(self) -> None:
        assert self.store is not None
        self.memory = self.store.agent_token_buffer(
            self.session, max_token_limit=self.limit, model=self.model_name
        )
        self.summarising = self.store.summary_buffer(
            self.session, llm=answer_for, max_token_limit=self.limit, model=self.model_name
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
        self.model.save(human, ai, steps, len(extra), self.limit, self.model_name)
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
        self.model.note(pending=True)
        self.events += 1

    @rule()
    def clear(self) -> None:
        self.portal.call(self.memory.aclear)
        self.model.clear()
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
        self.store = self.portal.call(self._open, self.target)
        self._new_memory()

    @rule(pick=picks, expect=st.sampled_from(["any", "current", "stale"]))
    def rewind(self, pick: int, expect: str) -> None:
        assert self.store is not None
        model = self.model
        to = pick % (model.version + 1)
        stale = model.version - 1 if model.version else 1  # one the session is not at
        expected = {"any": None, "current": model.version, "stale": stale}[expect]
        refusal: type[Exception] | None = None
        if model.version == 0:
            refusal = eventmem.UnknownSessionError
        elif expect == "stale":
            refusal = eventmem.ConcurrencyError
        elif model.pending:
            refusal = eventmem.InvalidInputError
        store, session = self.store, self.session
        if refusal is not None:
            with pytest.raises(refusal) as refused:
                self.portal.call(lambda: store.rewind(session, to=to, expected_version=expected))
            assert type(refused.value) is refusal  # not another of its subclasses
            return  # nothing written: the invariants hold the store to the model
        version = self.portal.call(lambda: store.rewind(session, to=to, expected_version=expected))
        model.rewind(to)
        assert version == model.version
        self.events += 1
        self.live = []

    @rule(where=st.one_of(st.none(), picks), follow=st.booleans())
    def fork(self, where: int | None, follow: bool) -> None:
        """Fork the session at a position (None: its last) and go on with the fork, or
        with the parent."""
        assert self.store is not None
        store, parent, model = self.store, self.session, self.model
        at = model.version if where is None else where % (model.version + 1)
        given = None if where is None else at
        child = f"f{len(self.models)}"
        refusal: type[Exception] | None = None
        if model.version == 0:
            refusal = eventmem.UnknownSessionError
        elif model.snapshots[at].pending:
            refusal = eventmem.InvalidInputError
        if refusal is not None:
            with pytest.raises(refusal) as refused:
                self.portal.call(lambda: store.fork(parent, child, at=given))
            assert type(refused.value) is refusal
            return  # nothing written: the invariants hold the store to the model
        version = self.portal.call(lambda: store.fork(parent, child, at=given))
        self.models[child] = model.fork(parent, at)
        assert version == at + 1 == self.models[child].version
        self.events += 1
        if follow:
            self.session = child
            self._new_memory()

    @rule(pick=picks)
    def switch_session(self, pick: int) -> None:
        names = sorted(self.models)
        self.session = names[pick % len(names)]
        self._new_memory()

    @rule(which=picks, pick=picks)
    def time_travel(self, which: int, pick: int) -> None:
        """A past view is the model's there; a fork's, up to where it forked, is also
        its parent's."""
        store = self.store
        assert store is not None
        names = sorted(self.models)
        session = names[which % len(names)]
        model = self.models[session]
        position = pick % (model.version + 1)
        seen = self.portal.call(lambda: store.messages(session, as_of=position))
        assert as_tuples(seen) == as_tuples(model.snapshots[position].view)
        if model.parent is not None and position <= model.parent[1]:
            parent = model.parent[0]
            theirs = self.portal.call(lambda: store.messages(parent, as_of=position))
            assert theirs == seen

    @invariant()
    def every_session_matches_the_model(self) -> None:
        """The current session as loaded, and every other one (a parent untouched by
        what is done to its forks)."""
        if self.store is None:
            return
        for session, model in self.models.items():
            assert self.portal.call(self.store.version, session) == model.version
            stored = self.portal.call(self.store.messages, session)
            assert as_tuples(stored) == as_tuples(model.buffer), session
        assert self.portal.call(self.store.count_events) == self.events
        assert self.portal.call(self.summarising.amoving_summary_buffer) == self.model.summary

    def _check_sessions(self, store: eventmem.Store) -> None:
        """``store`` holds every session as the model has it: version, view, summary."""
        assert set(self.portal.call(store.sessions)) == {
            s for s, m in self.models.items() if m.version
        }
        for session, model in self.models.items():
            assert self.portal.call(store.version, session) == model.version
            assert as_tuples(self.portal.call(store.messages, session)) == as_tuples(model.buffer)
            summarising = store.summary_buffer(session, llm=answer_for)
            assert self.portal.call(summarising.amoving_summary_buffer) == model.summary

    def _audit(self, store: eventmem.Store) -> None:
        """Verify is clean; rebuild keeps everything; so does an export imported into a
        fresh store, where verify is clean too."""
        report = self.portal.call(store.verify)
        assert report.ok, report.problems
        sessions = sum(1 for m in self.models.values() if m.version)
        assert self.portal.call(store.rebuild) == sessions
        self._check_sessions(store)
        lines = self.portal.call(self._export, store)
        with fresh_target(self.backend, Path(self.tmp.name)) as elsewhere:
            copy = self.portal.call(self._open, elsewhere)
            try:
                imported = self.portal.call(copy.import_events, lines)
                assert imported == (sessions, self.events)
                report = self.portal.call(copy.verify)
                assert report.ok, report.problems
                self._check_sessions(copy)
            finally:
                self.portal.call(copy.aclose)

    async def _export(self, store: eventmem.Store) -> list[bytes]:
        return [line async for line in store.export()]

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self._audit(self.store)
                self.portal.call(self.store.aclose)
        finally:
            self.portal_cm.__exit__(None, None, None)
            self.tmp.cleanup()
            drop_target(self.target)


class PostgresMemoryMachine(MemoryMachine):
    backend = "postgresql"


class EncryptedMemoryMachine(MemoryMachine):
    """The same programs on a store opened with a keyring (encryption at rest): every
    view, past view and audit must come out as a plain store's."""

    def __init__(self) -> None:
        super().__init__()
        self.keys = Keyring(Path(self.tmp.name) / "store.keys", master_key=generate_master_key())

    async def _open(self, target: str) -> eventmem.Store:
        return await eventmem.open(target, encryption=self.keys)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.keys.close()


class EncryptedPostgresMemoryMachine(EncryptedMemoryMachine):
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


class TestEncryptedMemoryMachineSQLiteQuick(EncryptedMemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = QUICK


@pytest.mark.slow
class TestEncryptedMemoryMachineSQLiteFull(EncryptedMemoryMachine.TestCase):  # type: ignore[valid-type,misc]
    settings = FULL


@pytest.mark.slow
class TestEncryptedMemoryMachinePostgreSQLFull(
    _NeedsPostgres,
    EncryptedPostgresMemoryMachine.TestCase,  # type: ignore[valid-type,misc]
):
    settings = FULL
