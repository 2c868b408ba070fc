"""Schema migrations: a database written by an earlier eventmem opens and upgrades."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import eventmem
from eventmem.events import TurnSaved
from eventmem.projection import fold
from eventmem.store.migrate import known_migrations

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"


def _migrations(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT version, name FROM eventmem_migrations ORDER BY 1").fetchall()
    finally:
        conn.close()


def test_bundled_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in known_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 2


async def test_a_new_store_records_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    for _ in range(3):
        async with eventmem.open(path):
            pass
    assert _migrations(path) == [(m.version, m.name) for m in known_migrations()]


async def test_a_schema_1_database_upgrades_and_keeps_its_history(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "schema1.db", path)
    assert _migrations(path) == [(1, "initial")]

    async with eventmem.open(path) as store:
        assert await store.sessions() == ["support-7", "other"]
        events = [e async for e in store.events("support-7")]
        assert len(events) == 6
        assert all(isinstance(e.data, TurnSaved) for e in events)
        view = await store.messages("support-7")
        assert fold([e.data for e in events]).messages == view
        assert [m.content for m in view] == [
            "question 4 about order #444",
            "answer 4: it ships on day 4",
            "question 5 about order #445",
            "answer 5: it ships on day 5",
        ]
        assert await store.messages("other") == []
        mem = store.token_buffer("support-7", max_token_limit=60)
        await mem.asave_context({"input": "and order #446?"}, {"output": "tomorrow"})
        assert (await store.messages("support-7"))[-1].content == "tomorrow"
        # Sessions written before general messages take them: the system message that
        # begins an empty view is pinned, one added to a view in progress is not.
        system = eventmem.Message(role="system", content="You are the support desk.")
        for session in ("other", "support-7"):
            history = store.history(session, max_tokens=40)
            await history.append([system])
            for i in range(4):
                await history.append([eventmem.Message(role="human", content=f"hello {i}")])
        assert (await store.messages("other"))[0] == system
        assert system not in await store.messages("support-7")
        assert (await store.verify()).ok
    assert _migrations(path) == [(m.version, m.name) for m in known_migrations()]


async def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "schema1.db", path)
    conn = sqlite3.connect(path)
    # A column migration 2 wants to add is already there, so migration 2 fails.
    conn.execute("ALTER TABLE sessions ADD COLUMN turn_position INTEGER")
    conn.commit()
    conn.close()
    with pytest.raises(eventmem.MigrationError, match="0002_agent_steps"):
        await eventmem.open(path)
    assert _migrations(path) == [(1, "initial")]
