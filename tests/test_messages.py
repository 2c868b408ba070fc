"""Parity of eventmem's message shapes with LangChain's, and validation of bad input.

References: ``langchain_openai.chat_models.base._convert_message_to_dict`` (the dict
langchain-openai sends and counts) and ``langchain_core.messages.get_buffer_string``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    get_buffer_string,
)
from langchain_openai.chat_models.base import _convert_message_to_dict

from eventmem.errors import InvalidInputError, NotSerializableError
from eventmem.messages import MAX_DEPTH, Message, ToolCall, buffer_string, from_langchain
from tests.reference import examples

# --- the parity corpus (also used by test_tokens.py) -------------------------------------

UNICODE_TEXTS: dict[str, str] = {
    "emoji": "Family 👩‍👩‍👧‍👦, flag 🇯🇵, skin tone 👍🏽, keycap 1️⃣",
    "cjk": "日本語のテキストと中文文本와 한국어",
    "combining": "e\u0301 n\u0303 Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗",
    "rtl": "مرحبا بالعالم \u200f שלום עולם \u202eevil\u202c",
    "controls": "tab\there\r\nnew line\x00nul\x1besc\u2028sep",
    "astral": "\U0001d518\U0001d52b\U0001d526 \U00013000 \U0010fffd",
}

TOOL_CALLS_PARALLEL = [
    {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}, "id": "call_1"},
    {"name": "get_weather", "args": {"city": "Tokyo", "unit": "celsius"}, "id": "call_2"},
    {"name": "get_time", "args": {"tz": "Asia/Tokyo"}, "id": "call_3"},
]
NESTED_ARGS: dict[str, Any] = {
    "zeta": 1,
    "alpha": {"list": [1, [2, [3, {"deep": [None, True, False]}]]], "empty": {}},
    "matrix": [[1.5, -2.25], [3e-10, 1e300]],
}
SCALAR_ARGS: dict[str, Any] = {
    "float": 0.1,
    "neg_zero": -0.0,
    "int": 12345678901234567890,
    "neg": -7,
    "yes": True,
    "no": False,
    "nothing": None,
    "empty_str": "",
    "empty_list": [],
}
UNICODE_ARGS: dict[str, Any] = {
    "query": "日本の天気 🌧️",
    "ключ": "значение",
    "emoji 🔑": ["👩‍👩‍👧‍👦", "e\u0301"],
    "rtl": "مرحبا",
    "nul": "a\x00b",
}
FUNCTION_CALL: dict[str, Any] = {"name": "search", "arguments": '{"q": "café ☕"}'}


def _ai_with_tool_calls(content: str, calls: list[dict[str, Any]]) -> Any:
    return AIMessage(content=content, tool_calls=calls)


def lc_cases() -> list[Any]:
    """LangChain messages of every type with the variants eventmem must render exactly."""
    cases: list[Any] = [
        pytest.param(HumanMessage(content="Hello, how are you?"), id="human"),
        pytest.param(HumanMessage(content=""), id="human-empty"),
        pytest.param(HumanMessage(content="hi", name="bob"), id="human-name"),
        pytest.param(
            HumanMessage(content="hi", additional_kwargs={"name": "alice"}),
            id="human-name-in-additional-kwargs",
        ),
        pytest.param(HumanMessage(content="hi", name="名前"), id="human-unicode-name"),
        pytest.param(HumanMessage(content="hi", id="msg-123"), id="human-id"),
        pytest.param(AIMessage(content="I am fine, thanks."), id="ai"),
        pytest.param(AIMessage(content=""), id="ai-empty"),
        pytest.param(AIMessage(content="beep", name="robot"), id="ai-name"),
        pytest.param(
            _ai_with_tool_calls("", [{"name": "search", "args": {"q": "x"}, "id": "c1"}]),
            id="ai-one-tool-call-empty-content",
        ),
        pytest.param(
            _ai_with_tool_calls("Let me check.", TOOL_CALLS_PARALLEL), id="ai-parallel-tool-calls"
        ),
        pytest.param(
            _ai_with_tool_calls("", [{"name": "lookup", "args": UNICODE_ARGS, "id": "c-ü"}]),
            id="ai-tool-call-unicode-args",
        ),
        pytest.param(
            _ai_with_tool_calls("nested", [{"name": "calc", "args": NESTED_ARGS, "id": "c2"}]),
            id="ai-tool-call-nested-args",
        ),
        pytest.param(
            _ai_with_tool_calls("", [{"name": "types", "args": SCALAR_ARGS, "id": "c3"}]),
            id="ai-tool-call-scalar-args",
        ),
        pytest.param(
            _ai_with_tool_calls("", [{"name": "noargs", "args": {}, "id": None}]),
            id="ai-tool-call-empty-args-no-id",
        ),
        pytest.param(
            AIMessage(content="", additional_kwargs={"function_call": FUNCTION_CALL}),
            id="ai-function-call",
        ),
        pytest.param(
            AIMessage(content="calling", additional_kwargs={"function_call": FUNCTION_CALL}),
            id="ai-function-call-with-content",
        ),
        pytest.param(
            AIMessage(
                content="both",
                additional_kwargs={"function_call": FUNCTION_CALL},
                tool_calls=[{"name": "g", "args": {"a": 1}, "id": "c4"}],
            ),
            id="ai-tool-calls-win-over-function-call",
        ),
        pytest.param(
            AIMessage(
                content="",
                additional_kwargs={
                    "tool_calls": [
                        {
                            "id": "call_raw",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"b": 2, "a": [1]}'},
                        }
                    ]
                },
            ),
            id="ai-raw-openai-tool-calls",
        ),
        pytest.param(SystemMessage(content="You are a helpful assistant."), id="system"),
        pytest.param(SystemMessage(content=""), id="system-empty"),
        pytest.param(
            SystemMessage(
                content="Answer in French.", additional_kwargs={"__openai_role__": "developer"}
            ),
            id="developer",
        ),
        pytest.param(FunctionMessage(name="search", content="3 results"), id="function"),
        pytest.param(FunctionMessage(name="search", content=""), id="function-empty"),
        pytest.param(ToolMessage(content="42 °C", tool_call_id="call_1"), id="tool"),
        pytest.param(ToolMessage(content="", tool_call_id="call_2"), id="tool-empty"),
        pytest.param(
            ToolMessage(
                content="ok", tool_call_id="call_3", name="t", additional_kwargs={"name": "t"}
            ),
            id="tool-name-dropped",
        ),
    ]
    for label, text in UNICODE_TEXTS.items():
        cases.append(pytest.param(HumanMessage(content=text), id=f"human-{label}"))
        cases.append(pytest.param(AIMessage(content=text), id=f"ai-{label}"))
    cases.append(
        pytest.param(FunctionMessage(name="f", content=UNICODE_TEXTS["cjk"]), id="function-cjk")
    )
    cases.append(
        pytest.param(ToolMessage(content=UNICODE_TEXTS["emoji"], tool_call_id="c"), id="tool-emoji")
    )
    return cases


LC_CASES = lc_cases()


def all_lc_messages() -> list[Any]:
    """Every message of the corpus, in order (one long conversation)."""
    return [case.values[0] for case in LC_CASES]


# Inputs on which eventmem and LangChain disagree (see the reasons).
_INVALID_TOOL_CALL = AIMessage(
    content="",
    additional_kwargs={
        "tool_calls": [
            {"id": "call_bad", "type": "function", "function": {"name": "f", "arguments": "{bad"}}
        ]
    },
)
INVALID_TOOL_CALLS = pytest.param(_INVALID_TOOL_CALL, id="ai-invalid-tool-call")


# --- to_openai() == _convert_message_to_dict ------------------------------------------


@pytest.mark.parametrize("message", [*LC_CASES, INVALID_TOOL_CALLS])
def test_to_openai_equals_langchain_openai(message: Any) -> None:
    assert from_langchain(message).to_openai() == _convert_message_to_dict(message)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            AIMessage(content="x", additional_kwargs={"function_call": None}),
            id="ai-function-call-none",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="LangChain sends function_call: None (and content None when empty); "
                "eventmem drops a None function_call",
            ),
        ),
        pytest.param(
            AIMessage(content="", additional_kwargs={"tool_calls": []}),
            id="ai-empty-raw-tool-calls",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="LangChain sends tool_calls: [] and content None; eventmem sends content ''",
            ),
        ),
    ],
)
def test_to_openai_known_mismatches(message: Any) -> None:
    assert from_langchain(message).to_openai() == _convert_message_to_dict(message)


def test_from_langchain_is_identity_on_messages() -> None:
    for lc in all_lc_messages():
        message = from_langchain(lc)
        assert from_langchain(message) is message


# --- buffer_string == get_buffer_string -------------------------------------------------

PREFIXES = [
    pytest.param("Human", "AI", id="default"),
    pytest.param("User", "Assistant", id="custom"),
    pytest.param("", "", id="empty"),
    pytest.param("Человек", "🤖 Bot", id="unicode"),
]


@pytest.mark.parametrize(("human_prefix", "ai_prefix"), PREFIXES)
@pytest.mark.parametrize("message", LC_CASES)
def test_buffer_line_equals_get_buffer_string(
    message: Any, human_prefix: str, ai_prefix: str
) -> None:
    expected = get_buffer_string([message], human_prefix=human_prefix, ai_prefix=ai_prefix)
    assert buffer_string([from_langchain(message)], human_prefix, ai_prefix) == expected


@pytest.mark.parametrize(("human_prefix", "ai_prefix"), PREFIXES)
def test_buffer_string_of_conversation(human_prefix: str, ai_prefix: str) -> None:
    messages = all_lc_messages()
    expected = get_buffer_string(messages, human_prefix=human_prefix, ai_prefix=ai_prefix)
    converted = [from_langchain(m) for m in messages]
    assert buffer_string(converted, human_prefix, ai_prefix) == expected


def test_buffer_string_defaults_and_empty() -> None:
    messages = [HumanMessage(content="hi"), AIMessage(content="hello")]
    assert buffer_string([from_langchain(m) for m in messages]) == get_buffer_string(messages)
    assert buffer_string([]) == get_buffer_string([]) == ""


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            AIMessage(content="x", additional_kwargs={"function_call": None}),
            id="ai-function-call-none",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="get_buffer_string appends str(None) == 'None' for a None function_call",
            ),
        ),
        pytest.param(
            AIMessage(content="", tool_calls=[{"name": "f", "args": {"t": (1, 2)}, "id": "1"}]),
            id="ai-tuple-args",
            marks=pytest.mark.xfail(
                strict=True,
                raises=AssertionError,
                reason="LangChain keeps tuple args and prints (1, 2); eventmem stores a list "
                "and prints [1, 2]",
            ),
        ),
    ],
)
def test_buffer_string_known_mismatches(message: Any) -> None:
    assert buffer_string([from_langchain(message)]) == get_buffer_string([message])


_ANY_TEXT = st.text()


@st.composite
def lc_messages(draw: st.DrawFn, text: st.SearchStrategy[str] = _ANY_TEXT) -> Any:
    """A random LangChain message of any type eventmem stores."""
    kind = draw(
        st.sampled_from(
            ["human", "ai", "ai-tools", "ai-function", "system", "developer", "function", "tool"]
        )
    )
    content = draw(text)
    name = draw(st.none() | text.filter(bool))
    if kind == "human":
        return HumanMessage(content=content, name=name)
    if kind == "ai":
        return AIMessage(content=content, name=name)
    if kind == "ai-tools":
        calls = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "name": text,
                        "args": st.dictionaries(text, _json_values_of(text), max_size=4),
                        "id": st.none() | text,
                    }
                ),
                min_size=1,
                max_size=3,
            )
        )
        return AIMessage(content=content, name=name, tool_calls=calls)
    if kind == "ai-function":
        call = {"name": draw(text), "arguments": draw(text)}
        return AIMessage(content=content, additional_kwargs={"function_call": call})
    if kind == "system":
        return SystemMessage(content=content, name=name)
    if kind == "developer":
        developer = {"__openai_role__": "developer"}
        return SystemMessage(content=content, name=name, additional_kwargs=developer)
    if kind == "function":
        return FunctionMessage(content=content, name=draw(text.filter(bool)))
    return ToolMessage(content=content, tool_call_id=draw(text))


def _json_values_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )


def test_buffer_string_property(depth: str) -> None:
    @examples(depth, 60)
    @given(
        messages=st.lists(lc_messages(), max_size=6),
        human_prefix=st.text(max_size=10),
        ai_prefix=st.text(max_size=10),
    )
    def example(messages: list[Any], human_prefix: str, ai_prefix: str) -> None:
        expected = get_buffer_string(messages, human_prefix=human_prefix, ai_prefix=ai_prefix)
        converted = [from_langchain(m) for m in messages]
        assert buffer_string(converted, human_prefix, ai_prefix) == expected

    example()


def test_to_openai_property(depth: str) -> None:
    @examples(depth, 60)
    @given(message=lc_messages())
    def example(message: Any) -> None:
        assert from_langchain(message).to_openai() == _convert_message_to_dict(message)

    example()


# --- msgspec round trip ------------------------------------------------------------------

ROUND_TRIP_CASES = [
    pytest.param(Message(role="human", content="hi"), id="human"),
    pytest.param(Message(role="human", content="hi", name="bob", id="m-1"), id="human-name-id"),
    pytest.param(Message(role="human", content="nul\x00byte\x00"), id="nul-bytes"),
    pytest.param(Message(role="ai", content=UNICODE_TEXTS["emoji"]), id="emoji"),
    pytest.param(Message(role="system", content=UNICODE_TEXTS["rtl"]), id="rtl"),
    pytest.param(
        Message(
            role="ai",
            content="",
            tool_calls=(
                ToolCall(name="calc", args=NESTED_ARGS, id="c1"),
                ToolCall(name="types", args=SCALAR_ARGS),
                ToolCall(name="lookup", args=UNICODE_ARGS, id="c-ü"),
            ),
            id="run-1",
        ),
        id="tool-calls",
    ),
    pytest.param(
        Message(
            role="ai",
            content="x",
            function_call={"name": "f", "arguments": "{}", "z": [1, {"b": 2, "a": 1}]},
        ),
        id="function-call",
    ),
    pytest.param(Message(role="function", content="r", name="search"), id="function"),
    pytest.param(Message(role="tool", content="r", tool_call_id="c1\x00"), id="tool"),
    *(pytest.param(case.values[0], id=f"from-langchain-{case.id}") for case in LC_CASES),
]


@pytest.mark.parametrize("message", ROUND_TRIP_CASES)
def test_msgspec_json_round_trip(message: Any) -> None:
    original = from_langchain(message)
    decoded = msgspec.json.decode(msgspec.json.encode(original), type=Message)
    assert decoded == original
    assert decoded.to_openai() == original.to_openai()
    assert buffer_string([decoded]) == buffer_string([original])
    # Key order survives: the printed dicts (what get_buffer_string shows) are identical.
    for before, after in zip(original.tool_calls, decoded.tool_calls, strict=True):
        assert str(after.args) == str(before.args)
        assert list(after.args) == list(before.args)
    assert str(decoded.function_call) == str(original.function_call)


def test_round_trip_preserves_float_spelling() -> None:
    args: dict[str, Any] = {"b": -0.0, "a": 1e300, "c": 0.1, "d": 5e-324, "e": 2**70}
    message = Message(role="ai", content="", tool_calls=(ToolCall(name="f", args=args),))
    decoded = msgspec.json.decode(msgspec.json.encode(message), type=Message)
    assert str(decoded.tool_calls[0].args) == str(args)
    assert math.copysign(1.0, decoded.tool_calls[0].args["b"]) == -1.0


# --- bad input --------------------------------------------------------------------------


def _deep(depth: int, leaf: Any) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    return value


class _Opaque:
    pass


def _tool_call(args: Any) -> Callable[[], object]:
    return lambda: ToolCall(name="f", args=args, id="c")


def _lc_tool_call(args: Any) -> Callable[[], object]:
    return lambda: from_langchain(
        AIMessage(content="", tool_calls=[{"name": "f", "args": args, "id": "c"}])
    )


BAD_INPUT: list[Any] = [
    pytest.param(
        lambda: Message(role=cast(Any, "user"), content="x"), InvalidInputError, id="role-user"
    ),
    pytest.param(
        lambda: Message(role=cast(Any, "chat"), content="x"), InvalidInputError, id="role-chat"
    ),
    pytest.param(
        lambda: Message(role=cast(Any, None), content="x"), InvalidInputError, id="role-none"
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, 5)), InvalidInputError, id="content-int"
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, None)),
        InvalidInputError,
        id="content-none",
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, b"bytes")),
        InvalidInputError,
        id="content-bytes",
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, [{"type": "text", "text": b"x"}])),
        NotSerializableError,
        id="content-part-bytes",
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, [3])),
        InvalidInputError,
        id="content-part-int",
    ),
    pytest.param(
        lambda: Message(role="human", content=cast(Any, {"type": "text", "text": "x"})),
        InvalidInputError,
        id="content-dict",
    ),
    pytest.param(
        lambda: Message(role="human", content="x", metadata=cast(Any, {"k": (1, 2)})),
        NotSerializableError,
        id="metadata-tuple",
    ),
    pytest.param(
        lambda: Message(role="human", content="x", metadata=cast(Any, ["a"])),
        InvalidInputError,
        id="metadata-list",
    ),
    pytest.param(
        lambda: Message(role="human", content="x", name=cast(Any, 3)),
        InvalidInputError,
        id="name-int",
    ),
    pytest.param(
        lambda: Message(role="tool", content="x"), InvalidInputError, id="tool-without-id"
    ),
    pytest.param(
        lambda: Message(role="function", content="x"), InvalidInputError, id="function-no-name"
    ),
    pytest.param(
        lambda: Message(role="function", content="x", name=""),
        InvalidInputError,
        id="function-empty-name",
    ),
    pytest.param(
        lambda: Message(role="human", content="x", tool_calls=(ToolCall(name="f", args={}),)),
        InvalidInputError,
        id="tool-calls-on-human",
    ),
    pytest.param(
        lambda: Message(
            role="tool", content="x", tool_call_id="c", tool_calls=(ToolCall(name="f", args={}),)
        ),
        InvalidInputError,
        id="tool-calls-on-tool",
    ),
    pytest.param(
        lambda: Message(role="ai", content="x", tool_calls=cast(Any, ({"name": "f", "args": {}},))),
        InvalidInputError,
        id="tool-calls-not-toolcall",
    ),
    pytest.param(
        lambda: Message(role="system", content="x", function_call={"name": "f"}),
        InvalidInputError,
        id="function-call-on-system",
    ),
    pytest.param(
        lambda: Message(role="ai", content="x", function_call=cast(Any, "f()")),
        InvalidInputError,
        id="function-call-not-dict",
    ),
    pytest.param(
        lambda: ToolCall(name=cast(Any, None), args={}), InvalidInputError, id="tool-call-name-none"
    ),
    pytest.param(
        lambda: ToolCall(name="f", args=cast(Any, [1])), InvalidInputError, id="tool-call-args-list"
    ),
    pytest.param(_tool_call({"x": math.nan}), NotSerializableError, id="args-nan"),
    pytest.param(_tool_call({"x": math.inf}), NotSerializableError, id="args-inf"),
    pytest.param(_tool_call({"x": [1, -math.inf]}), NotSerializableError, id="args-neg-inf-nested"),
    pytest.param(_tool_call({"x": {1, 2}}), NotSerializableError, id="args-set"),
    pytest.param(_tool_call({"x": (1, 2)}), NotSerializableError, id="args-tuple"),
    pytest.param(_tool_call({"x": _Opaque()}), NotSerializableError, id="args-object"),
    pytest.param(_tool_call({"x": b"bytes"}), NotSerializableError, id="args-bytes"),
    pytest.param(_tool_call({1: "a"}), NotSerializableError, id="args-int-key"),
    pytest.param(_tool_call({"x": {None: "a"}}), NotSerializableError, id="args-nested-none-key"),
    pytest.param(_tool_call({"x": "\ud800"}), NotSerializableError, id="args-lone-surrogate"),
    pytest.param(_tool_call({"\udfff": 1}), NotSerializableError, id="args-key-lone-surrogate"),
    pytest.param(_lc_tool_call({"x": math.nan}), NotSerializableError, id="lc-args-nan"),
    pytest.param(_lc_tool_call({"x": {1, 2}}), NotSerializableError, id="lc-args-set"),
    pytest.param(_lc_tool_call({"x": _Opaque()}), NotSerializableError, id="lc-args-object"),
    pytest.param(
        lambda: Message(role="ai", content="x", function_call={"arguments": math.nan}),
        NotSerializableError,
        id="function-call-nan",
    ),
    pytest.param(
        lambda: Message(role="human", content="bad \ud800 text"),
        NotSerializableError,
        id="content-lone-surrogate",
    ),
    pytest.param(
        lambda: Message(role="human", content="x", name="\udc00"),
        NotSerializableError,
        id="name-lone-surrogate",
    ),
    pytest.param(
        lambda: from_langchain(HumanMessage(content="\ud800")),
        NotSerializableError,
        id="lc-content-lone-surrogate",
    ),
    pytest.param(
        lambda: from_langchain(HumanMessage(content=[{"type": "text", "text": float("nan")}])),
        NotSerializableError,
        id="lc-list-content-nan",
    ),
    pytest.param(
        lambda: from_langchain(ChatMessage(role="user", content="x")),
        InvalidInputError,
        id="lc-chat-message",
    ),
    pytest.param(lambda: from_langchain(object()), InvalidInputError, id="not-a-message-object"),
    pytest.param(lambda: from_langchain("hello"), InvalidInputError, id="not-a-message-str"),
    pytest.param(lambda: from_langchain(None), InvalidInputError, id="not-a-message-none"),
    pytest.param(
        lambda: from_langchain({"type": "human", "content": "x"}),
        InvalidInputError,
        id="not-a-message-dict",
    ),
]


@pytest.mark.parametrize(("make", "error"), BAD_INPUT)
def test_bad_input_raises(make: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error) as excinfo:
        make()
    assert isinstance(excinfo.value, InvalidInputError)
    assert str(excinfo.value)


# --- deep nesting ------------------------------------------------------------------------

TOO_DEEP = 10_000


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda v: ToolCall(name="f", args={"deep": v}), id="tool-call"),
        pytest.param(
            lambda v: Message(role="ai", content="", function_call={"arguments": v}),
            id="function-call",
        ),
    ],
)
def test_nesting_is_bounded_and_checked_without_recursion_error(
    make: Callable[[Any], object],
) -> None:
    accepted = make(_deep(MAX_DEPTH - 3, {"ok": [1, "two", None]}))
    if isinstance(accepted, Message):
        msgspec.json.encode(accepted)
        accepted.to_openai()
    with pytest.raises(NotSerializableError, match="nested deeper"):
        make(_deep(TOO_DEEP, {"ok": 1}))
    with pytest.raises(NotSerializableError):
        make(_deep(MAX_DEPTH - 2, {"bad": math.nan}))
    with pytest.raises(NotSerializableError):
        make(_deep(MAX_DEPTH - 2, _Opaque()))


def test_from_langchain_refuses_too_deep_args_cleanly() -> None:
    lc = AIMessage(
        content="", tool_calls=[{"name": "f", "args": {"deep": _deep(TOO_DEEP, 1)}, "id": "c"}]
    )
    with pytest.raises(NotSerializableError, match="nested deeper"):
        from_langchain(lc)


def test_human_message_with_empty_name_is_sent_like_langchain() -> None:
    lc = HumanMessage(content="x", additional_kwargs={"name": ""})
    assert from_langchain(lc).to_openai() == _convert_message_to_dict(lc)


class _Text(str):
    """Like LangChain 1.x's TextAccessor: a str subclass."""


