"""The rows of docs/threat-model.md that no other test shows: what an attacker with the
database's files, or a login to it, can do, and what finds it (or that nothing does).

Each test does the damage with plain SQL around eventmem (:class:`tests.backends.
RawDatabase`) on a real SQLite file or the real PostgreSQL server, then asks verify,
an anchor or an import. A "not detected" test pins a blind spot the page documents: if
eventmem starts finding it, the test fails and the page must change with it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

import eventmem
from eventmem.audit import export_line
from eventmem.events import ERASED_DATA, GENESIS_HASH, content_digest, encode_event
from tests.backends import (
    POSTGRES_URL,
    RawDatabase,
    backend_of,
    fresh_target,
    raw_database,
    rehash,
    schema_of,
)
from tests.test_audit import _export, _populate

pytestmark = pytest.mark.anyio

KEY = b"an anchor secret kept off the machine"
SECRET = "my passport number is 12-34-56"
# _populate(sessions=2, turns=4) gives chat-1 five events: three turns, a clear, a turn.
CHAT_EVENTS = 5

Finding = tuple[str, int, str]


def _found(report: eventmem.VerifyReport) -> list[Finding]:
    return [(p.session_id, p.position, p.kind) for p in report.problems]


async def _findings(target: str, anchors: tuple[eventmem.Anchor, ...] = ()) -> list[Finding]:
    async with eventmem.open(target) as store:
        return _found(await store.verify(anchors=anchors, key=KEY if anchors else None))


async def _populated(target: str, *, erase: bool = False) -> eventmem.Anchor:
    """Two chats and two agents; with ``erase``, chat-1 erased. The anchor taken before
    the erasure (kept outside the store)."""
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)
        anchor = await store.anchor(KEY)
        if erase:
            await store.erase("chat-1", reason="user request", by="dpo")
        assert (await store.verify()).ok
    return anchor


@contextmanager
def _tampering(target: str) -> Iterator[RawDatabase]:
    """Raw SQL with the immutability triggers off, switched back on afterwards."""
    with raw_database(target) as raw:
        raw.allow_tampering()
        yield raw
        raw.restore_triggers()


def _text(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _events(raw: RawDatabase, session: str) -> list[tuple[Any, ...]]:
    """(position, recorded_at, data, hash, digest) of the session's events, in order."""
    return [
        (position, recorded_at, _text(data), bytes(digest), content and bytes(content))
        for position, recorded_at, data, digest, content in raw.execute(
            "SELECT position, recorded_at, data, hash, digest FROM events"
            " WHERE session_id = ? ORDER BY position",
            (session,),
        )
    ]


async def _rebuilt_head(target: str, session: str) -> None:
    """The session's head and buffer rows dropped and rebuilt from its (damaged) events,
    as an attacker covering a chain they made whole would leave them."""
    with raw_database(target) as raw:
        raw.execute("DELETE FROM sessions WHERE session_id = ?", (session,))
        raw.execute("DELETE FROM view_messages WHERE session_id = ?", (session,))
    async with eventmem.open(target) as store:
        await store.rebuild()


# -- edits of content ---------------------------------------------------------------------


async def test_content_edited_with_its_digest_recomputed_breaks_the_chain(target: str) -> None:
    await _populated(target)
    with _tampering(target) as raw:
        data = _events(raw, "chat-1")[1][2]
        edited = data.replace(b"q1", b"qX")
        assert edited != data
        raw.execute(
            "UPDATE events SET data = ?, digest = ? WHERE session_id = 'chat-1' AND position = 2",
            (edited.decode(), content_digest(edited)),
        )
    assert await _findings(target) == [("chat-1", 2, "hash_mismatch")]


async def test_a_rechain_from_the_edit_on_shows_in_the_head_until_it_is_rebuilt(
    target: str,
) -> None:
    anchor = await _populated(target)
    with _tampering(target) as raw:
        raw.rechain("chat-1", lambda position, data: data.replace(b"q1", b"qX"))
    # every hash from position 2 on recomputed: the chain holds, the head names the old one
    assert await _findings(target) == [("chat-1", CHAT_EVENTS, "projection_mismatch")]
    await _rebuilt_head(target, "chat-1")
    assert await _findings(target) == []
    assert await _findings(target, (anchor,)) == [("chat-1", CHAT_EVENTS, "anchor_rewritten")]


