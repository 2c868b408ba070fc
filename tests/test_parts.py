"""The token rule for content parts (``eventmem._parts``), against langchain-openai
where it counts the same thing: text parts and low-detail images exactly, image sizes by
its own formula; the rest as documented."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import HumanMessage
from langchain_openai.chat_models.base import _count_image_tokens

import eventmem
from eventmem import Message
from eventmem._parts import UNKNOWN_IMAGE_TOKENS, count_parts, image_size, image_tokens
from tests.reference import chat_openai, examples

COUNTER = eventmem.OpenAIChatCounter("gpt-4o")


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def png(width: int, height: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height)
    )


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 8


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc2" + struct.pack(">HBHH", 17, 8, height, width) + b"\x00" * 10
    return b"\xff\xd8" + app0 + sof


def webp(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


sizes = st.tuples(st.integers(1, 9000), st.integers(1, 9000))


@given(size=sizes, kind=st.sampled_from([png, gif, jpeg, webp]))
@examples("full", 200)
def test_image_sizes_are_read_from_data_urls(size: tuple[int, int], kind: object) -> None:
    width, height = size
    if kind is gif:
        width, height = min(width, 65535), min(height, 65535)
    raw = kind(width, height)  # type: ignore[operator]
    assert image_size(data_url(raw)) == (width, height)


@given(size=sizes)
@examples("full", 200)
def test_a_sized_image_costs_what_openai_publishes(size: tuple[int, int]) -> None:
    part = {"type": "image_url", "image_url": {"url": data_url(png(*size))}}
    assert image_tokens(part) == _count_image_tokens(*size)


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,not-an-image"}},
        {"type": "image", "url": "https://example.test/cat.png"},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/x.png"}},
    ],
)
def test_an_image_of_unknown_size_counts_as_1024_square(part: dict[str, object]) -> None:
    # langchain-openai would fetch the URL (or count 0 when it may not): eventmem never
    # fetches, and never counts an image as free.
    assert image_tokens(part) == UNKNOWN_IMAGE_TOKENS == _count_image_tokens(1024, 1024)


def test_every_image_shape_is_read() -> None:
    raw = base64.b64encode(png(640, 480)).decode()
    shapes = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{raw}"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": raw}},
        {"type": "image", "base64": raw, "mime_type": "image/png"},
    ]
    assert {image_tokens(part) for part in shapes} == {_count_image_tokens(640, 480)}
    low = {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}
    assert image_tokens(low) == 85


words = st.lists(st.sampled_from(["word", "δέλτα", "📦", " ", "\n", "x" * 30]), max_size=20).map(
    "".join
)


@given(
    parts=st.lists(
        st.one_of(
            words,
            words.map(lambda t: {"type": "text", "text": t}),
            st.just(
                {"type": "image_url", "image_url": {"url": "https://x.test/a", "detail": "low"}}
            ),
        ),
        max_size=5,
    ),
    model=st.sampled_from(["gpt-4o", "gpt-4", "gpt-3.5-turbo"]),
)
@examples("full", 150)
def test_text_parts_count_as_langchain_openai_counts_them(
    parts: list[str | dict[str, object]], model: str
) -> None:
    counter = eventmem.OpenAIChatCounter(model)
    message = Message(role="human", content=tuple(parts))
    theirs = chat_openai(model).get_num_tokens_from_messages([HumanMessage(content=parts)])  # type: ignore[arg-type]
    assert counter.overhead + counter.count_message(message) == theirs


def test_other_parts_count_their_json_and_long_data_by_length() -> None:
    length = len
    audio = {"type": "input_audio", "input_audio": {"data": "A" * 4000, "format": "wav"}}
    short = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    assert count_parts([audio], length) == count_parts([short], length) + 1000
    # Blocks langchain-openai leaves out of a chat-completions request cost nothing.
    assert count_parts([{"type": "thinking", "thinking": "hmm " * 50}], length) == 0
    assert count_parts([{"type": "file", "file": {"file_id": "f-1"}}], length) > 0


def test_a_message_with_parts_is_counted_by_the_rule() -> None:
    message = Message(
        role="human",
        content=("hi", {"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}}),
    )
    plain = Message(role="human", content="hi")
    assert COUNTER.count_message(message) == COUNTER.count_message(plain) + 85