class _Int(int):
    pass


class IntEnumValue(enum.IntEnum):
    ONE = 1


def test_str_subclasses_become_plain_strings() -> None:
    message = Message(role="human", content=_Text("hi"), name=_Text("bob"))
    assert type(message.content) is str
    assert type(message.name) is str
    assert msgspec.json.decode(msgspec.json.encode(message), type=Message) == message


@pytest.mark.parametrize("value", [_Text("x"), IntEnumValue.ONE, _Int(3)])
def test_json_values_must_be_plain_types(value: Any) -> None:
    with pytest.raises(NotSerializableError, match="plain JSON types"):
        ToolCall(name="f", args={"v": value})


def test_langchain_args_with_subclasses_are_made_plain() -> None:
    lc = AIMessage(
        content="",
        tool_calls=[{"name": "f", "args": {"v": _Text("x")}, "id": "1", "type": "tool_call"}],
    )
    assert type(from_langchain(lc).tool_calls[0].args["v"]) is str


def test_streamed_chunks_convert_like_messages() -> None:
    from langchain_core.messages import AIMessageChunk, HumanMessageChunk

    chunk = AIMessageChunk(
        content="", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]
    )
    converted = from_langchain(chunk)
    assert converted.role == "ai"
    assert converted.tool_calls == (ToolCall(name="f", args={"a": 1}, id="c1"),)
    assert from_langchain(HumanMessageChunk(content="hi")).role == "human"


def test_buffer_lines_render_as_buffer_string_as_the_view_moves() -> None:
    from eventmem.messages import BufferLines

    lines = BufferLines("User", "Bot")
    view: list[Message] = []
    for i in range(300):  # a sliding view: each step drops the oldest, adds new ones
        view = [
            *view[-40:],
            Message(role="human", content=f"q{i}"),
            Message(role="ai", content=f"a{i}"),
        ]
        assert lines.render(view) == buffer_string(view, "User", "Bot")
    # an equal but different object is rendered from itself, not from a remembered line
    changed = [*view[:-1], Message(role="ai", content="other")]
    assert lines.render(changed) == buffer_string(changed, "User", "Bot")
    assert len(lines._lines) <= 2 * len(view) + 64 + 2