# -- order ---------------------------------------------------------------------------------


async def test_events_of_two_sessions_swapped_in_the_global_order_go_unnoticed(
    target: str,
) -> None:
    """Each chain orders its own session; the order between sessions (the ``id``
    column, what exports and the global position follow) is covered by no hash."""
    anchor = await _populated(target)
    columns = "id, session_id, position, kind, recorded_at, data, hash, digest"
    with _tampering(target) as raw:
        rows = raw.execute(f"SELECT {columns} FROM events ORDER BY id")
        first, second = next((a, b) for a, b in itertools.pairwise(rows) if a[1] != b[1])
        raw.execute("DELETE FROM events WHERE id IN (?, ?)", (first[0], second[0]))
        overriding = " OVERRIDING SYSTEM VALUE" if raw.backend == "postgresql" else ""
        for row, new_id in ((first, second[0]), (second, first[0])):
            raw.execute(
                f"INSERT INTO events ({columns}){overriding} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (new_id, *row[1:]),
            )
        swapped = raw.execute(f"SELECT {columns} FROM events ORDER BY id")
    assert swapped != rows  # the two sessions' events now come the other way round
    assert await _findings(target, (anchor,)) == []


async def test_an_event_appended_with_its_hash_through_a_database_login_is_not_detected(
    target: str,
) -> None:
    """With the triggers on, an insert at the next position is what a save is: one
    whose hash follows the rule is a real event to verify, and to an anchor (a session
    may grow after it)."""
    anchor = await _populated(target)
    with raw_database(target) as raw:
        *_, (position, recorded_at, data, last_hash, _) = _events(raw, "chat-1")
        (kind,) = raw.execute(
            "SELECT kind FROM events WHERE session_id = 'chat-1' AND position = ?", (position,)
        )[0]
        digest, content = rehash(last_hash, "chat-1", position + 1, recorded_at + 1, data)
        raw.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES ('chat-1', ?, ?, ?, ?, ?, ?)",
            (position + 1, kind, recorded_at + 1, data.decode(), digest, content),
        )
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 1, "projection_mismatch")]
    await _rebuilt_head(target, "chat-1")
    assert await _findings(target, (anchor,)) == []
    async with eventmem.open(target) as store:
        assert await store.version("chat-1") == CHAT_EVENTS + 1


# -- the kind column -------------------------------------------------------------------------


async def test_the_kind_column_of_an_erased_event_is_not_checked(target: str) -> None:
    """An erased event keeps its ``kind`` column, outside the hash, and no content to
    compare it with (before the erasure the same change is ``kind_mismatch``)."""
    anchor = await _populated(target, erase=True)
    with _tampering(target) as raw:
        raw.execute("UPDATE events SET kind = 'clear' WHERE session_id = 'chat-1' AND position = 2")
        (kind,) = raw.execute(
            "SELECT kind FROM events WHERE session_id = 'chat-1' AND position = 2"
        )
    assert kind == ("clear",)
    assert await _findings(target, (anchor,)) == []


# -- erasure -------------------------------------------------------------------------------


async def test_an_erased_session_whose_head_says_otherwise_is_a_projection_mismatch(
    target: str,
) -> None:
    await _populated(target, erase=True)
    with raw_database(target) as raw:
        raw.execute("UPDATE sessions SET erased = 0 WHERE session_id = 'chat-1'")
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 1, "projection_mismatch")]
    async with eventmem.open(target) as store:
        await store.rebuild()
        assert (await store.verify()).ok
        with pytest.raises(eventmem.ErasedSessionError):
            await store.messages("chat-1")


