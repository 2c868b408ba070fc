"""OpenTelemetry spans (eventmem._tracing): names, attributes that name the exact event
and view, nesting under the caller's span, errors, and nothing at all without the extra.

The API's tracer provider is process-global and can be set once: the session fixture sets
an SDK provider whose sampler records only inside these tests (``recording``), so spans
are non-recording, as with the API's no-op provider, everywhere else.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes

import eventmem
from eventmem.messages import Message

pytestmark = pytest.mark.postgres_sample(2, across="module")


class _Switch(Sampler):
    """Records while ``on``; else drops every span (as the no-op provider does)."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        sampler = ALWAYS_ON if self.on else ALWAYS_OFF
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "switch"


_SWITCH = _Switch()
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _provider() -> None:
    provider = TracerProvider(sampler=_SWITCH)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans(_provider: None) -> Iterator[InMemorySpanExporter]:
    """The finished spans of this test (recording only during it)."""
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


def _ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("eventmem.")]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def _head(store: eventmem.Store, session_id: str) -> tuple[int, str]:
    events = [e async for e in store.events(session_id)]
    return events[-1].position, events[-1].hash


async def _event(store: eventmem.Store, session_id: str, position: int) -> str:
    events = [e async for e in store.events(session_id) if e.position == position]
    (event,) = events
    return event.hash


@pytest.mark.anyio
async def test_saves_and_loads_name_the_event_and_view(
    store: eventmem.Store, spans: InMemorySpanExporter, backend: str
) -> None:
    memory = store.token_buffer("s1", max_token_limit=1000)
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("model call") as caller:
        await memory.asave_context({"input": "hi"}, {"output": "hello"})
        await memory.aload_memory_variables({})
    position, digest = await _head(store, "s1")
    save, load = _ours(spans)
    assert save.name == "eventmem.save_context"
    assert _attrs(save) == {
        "gen_ai.operation.name": "update_memory",
        "gen_ai.conversation.id": "s1",
        "eventmem.store.backend": backend,
        "eventmem.event.position": position,
        "eventmem.event.hash": digest,
    }
    assert load.name == "eventmem.load"
    assert _attrs(load)["gen_ai.operation.name"] == "search_memory"
    assert _attrs(load)["eventmem.event.position"] == position
    assert _attrs(load)["eventmem.event.hash"] == digest
    assert _attrs(load)["eventmem.view.messages"] == 2
    for span in (save, load):
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert span.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_history_operations_and_time_travel(
    store: eventmem.Store, spans: InMemorySpanExporter
) -> None:
    history = store.history("h")
    first = await history.append([Message(role="human", content="a")])
    await history.append([Message(role="ai", content="b"), Message(role="human", content="c")])
    await history.pop()
    cleared = await history.clear()
    await history.view()
    await history.messages(as_of=first)
    names = [s.name for s in _ours(spans)]
    assert names == [
        "eventmem.append",
        "eventmem.append",
        "eventmem.pop",
        "eventmem.clear",
        "eventmem.load",
        "eventmem.load",
    ]
    positions = [_attrs(s)["eventmem.event.position"] for s in _ours(spans)]
    assert positions == [1, 2, 3, 4, 4, 1]
    for span in _ours(spans):
        position = _attrs(span)["eventmem.event.position"]
        assert _attrs(span)["eventmem.event.hash"] == await _event(store, "h", position)
        assert _attrs(span)["gen_ai.conversation.id"] == "h"
    assert cleared == 4
    assert _attrs(_ours(spans)[-1])["eventmem.view.messages"] == 1


@pytest.mark.anyio
async def test_agent_steps_and_verify(store: eventmem.Store, spans: InMemorySpanExporter) -> None:
    agent = store.agent_token_buffer("g", max_token_limit=1000)
    step = await agent.arecord_step({"tool": "lookup", "tool_input": {"q": "x"}}, "found")
    await agent.asave_context({"input": "q"}, {"output": "a"})
    report = await store.verify()
    assert report.ok
    record, save, verify = _ours(spans)
    assert record.name == "eventmem.record_step"
    assert _attrs(record)["eventmem.event.position"] == step
    position, digest = await _head(store, "g")
    assert (_attrs(save)["eventmem.event.position"], _attrs(save)["eventmem.event.hash"]) == (
        position,
        digest,
    )
    assert verify.name == "eventmem.verify"
    assert "gen_ai.operation.name" not in _attrs(verify)


