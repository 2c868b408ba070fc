"""``eventmem.integrations.pydantic_ai`` with real pydantic-ai agents and no network.

Histories of every message shape round-trip through both backends, equal to what
pydantic-ai's own JSON round trip gives. Agents run offline with pydantic-ai's
``FunctionModel`` (a tool call, then an answer), are saved, and resume in a later run
from the store. The token budget (a capability) and the history processor keep tool
calls with their returns, the system prompt first, a request at the front, and the
agent running. Bad input raises eventmem's errors and writes nothing.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

if sys.version_info < (3, 11):  # the pydantic-ai extra installs nothing there
    pytest.importorskip("pydantic_ai", reason="pydantic-ai 2.62+ needs Python 3.11+")

from hypothesis import given
from hypothesis import strategies as st
from pydantic_ai import Agent
from pydantic_ai.capabilities import ProcessHistory
from pydantic_ai.exceptions import PydanticAIDeprecationWarning
from pydantic_ai.messages import (
    AudioUrl,
    BinaryContent,
    CachePoint,
    CompactionPart,
    DocumentUrl,
    FilePart,
    ImageUrl,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    NativeToolCallPart,
    NativeToolReturnPart,
    RetryFeedbackPart,
    RetryInfo,
    RetryPromptPart,
    SystemPromptPart,
    TextContent,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

import eventmem
from eventmem import InvalidInputError, NotSerializableError
from eventmem.events import MessagesAppended
from eventmem.integrations.pydantic_ai import (
    METADATA_KEY,
    EventmemHistory,
    TokenBudget,
    from_eventmem,
    to_eventmem,
    token_bounded,
)
from tests.backends import fresh_target
from tests.reference import examples, examples_for
from tests.strategies import texts

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(3, across="module")]

# -- what pydantic-ai itself makes of a history ------------------------------------------


def pydantic_round_trip(messages: Sequence[ModelMessage]) -> list[ModelMessage]:
    """``messages`` through pydantic-ai's own JSON: what a lossless store returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticAIDeprecationWarning)  # RetryPromptPart is upgraded
        return ModelMessagesTypeAdapter.validate_python(
            ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
        )


# -- message shapes ----------------------------------------------------------------------

_T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
_times = st.integers(0, 10**9).map(lambda us: _T0 + timedelta(microseconds=us))
_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
_names = st.sampled_from(["get_weather", "search", "final_result", "lookup"])
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_objects = st.dictionaries(st.sampled_from(["city", "q", "n", "units"]), _json, max_size=3)
_urls = st.sampled_from(
    ["https://example.com/a.png", "https://example.com/doc.pdf", "https://example.com/file"]
)


def _retry_prompt(content: str, tool_name: str | None, tool_call_id: str) -> ModelRequestPart:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticAIDeprecationWarning)
        return RetryPromptPart(content, tool_name=tool_name, tool_call_id=tool_call_id)


