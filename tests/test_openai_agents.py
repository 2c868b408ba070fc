"""``eventmem.integrations.openai_agents`` with the real OpenAI Agents SDK and no network.

Items come from the SDK's own types (``ModelResponse.to_input_items``,
``ItemHelpers``) and from hypothesis; what ``add_items`` takes, ``get_items`` gives back
equal. The session's semantics are checked step by step against the SDK's own
``SQLiteSession``, and ``Runner.run`` drives it with a scripted ``Model`` and a
function tool. Every test that stores anything runs on both backends (the ``store`` /
``target`` / ``backend`` fixtures); each hypothesis example uses a session of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ItemHelpers, ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.memory import Session, SessionSettings
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool, ToolOutputImage, ToolOutputText
from agents.usage import Usage
from hypothesis import event, given
from hypothesis import strategies as st
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from pydantic import TypeAdapter

import eventmem
from eventmem import InvalidInputError, InvalidToolCall, Message, NotSerializableError, ToolCall
from eventmem.integrations.openai_agents import EventmemSession, to_item, to_message
from tests.backends import fresh_target
from tests.reference import examples, examples_for

pytestmark = pytest.mark.postgres_sample(3, across="module")

ROOT = Path(__file__).resolve().parent.parent

# --- real item shapes --------------------------------------------------------------------

# Output items as the Responses API returns them, validated by the openai package's own
# types and turned into input items by the SDK, as its runner does before saving them.
_OUTPUTS: list[dict[str, Any]] = [
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": "Hello ☀",
                "annotations": [
                    {
                        "type": "url_citation",
                        "url": "https://example.com",
                        "title": "Example",
                        "start_index": 0,
                        "end_index": 5,
                    }
                ],
            },
            {"type": "refusal", "refusal": "I cannot say more"},
        ],
    },
    {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Lisbon"}',
        "status": "completed",
    },
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Look the weather up"}],
        "encrypted_content": "gAAAAB-opaque",
    },
    {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "weather lisbon"},
    },
    {
        "type": "file_search_call",
        "id": "fs_1",
        "status": "completed",
        "queries": ["q"],
        "results": [
            {"file_id": "f", "filename": "a.txt", "score": 0.5, "text": "hi", "attributes": {}}
        ],
    },
    {
        "type": "computer_call",
        "id": "cu_1",
        "call_id": "call_computer",
        "status": "completed",
        "pending_safety_checks": [],
        "action": {"type": "click", "button": "left", "x": 1, "y": 2},
    },
    {
        "type": "code_interpreter_call",
        "id": "ci_1",
        "status": "completed",
        "code": "print(1)",
        "container_id": "cntr",
        "outputs": [{"type": "logs", "logs": "1"}],
    },
    {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "iVBORw0K"},
    {
        "type": "local_shell_call",
        "id": "ls_1",
        "call_id": "call_local_shell",
        "status": "completed",
        "action": {"type": "exec", "command": ["ls"], "env": {}},
    },
    {
        "type": "mcp_call",
        "id": "mcp_1",
        "name": "lookup",
        "server_label": "srv",
        "arguments": "{}",
        "output": "ok",
    },
    {
        "type": "mcp_list_tools",
        "id": "ml_1",
        "server_label": "srv",
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
    },
    {
        "type": "mcp_approval_request",
        "id": "mar_1",
        "name": "lookup",
        "server_label": "srv",
        "arguments": "{}",
    },
    {
        "type": "custom_tool_call",
        "id": "ct_1",
        "call_id": "call_custom",
        "name": "grammar",
        "input": "free text",
    },
    {
        "type": "shell_call",
        "id": "sh_1",
        "call_id": "call_shell",
        "status": "completed",
        "action": {"commands": ["ls"], "timeout_ms": 1000, "max_output_length": 100},
    },
    {
        "type": "apply_patch_call",
        "id": "ap_1",
        "call_id": "call_patch",
        "status": "completed",
        "operation": {"type": "create_file", "path": "a.txt", "diff": "+hi"},
    },
]


def _sdk_items() -> list[dict[str, Any]]:
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseOutputItem)
    outputs = [adapter.validate_python(o) for o in _OUTPUTS]
    made = ModelResponse(output=outputs, usage=Usage(), response_id=None).to_input_items()
    call = ResponseFunctionToolCall(
        type="function_call", call_id="call_1", name="get_weather", arguments="{}"
    )
    made += [
        ItemHelpers.tool_call_output_item(call, "Sunny, 21 °C"),
        ItemHelpers.tool_call_output_item(
            call,
            [ToolOutputText(text="a chart:"), ToolOutputImage(image_url="https://x/y.png")],
        ),
        *ItemHelpers.input_to_new_input_list("What's the weather in Lisbon?"),
    ]
    return [cast(dict[str, Any], item) for item in made]


# Input items the client writes (results, references), in the API's documented shapes.
_INPUTS: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "input_text", "text": "Use metric units."}]},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in these?"},
            {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
            {"type": "input_image", "file_id": "file-1", "detail": "auto"},
            {"type": "input_file", "file_id": "file-2", "filename": "report.pdf"},
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        ],
    },
    {"role": "assistant", "content": "Sure."},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
    {
        "type": "computer_call_output",
        "call_id": "call_computer",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,iVBO"},
    },
    {"type": "local_shell_call_output", "call_id": "call_local_shell", "output": "a.txt"},
    {
        "type": "shell_call_output",
        "call_id": "call_shell",
        "output": [{"stdout": "a.txt", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
    },
    {"type": "apply_patch_call_output", "call_id": "call_patch", "status": "completed"},
    {"type": "custom_tool_call_output", "call_id": "call_custom", "output": "done"},
    {"type": "mcp_approval_response", "approval_request_id": "mar_1", "approve": True},
    {"type": "item_reference", "id": "msg_0"},
    {"type": "compaction", "encrypted_content": "opaque"},
]

SDK_ITEMS = _sdk_items()
REAL_ITEMS = SDK_ITEMS + _INPUTS
_OUTPUTS_AS_ITEMS = {item["type"]: item for item in SDK_ITEMS if "type" in item}


def same(got: object, expected: object) -> bool:
    """Equal, and of the same JSON types in the same key order (``True != 1`` here)."""
    return got == expected and json.dumps(got) == json.dumps(expected)


# --- strategies --------------------------------------------------------------------------

_text = st.text(max_size=24)
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(_text, json_values, max_size=4)
_extra = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(
        lambda k: k not in {"type", "role", "content", "call_id", "name", "arguments", "output"}
    ),
    json_values,
    max_size=2,
)


@st.composite
def content_parts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["input_text", "output_text", "refusal", "input_image", "input_file"])
    )
    if kind in ("input_text", "output_text"):
        part: dict[str, Any] = {"type": kind, "text": draw(_text)}
        if kind == "output_text":
            part["annotations"] = draw(st.lists(json_objects, max_size=2))
    elif kind == "refusal":
        part = {"type": kind, "refusal": draw(_text)}
    elif kind == "input_image":
        part = {"type": kind, "detail": draw(st.sampled_from(["low", "high", "auto"]))}
        part[draw(st.sampled_from(["image_url", "file_id"]))] = draw(_text)
    else:
        part = {"type": kind, draw(st.sampled_from(["file_id", "file_data"])): draw(_text)}
    return part | draw(_extra)


@st.composite
def message_items(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {
        "role": draw(st.sampled_from(["user", "assistant", "system", "developer"])),
        "content": draw(_text | st.lists(content_parts(), max_size=3)),
    }
    if draw(st.booleans()):
        item["type"] = "message"
    return item | draw(_extra)


call_ids = st.text(min_size=1, max_size=12)


@st.composite
def function_calls(draw: st.DrawFn, call_id: str | None = None) -> dict[str, Any]:
    arguments = draw(
        st.builds(json.dumps, json_objects)
        | st.builds(lambda v: json.dumps(v, separators=(",", ":")), json_values)
        | _text
    )
    return {
        "type": "function_call",
        "call_id": call_id if call_id is not None else draw(call_ids),
        "name": draw(st.text(min_size=1, max_size=12)),
        "arguments": arguments,
    } | draw(_extra)


@st.composite
def function_outputs(draw: st.DrawFn, call_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call_output",
        "call_id": call_id if call_id is not None else draw(call_ids),
        "output": draw(_text | st.lists(content_parts(), max_size=2)),
    } | draw(_extra)


@st.composite
def other_items(draw: st.DrawFn) -> dict[str, Any]:
    """Any other item type, known or not, with any JSON fields."""
    kind = draw(
        st.sampled_from(
            ["reasoning", "web_search_call", "computer_call", "shell_call_output", "program"]
        )
        | st.text(min_size=1, max_size=16).filter(
            lambda t: t not in {"message", "function_call", "function_call_output"}
        )
    )
    fields = draw(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=4))
    return {**fields, "type": kind}


items = st.one_of(
    st.sampled_from(REAL_ITEMS),
    message_items(),
    function_calls(),
    function_outputs(),
    other_items(),
)


# --- translation -------------------------------------------------------------------------


def test_every_real_shape_converts_and_keeps_its_item() -> None:
    for item in REAL_ITEMS:
        message = to_message(item)
        assert same(message.metadata, {"openai_agents": item}), item
        assert same(to_item(message), item)
        assert to_item(message) is not item  # a copy: changing it changes nothing stored


def test_message_items_keep_their_role_and_text() -> None:
    assert to_message({"role": "user", "content": "hi"}).role == "human"
    assert to_message({"role": "assistant", "content": "yo"}).role == "ai"
    assert to_message({"role": "developer", "content": "x"}).role == "developer"
    system = to_message({"type": "message", "role": "system", "content": "Be brief."})
    assert (system.role, system.content) == ("system", "Be brief.")
    parts = to_message(_OUTPUTS_AS_ITEMS["message"])
    assert parts.content == (
        {"type": "text", "text": "Hello ☀"},
        {"type": "text", "text": "I cannot say more"},
    )
    assert parts.text == "Hello ☀I cannot say more"


def test_a_function_call_is_a_tool_call_and_its_output_a_tool_message() -> None:
    call = to_message(_OUTPUTS_AS_ITEMS["function_call"])
    assert call.role == "ai"
    assert call.tool_calls == (ToolCall(name="get_weather", args={"city": "Lisbon"}, id="call_1"),)
    output = to_message({"type": "function_call_output", "call_id": "call_1", "output": "21"})
    assert (output.role, output.tool_call_id, output.content) == ("tool", "call_1", "21")


@pytest.mark.parametrize(
    "arguments", ["[1, 2]", "not json", '{"a": NaN}', '{"a": 1', "", '"text"', "[" * 300]
)
def test_arguments_that_are_not_a_json_object_are_kept_as_text(arguments: str) -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": arguments}
    message = to_message(item)
    assert message.tool_calls == ()
    (invalid,) = message.invalid_tool_calls
    assert (invalid.name, invalid.args, invalid.id) == ("f", arguments, "c")
    assert isinstance(invalid, InvalidToolCall)
    assert same(to_item(message), item)


def test_other_calls_pair_with_their_results() -> None:
    pairs = [
        ("computer_call", "computer_call_output", "call_computer"),
        ("local_shell_call", "local_shell_call_output", "call_local_shell"),
        ("shell_call", "shell_call_output", "call_shell"),
        ("apply_patch_call", "apply_patch_call_output", "call_patch"),
        ("custom_tool_call", "custom_tool_call_output", "call_custom"),
        ("mcp_approval_request", "mcp_approval_response", "mar_1"),
    ]
    results = {item["type"]: item for item in _INPUTS if "type" in item}
    for call_type, output_type, call_id in pairs:
        call = to_message(_OUTPUTS_AS_ITEMS[call_type])
        assert call.role == "ai", call_type
        assert [c.id for c in call.tool_calls] == [call_id], call_type
        result = to_message(results[output_type])
        assert (result.role, result.tool_call_id) == ("tool", call_id), output_type
    custom = to_message(_OUTPUTS_AS_ITEMS["custom_tool_call"])
    assert custom.tool_calls == (
        ToolCall(name="grammar", args={"input": "free text"}, id="call_custom"),
    )
    # the API's own shape of a local shell result names the call in "id"
    legacy = to_message({"type": "local_shell_call_output", "id": "call_ls", "output": "{}"})
    assert legacy.tool_call_id == "call_ls"


def test_other_items_are_ai_messages_with_their_text() -> None:
    reasoning = to_message(_OUTPUTS_AS_ITEMS["reasoning"])
    assert (reasoning.role, reasoning.content) == ("ai", "Look the weather up")
    search = to_message(_OUTPUTS_AS_ITEMS["web_search_call"])
    assert search.role == "ai"
    assert "weather lisbon" in search.text
    assert to_message({"type": "item_reference", "id": "msg_0"}).role == "ai"
    unknown = to_message({"type": "a_future_item", "payload": {"n": 1}})
    assert (unknown.role, unknown.tool_calls) == ("ai", ())
    assert "a_future_item" in unknown.text


def test_a_message_written_without_an_item_reads_back_as_the_plain_item() -> None:
    assert to_item(Message(role="human", content="hi")) == {"role": "user", "content": "hi"}
    assert to_item(Message(role="tool", content="21", tool_call_id="c")) == {
        "type": "function_call_output",
        "call_id": "c",
        "output": "21",
    }
    call = Message(role="ai", content="", tool_calls=(ToolCall(name="f", args={"a": 1}, id="c"),))
    assert to_item(call) == {
        "type": "function_call",
        "call_id": "c",
        "name": "f",
        "arguments": '{"a": 1}',
    }
    with pytest.raises(InvalidInputError, match="without its OpenAI Agents item"):
        to_item(Message(role="function", content="x", name="f"))


@given(item=items)
@examples("full", 300)
def test_every_item_converts_to_one_message_holding_it(item: dict[str, Any]) -> None:
    message = to_message(item)
    assert same(to_item(message), item)
    if item.get("type") == "function_call":
        assert len(message.tool_calls) + len(message.invalid_tool_calls) == 1
    if item.get("type") == "function_call_output":
        assert (message.role, message.tool_call_id) == ("tool", item["call_id"])


BAD_ITEMS: list[tuple[object, type[Exception]]] = [
    ("hello", InvalidInputError),
    (["role", "user"], InvalidInputError),
    ({"content": "no role"}, InvalidInputError),
    ({"role": "tool", "content": "x"}, InvalidInputError),
    ({"role": "user", "content": 7}, InvalidInputError),
    ({"role": "user", "content": [7]}, InvalidInputError),
    ({"type": 3}, InvalidInputError),
    ({"type": "function_call", "name": "f", "arguments": "{}"}, InvalidInputError),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}, InvalidInputError),
    ({"type": "function_call_output", "call_id": 5, "output": "x"}, InvalidInputError),
    ({"role": "user", "content": "x", "when": float("nan")}, NotSerializableError),
    ({"role": "user", "content": ("a", "tuple")}, NotSerializableError),
    ({"role": "user", "content": "x", 1: "int key"}, NotSerializableError),
    ({"role": "user", "content": "lone \ud800"}, NotSerializableError),
    ({"role": "user", "content": "x", "tags": {"a", "set"}}, NotSerializableError),
]


@pytest.mark.parametrize(("item", "error"), BAD_ITEMS)
def test_what_is_not_an_item_is_refused(item: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        to_message(item)  # type: ignore[arg-type]


# --- the session -------------------------------------------------------------------------


def new_id() -> str:
    return f"agents-{uuid.uuid4().hex[:12]}"


@pytest.mark.anyio
async def test_it_is_an_agents_session(store: eventmem.Store) -> None:
    session = EventmemSession("s", store)
    assert isinstance(session, Session)
    assert session.session_id == "s"
    assert session.session_settings == SessionSettings()
    assert await session.get_items() == []
    assert await session.pop_item() is None


@pytest.mark.anyio
async def test_real_items_round_trip(store: eventmem.Store) -> None:
    session = EventmemSession(new_id(), store)
    await session.add_items(cast(list[TResponseInputItem], SDK_ITEMS[:5]))
    await session.add_items(cast(list[TResponseInputItem], SDK_ITEMS[5:] + _INPUTS))
    assert same(await session.get_items(), REAL_ITEMS)
    assert same(await session.get_items(3), REAL_ITEMS[-3:])
    # another object on the same session sees the same items
    assert same(await EventmemSession(session.session_id, store).get_items(), REAL_ITEMS)


@pytest.mark.anyio
async def test_changing_an_added_item_changes_nothing_stored(store: eventmem.Store) -> None:
    session = EventmemSession(new_id(), store)
    item: dict[str, Any] = {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    await session.add_items([cast(TResponseInputItem, item)])
    item["content"][0]["text"] = "changed"
    assert await session.get_items() == [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]


@pytest.mark.anyio
async def test_items_survive_reopening_the_store(target: str) -> None:
    async with eventmem.open(target) as store:
        await EventmemSession("kept", store).add_items(cast(list[TResponseInputItem], REAL_ITEMS))
    async with eventmem.open(target) as store:
        assert same(await EventmemSession("kept", store).get_items(), REAL_ITEMS)


def test_any_items_round_trip(backend: str, depth: str, tmp_path: Path) -> None:
    async def play(target: str, batches: list[list[dict[str, Any]]]) -> None:
        async with eventmem.open(target) as store:
            session = EventmemSession(new_id(), store)
            for batch in batches:
                await session.add_items(cast(list[TResponseInputItem], batch))
            added = [item for batch in batches for item in batch]
            got: list[Any] = await session.get_items()
            assert same(got, added)
            got[0:0] = [{"role": "user", "content": "changed by the caller"}]
            for item in got[1:]:
                item["mutated"] = True
            assert same(await session.get_items(), added)  # what was returned was a copy

    with fresh_target(backend, tmp_path) as target:

        @examples_for(backend, depth, sqlite=200, postgresql=60)
        @given(batches=st.lists(st.lists(items, min_size=1, max_size=5), min_size=1, max_size=4))
        def example(batches: list[list[dict[str, Any]]]) -> None:
            anyio.run(play, target, batches)

        example()


@pytest.mark.postgres_sample(3)
@pytest.mark.anyio
@pytest.mark.parametrize(("bad", "error"), BAD_ITEMS)
async def test_a_bad_item_writes_nothing(
    store: eventmem.Store, bad: object, error: type[Exception]
) -> None:
    session = EventmemSession(new_id(), store)
    await session.add_items([{"role": "user", "content": "before"}])
    events = [e async for e in store.events(session.session_id)]
    with pytest.raises(error):
        await session.add_items([{"role": "user", "content": "fine"}, bad])  # type: ignore[list-item]
    assert [e async for e in store.events(session.session_id)] == events
    assert await session.get_items() == [{"role": "user", "content": "before"}]


@pytest.mark.anyio
@pytest.mark.parametrize("items", ["a string", {"role": "user", "content": "a dict"}, 5, None])
async def test_items_must_be_a_list(store: eventmem.Store, items: Any) -> None:
    with pytest.raises(InvalidInputError):
        await EventmemSession("s", store).add_items(items)


@pytest.mark.anyio
async def test_adding_no_items_writes_nothing(store: eventmem.Store) -> None:
    session = EventmemSession(new_id(), store)
    await session.add_items([])
    assert [e async for e in store.events(session.session_id)] == []


@pytest.mark.anyio
async def test_the_arguments_are_checked(store: eventmem.Store) -> None:
    with pytest.raises(InvalidInputError, match=r"async eventmem\.Store"):
        EventmemSession("s", cast(Any, "agent.db"))
    with pytest.raises(InvalidInputError):
        EventmemSession("", store)
    with pytest.raises(InvalidInputError):
        EventmemSession("s", store, max_tokens=-1)
    with pytest.raises(InvalidInputError):
        EventmemSession("s", store, session_settings={"limit": "many"})
    with pytest.raises(InvalidInputError):
        EventmemSession("s", store, session_settings={"no_such_setting": 1})
    with pytest.raises(InvalidInputError):
        EventmemSession("s", store, session_settings=cast(Any, 5))
    with pytest.raises(InvalidInputError):
        await EventmemSession("s", store).get_items(cast(Any, "3"))


@pytest.mark.anyio
async def test_session_settings_set_the_default_limit(store: eventmem.Store) -> None:
    added = [{"role": "user", "content": str(i)} for i in range(5)]
    for settings in (SessionSettings(limit=2), {"limit": 2}):
        session = EventmemSession(new_id(), store, session_settings=settings)
        await session.add_items(cast(list[TResponseInputItem], added))
        assert session.session_settings == SessionSettings(limit=2)
        assert await session.get_items() == added[-2:]
        assert await session.get_items(limit=4) == added[-4:]
        assert await session.get_items(limit=0) == []


# Each step of a random use of a session, done on eventmem and on the SDK's SQLiteSession.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(items, max_size=4)),
        st.tuples(st.just("get"), st.none() | st.integers(-2, 6)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("clear")),
    ),
    max_size=14,
)


async def apply(session: Any, operation: tuple[Any, ...]) -> Any:
    if operation[0] == "add":
        return await session.add_items(operation[1])
    if operation[0] == "get":
        return await session.get_items(operation[1])
    if operation[0] == "pop":
        return await session.pop_item()
    return await session.clear_session()


def test_the_session_behaves_like_sqlite_session(backend: str, depth: str, tmp_path: Path) -> None:
    async def play(target: str, limit: int | None, steps: list[tuple[Any, ...]]) -> None:
        settings = SessionSettings(limit=limit)
        reference = SQLiteSession("reference", session_settings=settings)
        try:
            async with eventmem.open(target) as store:
                session = EventmemSession(new_id(), store, session_settings=settings)
                for number, step in enumerate([*steps, ("get", None)]):
                    expected = await apply(reference, step)
                    got = await apply(session, step)
                    assert same(got, expected), f"step {number}: {step}"
                assert same(
                    await session.get_items(-1), await reference.get_items(-1)
                )  # everything, whatever the settings say
        finally:
            reference.close()

    with fresh_target(backend, tmp_path) as target:

        @examples_for(backend, depth, sqlite=200, postgresql=60)
        @given(limit=st.none() | st.integers(0, 4), steps=operations)
        def example(limit: int | None, steps: list[tuple[Any, ...]]) -> None:
            anyio.run(play, target, limit, steps)

        example()


@pytest.mark.anyio
async def test_the_log_keeps_what_pop_and_clear_removed(store: eventmem.Store) -> None:
    session = EventmemSession(new_id(), store)
    first = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    await session.add_items(cast(list[TResponseInputItem], first))
    assert await session.pop_item() == first[1]
    await session.clear_session()
    assert await session.get_items() == []
    events = [e async for e in store.events(session.session_id)]
    assert len(events) == 3  # appended, retracted, cleared
    assert [to_item(m) for m in await session.history.messages(as_of=events[0].position)] == first


# --- a real agent run --------------------------------------------------------------------


class ScriptModel(Model):
    """A model that returns prepared outputs, one list per call, and records its input."""

    def __init__(self, replies: Sequence[Sequence[Any]]) -> None:
        self.replies = [list(reply) for reply in replies]
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        self.inputs.append(json.loads(json.dumps(input)))
        return ModelResponse(output=self.replies.pop(0), usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("these tests do not stream")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny, 21 °C in {city}"


def weather_call(call_id: str, city: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call",
        id=f"fc_{call_id}",
        call_id=call_id,
        name="get_weather",
        arguments=json.dumps({"city": city}),
        status="completed",
    )


def reply(text: str, item_id: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        type="message",
        id=item_id,
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def weather_script() -> ScriptModel:
    return ScriptModel(
        [
            [weather_call("call_lisbon", "Lisbon")],
            [reply("Sunny in Lisbon, 21 °C.", "msg_1")],
            [reply("Tomorrow too.", "msg_2")],
        ]
    )


async def two_runs(model: ScriptModel, first: Session, second: Session) -> list[str]:
    agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
    config = RunConfig(tracing_disabled=True)
    one = await Runner.run(agent, "Weather in Lisbon?", session=first, run_config=config)
    two = await Runner.run(agent, "And tomorrow?", session=second, run_config=config)
    return [str(one.final_output), str(two.final_output)]


@pytest.mark.anyio
async def test_runner_runs_on_an_eventmem_session(target: str) -> None:
    reference = SQLiteSession("reference")
    try:
        reference_model = weather_script()
        await two_runs(reference_model, reference, reference)
        expected = await reference.get_items()
    finally:
        reference.close()

    model = weather_script()
    async with eventmem.open(target) as store:
        first = EventmemSession("weather-chat", store)
        async with eventmem.open(target) as other:  # the second run on another store object
            second = EventmemSession("weather-chat", other)
            outputs = await two_runs(model, first, second)
    assert outputs == ["Sunny in Lisbon, 21 °C.", "Tomorrow too."]
    # the model saw the same input as with SQLiteSession: the second run saw the first
    assert model.inputs == reference_model.inputs
    assert [item.get("content") for item in model.inputs[2][:1]] == ["Weather in Lisbon?"]
    assert len(model.inputs[2]) == 5

    async with eventmem.open(target) as store:
        session = EventmemSession("weather-chat", store)
        assert same(await session.get_items(), expected)
        events = [e async for e in store.events("weather-chat")]
        assert len(events) >= 2
        messages = await session.history.messages()
        assert [to_item(m) for m in messages] == expected
        call = next(m for m in messages if m.tool_calls)
        assert call.tool_calls == (
            ToolCall(name="get_weather", args={"city": "Lisbon"}, id="call_lisbon"),
        )
        result = next(m for m in messages if m.role == "tool")
        assert (result.tool_call_id, result.content) == ("call_lisbon", "Sunny, 21 °C in Lisbon")


# --- the token bound ---------------------------------------------------------------------


@st.composite
def turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One agent turn as the SDK saves it: the user's message, maybe reasoning, tool
    calls (several at once, or one after another) with their results, an answer."""
    words = st.text(alphabet="abc ☀", max_size=80)
    turn: list[dict[str, Any]] = [{"role": "user", "content": draw(words)}]
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            turn.append({"type": "reasoning", "id": "rs", "summary": []})
        ids = [f"call_{uuid.uuid4().hex[:8]}" for _ in range(draw(st.integers(1, 3)))]
        turn += [draw(function_calls(call_id=i)) for i in ids]
        turn += [draw(function_outputs(call_id=i)) for i in ids]
    turn.append({"role": "assistant", "content": draw(words)})
    return turn


