"""Schema 5 (text once): a store written at schema 4 upgrades on both backends, keeps every
view and hash, and its buffer rows move to pointing at the log as the sessions go on.

``tests/fixtures/schema4.db`` was written by eventmem at schema 4
(``tests/fixtures/make_schema4.py``): conversation turns, agent turns with tool steps,
a general history with a pinned system message and a pop, and a clear. On PostgreSQL the
same rows are copied into a schema created at version 4.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql

import eventmem
from eventmem.projection import fold
from eventmem.store.migrate import known_migrations
from eventmem.store.postgres import schema as pg_schema
from tests.backends import POSTGRES_URL, drop_target, new_target, raw_database, schema_of

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "schema4.db"
SESSIONS = ["chat", "agent", "history", "cleared"]


def _fixture_rows() -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        return {
            "events": conn.execute(
                "SELECT session_id, position, kind, recorded_at, data, hash FROM events ORDER BY id"
            ).fetchall(),
            "sessions": conn.execute("SELECT * FROM sessions ORDER BY created_at").fetchall(),
            "view_messages": conn.execute("SELECT * FROM view_messages").fetchall(),
            "columns": conn.execute("SELECT name FROM pragma_table_info('sessions')").fetchall(),
        }
    finally:
        conn.close()


@pytest.fixture
def schema4_store(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A store at schema 4 holding the fixture's sessions."""
    if backend == "sqlite":
        path = tmp_path / "old.db"
        shutil.copyfile(FIXTURE, path)
        yield str(path)
        return
    target = new_target(backend, tmp_path)
    old = known_migrations("postgresql")[:4]
    monkeypatch.setattr(pg_schema, "known_migrations", lambda dialect: old)
    try:  # the schema, at version 4, as the migrator of that version left it
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            schema = schema_of(target)
            conn.execute(psql.SQL("SET search_path TO {}").format(psql.Identifier(schema)))
            pg_schema.apply_migrations(conn, schema)
    finally:
        monkeypatch.undo()
        _forget_expected_triggers()
    rows = _fixture_rows()
    columns = ", ".join(name for (name,) in rows["columns"])
    with raw_database(target) as raw:
        for row in rows["events"]:
            raw.execute(
                "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        for row in rows["sessions"]:
            raw.execute(
                f"INSERT INTO sessions ({columns}) VALUES ({', '.join('?' * len(row))})", row
            )
        for row in rows["view_messages"]:
            raw.execute(
                "INSERT INTO view_messages (session_id, seq, tokens, message) VALUES (?, ?, ?, ?)",
                row,
            )
    try:
        yield target
    finally:
        drop_target(target)


def _forget_expected_triggers() -> None:
    """The triggers a store should have are computed once from the migrations known:
    computed again when the fixture makes fewer known, and when it is done."""
    pg_schema._expected.cache_clear()
    pg_schema._tables.cache_clear()


def _view_rows(target: str) -> list[tuple[Any, ...]]:
    with raw_database(target) as raw:
        return raw.execute(
            "SELECT session_id, seq, position, idx, message IS NULL FROM view_messages"
            " ORDER BY session_id, seq"
        )


def _old_rows(target: str, where: str = "") -> list[tuple[Any, ...]]:
    with raw_database(target) as raw:
        return raw.execute(
            f"SELECT session_id, seq, tokens, message FROM view_messages {where}"
            " ORDER BY session_id, seq"
        )


async def test_a_schema_4_store_upgrades_with_every_view_and_hash(schema4_store: str) -> None:
    before = _old_rows(schema4_store)
    assert len(before) == 29
    async with eventmem.open(schema4_store) as store:
        assert sorted(await store.sessions()) == sorted(SESSIONS)
        for session in SESSIONS:
            events = [e.data async for e in store.events(session)]
            assert await store.messages(session) == fold(events).messages
        report = await store.verify()
        assert report.ok, report.problems
    # the rows kept their messages: nothing was rewritten but the table's shape
    assert _old_rows(schema4_store, "WHERE position IS NULL AND idx IS NULL") == before


async def test_new_rows_point_at_the_log_and_old_ones_go_as_they_are_pruned(
    schema4_store: str,
) -> None:
    async with eventmem.open(schema4_store) as store:
        chat = store.token_buffer("chat", max_token_limit=120)
        for i in range(12, 30):
            await chat.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        history = store.history("history", max_tokens=90)
        await history.append([eventmem.Message(role="human", content="one more")])
        expected = {s: await store.messages(s) for s in SESSIONS}
        assert (await store.verify()).ok
    rows = {(s, seq): (p, i, no_text) for s, seq, p, i, no_text in _view_rows(schema4_store)}
    chat_rows = [v for (s, _), v in rows.items() if s == "chat"]
    assert chat_rows
    assert all(p is not None and no_text for p, _, no_text in chat_rows)
    # the pinned system message of the history is still a row from schema 4
    history_rows = sorted((seq, v) for (s, seq), v in rows.items() if s == "history")
    assert history_rows[0][1][0] is None
    assert history_rows[-1][1][0] is not None
    async with eventmem.open(schema4_store) as store:
        assert {s: await store.messages(s) for s in SESSIONS} == expected
        assert await store.rebuild() == len(SESSIONS)
        assert all(p is not None and no_text for _, _, p, _, no_text in _view_rows(schema4_store))
        assert {s: await store.messages(s) for s in SESSIONS} == expected
        assert (await store.verify()).ok


async def test_a_forged_old_style_row_is_found(schema4_store: str) -> None:
    with raw_database(schema4_store) as raw:
        raw.execute(
            "UPDATE view_messages SET message = replace(message, 'day 9', 'day 99')"
            " WHERE session_id = 'chat'"
        )
    async with eventmem.open(schema4_store) as store:
        report = await store.verify()
        assert [(p.session_id, p.kind) for p in report.problems] == [
            ("chat", "projection_mismatch")
        ]


async def test_a_summary_buffer_prunes_rows_from_before_schema_5(schema4_store: str) -> None:
    """A row from schema 4 holds its message but not the event holding it: the summary of
    a save that prunes such rows still names the right positions and hashes."""
    async with eventmem.open(schema4_store) as store:
        view = await store.messages("chat")
        memory = store.summary_buffer("chat", llm=lambda prompt: "so far", max_token_limit=120)
        await memory.asave_context({"input": "one more question"}, {"output": "one more answer"})
        events = [e async for e in store.events("chat")]
        summary = events[-1].data
        assert isinstance(summary, eventmem.SummaryRecorded)
        turns = {e.position: e for e in events if isinstance(e.data, eventmem.TurnSaved)}
        first = turns[summary.first_position]
        assert isinstance(first.data, eventmem.TurnSaved)
        assert first.data.messages[0] == view[0] or first.data.messages[1] == view[0]
        assert summary.first_hash == first.hash
        assert summary.last_hash == events[summary.last_position - 1].hash
        assert (await store.verify()).ok
        assert await memory.amoving_summary_buffer() == "so far"


async def test_a_store_upgraded_from_schema_4_forks_and_rewinds(schema4_store: str) -> None:
    async with await eventmem.open(schema4_store) as store:
        for session in await store.sessions():
            version = await store.version(session)
            views = [await store.messages(session, as_of=p) for p in range(version + 1)]
            middle = version // 2
            await store.fork(session, f"{session}/fork", at=middle)
            assert await store.messages(f"{session}/fork") == views[middle]
            await store.rewind(session, to=middle)
            assert await store.messages(session) == views[middle]
        report = await store.verify()
        assert report.ok, report.problems
