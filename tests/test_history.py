"""The general history (`Store.history`): any messages, pops and clears as events, and a
token-bounded view, on both backends.

The view is checked against a model of its rules written here from the documentation
(not from the fold), after every operation of random runs; time travel, verify, rebuild
and export/import are checked on the same runs. Keeping the system message is checked
against LangChain's own ``trim_messages(include_system=True)``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.agents import AgentAction
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages

import eventmem
from eventmem import Action, InvalidToolCall, Message, ToolCall
from tests.backends import BACKENDS, fresh_target
from tests.probes import traced_statements
from tests.reference import examples, examples_for

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]

SESSION = "h"
COUNTER = eventmem.OpenAIChatCounter("gpt-4o")
RESULT_ROLES = ("tool", "function")


# -- a model of the documented rules ----------------------------------------------------


@dataclass
class ViewModel:
    """The view as the documentation states it: a list, a pinned flag, nothing else."""

    view: list[Message] = field(default_factory=list)
    pinned: bool = False  # view[0] is the pinned system message
    passed: bool = False  # pruning has passed over it: only the pin keeps it

    def append(
        self, messages: Sequence[Message], max_tokens: int | None, prune: str, keep: bool
    ) -> None:
        if not keep:
            if self.pinned and self.passed:  # giving up the pin prunes what it kept
                del self.view[0]
            self.pinned = self.passed = False
        elif not self.view and not self.pinned and messages[0].role in ("system", "developer"):
            self.pinned = True
        self.view.extend(messages)
        if max_tokens is None:
            return
        first = 1 if self.pinned else 0
        pruned = False
        if self.pinned and self._tokens() > max_tokens:
            self.passed = True
        while self._tokens() > max_tokens and len(self.view) > first:
            del self.view[first]
            pruned = True
        if prune == "pair_safe" and (pruned or any(m.role in RESULT_ROLES for m in messages)):
            while (cut := _last_orphan(self.view[first:])) >= 0:
                del self.view[first : first + cut + 1]
                self.passed = self.passed or self.pinned

    def pop(self, n: int) -> list[Message]:
        taken = self.view[-n:] if n <= len(self.view) else list(self.view)
        del self.view[len(self.view) - len(taken) :]
        if not self.view:
            self.pinned = self.passed = False
        return taken

    def clear(self) -> None:
        self.view, self.pinned, self.passed = [], False, False

    def _tokens(self) -> int:
        return COUNTER.overhead + sum(COUNTER.count_message(m) for m in self.view)


def _last_orphan(messages: list[Message]) -> int:
    """Index of the last result whose call is not before it (-1: none)."""
    calls: set[str | None] = set()
    function_call = False
    last = -1
    for i, m in enumerate(messages):
        if m.role == "ai":
            ids = {c.id for c in m.tool_calls} | {c.id for c in m.invalid_tool_calls}
            calls |= ids - {None}
            function_call = function_call or bool(ids) or m.function_call is not None
        elif (m.role == "tool" and m.tool_call_id not in calls) or (
            m.role == "function" and not function_call
        ):
            last = i
    return last


# -- random runs ------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=40)
words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "δέλτα", "📦"]), max_size=12).map(
    " ".join
)
parts = st.lists(
    st.one_of(
        words,
        words.map(lambda t: {"type": "text", "text": t}),
        st.just({"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
        st.just({"type": "image_url", "image_url": {"url": "https://x/b", "detail": "low"}}),
        st.just({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}),
    ),
    max_size=3,
).map(tuple)
contents = st.one_of(words, words, parts)
metadata = st.one_of(
    st.none(), st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), texts), max_size=2)
)


@st.composite
def exchange(draw: st.DrawFn, n: int) -> list[Message]:
    """A few messages as frameworks write them: text, a call and its results, ..."""
    kind = draw(st.sampled_from(["text", "text", "calls", "function"]))
    meta = draw(metadata)
    if kind == "text":
        role: eventmem.messages.Role = draw(st.sampled_from(["human", "ai", "system", "developer"]))
        return [Message(role=role, content=draw(contents), metadata=meta)]
    if kind == "function":
        return [
            Message(role="ai", content="", function_call={"name": "f", "arguments": "{}"}),
            Message(role="function", content=draw(words), name="f"),
        ]
    count = draw(st.integers(1, 3))
    ids = [f"call-{n}-{i}" for i in range(count)]
    invalid = draw(st.booleans())
    call = Message(
        role="ai",
        content=draw(st.sampled_from(["", "let me look"])),
        tool_calls=tuple(ToolCall(name="lookup", args={"q": i}, id=i) for i in ids[invalid:]),
        invalid_tool_calls=(InvalidToolCall(name="lookup", args="{", id=ids[0]),)
        if invalid
        else (),
        id=f"msg-{n}",
    )
    results = [
        Message(role="tool", content=draw(words), tool_call_id=i, metadata=meta) for i in ids
    ]
    split = draw(st.integers(0, len(results)))  # results may come in a later append
    return [call, *results[:split]] + ([] if split == len(results) else results[split:])


@dataclass(frozen=True)
class Options:
    max_tokens: int | None
    prune: str
    keep_system: bool


options = st.builds(
    Options,
    max_tokens=st.one_of(st.none(), st.integers(0, 60), st.integers(0, 400)),
    prune=st.sampled_from(["pair_safe", "langchain"]),
    keep_system=st.booleans(),
)


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = []
    for n in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from(["append"] * 6 + ["pop", "clear", "options", "reopen"]))
        if op == "append":
            messages: list[Message] = []
            for i in range(draw(st.integers(1, 3))):
                messages.extend(draw(exchange(n * 10 + i)))
            ops.append(("append", messages))
        elif op == "pop":
            ops.append(("pop", draw(st.integers(1, 4))))
        elif op == "options":
            ops.append(("options", draw(options)))
        else:
            ops.append((op, None))
    return ops


async def play(target: str, start: Options, run: list[tuple[str, Any]], cache: int) -> None:
    """Play ``run``, checking the view after every operation against the model; then time
    travel, verify and rebuild over everything it wrote. ``cache``: the store's
    ``cache_sessions`` (0: every read and write reads the rows)."""
    model = ViewModel()
    opts = start
    views: dict[int, list[Message]] = {}
    store = await eventmem.open(target, cache_sessions=cache)
    try:
        history = store.history(SESSION, **vars(opts))
        for op, arg in run:
            if op == "append":
                version = await history.append(arg)
                model.append(arg, opts.max_tokens, opts.prune, opts.keep_system)
            elif op == "pop":
                before = await history.version()
                popped = await history.pop(arg)
                assert popped == model.pop(arg)
                version = await history.version()
                assert version == before + (1 if popped else 0)
            elif op == "clear":
                version = await history.clear()
                model.clear()
            elif op == "options":
                opts = arg
                history = store.history(SESSION, **vars(opts))
                continue
            else:
                await store.aclose()
                store = await eventmem.open(target, cache_sessions=cache)
                history = store.history(SESSION, **vars(opts))
                continue
            view = await history.view()
            assert view == model.view
            views[version] = view
        for position, view in views.items():
            assert await history.messages(as_of=position) == view
        report = await store.verify()
        assert report.ok, report.problems
        assert await store.rebuild() == (1 if await store.version(SESSION) else 0)
        assert (await store.verify()).ok
        assert await history.view() == model.view
    finally:
        await store.aclose()


def test_the_view_follows_the_documented_rules(backend: str, depth: str, tmp_path: Path) -> None:
    @examples_for(backend, depth, sqlite=300, postgresql=80)
    @given(start=options, run=operations(), cache=st.sampled_from([1024, 0]))
    def example(start: Options, run: list[tuple[str, Any]], cache: int) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play, target, start, run, cache)

    example()


# -- fixed behaviour --------------------------------------------------------------------

SYSTEM = Message(role="system", content="You are terse.")


def call(i: int) -> list[Message]:
    return [
        Message(role="ai", content="", tool_calls=(ToolCall(name="t", args={"i": i}, id=f"c{i}"),)),
        Message(role="tool", content=f"result {i} " * 5, tool_call_id=f"c{i}"),
    ]


async def test_what_goes_in_comes_out_equal(store: eventmem.Store, target: str) -> None:
    messages = [
        SYSTEM,
        Message(role="developer", content="Use tools.", name="ops"),
        Message(
            role="human",
            content=(
                "look at this",
                {"type": "text", "text": "and this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ),
            id="u1",
            metadata={"source": {"app": "web", "n": [1, 2.5, True, None]}},
        ),
        *call(1),
        Message(role="ai", content="", function_call={"name": "f", "arguments": '{"a": 1}'}),
        Message(role="function", content="done", name="f"),
        Message(role="ai", content="answer", invalid_tool_calls=(InvalidToolCall(args="{"),)),
    ]
    history = store.history(SESSION)
    version = await history.append(messages)
    assert version == 1
    assert await history.view() == messages
    again = await eventmem.open(target)
    try:
        assert await again.history(SESSION).view() == messages
        [event] = [e async for e in again.events(SESSION)]
        assert event.kind == "messages"
        assert isinstance(event.data, eventmem.MessagesAppended)
        assert event.data.messages == tuple(messages)
    finally:
        await again.aclose()


async def test_appending_k_messages_is_one_event_and_pop_and_clear_are_events(
    store: eventmem.Store,
) -> None:
    history = store.history(SESSION)
    await history.append([Message(role="human", content=str(i)) for i in range(3)])
    assert await history.pop(2) == [Message(role="human", content=str(i)) for i in (1, 2)]
    assert [m.content for m in await history.view()] == ["0"]
    await history.append([Message(role="ai", content="x")])
    await history.clear()
    assert await history.view() == []
    assert await history.pop() == []  # nothing to pop: nothing written
    kinds = [e.kind async for e in store.events(SESSION)]
    assert kinds == ["messages", "retract", "messages", "clear"]
    assert [m.content for m in await history.messages(as_of=3)] == ["0", "x"]
    assert await history.append([]) == 4  # nothing to append: nothing written


async def test_pair_safe_pruning_keeps_calls_and_results_together(store: eventmem.Store) -> None:
    history = store.history(SESSION, max_tokens=120)
    for i in range(8):
        await history.append([Message(role="human", content=f"question {i}"), *call(i)])
        view = await history.view()
        assert view[0].role != "tool"
        for m in view:
            if m.role == "tool":
                assert any(c.id == m.tool_call_id for v in view for c in v.tool_calls)


async def test_a_result_added_after_its_call_stays_with_it(store: eventmem.Store) -> None:
    history = store.history(SESSION, max_tokens=90)
    first, result = call(1)
    await history.append([Message(role="human", content="go"), first])
    await history.append([result])
    view = await history.view()
    assert view[-2:] == [first, result]


async def test_keep_system_pins_the_system_message_that_begins_the_view(
    store: eventmem.Store,
) -> None:
    pinned = store.history(SESSION, max_tokens=40)
    loose = store.history("loose", max_tokens=40, keep_system=False)
    for history in (pinned, loose):
        await history.append([SYSTEM])
        for i in range(10):
            await history.append([Message(role="human", content=f"message number {i}")])
    pinned_view, loose_view = await pinned.view(), await loose.view()
    assert pinned_view[0] == SYSTEM
    assert pinned_view[-1].content == "message number 9"
    assert SYSTEM not in loose_view
    assert eventmem.count_tokens(pinned_view) <= 40
    # Popping down to it, then past it
    assert (await pinned.pop(len(pinned_view) - 1))[-1].content == "message number 9"
    assert await pinned.view() == [SYSTEM]
    assert await pinned.pop() == [SYSTEM]
    assert await pinned.view() == []
    summaries = {s.session_id: s for s in await store.session_summaries()}
    assert summaries[SESSION].visible_messages == 0
    assert summaries["loose"].visible_messages == len(loose_view)


@pytest.mark.parametrize("max_tokens", [0, 20, 45, 80, 200])
def test_keep_system_is_trim_messages_with_include_system(max_tokens: int, depth: str) -> None:
    """Append-only text runs, langchain pruning: the view after every append is what
    LangChain's trim_messages keeps of the whole history (strategy "last",
    include_system=True) under the same count, a system message over the bound alone
    included."""

    @examples(depth, 40)
    @given(
        texts=st.lists(words, min_size=1, max_size=12),
        batch=st.integers(1, 3),
    )
    def example(texts: list[str], batch: int) -> None:
        anyio.run(trim_parity, texts, batch, max_tokens)

    example()


async def trim_parity(texts: list[str], batch: int, max_tokens: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with eventmem.open(str(Path(directory) / "t.db")) as store:
            history = store.history(SESSION, max_tokens=max_tokens, prune="langchain")
            full: list[Any] = [SystemMessage(content=SYSTEM.text)]
            await history.append([SYSTEM])
            for start in range(0, len(texts), batch):
                chunk = texts[start : start + batch]
                new = [
                    HumanMessage(content=t) if (start + i) % 2 == 0 else AIMessage(content=t)
                    for i, t in enumerate(chunk)
                ]
                full.extend(new)
                await history.append([eventmem.from_langchain(m) for m in new])
                # trim_messages counts the system message and the rest as two lists, so
                # the reply primer (the counter's overhead) twice: its bound is ours
                # plus one overhead.
                kept = trim_messages(
                    full,
                    max_tokens=max_tokens + COUNTER.overhead,
                    token_counter=lambda ms: eventmem.count_tokens(list(ms)),
                    strategy="last",
                    include_system=True,
                )
                assert await history.view() == [eventmem.from_langchain(m) for m in kept]


async def test_refused_input_writes_nothing(store: eventmem.Store) -> None:
    history = store.history(SESSION)
    bad: list[Any] = [
        "not a list",
        Message(role="human", content="a single message"),
        [Message(role="human", content="ok"), {"role": "critic", "content": "x"}],
        [Message(role="human", content="ok"), object()],
        [{"role": "user", "content": [{"type": "text", "text": float("inf")}]}],
        [{"role": "tool", "content": "x"}],
    ]
    for value in bad:
        with pytest.raises(eventmem.InvalidInputError):
            await history.append(value)
    for kwargs in ({"max_tokens": -1}, {"max_tokens": True}, {"prune": "x"}, {"keep_system": 1}):
        with pytest.raises(eventmem.InvalidInputError):
            store.history(SESSION, **kwargs)
    for n in (0, -1, True, 1.5):
        with pytest.raises(eventmem.InvalidInputError):
            await history.pop(n)  # type: ignore[arg-type]
    assert await store.version(SESSION) == 0
    await history.append([Message(role="human", content="x")])
    with pytest.raises(eventmem.ConcurrencyError):
        await history.append([Message(role="human", content="y")], expected_version=0)
    with pytest.raises(eventmem.ConcurrencyError):
        await history.pop(expected_version=0)
    assert await store.version(SESSION) == 1


async def test_openai_dicts_and_langchain_messages_are_accepted(store: eventmem.Store) -> None:
    history = store.history(SESSION)
    await history.append(
        [
            {"role": "system", "content": "be brief"},
            HumanMessage(content=[{"type": "text", "text": "hi"}], id="h1"),
            {"role": "assistant", "content": "hello", "refusal": None},
        ]
    )
    view = await history.view()
    assert [m.role for m in view] == ["system", "human", "ai"]
    assert view[1].content == ({"type": "text", "text": "hi"},)
    assert view[1].id == "h1"


async def test_a_memory_and_a_history_of_one_session_share_the_view(
    store: eventmem.Store,
) -> None:
    memory = store.token_buffer(SESSION, max_token_limit=60)
    history = store.history(SESSION, max_tokens=60)
    await history.append([SYSTEM])
    await memory.asave_context({"input": "hello there"}, {"output": "hi"})
    assert await history.view() == await store.messages(SESSION)
    # A LangChain turn prunes as LangChain does: the system message is not pinned.
    for i in range(6):
        await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
    assert SYSTEM not in await history.view()
    assert (await store.verify()).ok


def test_the_blocking_history_mirrors_the_async_one(target: str) -> None:
    with eventmem.connect(target) as store:
        history = store.history(SESSION, max_tokens=50)
        assert history.append([SYSTEM, Message(role="human", content="hi")]) == 1
        assert history.view() == [SYSTEM, Message(role="human", content="hi")]
        assert history.pop() == [Message(role="human", content="hi")]
        assert history.clear() == 3
        assert history.messages(as_of=1) == [SYSTEM, Message(role="human", content="hi")]
        assert history.version() == 3
        assert history.max_tokens == 50


async def test_exports_with_general_messages_import_elsewhere(
    store: eventmem.Store, tmp_path: Path
) -> None:
    history = store.history(SESSION, max_tokens=80)
    await history.append(
        [SYSTEM, Message(role="human", content=("a", {"type": "text", "text": "b"}))]
    )
    for i in range(4):
        await history.append(call(i))
    await history.pop()
    await history.clear()
    await history.append([Message(role="ai", content="after", metadata={"k": "v"})])
    lines = [line async for line in store.export()]
    view_before = [await history.messages(as_of=p) for p in range(1, await history.version() + 1)]
    for other in BACKENDS:
        with fresh_target(other, tmp_path) as elsewhere:
            async with eventmem.open(elsewhere) as copy:
                assert await copy.import_events(lines) == (1, await history.version())
                assert (await copy.verify()).ok
                copied = copy.history(SESSION)
                assert await copied.view() == await history.view()
                for p, view in enumerate(view_before, start=1):
                    assert await copied.messages(as_of=p) == view


async def test_a_bounded_append_costs_the_same_late_as_early(
    store: eventmem.Store, depth: str
) -> None:
    """A pair-safe, pinned, bounded append reads no event and the same statements after
    a long history as after a short one; with the view loaded (the agent loop: append,
    then view), it reads none of the view's messages either."""
    history = store.history(SESSION, max_tokens=200)
    await history.append([SYSTEM])
    last = 400 if depth == "full" else 100

    async def traced_append(i: int) -> list[str]:
        await history.view()
        async with traced_statements(store) as statements:
            await history.append([Message(role="human", content=f"question {i}"), *call(i)])
        assert statements
        return [s for s in statements if not s.startswith("PRAGMA")]

    for i in range(20):
        await history.append([Message(role="human", content=f"question {i}"), *call(i)])
    early = await traced_append(20)
    for i in range(21, last):
        await history.append([Message(role="human", content=f"question {i}"), *call(i)])
    late = await traced_append(last)
    assert len(late) == len(early)
    assert not any("FROM events" in s for s in early + late)
    assert not any("SELECT message FROM view_messages" in s for s in early + late)
    assert (await history.view())[0] == SYSTEM


