"""Token counts equal langchain-openai's ``ChatOpenAI.get_num_tokens_from_messages``.

The reference is the real LangChain code, run offline: the session fixture in
``conftest.py`` points tiktoken's cache at copies of the bundled encodings.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from eventmem.errors import InvalidInputError, UnknownModelError
from eventmem.messages import Message, from_langchain
from eventmem.tokens import TokenCounter, count_tokens, get_encoding
from tests.reference import examples
from tests.test_messages import (
    INVALID_TOOL_CALLS,
    LC_CASES,
    UNICODE_TEXTS,
    all_lc_messages,
    lc_messages,
)

MODELS = ["gpt-4o", "gpt-4.1", "gpt-4", "gpt-3.5-turbo", "gpt-3.5-turbo-0301"]
MORE_MODELS = [*MODELS, "gpt-4o-mini", "gpt-4-turbo", "o1", "o3-mini", "gpt-5"]


@functools.cache
def reference(model: str) -> Any:
    """langchain-openai's chat model; counting with it needs no network (see conftest)."""
    return ChatOpenAI(model=model, api_key=SecretStr("test"))


def langchain_count(messages: list[Any], model: str) -> int:
    return cast(int, reference(model).get_num_tokens_from_messages(messages))


# --- parity with langchain-openai -------------------------------------------------------


@pytest.mark.parametrize("convert", [False, True], ids=["langchain", "message"])
@pytest.mark.parametrize("message", [*LC_CASES, INVALID_TOOL_CALLS])
@pytest.mark.parametrize("model", MODELS)
def test_count_of_one_message_equals_langchain(model: str, message: Any, convert: bool) -> None:
    given_message = from_langchain(message) if convert else message
    assert count_tokens([given_message], model) == langchain_count([message], model)


@pytest.mark.parametrize("model", MORE_MODELS)
def test_count_of_conversation_equals_langchain(model: str) -> None:
    messages = all_lc_messages()
    expected = langchain_count(messages, model)
    assert count_tokens(messages, model) == expected
    assert count_tokens([from_langchain(m) for m in messages], model) == expected
    # The formula is a sum: each message's count is independent of its neighbours.
    primer = count_tokens([], model)
    assert expected == primer + sum(count_tokens([m], model) - primer for m in messages)


@pytest.mark.parametrize("model", MODELS)
def test_count_of_empty_list_is_the_reply_primer(model: str) -> None:
    assert count_tokens([], model) == langchain_count([], model) == 3


def test_default_model_is_gpt_4o() -> None:
    messages = [HumanMessage(content=UNICODE_TEXTS["cjk"]), AIMessage(content="ok")]
    assert count_tokens(messages) == langchain_count(messages, "gpt-4o")
    # The two encodings disagree on this text, so the default is really gpt-4o's.
    assert count_tokens(messages) != langchain_count(messages, "gpt-4")


def test_names_change_the_count_per_model_scheme() -> None:
    # Guards the name adjustment (+1, or -1 for gpt-3.5-turbo-0301) against LangChain.
    plain, named = HumanMessage(content="hi"), HumanMessage(content="hi", name="bob")
    for model in ("gpt-4o", "gpt-3.5-turbo-0301"):
        delta = count_tokens([named], model) - count_tokens([plain], model)
        assert delta == langchain_count([named], model) - langchain_count([plain], model)
    assert count_tokens([named], "gpt-4o") != count_tokens([named], "gpt-3.5-turbo-0301")


SAFE_TEXT = st.text().filter(lambda s: "<|" not in s)  # LangChain raises on special tokens


def test_count_property(depth: str) -> None:
    @examples(depth, 60)
    @given(messages=st.lists(lc_messages(SAFE_TEXT), max_size=6))
    def example(messages: list[Any]) -> None:
        converted = [from_langchain(m) for m in messages]
        for model in ("gpt-4o", "gpt-4"):
            expected = langchain_count(messages, model)
            assert count_tokens(messages, model) == expected
            assert count_tokens(converted, model) == expected

    example()


