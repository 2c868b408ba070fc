"""Rebuild folds events with their messages left as stored JSON (``SessionFold.add_stored``).

The fold is the same :func:`eventmem.projection.apply`; only the decoding differs. These
tests pin down that it gives exactly the rows of the fully decoded fold, including for
event JSON that is valid but not in eventmem's canonical encoding.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

import eventmem
from eventmem.audit import (
    EXPORT_FORMAT,
    ExportEnd,
    ExportHeader,
    SessionFold,
    _decode_stored,
    _StoredStep,
    _StoredTurn,
    export_line,
)
from eventmem.events import (
    GENESIS_HASH,
    Event,
    MemoryCleared,
    MessagesAppended,
    StepRecorded,
    TurnSaved,
    chain_hash,
    decode_event,
)
from eventmem.messages import Message, decode_trusted
from eventmem.projection import fold
from tests.test_audit import _populate

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"
_message = msgspec.json.Decoder(Message).decode
_Row = tuple[str, int, int, bytes, bytes, bytes | None]


def _rows(db: Path) -> list[_Row]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT session_id, position, recorded_at, CAST(data AS BLOB), hash, digest FROM events"
        " ORDER BY id"
    ).fetchall()
    conn.close()
    return rows


def _table(db: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(db)
    rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


def _canonical(message: Message) -> str:
    return msgspec.json.encode(message).decode()


async def _mixed_store(db: Path) -> None:
    """Conversation turns, clears, live and saved agent steps with tool calls (pair-safe
    pruning), non-ASCII text, a summary buffer's summaries."""
    async with eventmem.open(db) as store:
        await _populate(store, sessions=2, turns=9)
        chat = store.token_buffer("unicode", max_token_limit=60)
        for t in range(8):
            await chat.asave_context({"input": f"café {t} 📦 \u2028"}, {"output": f'"{t}"\\'})
        summarised = store.summary_buffer(
            "summary", llm=lambda p: f"sum {len(p)} ✓", max_token_limit=40
        )
        for t in range(8):
            await summarised.asave_context({"input": f"question {t} " * t}, {"output": f"é {t}"})


def test_the_stored_union_covers_every_event_kind() -> None:
    def tag(cls: Any) -> str:
        return str(cls.__struct_config__.tag)

    stored = {
        _StoredTurn,
        _StoredStep,
        eventmem.MessagesAppended,
        MemoryCleared,
        eventmem.MessagesRetracted,
        eventmem.SummaryRecorded,
        eventmem.SessionForked,
        eventmem.ViewRewound,
        eventmem.SessionErased,
        eventmem.SessionSealed,
        eventmem.ContentErased,
        eventmem.CheckpointSaved,
        eventmem.CheckpointWritesSaved,
        eventmem.CheckpointsDeleted,
    }
    assert {tag(c) for c in stored} == {tag(c) for c in get_args(Event)}
    assert msgspec.structs.fields(_StoredTurn)[1:] == msgspec.structs.fields(TurnSaved)[1:]


async def test_stored_messages_are_their_canonical_encoding(tmp_path: Path) -> None:
    # Why rows could be written from the stored bytes: eventmem encodes each message of an
    # event exactly as the projection stores it (rebuild still re-encodes to be exact).
    db = tmp_path / "s.db"
    await _mixed_store(db)
    rows = _rows(db)
    fixtures = (FIXTURES / "events_schema1.jsonl").read_bytes().splitlines()
    checked = 0
    for data in [row[3] for row in rows] + fixtures:
        event = _decode_stored(data)
        if not isinstance(event, (_StoredTurn, _StoredStep)):
            continue
        for raw in event.messages:
            assert isinstance(raw, msgspec.Raw)
            assert bytes(raw) == _canonical(decode_trusted(_message, raw)).encode()
            checked += 1
    assert checked > 100