MARKED: list[tuple[str, str, int]] = [
    ("every event", "", CHAT_EVENTS),  # the run of erased events has no tombstone after it
    ("the first three", " AND position <= 3", 4),  # the event after them is no tombstone
    ("one in the middle", " AND position = 3", 3),  # the events before it were not erased
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(("where", "position"), [m[1:] for m in MARKED], ids=[m[0] for m in MARKED])
async def test_the_erased_marker_without_a_tombstone_is_reported(
    target: str, where: str, position: int
) -> None:
    await _populated(target)
    update = f"UPDATE events SET data = ? WHERE session_id = 'chat-1'{where}"
    with raw_database(target) as raw, pytest.raises((sqlite3.Error, psycopg.Error)):
        raw.execute(update, (ERASED_DATA.decode(),))  # the trigger: no tombstone after them
    with _tampering(target) as raw:
        raw.execute(update, (ERASED_DATA.decode(),))
    assert await _findings(target) == [("chat-1", position, "undecodable")]


def _rewrite_tombstone(raw: RawDatabase, session: str, **changes: Any) -> None:
    """Replace fields of the session's tombstone (its last event) and re-chain it, its
    head row following."""
    *_, (_, _, _, previous, _), (position, recorded_at, data, _, _) = _events(raw, session)
    tombstone = msgspec.json.decode(data, type=eventmem.SessionErased)
    forged = encode_event(msgspec.structs.replace(tombstone, **changes))
    digest, content = rehash(previous, session, position, recorded_at, forged)
    raw.execute(
        "UPDATE events SET data = ?, hash = ?, digest = ? WHERE session_id = ? AND position = ?",
        (forged.decode(), digest, content, session, position),
    )
    raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = ?", (digest, session))


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    "changes",
    [{"events": 2}, {"events": CHAT_EVENTS + 1}, {"last_hash": "ab" * 32}],
    ids=["fewer events", "more events", "another last hash"],
)
async def test_a_forged_tombstone_count_is_reported(target: str, changes: dict[str, Any]) -> None:
    await _populated(target, erase=True)
    with _tampering(target) as raw:
        _rewrite_tombstone(raw, "chat-1", **changes)
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 1, "undecodable")]


async def test_a_tombstone_that_erased_nothing_is_reported(target: str) -> None:
    """A tombstone counting no erased events, appended (the triggers on) to a session
    whose events keep their content: reads would refuse the session as erased while its
    content is all there. An erasure erases every event of the session before it."""
    await _populated(target)
    with raw_database(target) as raw:
        *_, (position, recorded_at, _, last_hash, _) = _events(raw, "chat-1")
        data = encode_event(eventmem.SessionErased("r", events=0, last_hash=last_hash.hex()))
        digest, content = rehash(last_hash, "chat-1", position + 1, recorded_at + 1, data)
        raw.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES ('chat-1', ?, 'erase', ?, ?, ?, ?)",
            (position + 1, recorded_at + 1, data.decode(), digest, content),
        )
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 1, "undecodable")]


async def test_an_event_appended_after_a_tombstone_is_reported(target: str) -> None:
    """An erased session takes no more writes; one inserted after its tombstone with a
    hash that follows the rule (the triggers on) is found."""
    await _populated(target, erase=True)
    with raw_database(target) as raw:
        *_, (position, recorded_at, _, last_hash, _) = _events(raw, "chat-1")
        (_, _, data, _, _) = _events(raw, "chat-0")[0]  # a turn of another session
        digest, content = rehash(last_hash, "chat-1", position + 1, recorded_at + 1, data)
        raw.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES ('chat-1', ?, 'turn', ?, ?, ?, ?)",
            (position + 1, recorded_at + 1, data.decode(), digest, content),
        )
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 2, "undecodable")]


async def test_erased_content_put_back_from_a_backup_is_reported(target: str) -> None:
    await _populated(target)
    with raw_database(target) as raw:
        backup = _events(raw, "chat-1")
    async with eventmem.open(target) as store:
        await store.erase("chat-1", reason="user request")
    with _tampering(target) as raw:
        for position, _, data, _, _ in backup:
            raw.execute(
                "UPDATE events SET data = ? WHERE session_id = 'chat-1' AND position = ?",
                (data.decode(), position),
            )
    # every digest matches again, but the tombstone counts five erased events, not none
    assert await _findings(target) == [("chat-1", CHAT_EVENTS + 1, "undecodable")]


