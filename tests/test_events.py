"""Event encoding: old events keep decoding, and the hash chain follows its recipe."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from eventmem.events import (
    GENESIS_HASH,
    MemoryCleared,
    SummaryRecorded,
    TurnSaved,
    chain_hash,
    decode_event,
    encode_event,
)
from eventmem.messages import Message, ToolCall
from eventmem.projection import fold

FIXTURES = Path(__file__).parent / "fixtures"


def test_events_written_by_schema_1_still_decode() -> None:
    lines = (FIXTURES / "events_schema1.jsonl").read_bytes().splitlines()
    events = [decode_event(line) for line in lines]
    assert [type(e) for e in events] == [TurnSaved, TurnSaved, MemoryCleared, TurnSaved]
    first, second, _, last = events
    assert isinstance(first, TurnSaved)
    assert first.messages[1].content == "It ships tomorrow. 📦"
    assert first.recount is None
    assert isinstance(second, TurnSaved)
    assert second.messages[1].tool_calls == (
        ToolCall(name="lookup", args={"order": 4411, "fields": ["eta", "carrier"]}, id="call_1"),
    )
    assert second.recount == (14, 13)
    assert isinstance(last, TurnSaved)
    assert last.model is None
    assert last.messages[1].function_call == {"name": "f", "arguments": "{}"}
    # Re-encoding is byte-identical: the canonical form (and so every hash) is stable.
    assert [encode_event(e) for e in events] == lines


def test_an_unknown_kind_is_a_decode_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"kind": "teleport"}')


def test_the_chain_hash_follows_the_documented_recipe() -> None:
    data = encode_event(
        TurnSaved(
            messages=(Message(role="human", content="hi"),),
            tokens=(4,),
            counter="openai-chat:o200k_base",
            overhead=3,
            max_token_limit=10,
        )
    )
    expected = hashlib.sha256(
        GENESIS_HASH + json.dumps(["s", 1, 1700000000000000]).replace(" ", "").encode() + data
    ).digest()
    assert chain_hash(GENESIS_HASH, "s", 1, 1700000000000000, data) == expected
    assert chain_hash(expected, "s", 2, 1700000000000000, data) != expected


def test_a_summary_buffers_events_as_first_written_still_decode() -> None:
    """Two turns and the summary of what the second pruned, as the first version with
    summary buffers wrote them."""
    lines = (FIXTURES / "events_summary_buffer.jsonl").read_bytes().splitlines()
    events = [decode_event(line) for line in lines]
    assert [type(e) for e in events] == [TurnSaved, TurnSaved, SummaryRecorded]
    summary = events[2]
    assert isinstance(summary, SummaryRecorded)
    assert (summary.first_seq, summary.end_seq, summary.previous) == (0, 2, 0)
    assert (summary.first_position, summary.last_position) == (1, 1)
    assert summary.model == "answer_for"
    assert len(summary.first_hash) == len(summary.prompt_sha256) == 64
    assert fold(events).summary == summary.summary
    assert [encode_event(e) for e in events] == lines