async def test_fold_stored_gives_the_rows_of_the_checked_fold(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await _mixed_store(db)
    checked: dict[str, SessionFold] = {}
    stored: dict[str, SessionFold] = {}
    events: dict[str, list[Event]] = {}
    for session_id, position, recorded_at, data, digest, content in _rows(db):
        a = checked.setdefault(session_id, SessionFold(session_id, trusted=True))
        assert a.add(position, recorded_at, data, digest, content=content) is None
        b = stored.setdefault(session_id, SessionFold(session_id, trusted=True))
        assert b.add_stored(position, recorded_at, data, digest, a.last_kind, content) is None
        events.setdefault(session_id, []).append(decode_event(data))
    assert any(
        e.prune == "pair_safe" for es in events.values() for e in es if isinstance(e, TurnSaved)
    )
    for session_id, a in checked.items():
        b = stored[session_id]
        expected = fold(events[session_id])
        assert a.view_rows() == b.view_rows()
        assert [row[1:] for row in b.view_rows()] == [
            (e.seq, e.tokens, e.position, e.index, None) for e in expected.entries
        ]
        for e in expected.entries:  # each row points at the event holding its message
            holder = events[session_id][e.position - 1]
            assert isinstance(holder, (TurnSaved, StepRecorded, MessagesAppended))
            assert _canonical(holder.messages[e.index]) == _canonical(e.message)
        for attr in ("watermark", "next_seq", "total_tokens", "overhead", "counter"):
            assert getattr(b.buffer, attr) == getattr(expected, attr), attr
        assert len(b.buffer.pending) == len(expected.pending)
        assert b.state == a.state
    async with eventmem.open(db) as store:
        before = _table(db, "SELECT * FROM view_messages ORDER BY session_id, seq")
        assert await store.rebuild() == len(checked)
        assert _table(db, "SELECT * FROM view_messages ORDER BY session_id, seq") == before
        assert (await store.verify()).ok


_NON_CANONICAL = [
    b'{ "kind": "turn", "tokens": [5, 6], "counter": "c", "overhead": 3,'
    b' "max_token_limit": 13, "messages": [ {"content": "caf\\u00e9", "role": "human",'
    b' "name": null}, {"role":"ai","content":"one \\"two\\"", "tool_calls": []} ] }',
    b'{"kind":"turn","messages":[{"role":"human","content":"\\ud83d\\udce6 x"},'
    b'{"role": "ai", "content": "a\\/b", "id": null}],"tokens":[4,3],"counter":"c",'
    b'"overhead":3,"max_token_limit":13}',
]


def _non_canonical_rows() -> list[tuple[str, int, str, int, str, bytes]]:
    """One session whose event JSON is valid but not as eventmem writes it: spaces,
    another key order, a default written out, escaped non-ASCII; correctly chained."""
    rows = []
    previous = GENESIS_HASH
    for position, data in enumerate(_NON_CANONICAL, start=1):
        recorded_at = 1_700_000_000_000_000 + position
        digest = chain_hash(previous, "odd", position, recorded_at, data)
        rows.append(("odd", position, "turn", recorded_at, data.decode(), digest))
        previous = digest
    return rows


def _non_canonical_session() -> list[bytes]:
    """The session of :func:`_non_canonical_rows` as an export file."""
    lines = [msgspec.json.encode(ExportHeader(EXPORT_FORMAT, 1))]
    for session, position, kind, recorded_at, data, digest in _non_canonical_rows():
        lines.append(export_line(session, position, recorded_at, kind, data.encode(), digest))
    lines.append(msgspec.json.encode(ExportEnd(EXPORT_FORMAT, len(_NON_CANONICAL))))
    return lines


async def test_an_import_refuses_event_json_eventmem_would_not_write(tmp_path: Path) -> None:
    """Only canonical JSON enters a store through an import: no field this eventmem
    ignores can be planted for a later one to misread."""
    async with eventmem.open(tmp_path / "odd.db") as store:
        with pytest.raises(eventmem.ImportRefusedError, match="not the JSON eventmem writes"):
            await store.import_events(_non_canonical_session())
        assert await store.count_events() == 0


async def test_non_canonical_event_json_rebuilds_to_canonical_rows(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    async with eventmem.open(db):
        pass
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany(
        "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        _non_canonical_rows(),
    )
    conn.close()
    async with eventmem.open(db) as store:
        assert await store.rebuild() == 1
        imported = _table(db, "SELECT * FROM view_messages ORDER BY seq")
        # the rows point at the second event's messages; their text is read from it
        assert [row[3:] for row in imported] == [(2, 0, None), (2, 1, None)]
        assert (await store.verify()).ok
        assert await store.rebuild() == 1
        assert _table(db, "SELECT * FROM view_messages ORDER BY seq") == imported
        assert (await store.verify()).ok
        assert [m.content for m in await store.messages("odd")] == ["📦 x", "a/b"]