async def test_an_erased_session_rechained_wholesale_is_caught_only_by_an_earlier_anchor(
    target: str,
) -> None:
    before_erasure = await _populated(target, erase=True)
    async with eventmem.open(target) as store:
        after_erasure = await store.anchor(KEY)
    with _tampering(target) as raw:
        # another story: a different erasure (who and why), every hash recomputed
        previous = GENESIS_HASH
        for position, recorded_at, data, _, _ in _events(raw, "chat-1"):
            if data != ERASED_DATA:
                tombstone = msgspec.json.decode(data, type=eventmem.SessionErased)
                data = encode_event(
                    msgspec.structs.replace(
                        tombstone, reason="routine cleanup", by="nobody", last_hash=previous.hex()
                    )
                )
            previous, content = rehash(previous, "chat-1", position, recorded_at, data)
            raw.execute(
                "UPDATE events SET data = ?, hash = ?, digest = ?"
                " WHERE session_id = 'chat-1' AND position = ?",
                (data.decode(), previous, content, position),
            )
    await _rebuilt_head(target, "chat-1")
    assert await _findings(target) == []
    assert await _findings(target, (before_erasure,)) == [
        ("chat-1", CHAT_EVENTS, "anchor_rewritten")
    ]
    assert await _findings(target, (after_erasure,)) == [
        ("chat-1", CHAT_EVENTS + 1, "anchor_rewritten")
    ]
    async with eventmem.open(target) as store:
        (*_, last) = [e async for e in store.events("chat-1")]
    assert isinstance(last.data, eventmem.SessionErased)
    assert last.data.by == "nobody"


async def test_an_erasure_forged_through_a_database_login_is_not_detected(target: str) -> None:
    """The triggers let an erasure's change through once a tombstone is there, and the
    tombstone is an insert like any other: whoever may insert and update events can
    erase a session, and an erasure keeps every hash, so an anchor holds too."""
    anchor = await _populated(target)
    with raw_database(target) as raw:  # the triggers stay on
        *_, (position, recorded_at, _, last_hash, _) = _events(raw, "chat-1")
        tombstone = eventmem.SessionErased(
            "forged", events=position, last_hash=last_hash.hex(), by="the real dpo"
        )
        data = encode_event(tombstone)
        digest, content = rehash(last_hash, "chat-1", position + 1, recorded_at + 1, data)
        raw.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES ('chat-1', ?, 'erase', ?, ?, ?, ?)",
            (position + 1, recorded_at + 1, data.decode(), digest, content),
        )
        raw.execute(
            "UPDATE events SET data = ? WHERE session_id = 'chat-1' AND position <= ?",
            (ERASED_DATA.decode(), position),
        )
    await _rebuilt_head(target, "chat-1")
    assert await _findings(target, (anchor,)) == []
    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.ErasedSessionError):
            await store.messages("chat-1")


async def test_a_digest_confirms_a_guess_of_erased_content(target: str) -> None:
    """The digest an erased event keeps is the SHA-256 of its JSON, unsalted: whoever
    holds (or guesses) the exact JSON can check it against the store."""
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": SECRET}, {"output": "noted"})
    with raw_database(target) as raw:
        ((_, _, original, _, _),) = _events(raw, "s")
    async with eventmem.open(target) as store:
        await store.erase("s", reason="user request")
    with raw_database(target) as raw:
        (_, _, data, _, digest), _ = _events(raw, "s")
    assert data == ERASED_DATA
    assert SECRET.encode() in original
    assert digest == content_digest(original)
    assert digest != content_digest(original.replace(b"12-34-56", b"12-34-57"))


# -- imports and backups -----------------------------------------------------------------------