_user_content = st.one_of(
    texts,
    st.builds(TextContent, texts),
    st.builds(ImageUrl, url=_urls),
    st.builds(DocumentUrl, url=_urls),
    st.builds(AudioUrl, url=st.just("https://example.com/a.mp3")),
    st.builds(
        BinaryContent,
        data=st.binary(max_size=24),
        media_type=st.sampled_from(["image/png", "audio/wav", "application/pdf"]),
    ),
    st.just(CachePoint()),
)
_request_parts: st.SearchStrategy[ModelRequestPart] = st.one_of(
    st.builds(
        SystemPromptPart,
        texts,
        timestamp=_times,
        dynamic_ref=st.none() | _ids,
        metadata=st.none() | _objects,
    ),
    st.builds(UserPromptPart, texts | st.lists(_user_content, max_size=4), timestamp=_times),
    st.builds(
        ToolReturnPart,
        _names,
        _json,
        _ids,
        timestamp=_times,
        outcome=st.sampled_from(["success", "failed", "denied", "retried"]),
    ),
    st.builds(
        RetryFeedbackPart,
        texts,
        retry=st.builds(
            RetryInfo, st.sampled_from(["validation_error", "model_retry", "no_output"])
        ),
        timestamp=_times,
    ),
    st.builds(_retry_prompt, texts, st.none() | _names, _ids),
    st.builds(CompactionPart, st.none() | texts),
)
_args = st.one_of(
    _objects,
    _objects.map(json.dumps),
    st.none(),
    st.just('{"city": "Par'),  # cut-off JSON, as a model may stream it
    st.just("[1, 2]"),  # valid JSON, but not an object
)
_response_parts: st.SearchStrategy[ModelResponsePart] = st.one_of(
    st.builds(TextPart, texts),
    st.builds(TextPart, texts, id=_ids, provider_name=st.just("openai")),
    st.builds(ThinkingPart, texts),
    st.builds(ThinkingPart, texts, signature=_ids, provider_name=st.just("anthropic")),
    st.builds(ToolCallPart, _names, _args, _ids),
    st.builds(
        NativeToolCallPart, st.just("web_search"), _objects, _ids, provider_name=st.just("openai")
    ),
    st.builds(
        NativeToolReturnPart, st.just("web_search"), _json, _ids, provider_name=st.just("openai")
    ),
    st.builds(
        FilePart,
        st.builds(BinaryContent, data=st.binary(max_size=16), media_type=st.just("image/png")),
    ),
)
_requests = st.builds(
    ModelRequest,
    st.lists(_request_parts, max_size=4),
    timestamp=st.none() | _times,
    instructions=st.none() | texts,
    run_id=st.none() | _ids,
    metadata=st.none() | _objects,
)
_responses = st.builds(
    ModelResponse,
    st.lists(_response_parts, max_size=4),
    usage=st.builds(
        RequestUsage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**6)
    ),
    model_name=st.none() | st.just("gpt-4o"),
    timestamp=_times,
    provider_name=st.none() | st.just("openai"),
    provider_details=st.none() | _objects,
    provider_response_id=st.none() | _ids,
    finish_reason=st.none() | st.sampled_from(["stop", "length", "tool_call"]),
)
histories = st.lists(st.one_of(_requests, _responses), max_size=6)


def _shapes() -> list[ModelMessage]:
    """One of each part, in one history."""
    return [
        ModelRequest(
            [
                SystemPromptPart("Be brief.", timestamp=_T0),
                UserPromptPart(
                    ["Look:", ImageUrl("https://example.com/a.png"), TextContent("and")],
                    timestamp=_T0,
                ),
            ],
            instructions="Answer in French.",
            timestamp=_T0,
        ),
        ModelResponse(
            [
                ThinkingPart("hmm", signature="sig", provider_name="anthropic"),
                TextPart("Let me check."),
                ToolCallPart("get_weather", {"city": "Paris"}, "c1"),
                ToolCallPart("get_weather", '{"city": "Rome"}', "c2"),
                ToolCallPart("get_weather", '{"city": "Ro', "c3"),
            ],
            usage=RequestUsage(input_tokens=10, output_tokens=5),
            model_name="gpt-4o",
            timestamp=_T0,
        ),
        ModelRequest(
            [
                ToolReturnPart("get_weather", {"sky": "clear"}, "c1", timestamp=_T0),
                ToolReturnPart("get_weather", "sunny", "c2", timestamp=_T0),
                ToolReturnPart("get_weather", "bad args", "c3", outcome="retried", timestamp=_T0),
                CompactionPart("summary so far"),
                UserPromptPart("And tomorrow?", timestamp=_T0),
            ],
            timestamp=_T0,
        ),
        ModelResponse([TextPart("Sunny both days.")], timestamp=_T0),
        ModelRequest(
            [RetryFeedbackPart("Give a number.", retry=RetryInfo("model_retry"), timestamp=_T0)],
            timestamp=_T0,
        ),
        ModelResponse([], timestamp=_T0),
        ModelRequest([], timestamp=_T0),
    ]


# -- the conversion ----------------------------------------------------------------------