# --- text that looks like special tokens ----------------------------------------------

SPECIAL_TEXTS = [
    "<|endoftext|>",
    "<|im_start|>system<|im_end|>",
    "before <|endoftext|> after",
    "<|fim_prefix|>a<|fim_middle|>b<|fim_suffix|>",
    "<|endofprompt|>",
    "<|endoftext",
]


def _special_variants(text: str) -> list[Any]:
    return [
        HumanMessage(content=text),
        HumanMessage(content="x", name=text),
        SystemMessage(content=text),
        AIMessage(content=text, tool_calls=[{"name": text, "args": {text: [text]}, "id": text}]),
        AIMessage(
            content="", additional_kwargs={"function_call": {"name": "f", "arguments": text}}
        ),
        FunctionMessage(name=text, content=text),
        ToolMessage(content=text, tool_call_id=text),
    ]


class _OrdinaryEncoding:
    """Wraps a tiktoken encoding so ``encode`` treats special-token text as plain text."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(text, disallowed_special=())


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "gpt-3.5-turbo-0301"])
@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_token_text_counts_as_ordinary_text(
    monkeypatch: pytest.MonkeyPatch, model: str, text: str
) -> None:
    messages = _special_variants(text)
    original = ChatOpenAI._get_encoding_model

    def ordinary_encoding_model(self: Any) -> tuple[str, Any]:
        name, encoding = original(self)
        return name, _OrdinaryEncoding(encoding)

    monkeypatch.setattr(ChatOpenAI, "_get_encoding_model", ordinary_encoding_model)
    for message in messages:
        expected = langchain_count([message], model)
        assert count_tokens([message], model) == expected
        assert count_tokens([from_langchain(message)], model) == expected


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_token_text_is_its_ordinary_length(model: str, text: str) -> None:
    encoding = tiktoken.encoding_for_model(model)
    content_tokens = count_tokens([HumanMessage(content=text)], model) - count_tokens(
        [HumanMessage(content="")], model
    )
    assert content_tokens == len(encoding.encode(text, disallowed_special=()))
    if any(token in text for token in encoding.special_tokens_set):
        # LangChain itself raises on this text; eventmem counts it as plain text instead
        with pytest.raises(ValueError, match="special token"):
            langchain_count([HumanMessage(content=text)], model)


# --- the bundled encodings are tiktoken's ----------------------------------------------

VARIED_TEXTS = [
    "",
    " ",
    "hello world",
    "Hello, World! HELLO world hElLo",
    "don't I'll we've they're she's it'd I'M",
    "1234567890 3.14159 -42 1e10 0x1F",
    "    indented\n\n\n\ttabs\r\n  trailing   ",
    "def f(x):\n    return {'a': [1, 2]}  # comment\n",
    "https://example.com/path?q=1&r=%20#frag",
    "<|endoftext|> <|im_start|> <|fim_prefix|>",
    "\x00\x01\x7f",
    "a" * 1000,
    " ".join(["token"] * 200),
    *UNICODE_TEXTS.values(),
]


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_bundled_encoding_equals_tiktoken(name: str) -> None:
    ours = get_encoding(name)
    theirs = tiktoken.get_encoding(name)
    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    assert ours._mergeable_ranks == theirs._mergeable_ranks
    assert ours.n_vocab == theirs.n_vocab
    for text in VARIED_TEXTS:
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text), text
        assert ours.encode(text, allowed_special="all") == theirs.encode(
            text, allowed_special="all"
        )


def test_bundled_encodings_encode_like_tiktoken(depth: str) -> None:
    @examples(depth, 60)
    @given(text=st.text())
    def example(text: str) -> None:
        for name in ("cl100k_base", "o200k_base"):
            assert get_encoding(name).encode_ordinary(text) == tiktoken.get_encoding(
                name
            ).encode_ordinary(text)

    example()


def test_unbundled_encoding_is_refused() -> None:
    with pytest.raises(UnknownModelError):
        get_encoding("p50k_base")


# --- custom counters -------------------------------------------------------------------

SOME_MESSAGES: list[Any] = [
    HumanMessage(content="hi"),
    AIMessage(content="", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}]),
    ToolMessage(content="1", tool_call_id="c1"),
]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_callable_counter(n: int) -> None:
    seen: list[object] = []

    def counter(messages: list[Message]) -> int:
        seen.extend(messages)
        return 10 * len(messages) + 1

    assert count_tokens(SOME_MESSAGES[:n], token_counter=counter) == 10 * n + 1
    assert all(isinstance(m, Message) for m in seen)  # LangChain messages arrive converted
    assert count_tokens(SOME_MESSAGES[:n], token_counter=lambda ms: 10 * len(ms) + 1) == (
        10 * n + 1
    )


class ContentLengthCounter:
    """A TokenCounter: 2 + the characters of every message's content."""

    name = "test:content-length"
    overhead = 2

    def count_message(self, message: Message) -> int:
        return len(message.content)