def _forged_export(lines: list[bytes], session: str) -> list[bytes]:
    """The export with ``session``'s first question changed and its chain recomputed:
    a file whose every hash is consistent."""
    forged, previous = [], GENESIS_HASH
    for line in lines:
        row = msgspec.json.decode(line)
        if not isinstance(row, dict) or row.get("session_id") != session:
            forged.append(line)
            continue
        event = msgspec.json.decode(line, type=eventmem.audit.ExportLine)
        data = bytes(event.data).replace(b'"q0 "', b'"qX "')
        previous, content = rehash(previous, session, event.position, event.recorded_at, data)
        assert content is not None
        forged.append(
            export_line(
                session, event.position, event.recorded_at, event.kind, data, previous, content
            )
            + b"\n"
        )
    return forged


async def test_a_forged_export_with_consistent_hashes_imports_and_an_anchor_finds_it(
    target: str, backend: str, tmp_path: Path
) -> None:
    anchor = await _populated(target)
    async with eventmem.open(target) as store:
        lines = await _export(store)
    forged = _forged_export(lines, "chat-1")
    assert forged != lines
    with fresh_target(backend, tmp_path) as copy:
        async with eventmem.open(copy) as store:
            assert await store.import_events(forged) == (4, len(lines) - 2)
            assert (await store.verify()).ok
            messages = await store.messages("chat-1", as_of=1)
            assert messages[0].content == "qX "
        assert await _findings(copy, (anchor,)) == [("chat-1", CHAT_EVENTS, "anchor_rewritten")]


async def test_a_store_rolled_back_to_a_backup_verifies_and_a_later_anchor_finds_it(
    target: str, backend: str, tmp_path: Path
) -> None:
    await _populated(target)
    async with eventmem.open(target) as store:
        backup = await _export(store)
        await store.token_buffer("chat-1").asave_context({"input": "later"}, {"output": "yes"})
        await store.token_buffer("new").asave_context({"input": "hi"}, {"output": "hello"})
        anchor = await store.anchor(KEY)
    with fresh_target(backend, tmp_path) as restored:  # the old copy put in its place
        async with eventmem.open(restored) as store:
            await store.import_events(backup)
            assert (await store.verify()).ok
        assert sorted(await _findings(restored, (anchor,))) == [
            ("chat-1", CHAT_EVENTS + 1, "anchor_truncated"),
            ("new", 1, "anchor_session_missing"),
        ]


# -- reading ------------------------------------------------------------------------------


async def test_content_is_stored_in_the_clear(target: str) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": SECRET}, {"output": "noted"})
    if backend_of(target) == "sqlite":
        assert SECRET.encode() in Path(target).read_bytes()  # closed: the WAL is in the file
    with raw_database(target) as raw:
        assert any(SECRET.encode() in row[2] for row in _events(raw, "s"))


def _sqlite_bytes(path: Path) -> bytes:
    """The database file and its companions, as whoever can read the directory sees them."""
    return b"".join(
        p.read_bytes()
        for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm")))
        if p.exists()
    )


async def _sqlite_store_with_secret(tmp_path: Path) -> Path:
    path = tmp_path / "agent.db"
    async with eventmem.open(path) as store:
        for i in range(20):  # over many pages, beside other sessions' events
            await store.token_buffer("s").asave_context(
                {"input": f"{SECRET} {i}"}, {"output": "ok"}
            )
            await store.token_buffer("other").asave_context({"input": f"q{i}"}, {"output": "a"})
    assert SECRET.encode() in _sqlite_bytes(path)
    return path


async def test_after_an_erasure_no_sqlite_file_holds_the_content(tmp_path: Path) -> None:
    path = await _sqlite_store_with_secret(tmp_path)
    async with eventmem.open(path) as store:
        receipt = await store.erase("s", reason="user request")
        assert receipt.purged
        assert SECRET.encode() not in _sqlite_bytes(path)  # the file and its WAL, while open
        assert (await store.verify()).ok
    assert SECRET.encode() not in _sqlite_bytes(path)