def test_each_part_becomes_the_message_a_chat_api_is_sent() -> None:
    converted = to_eventmem(_shapes())
    assert [(m.role, m.tool_call_id) for m in converted] == [
        ("system", None),
        ("human", None),
        ("ai", None),
        ("tool", "c1"),
        ("tool", "c2"),
        ("tool", "c3"),  # the compaction part rides with it
        ("human", None),
        ("ai", None),
        ("human", None),  # retry feedback
        ("ai", None),  # an empty response
        ("human", None),  # an empty request
    ]
    human = converted[1]
    assert human.content == (
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "and"},
    )
    ai = converted[2]
    assert ai.content == "Let me check."
    assert [(c.name, c.args, c.id) for c in ai.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "c1"),
        ("get_weather", {"city": "Rome"}, "c2"),
    ]
    assert [(c.name, c.args, c.id) for c in ai.invalid_tool_calls] == [
        ("get_weather", '{"city": "Ro', "c3")
    ]
    assert converted[3].content == '{"sky":"clear"}'
    feedback = _shapes()[4].parts[0]
    assert isinstance(feedback, RetryFeedbackPart)
    assert converted[8].content == feedback.model_response()  # the text the model is shown
    # one ModelMessage, one group; its fields on each of its messages
    groups = [m.metadata[METADATA_KEY]["group"] for m in converted]  # type: ignore[index]
    assert groups[0] == groups[1] != groups[2]
    assert len(set(groups[3:7])) == 1
    assert converted[1].metadata[METADATA_KEY]["message"]["instructions"] == "Answer in French."  # type: ignore[index]


def test_images_count_as_images_and_their_bytes_are_not_text() -> None:
    png = BinaryContent(b"\x89PNG" + b"\x00" * 5000, media_type="image/png")
    (message,) = to_eventmem([ModelRequest([UserPromptPart(["Look:", png])])])
    assert message.content == (
        {"type": "text", "text": "Look:"},
        {"type": "image", "mime_type": "image/png", "id": png.identifier},
    )
    # an image of unknown size, at high detail (eventmem's rule for content parts)
    counter = eventmem.OpenAIChatCounter("gpt-4o")
    text_only = to_eventmem([ModelRequest([UserPromptPart(["Look:"])])])[0]
    assert counter.count_message(message) - counter.count_message(text_only) == 765


def test_shapes_round_trip_in_memory() -> None:
    shapes = _shapes()
    assert from_eventmem(to_eventmem(shapes)) == shapes


def test_any_history_round_trips_in_memory(depth: str) -> None:
    @examples(depth, 1000)
    @given(history=histories)
    def example(history: list[ModelMessage]) -> None:
        assert from_eventmem(to_eventmem(history)) == pydantic_round_trip(history)

    example()


def test_a_deprecated_retry_prompt_comes_back_as_pydantic_ai_reads_it() -> None:
    history: list[ModelMessage] = [
        ModelResponse([ToolCallPart("lookup", {"q": 1}, "c9")], timestamp=_T0),
        ModelRequest(
            [
                _retry_prompt("wrong type", "lookup", "c9"),
                _retry_prompt("say more", None, "x"),
            ],
            timestamp=_T0,
        ),
    ]
    converted = to_eventmem(history)
    assert [(m.role, m.tool_call_id) for m in converted] == [
        ("ai", None),
        ("tool", "c9"),
        ("human", None),
    ]
    loaded = from_eventmem(converted)
    assert loaded == pydantic_round_trip(history)
    assert isinstance(loaded[1].parts[0], ToolReturnPart)
    assert isinstance(loaded[1].parts[1], RetryFeedbackPart)


# -- through the store -------------------------------------------------------------------


async def test_shapes_round_trip_through_the_store(store: eventmem.Store) -> None:
    history = EventmemHistory("s", store)
    shapes = _shapes()
    await history.save(shapes[:3])
    await history.save(shapes[3:])
    assert await history.load() == shapes
    assert await history.messages() == shapes


def test_any_history_round_trips_through_the_store(
    backend: str, depth: str, tmp_path: Path
) -> None:
    async def play(target: str, batches: list[list[ModelMessage]]) -> None:
        async with eventmem.open(target) as store:
            history = EventmemHistory("s", store)
            for batch in batches:
                await history.save(batch)
            everything = [m for batch in batches for m in batch]
            assert await history.load() == pydantic_round_trip(everything)

    @examples_for(backend, depth, sqlite=200, postgresql=60)
    @given(batches=st.lists(histories, min_size=1, max_size=3))
    def example(batches: list[list[ModelMessage]]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play, target, batches)

    example()


# -- agents ------------------------------------------------------------------------------