@pytest.mark.anyio
@pytest.mark.parametrize("tracing", [True, False])
async def test_a_refused_save_is_the_same_error_and_an_error_span(
    store: eventmem.Store, spans: InMemorySpanExporter, tracing: bool
) -> None:
    _SWITCH.on = tracing
    memory = store.token_buffer("e")
    with pytest.raises(eventmem.InvalidInputError, match="must be a str"):
        await memory.asave_context({"input": 1}, {"output": "x"})
    assert await store.version("e") == 0
    if tracing:
        (span,) = _ours(spans)
        assert span.status.status_code is StatusCode.ERROR
        assert _attrs(span)["error.type"] == "InvalidInputError"
        assert [e.name for e in span.events] == ["exception"]
    else:
        assert _ours(spans) == []


def test_the_blocking_store_nests_under_the_caller(
    target: str, spans: InMemorySpanExporter
) -> None:
    with eventmem.connect(target) as store:
        memory = store.token_buffer("b")
        history = store.history("b")
        with trace.get_tracer("app").start_as_current_span("turn") as caller:
            memory.save_context({"input": "hi"}, {"output": "yo"})
            history.append([Message(role="human", content="more")])
            memory.load_memory_variables({})
            store.messages("b", as_of=1)
        events = store.events("b")
    ours = _ours(spans)
    assert [s.name for s in ours] == [
        "eventmem.save_context",
        "eventmem.append",
        "eventmem.load",
        "eventmem.load",
    ]
    assert [_attrs(s)["eventmem.event.position"] for s in ours] == [1, 2, 2, 1]
    hashes = {e.position: e.hash for e in events}
    for span in ours:
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert (
            _attrs(span)["eventmem.event.hash"] == hashes[_attrs(span)["eventmem.event.position"]]
        )


def test_the_langchain_history_is_traced(db_path: Any, spans: InMemorySpanExporter) -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    from eventmem.integrations.langchain import EventSourcedChatMessageHistory

    with eventmem.connect(db_path) as store:
        chat = EventSourcedChatMessageHistory(store=store, session_id="lc")
        with trace.get_tracer("app").start_as_current_span("chain") as caller:
            chat.add_messages([HumanMessage("hi"), AIMessage("yo")])
            assert len(chat.messages) == 2
    append, load = _ours(spans)
    assert (append.name, load.name) == ("eventmem.append", "eventmem.load")
    assert append.parent is not None
    assert append.parent.span_id == caller.get_span_context().span_id


@pytest.mark.slow  # a fresh interpreter
def test_without_opentelemetry_nothing_is_imported_and_all_works(tmp_path: Any) -> None:
    code = (
        "import sys, asyncio\n"
        "sys.modules['opentelemetry'] = None\n"
        "import eventmem\n"
        "from eventmem import _tracing\n"
        "assert _tracing.ON is False\n"
        "s = eventmem.connect(sys.argv[1])\n"
        "m = s.token_buffer('x')\n"
        "m.save_context({'input': 'a'}, {'output': 'b'})\n"
        "assert len(m.messages()) == 2\n"
        "h = s.history('x'); h.append([{'role': 'user', 'content': 'c'}]); h.pop(); h.view()\n"
        "assert s.verify().ok\n"
        "try:\n"
        "    m.save_context({'input': 1}, {'output': 'b'})\n"
        "except eventmem.InvalidInputError: pass\n"
        "else: raise AssertionError('accepted')\n"
        "s.close()\n"
        "loaded = [n for n in sys.modules if n.startswith('opentelemetry') and sys.modules[n]]\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.db")], check=True)