async def test_a_reader_during_a_sqlite_erasure_keeps_the_old_pages_until_it_is_done(
    tmp_path: Path,
) -> None:
    path = await _sqlite_store_with_secret(tmp_path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # a snapshot from before
        async with eventmem.open(path) as store:
            receipt = await store.erase("s", reason="user request")
            assert not receipt.purged
            assert SECRET.encode() in _sqlite_bytes(path)
            reader.execute("COMMIT")
    finally:
        reader.close()
    assert SECRET.encode() not in _sqlite_bytes(path)  # the last close checkpointed


def _heap_pages(target: str) -> bytes:
    """The raw pages of the events table (its file as the server keeps it, dead row
    versions and all), read with pageinspect."""
    events = f"{schema_of(target)}.events"  # (test schemas need no quoting)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        with contextlib.suppress(psycopg.errors.UniqueViolation):  # made meanwhile elsewhere
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        row = conn.execute("SELECT pg_relation_size(%s::regclass)", (events,)).fetchone()
        assert row is not None
        (size,) = row
        return b"".join(
            bytes(page)
            for block in range(size // 8192)
            for (page,) in conn.execute("SELECT get_raw_page(%s, %s)", (events, block))
        )


def _vacuumed_full(target: str) -> bool:
    """``VACUUM FULL events`` until the old row versions are gone from the table's pages:
    it copies those a transaction open somewhere on the server may still see (other
    tests', here), so it may take a few tries; False if they are still there after 60."""
    with raw_database(target) as raw:
        for _ in range(60):
            raw.execute("VACUUM FULL events")
            if SECRET.encode() not in _heap_pages(target):
                return True
            time.sleep(0.5)
    return False


# Waits out every transaction on the server: in the fast loop, the same VACUUM FULL and
# scan of the table files is tests/test_erasure.py's.
@pytest.mark.slow
@pytest.mark.usefixtures("_postgres_server")
async def test_postgresql_keeps_old_row_versions_until_vacuum_full(tmp_path: Path) -> None:
    with fresh_target("postgresql", tmp_path) as target:
        async with eventmem.open(target) as store:
            await store.token_buffer("s").asave_context({"input": SECRET}, {"output": "noted"})
            assert SECRET.encode() in _heap_pages(target)
            receipt = await store.erase("s", reason="user request")
            assert not receipt.purged
            with pytest.raises(eventmem.ErasedSessionError):
                await store.messages("s")
        assert SECRET.encode() in _heap_pages(target)  # the old row version, in the file
        assert _vacuumed_full(target)
        async with eventmem.open(target) as store:
            assert (await store.verify()).ok


# -- the triggers ---------------------------------------------------------------------------


@pytest.mark.usefixtures("_postgres_server")
async def test_a_postgresql_replica_role_skips_the_triggers_unseen_but_not_the_chain(
    tmp_path: Path,
) -> None:
    """``session_replication_role = replica`` (a superuser's, for one connection) fires
    no trigger and changes no catalog row: the open-time check sees nothing, the chain
    sees the edit."""
    with fresh_target("postgresql", tmp_path) as target:
        async with eventmem.open(target) as store:
            await _populate(store, sessions=1, turns=2)
        with raw_database(target) as raw:
            raw.execute("SET session_replication_role = replica")
            raw.execute(
                "UPDATE events SET data = replace(data, 'q1', 'qX')"
                " WHERE session_id = 'chat-0' AND position = 2"
            )
        async with eventmem.open(target) as store:  # no UnprotectedLogError
            assert _found(await store.verify()) == [("chat-0", 2, "hash_mismatch")]


# -- the page ------------------------------------------------------------------------------


def test_the_threat_model_names_tests_that_exist_and_every_one_of_these() -> None:
    """docs/threat-model.md backs each row with tests: every one it names exists, and
    every test of this file is named there."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "threat-model.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page)
    assert len(named) >= 30
    for path, test in named:
        source = (root / path).read_text()
        assert re.search(rf"^(async )?def {test}\(", source, re.M), f"{path}::{test}"
    own = re.findall(r"^(?:async )?def (test_\w+)\(", Path(__file__).read_text(), re.M)
    unnamed = set(own) - {test for path, test in named if path == "tests/test_threat_model.py"}
    assert unnamed == {"test_the_threat_model_names_tests_that_exist_and_every_one_of_these"}