def weather_model(seen: list[list[ModelMessage]]) -> FunctionModel:
    """Calls ``get_weather`` once per user prompt, then answers from its return."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        last = messages[-1]
        returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse([TextPart(f"It is {returns[0].content}.")])
        prompts = [p for p in last.parts if isinstance(p, UserPromptPart)]
        city = str(prompts[-1].content).rsplit(" ", 1)[-1].rstrip("?")
        return ModelResponse([ToolCallPart("get_weather", {"city": city}, f"call-{len(seen)}")])

    return FunctionModel(respond)


def weather_agent(seen: list[list[ModelMessage]], **kwargs: Any) -> Agent[None, str]:
    agent = Agent(weather_model(seen), system_prompt="Be brief.", **kwargs)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    return agent


async def test_an_agent_resumes_from_the_store(target: str) -> None:
    seen: list[list[ModelMessage]] = []
    agent = weather_agent(seen)
    async with eventmem.open(target) as store:
        history = EventmemHistory("user-42", store)
        first = await agent.run("Weather in Paris?", message_history=await history.load())
        assert first.output == "It is sunny in Paris."
        await history.save(first.new_messages())
        kinds = [type(p).__name__ for m in first.new_messages() for p in m.parts]
        assert kinds == [
            "SystemPromptPart",
            "UserPromptPart",
            "ToolCallPart",
            "ToolReturnPart",
            "TextPart",
        ]
    async with eventmem.open(target) as store:  # later: a new process, say
        history = EventmemHistory("user-42", store)
        loaded = await history.load()
        assert loaded == first.all_messages()
        second = await agent.run("And in Rome?", message_history=loaded)
        assert second.output == "It is sunny in Rome."
        assert seen[-1][: len(loaded)] == loaded  # the model saw the first run
        await history.save(second.new_messages())
        assert await history.load() == second.all_messages()
        events = [event async for event in store.events("user-42")]
        assert len(events) == 2  # one event per save


async def test_the_test_model_runs_saved_and_resumed(store: eventmem.Store) -> None:
    agent = Agent(TestModel(), system_prompt="Be brief.")

    @agent.tool_plain
    def roll(sides: int) -> int:
        return 4

    history = EventmemHistory("dice", store)
    result = await agent.run("Roll a die.")
    await history.save(result.new_messages())
    again = await agent.run("Again.", message_history=await history.load())
    await history.save(again.new_messages())
    assert await history.load() == again.all_messages()


# -- the token budget --------------------------------------------------------------------


def _check_sent(messages: list[ModelMessage], system: str | None = "Be brief.") -> None:
    """What every model request may be sent: a request first, the system prompt first of
    all, every tool return after its call, a request last."""
    assert isinstance(messages[0], ModelRequest)
    assert isinstance(messages[-1], ModelRequest)
    calls: set[str] = set()
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                calls.add(part.tool_call_id)
            elif isinstance(part, ToolReturnPart):
                assert part.tool_call_id in calls, part
    if system is not None:
        first = messages[0].parts[0]
        assert isinstance(first, SystemPromptPart)
        assert first.content == system


def looping_model(seen: list[list[ModelMessage]], steps: int) -> FunctionModel:
    """Calls ``lookup`` ``steps`` times (twice at once on odd steps), then answers."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        _check_sent(messages)
        done = sum(isinstance(p, ToolReturnPart) for m in messages for p in m.parts)
        step = len(seen)
        if step > steps:
            return ModelResponse([TextPart(f"done after {done} visible returns")])
        calls: list[ModelResponsePart] = [
            ToolCallPart("lookup", {"q": f"step {step} " * 5}, f"c{step}")
        ]
        if step % 2:
            calls.append(ToolCallPart("lookup", {"q": "also"}, f"c{step}b"))
        return ModelResponse([TextPart("thinking it over " * 3), *calls])

    return FunctionModel(respond)


def lookup_agent(seen: list[list[ModelMessage]], steps: int, **kwargs: Any) -> Agent[None, str]:
    agent = Agent(looping_model(seen, steps), system_prompt="Be brief.", **kwargs)

    @agent.tool_plain
    def lookup(q: str) -> str:
        return "a fairly long result " * 8

    return agent


async def test_clear_and_time_travel(store: eventmem.Store) -> None:
    history = EventmemHistory("s", store)
    shapes = _shapes()
    first = await history.save(shapes[:2])
    await history.clear()
    assert await history.load() == []
    await history.save(shapes[2:4])
    assert await history.load() == shapes[2:4]
    assert await history.messages(as_of=first) == shapes[:2]
    assert await history.save([]) == await store.version("s")  # nothing written