def assert_pair_safe(view: list[Any]) -> None:
    seen: set[str] = set()
    for item in view:
        if item.get("type") == "function_call":
            seen.add(item["call_id"])
        elif item.get("type") == "function_call_output":
            assert item["call_id"] in seen, f"{item['call_id']} without its call in {view}"


def test_a_bounded_view_never_shows_a_result_without_its_call(
    backend: str, depth: str, tmp_path: Path
) -> None:
    async def play(target: str, max_tokens: int, run: list[list[dict[str, Any]]]) -> None:
        async with eventmem.open(target) as store:
            session = EventmemSession(new_id(), store, max_tokens=max_tokens)
            added: list[dict[str, Any]] = []
            for turn in run:
                await session.add_items(cast(list[TResponseInputItem], turn))
                added += turn
                view = await session.get_items()
                assert_pair_safe(view)
                assert same(view, added[len(added) - len(view) :])  # the newest
            event(f"pruned: {len(view) < len(added)}")
            while (popped := await session.pop_item()) is not None:
                view = await session.get_items()
                assert_pair_safe(view)
                assert same([*view, popped], added[len(added) - len(view) - 1 :])
                added.pop()

    with fresh_target(backend, tmp_path) as target:

        @examples_for(backend, depth, sqlite=200, postgresql=60)
        @given(
            max_tokens=st.integers(1, 400),
            run=st.lists(turns(), min_size=1, max_size=5),
        )
        def example(max_tokens: int, run: list[list[dict[str, Any]]]) -> None:
            anyio.run(play, target, max_tokens, run)

        example()


@pytest.mark.anyio
async def test_a_token_counter_bounds_the_view(store: eventmem.Store) -> None:
    # ten tokens an item: a bound of 35 shows the newest three
    session = EventmemSession(
        new_id(), store, max_tokens=35, token_counter=lambda messages: 10 * len(messages)
    )
    added = [{"role": "user", "content": str(i)} for i in range(6)]
    await session.add_items(cast(list[TResponseInputItem], added))
    assert await session.get_items() == added[-3:]
    assert await session.pop_item() == added[-1]
    assert await session.get_items() == added[-3:-1]  # what was pruned stays out of the view


@pytest.mark.anyio
async def test_the_bound_drops_a_result_whose_call_it_dropped(store: eventmem.Store) -> None:
    session = EventmemSession(
        new_id(), store, max_tokens=25, token_counter=lambda messages: 10 * len(messages)
    )
    added = [
        {"role": "user", "content": "look it up"},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
        {"role": "assistant", "content": "Found it."},
    ]
    await session.add_items(cast(list[TResponseInputItem], added))
    # the newest two would fit, but the result without its call is no valid input
    assert await session.get_items() == added[-1:]


# --- packaging ---------------------------------------------------------------------------
