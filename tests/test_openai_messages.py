"""``eventmem.from_openai``: chat-completions dicts in, the same dicts back out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from langchain_openai.chat_models.base import _convert_message_to_dict
from openai.types.chat import ChatCompletionMessage

from eventmem import InvalidInputError, InvalidToolCall, Message, ToolCall, from_openai
from eventmem.messages import from_langchain
from tests.reference import examples
from tests.test_messages import lc_messages


def test_every_dict_to_openai_writes_comes_back_as_written(depth: str) -> None:
    @examples(depth, 80)
    @given(message=lc_messages())
    def example(message: Any) -> None:
        sent = from_langchain(message).to_openai()
        assert sent == _convert_message_to_dict(message)  # the dict langchain-openai sends
        assert from_openai(sent).to_openai() == sent

    example()


def test_an_assistant_reply_with_tool_calls_becomes_tool_calls() -> None:
    reply = ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "Europe/Par'},
                },
            ],
        }
    ).model_dump()  # the SDK's own shape: refusal, audio, annotations ... set to None
    assert reply["refusal"] is None
    assert from_openai(reply) == Message(
        role="ai",
        content="",
        tool_calls=(ToolCall(name="get_weather", args={"city": "Paris"}, id="call_1"),),
        invalid_tool_calls=(
            InvalidToolCall(name="get_time", args='{"tz": "Europe/Par', id="call_2"),
        ),
    )


@pytest.mark.parametrize(
    ("given_dict", "expected"),
    [
        ({"role": "user", "content": "hi", "name": "ana"}, Message("human", "hi", name="ana")),
        ({"role": "system", "content": "be brief"}, Message("system", "be brief")),
        ({"role": "developer", "content": "in French"}, Message("developer", "in French")),
        ({"role": "assistant", "content": "hello"}, Message("ai", "hello")),
        (
            {"role": "tool", "content": "18 C", "tool_call_id": "call_1"},
            Message("tool", "18 C", tool_call_id="call_1"),
        ),
        (
            {"role": "function", "content": "18 C", "name": "get_weather"},
            Message("function", "18 C", name="get_weather"),
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            Message("ai", "", function_call={"name": "f", "arguments": "{}"}),
        ),
    ],
)
def test_each_role_converts(given_dict: dict[str, Any], expected: Message) -> None:
    assert from_openai(given_dict) == expected


def test_arguments_kept_as_text_unless_to_openai_would_write_them_so() -> None:
    # Spacing or key order that json.dumps would not reproduce stays verbatim, so the
    # dict sent back is the dict that came in.
    arguments = '{"b":1,  "a":2}'
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    message = from_openai({"role": "assistant", "content": "", "tool_calls": [call]})
    assert message.invalid_tool_calls == (InvalidToolCall(name="f", args=arguments, id="c"),)
    assert json.loads(message.to_openai()["tool_calls"][0]["function"]["arguments"]) == {
        "b": 1,
        "a": 2,
    }


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("not a dict", "must be a dict"),
        ({"content": "no role"}, "role must be one of"),
        ({"role": "user", "content": {"type": "text", "text": "x"}}, "a str or a list of parts"),
        ({"role": "assistant", "content": "x", "refusal": "I can't"}, r"\['refusal'\]"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, r"\['tool_call_id'\]"),
        ({"role": "assistant", "content": "", "tool_calls": "call"}, "must be a list"),
        ({"role": "assistant", "content": "", "tool_calls": [{"type": "x"}]}, "function call"),
        ({"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]}, "'function' dict"),
        (
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": 7, "function": {"name": "f", "arguments": "{}"}}],
            },
            "must be a str",
        ),
        ({"role": "user", "content": "\ud800"}, "lone surrogate"),
    ],
)
def test_what_a_message_cannot_hold_is_refused_not_dropped(bad: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        from_openai(bad)