@pytest.mark.parametrize("bound", [60, 150, 400])
async def test_the_budget_keeps_pairs_and_the_run_whole(store: eventmem.Store, bound: int) -> None:
    seen: list[list[ModelMessage]] = []
    agent = lookup_agent(seen, 6, capabilities=[TokenBudget(bound)])
    result = await agent.run("Find it. " * 4)
    assert result.output.startswith("done")
    assert len(seen) == 7
    for sent in seen[2:]:
        # within the bound, unless only what must be sent is left
        assert _tokens(sent) <= bound or len(sent) <= 5
    assert len(seen[-1]) < len(result.all_messages()) - 1  # it did trim
    # the run's history is whole: all of it is saved
    assert len(result.new_messages()) == 1 + 2 * 6 + 1
    history = EventmemHistory("loop", store)
    await history.save(result.new_messages())
    assert await history.load() == result.all_messages()


@pytest.mark.parametrize("bound", [60, 150, 400])
async def test_a_bounded_view_starts_at_a_request_with_its_question(
    store: eventmem.Store, bound: int
) -> None:
    seen: list[list[ModelMessage]] = []
    history = EventmemHistory("loop", store, max_tokens=bound)
    agent = lookup_agent(seen, 6, capabilities=[history.budget])
    result = await agent.run("Find it. " * 4)
    await history.save(result.new_messages())
    view = await history.load()
    assert len(view) < len(result.all_messages())
    _check_sent([*view, ModelRequest([UserPromptPart("next")])])
    assert view[0].parts[1] == result.all_messages()[0].parts[1]  # the question
    again = await agent.run("Go on.", message_history=view)
    assert again.output.startswith("done")
    # the log holds every message saved
    logged = [
        message
        async for event in store.events("loop")
        if isinstance(event.data, MessagesAppended)
        for message in event.data.messages
    ]
    assert from_eventmem(logged) == result.all_messages()


async def test_the_processor_keeps_pairs_and_the_agent_runs() -> None:
    seen: list[list[ModelMessage]] = []
    agent = lookup_agent(seen, 6, capabilities=[ProcessHistory(token_bounded(120))])
    result = await agent.run("Find it.")
    assert result.output.startswith("done")
    assert len(seen) == 7
    assert len(seen[-1]) < 14


async def test_resumed_with_a_budget_the_agent_runs(store: eventmem.Store) -> None:
    seen: list[list[ModelMessage]] = []
    history = EventmemHistory("loop", store, max_tokens=150)
    saved = 0
    for turn in range(3):
        agent = lookup_agent(seen, len(seen) + 3, capabilities=[history.budget])
        result = await agent.run(f"Turn {turn}.", message_history=await history.load())
        await history.save(result.new_messages())
        saved += len(result.new_messages())
    view = await history.load()
    assert len(view) < saved
    _check_sent([*view, ModelRequest([UserPromptPart("next")])])


def _tokens(messages: Sequence[ModelMessage]) -> int:
    counter = eventmem.OpenAIChatCounter("gpt-4o")
    return counter.overhead + sum(counter.count_message(m) for m in to_eventmem(messages))


def test_trimming_drops_oldest_parts_and_keeps_whole_messages_as_given() -> None:
    system = SystemPromptPart("Be brief.", timestamp=_T0)
    old = UserPromptPart("an old question " * 20, timestamp=_T0)
    history: list[ModelMessage] = [
        ModelRequest([system, old], timestamp=_T0),
        ModelResponse([TextPart("an old answer " * 20)], timestamp=_T0),
        ModelRequest([UserPromptPart("New question?", timestamp=_T0)], timestamp=_T0),
    ]
    trimmed = token_bounded(40).trim(history)
    assert [type(p) for m in trimmed for p in m.parts] == [SystemPromptPart, UserPromptPart]
    assert trimmed[0].parts[0] is system
    assert trimmed[-1] is history[-1]  # pydantic-ai finds its request by identity
    assert token_bounded(10_000).trim(history) == history
    assert all(a is b for a, b in zip(token_bounded(10_000).trim(history), history, strict=True))