def test_token_counter_protocol_object() -> None:
    counter = ContentLengthCounter()
    assert isinstance(counter, TokenCounter)
    messages = [HumanMessage(content="hello"), AIMessage(content="日本語")]
    assert count_tokens(messages, token_counter=counter) == 2 + 5 + 3
    assert count_tokens([], token_counter=counter) == 2


def test_custom_counter_serves_models_eventmem_cannot_count() -> None:
    assert (
        count_tokens(SOME_MESSAGES, "claude-3-opus", token_counter=ContentLengthCounter()) == 2 + 3
    )


@pytest.mark.parametrize(
    "counter",
    [
        pytest.param(lambda ms: "10", id="str"),
        pytest.param(lambda ms: 10.0, id="float"),
        pytest.param(lambda ms: None, id="none"),
        pytest.param(lambda ms: True, id="bool"),
        pytest.param(lambda ms: 3 if not ms else 4.5, id="non-int-only-for-messages"),
    ],
)
def test_counter_returning_non_int_is_refused(counter: Any) -> None:
    with pytest.raises(InvalidInputError, match="must return an int"):
        count_tokens(SOME_MESSAGES, token_counter=counter)


def test_non_callable_counter_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        count_tokens(SOME_MESSAGES, token_counter=cast(Any, 42))


# --- models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["claude-3-opus", "text-davinci-003", "gemini-1.5-pro", "llama-3-70b", "davinci"]
)
def test_unknown_model_asks_for_a_token_counter(model: str) -> None:
    with pytest.raises(UnknownModelError, match="token_counter") as excinfo:
        count_tokens(SOME_MESSAGES, model)
    assert model in str(excinfo.value)


@pytest.mark.parametrize("model", [None, 4, b"gpt-4o", ["gpt-4o"], ""])
def test_non_str_or_empty_model_is_refused(model: Any) -> None:
    with pytest.raises(InvalidInputError):
        count_tokens(SOME_MESSAGES, model)


# --- offline ---------------------------------------------------------------------------

_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json
    import socket
    import sys

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import msgspec
    from eventmem.messages import Message
    from eventmem.tokens import count_tokens

    messages = msgspec.json.decode(sys.argv[1], type=list[Message])
    print(json.dumps({model: count_tokens(messages, model) for model in sys.argv[2:]}))
    """
)


def test_counting_works_offline_with_an_empty_tiktoken_cache(tmp_path: Path) -> None:
    empty_cache = tmp_path / "tiktoken-cache"
    empty_cache.mkdir()
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(
        TIKTOKEN_CACHE_DIR=str(empty_cache),
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        PYTHONPATH=os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])]),
    )
    lc = all_lc_messages()
    models = ["gpt-4o", "gpt-4"]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _OFFLINE_SCRIPT,
            msgspec.json.encode([from_langchain(m) for m in lc]).decode(),
            *models,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {model: langchain_count(lc, model) for model in models}
    assert list(empty_cache.iterdir()) == []  # nothing was fetched or cached