async def test_replay_applies_another_bound_and_tokenizer_to_appends(
    store: eventmem.Store,
) -> None:
    unbounded = store.history(SESSION)
    bounded = store.history("bounded", max_tokens=100, model="gpt-4")
    for history in (unbounded, bounded):
        await history.append([SYSTEM])
        for i in range(6):
            await history.append([Message(role="human", content=f"question {i}"), *call(i)])
    assert len(await unbounded.view()) == 1 + 6 * 3
    replayed = await store.replay(SESSION, max_token_limit=100, model="gpt-4")
    assert replayed == await bounded.view()
    assert await unbounded.view() != replayed  # nothing was written


async def test_hostile_parts_and_metadata_are_refused_quickly_and_write_nothing(
    store: eventmem.Store,
) -> None:
    history = store.history(SESSION, max_tokens=1000)
    huge = "data:image/png;base64," + "A" * (store.max_save_bytes + 10)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(eventmem.messages.MAX_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    cases: list[tuple[Any, type[Exception]]] = [
        (
            Message(role="human", content=({"type": "image_url", "image_url": {"url": huge}},)),
            eventmem.InputTooLargeError,
        ),
        (
            Message(role="human", content="x", metadata={"blob": "y" * store.max_save_bytes}),
            eventmem.InputTooLargeError,
        ),
        ({"role": "user", "content": [deep]}, eventmem.NotSerializableError),
        (
            {"role": "user", "content": [{"type": "text", "text": "\ud800"}]},
            eventmem.NotSerializableError,
        ),
        ({"role": "user", "content": "ok", "metadata": {"k": 1}}, eventmem.InvalidInputError),
    ]
    for message, error in cases:
        with pytest.raises(error):
            await history.append([Message(role="human", content="fine"), message])
    assert await store.version(SESSION) == 0


async def test_events_after_a_position_are_read_from_there(store: eventmem.Store) -> None:
    history = store.history(SESSION)
    for i in range(7):
        await history.append([Message(role="human", content=str(i))])
    assert [e.position async for e in store.events(SESSION, after=4)] == [5, 6, 7]
    assert [e.position async for e in store.events(SESSION, after=7)] == []
    for bad in (-1, True, "3"):
        with pytest.raises(eventmem.InvalidInputError):
            [e async for e in store.events(SESSION, after=bad)]  # type: ignore[arg-type]


async def test_empty_tuples_are_written_as_the_defaults_they_equal(
    store: eventmem.Store, tmp_path: Path
) -> None:
    # On Python 3.10 tuple() of an empty iterator is an empty tuple other than the ()
    # default, which the encoder would write out as []; the log and the buffer must
    # still be the JSON a decoded event encodes to, or verify and import disagree.
    def empty() -> Iterator[Any]:
        yield from ()

    history = store.history(SESSION)
    await history.append(
        [
            Message(role="ai", content="plain", tool_calls=tuple(empty())),
            Message(role="ai", content="", id="m", invalid_tool_calls=tuple(empty())),
            AIMessage(content="from LangChain"),
        ]
    )
    await store.token_buffer("turns").asave_context({"input": "hi"}, {"output": "hello"})
    by_hand = Action(tool="lookup", tool_input="x", log="looking", message_log=tuple(empty()))
    steps = [(AgentAction(tool="lookup", tool_input="y", log="again"), "found"), (by_hand, "ok")]
    await store.agent_token_buffer("agent").asave_context(
        {"input": "find"}, {"output": "done", "intermediate_steps": steps}
    )
    assert (await store.verify()).ok
    lines = [line async for line in store.export()]
    assert not any(b"[]" in line for line in lines)
    with fresh_target("sqlite", tmp_path) as elsewhere:
        async with eventmem.open(elsewhere) as copy:
            assert await copy.import_events(lines) == (3, 5)
            assert await copy.messages(SESSION) == await history.view()