def test_trimming_in_a_tool_loop_keeps_the_question() -> None:
    question = UserPromptPart("What is the answer?", timestamp=_T0)
    history: list[ModelMessage] = [ModelRequest([SystemPromptPart("Be brief."), question])]
    for step in range(6):
        history.append(ModelResponse([ToolCallPart("lookup", {"q": "x" * 40}, f"c{step}")]))
        history.append(ModelRequest([ToolReturnPart("lookup", "y " * 40, f"c{step}")]))
    trimmed = token_bounded(150).trim(history)
    parts = [p for m in trimmed for p in m.parts]
    assert parts[:2] == [history[0].parts[0], question]
    _check_sent(trimmed)
    assert len(trimmed) < len(history)
    assert _tokens(trimmed) <= 150 or len(trimmed) == 3
    # too small for anything but what must be sent: that is sent
    tiny = token_bounded(1).trim(history)
    assert tiny[-2:] == history[-2:]
    _check_sent(tiny)


@st.composite
def runs(draw: st.DrawFn) -> list[ModelMessage]:
    """A conversation as pydantic-ai builds it: turns of a user prompt, rounds of tool
    calls (some parallel) and their returns, and an answer; ending with the request
    about to be sent (a new prompt, or the returns of the last calls)."""
    words = st.integers(0, 40).map(lambda n: "word " * n)
    history: list[ModelMessage] = []
    first: list[ModelRequestPart] = []
    if draw(st.booleans()):
        first.append(SystemPromptPart(draw(words)))
    calls = 0
    turns = draw(st.integers(1, 4))
    for turn in range(turns):
        prompt = UserPromptPart(draw(words))
        history.append(ModelRequest([*first, prompt] if turn == 0 else [prompt]))
        rounds = draw(st.integers(0, 4))
        for number in range(rounds):
            ids = [f"c{calls + i}" for i in range(draw(st.integers(1, 3)))]
            calls += len(ids)
            history.append(
                ModelResponse(
                    [
                        TextPart(draw(words)),
                        *(ToolCallPart("lookup", {"q": draw(words)}, i) for i in ids),
                    ]
                )
            )
            history.append(ModelRequest([ToolReturnPart("lookup", draw(words), i) for i in ids]))
            if turn == turns - 1 and number == rounds - 1 and draw(st.booleans()):
                return history  # sent with the returns of the last calls
        if turn < turns - 1:
            history.append(ModelResponse([TextPart(draw(words))]))
    return history


def test_any_trim_is_a_history_pydantic_ai_can_send(depth: str) -> None:
    @examples(depth, 2000)
    @given(history=runs(), bound=st.integers(0, 600), keep_system=st.booleans())
    def example(history: list[ModelMessage], bound: int, keep_system: bool) -> None:
        trimmed = token_bounded(bound, keep_system=keep_system).trim(history)
        check_trim(history, trimmed, bound)
        system = history[0].parts[0]
        if keep_system and isinstance(system, SystemPromptPart):
            assert trimmed[0].parts[0] is system

    example()


def check_trim(history: list[ModelMessage], trimmed: list[ModelMessage], bound: int) -> None:
    """The rules of a trim: the newest request kept as given, a request first, no return
    without its call, parts kept in order and as given, the system prompt kept, a user
    prompt first after it, and over the bound only with what must be sent."""
    assert trimmed[-1] is history[-1]
    assert isinstance(trimmed[0], ModelRequest)
    calls: set[str] = set()
    for message in trimmed:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                calls.add(part.tool_call_id)
            elif isinstance(part, ToolReturnPart):
                assert part.tool_call_id in calls
    kept = [id(p) for m in trimmed for p in m.parts]
    assert [id(p) for m in history for p in m.parts if id(p) in set(kept)] == kept
    after_system = [p for m in trimmed for p in m.parts if not isinstance(p, SystemPromptPart)]
    assert isinstance(after_system[0], UserPromptPart)
    if _tokens(trimmed) > bound:  # the newest exchange, its question, the system prompt
        assert len(trimmed) <= 4


def _is_subsequence(items: list[Any], of: list[Any]) -> bool:
    remaining = iter(of)
    return all(any(item == other for other in remaining) for item in items)


def test_any_bounded_view_is_a_history_pydantic_ai_can_send(
    backend: str, depth: str, tmp_path: Path
) -> None:
    async def play(target: str, saves: list[list[ModelMessage]], bound: int) -> None:
        async with eventmem.open(target) as store:
            history = EventmemHistory("s", store, max_tokens=bound)
            saved: list[ModelMessage] = []
            for batch in saves:
                await history.save(batch)
                saved += batch
                view = await history.load()
                if not view:
                    continue
                assert isinstance(view[0], ModelRequest)
                _check_sent([*view, ModelRequest([UserPromptPart("next")])], system=None)
                parts = [p for m in view for p in m.parts]
                assert _is_subsequence(parts, [p for m in saved for p in m.parts])
                first = saved[0].parts[0]
                if isinstance(first, SystemPromptPart):
                    assert parts[0] == first
                after = [p for p in parts if not isinstance(p, SystemPromptPart)]
                assert not after or isinstance(after[0], UserPromptPart)

    @examples_for(backend, depth, sqlite=150, postgresql=50)
    @given(
        saves=st.lists(runs(), min_size=1, max_size=3).map(_answered),
        bound=st.integers(0, 600),
    )
    def example(saves: list[list[ModelMessage]], bound: int) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play, target, saves, bound)

    example()


def _answered(saves: list[list[ModelMessage]]) -> list[list[ModelMessage]]:
    """Each run as saved after it ends: answered; later runs without a system prompt."""
    result: list[list[ModelMessage]] = []
    for number, run in enumerate(saves):
        opening = run[0]
        assert isinstance(opening, ModelRequest)
        if number:
            opening = ModelRequest(
                [p for p in opening.parts if not isinstance(p, SystemPromptPart)]
            )
        result.append([opening, *run[1:], ModelResponse([TextPart("the answer")])])
    return result


def test_trimming_a_history_of_a_system_prompt_alone_keeps_it() -> None:
    history: list[ModelMessage] = [ModelRequest([SystemPromptPart("Be brief. " * 50)])]
    assert token_bounded(5).trim(history) == history
    assert token_bounded(5).trim([]) == []


def test_keep_system_false_lets_the_system_prompt_go() -> None:
    history: list[ModelMessage] = [
        ModelRequest([SystemPromptPart("Be brief. " * 30), UserPromptPart("old " * 30)]),
        ModelResponse([TextPart("answer " * 30)]),
        ModelRequest([UserPromptPart("New?")]),
    ]
    trimmed = token_bounded(30, keep_system=False).trim(history)
    assert trimmed == [history[-1]]


# -- bad input ---------------------------------------------------------------------------


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("hello", InvalidInputError),
        (ModelRequest([UserPromptPart("hi")]), InvalidInputError),  # not a list
        ([{"kind": "request", "parts": []}], InvalidInputError),  # JSON, not messages
        ([ModelRequest([UserPromptPart("hi")]), "x"], InvalidInputError),
        ([ModelRequest([ToolReturnPart("t", _Opaque(), "c")])], NotSerializableError),
        ([ModelRequest([UserPromptPart("lone \ud800 surrogate")])], NotSerializableError),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    store: eventmem.Store, bad: Any, error: type[Exception]
) -> None:
    history = EventmemHistory("s", store)
    await history.save([ModelRequest([UserPromptPart("kept")], timestamp=_T0)])
    before = await store.version("s")
    with pytest.raises(error):
        await history.save(bad)
    assert await store.version("s") == before
    assert len(await history.load()) == 1


async def test_bad_arguments_raise(store: eventmem.Store) -> None:
    with pytest.raises(InvalidInputError):
        EventmemHistory("s", "not a store")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        EventmemHistory("", store)
    with pytest.raises(InvalidInputError):
        EventmemHistory("s", store, max_tokens=-1)
    with pytest.raises(InvalidInputError):
        _ = EventmemHistory("s", store).budget  # no bound to keep
    with pytest.raises(InvalidInputError):
        token_bounded(-5)
    with pytest.raises(InvalidInputError):
        TokenBudget(100, model="not-a-model")
    with pytest.raises(InvalidInputError):
        token_bounded(100).trim(["not a message"])  # type: ignore[list-item]


async def test_messages_not_written_by_the_adapter_are_refused(store: eventmem.Store) -> None:
    await store.history("s").append([eventmem.Message(role="human", content="hi")])
    with pytest.raises(InvalidInputError, match="pydantic_ai"):
        await EventmemHistory("s", store).load()


# -- packaging ---------------------------------------------------------------------------


def test_processors_are_async_for_pydantic_ai() -> None:
    # pydantic-ai runs a plain function in a worker thread; these run on its loop
    from pydantic_ai._utils import is_async_callable

    processor: Callable[..., Any] = token_bounded(100)
    assert is_async_callable(processor)
