"""Erasure on both backends: a session's content leaves the store for good (the raw
bytes of the database, its write-ahead log and free pages hold no copy; on PostgreSQL,
after VACUUM FULL, the table files), while every hash still verifies, the tombstone says
who, when and why, reads of the session say it was erased, and other sessions are
untouched."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest

import eventmem
from eventmem import Message, ToolCall
from tests.backends import (
    POSTGRES_URL,
    backend_of,
    drop_target,
    new_target,
    raw_database,
    rehash,
    schema_of,
)

pytestmark = pytest.mark.anyio

PLANT = "quokka-7741-zebra"  # in every field an erasure must remove
KEPT = "kept-in-another-session-3390"


async def _victim(store: eventmem.Store, session: str = "victim") -> None:
    """A session holding the planted text everywhere: short and long message text (the
    long one spills to overflow pages), tool arguments, an observation, metadata."""
    memory = store.agent_token_buffer(session, max_token_limit=5000)
    await memory.asave_context({"input": f"my name is {PLANT}"}, {"output": "hello"})
    action = {"tool": "lookup", "tool_input": {"who": PLANT}, "log": f"looking up {PLANT}"}
    await memory.asave_context(
        {"input": f"find {PLANT}"},
        {"output": "found", "intermediate_steps": [(action, f"record of {PLANT}")]},
    )
    history = store.history(session, max_tokens=5000)
    await history.append(
        [
            Message("human", f"{PLANT} " + "and some more words " * 600, metadata={"n": PLANT}),
            Message("ai", "", tool_calls=(ToolCall("mail", {"to": PLANT}, "c1"),)),
            Message("tool", "sent", tool_call_id="c1"),
        ]
    )


async def _other(store: eventmem.Store) -> list[Message]:
    memory = store.token_buffer("other", max_token_limit=500)
    await memory.asave_context({"input": KEPT}, {"output": "fine"})
    return await store.messages("other")


def _sqlite_bytes(path: Path) -> dict[str, bytes]:
    """The database file and whatever -wal, -shm or journal it has, as raw bytes."""
    return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file()}


async def test_an_erased_session_keeps_its_chain_and_says_it_was_erased(
    store: eventmem.Store,
) -> None:
    await _victim(store)
    kept = await _other(store)
    before = [e async for e in store.events("victim")]
    receipt = await store.erase("victim", reason="GDPR art. 17, request 12", by="dpo@example.com")

    after = [e async for e in store.events("victim")]
    assert [e.hash for e in after[:-1]] == [e.hash for e in before]  # every hash as it was
    assert all(isinstance(e.data, eventmem.ContentErased) for e in after[:-1])
    tombstone = after[-1]
    assert isinstance(tombstone.data, eventmem.SessionErased)
    assert (tombstone.data.reason, tombstone.data.by) == (
        "GDPR art. 17, request 12",
        "dpo@example.com",
    )
    assert tombstone.data.events == len(before)
    assert tombstone.data.last_hash == before[-1].hash
    assert (receipt.session_id, receipt.position, receipt.hash) == (
        "victim",
        tombstone.position,
        tombstone.hash,
    )
    assert receipt.erased_at == tombstone.recorded_at
    assert receipt.last_hash == before[-1].hash
    assert receipt.events == len(before)
    assert (
        msgspec.json.decode(msgspec.json.encode(receipt), type=eventmem.ErasureReceipt) == receipt
    )

    with pytest.raises(eventmem.ErasedSessionError, match="erased"):
        await store.messages("victim")
    with pytest.raises(eventmem.ErasedSessionError):
        await store.messages("victim", as_of=2)
    with pytest.raises(eventmem.ErasedSessionError):
        await store.history("victim").view()
    with pytest.raises(eventmem.ErasedSessionError, match="no more writes"):
        await store.token_buffer("victim").asave_context({"input": "a"}, {"output": "b"})
    with pytest.raises(eventmem.ErasedSessionError, match="erased already"):
        await store.erase("victim", reason="again")
    with pytest.raises(eventmem.ErasedSessionError):
        await store.fork("victim", "copy")
    assert await store.version("victim") == tombstone.position  # nothing more was written

    assert await store.messages("other") == kept
    report = await store.verify()
    assert report.ok, report.problems
    assert await store.rebuild() == 2
    assert (await store.verify()).ok
    assert (await store.verify_session("victim")).ok


async def test_erase_refuses_clearly_and_writes_nothing(store: eventmem.Store) -> None:
    await _victim(store)
    await store.fork("victim", "branch")
    version = await store.version("victim")
    with pytest.raises(eventmem.UnknownSessionError):
        await store.erase("nobody", reason="x")
    with pytest.raises(eventmem.InvalidInputError, match="has forks \\('branch'\\)"):
        await store.erase("victim", reason="x")
    for bad in ("", "   ", None, 3):
        with pytest.raises(eventmem.InvalidInputError, match="reason must be"):
            await store.erase("victim", reason=bad)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="by must be"):
        await store.erase("victim", reason="x", by="")
    assert await store.version("victim") == version
    assert (await store.verify()).ok


async def test_a_fork_is_erased_without_touching_its_parent(store: eventmem.Store) -> None:
    await _chat(store)
    parent = [await store.messages("parent", as_of=p) for p in range(4)]
    await store.fork("parent", "fork", at=2)
    await store.token_buffer("fork").asave_context({"input": PLANT}, {"output": "ok"})
    receipt = await store.erase("fork", reason="the user asked")
    assert receipt.events == 1  # its own turn: the fork event stays, and the parent's events
    kinds = [e.kind async for e in store.events("fork")]
    assert kinds == ["turn", "turn", "fork", "erased", "erase"]
    assert [await store.messages("parent", as_of=p) for p in range(4)] == parent
    assert (await store.verify()).ok
    assert await store.erase("parent", reason="and now the parent") is not None
    assert (await store.verify()).ok


async def _chat(store: eventmem.Store) -> None:
    memory = store.token_buffer("parent", max_token_limit=100)
    for i in range(3):
        await memory.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_no_copy_is_left_in_the_sqlite_file_its_wal_or_free_pages(
    backend: str, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    async with await eventmem.open(path) as store:
        await _victim(store)
        await _other(store)
        await store.history("scratch").append([Message("human", f"{PLANT} then popped")])
        await store.history("scratch").pop()
        found = _sqlite_bytes(path)
        assert sum(b.count(PLANT.encode()) for b in found.values()) >= 5  # the scan sees it
        receipt = await store.erase("victim", reason="request 7")
        await store.erase("scratch", reason="request 8")
        assert receipt.purged
        after = _sqlite_bytes(path)  # the store still open: its WAL was truncated
        assert {name: b.count(PLANT.encode()) for name, b in after.items()} == dict.fromkeys(
            after, 0
        )
        assert any(KEPT.encode() in b for b in after.values())
    closed = _sqlite_bytes(path)
    assert all(PLANT.encode() not in b for b in closed.values())
    async with await eventmem.open(path) as store:
        assert (await store.verify()).ok


def _postgres_files(target: str) -> dict[str, bytes]:
    """The files of every table, TOAST table and index of the store's schema, read from
    the server's data directory (after a checkpoint wrote them out)."""
    schema = schema_of(target)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("CHECKPOINT")
        (directory,) = admin.execute("SHOW data_directory").fetchone()  # type: ignore[misc]
        paths = admin.execute(
            "SELECT c.relname, pg_relation_filepath(c.oid) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s OR c.oid IN (SELECT reltoastrelid FROM pg_class AS t"
            " JOIN pg_namespace AS m ON m.oid = t.relnamespace WHERE m.nspname = %s)",
            (schema, schema),
        ).fetchall()
    found: dict[str, bytes] = {}
    for name, relative in paths:
        if relative is None:
            continue
        base = Path(directory) / relative
        for segment in [base, *sorted(base.parent.glob(base.name + ".*"))]:
            if segment.is_file() and not segment.name.endswith(("_fsm", "_vm")):
                found[f"{name}:{segment.name}"] = segment.read_bytes()
    return found


@pytest.fixture
def postgres_target(tmp_path: Path) -> Iterator[str]:
    target = new_target("postgresql", tmp_path)
    try:
        yield target
    finally:
        drop_target(target)


async def test_no_copy_is_left_in_the_postgresql_table_files_after_vacuum_full(
    postgres_target: str,
) -> None:
    try:
        with psycopg.connect(POSTGRES_URL) as admin:
            (directory,) = admin.execute("SHOW data_directory").fetchone()  # type: ignore[misc]
        readable = os.access(directory, os.R_OK)
    except psycopg.Error:
        readable = False
    if not readable:
        pytest.skip("the server's data directory cannot be read from here")
    async with await eventmem.open(postgres_target) as store:
        await _victim(store)
        await _other(store)
        assert any(PLANT.encode() in b for b in _postgres_files(postgres_target).values())
        receipt = await store.erase("victim", reason="request 9")
        assert not receipt.purged  # old row versions stay until VACUUM FULL
    # VACUUM FULL copies a dead row version that a transaction still running anywhere in
    # the database might see (other tests share the server): once those end, it is gone.
    for _ in range(40):
        with raw_database(postgres_target) as raw:
            raw.execute("VACUUM FULL events")
            raw.execute("VACUUM FULL view_messages")
        files = _postgres_files(postgres_target)
        left = {name: b.count(PLANT.encode()) for name, b in files.items()}
        if not any(left.values()):
            break
        time.sleep(0.25)
    assert left == dict.fromkeys(files, 0)
    assert any(KEPT.encode() in b for b in files.values())
    async with await eventmem.open(postgres_target) as store:
        assert (await store.verify()).ok


async def test_export_and_import_carry_the_tombstone_and_no_content(
    store: eventmem.Store, backend: str, tmp_path: Path
) -> None:
    await _victim(store)
    kept = await _other(store)
    await store.erase("victim", reason="request 10", by="ops")
    lines = [line async for line in store.export()]
    assert not any(PLANT.encode() in line for line in lines)
    (tmp_path / "copy").mkdir()
    target = new_target(backend, tmp_path / "copy")
    try:
        async with await eventmem.open(target) as copy:
            assert await copy.import_events(lines) == (2, await store.count_events())
            assert (await copy.verify()).ok
            events = [e async for e in copy.events("victim")]
            assert isinstance(events[-1].data, eventmem.SessionErased)
            assert events[-1].data.by == "ops"
            with pytest.raises(eventmem.ErasedSessionError):
                await copy.messages("victim")
            assert await copy.messages("other") == kept
            assert [e.hash for e in events] == [e.hash async for e in store.events("victim")]
    finally:
        drop_target(target)


async def _erased_store(target: str) -> None:
    async with await eventmem.open(target) as store:
        memory = store.token_buffer("s", max_token_limit=100)
        for i in range(3):
            await memory.asave_context({"input": f"{PLANT} {i}"}, {"output": "ok"})
        await store.erase("s", reason="request")


async def _problems(target: str) -> list[tuple[str, int]]:
    async with await eventmem.open(target, triggers="repair") as store:
        return [(p.session_id, p.position) for p in (await store.verify()).problems]


async def test_content_removed_without_a_tombstone_is_found(target: str) -> None:
    async with await eventmem.open(target) as store:
        memory = store.token_buffer("s", max_token_limit=100)
        for i in range(3):
            await memory.asave_context({"input": f"q{i}"}, {"output": "ok"})
    with raw_database(target) as raw:
        raw.allow_tampering()  # as someone deleting content by hand, hashes left alone
        raw.execute(
            "UPDATE events SET data = ? WHERE session_id = 's' AND position <= 2",
            ('{"kind":"erased"}',),
        )
        raw.restore_triggers()
    assert await _problems(target) == [("s", 3)]


async def test_a_tombstone_that_miscounts_is_found(target: str) -> None:
    await _erased_store(target)
    with raw_database(target) as raw:
        raw.allow_tampering()  # the tombstone says 2 events went, re-hashed to match
        ((position, recorded_at, data),) = raw.execute(
            "SELECT position, recorded_at, data FROM events WHERE session_id = 's'"
            " AND kind = 'erase'"
        )
        ((previous,),) = raw.execute(
            "SELECT hash FROM events WHERE session_id = 's' AND position = ?", (position - 1,)
        )
        forged = data.replace('"events":3', '"events":2').encode()
        digest, content = rehash(bytes(previous), "s", position, recorded_at, forged)
        raw.execute(
            "UPDATE events SET data = ?, hash = ?, digest = ? WHERE session_id = 's'"
            " AND position = ?",
            (forged.decode(), digest, content, position),
        )
        raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = 's'", (digest,))
        raw.restore_triggers()
    assert await _problems(target) == [("s", 4)]


async def test_only_an_erasure_may_change_an_event(target: str) -> None:
    """The trigger lets the erased marker in only before a tombstone, with every other
    column unchanged; anything else is refused by the database itself."""
    async with await eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "a"}, {"output": "b"})
        await store.token_buffer("t").asave_context({"input": "a"}, {"output": "b"})
        await store.erase("t", reason="r")
    with raw_database(target) as raw:
        for statement in (
            "UPDATE events SET data = '{\"kind\":\"erased\"}' WHERE session_id = 's'",
            "UPDATE events SET data = '{\"kind\":\"clear\"}' WHERE session_id = 't'",
            "UPDATE events SET data = '{\"kind\":\"erased\"}', hash = ? WHERE session_id = 't'",
            "DELETE FROM events WHERE session_id = 't'",
        ):
            parameters = (bytes(32),) if "?" in statement else ()
            with pytest.raises(Exception, match="immutable"):
                raw.execute(statement, parameters)
    assert await _problems(target) == []


async def test_a_store_from_before_schema_7_erases_too(tmp_path: Path) -> None:
    """Events of the first chain (no digest) are erased like the others; their own
    hashes can no longer be recomputed, and verify takes them as stored."""
    import shutil

    path = tmp_path / "old.db"
    shutil.copyfile(Path(__file__).parent / "fixtures" / "schema4.db", path)
    async with await eventmem.open(path) as store:
        session = (await store.sessions())[0]
        await store.erase(session, reason="old data")
        assert (await store.verify()).ok
        with pytest.raises(eventmem.ErasedSessionError):
            await store.messages(session)


def test_the_blocking_facade_erases(target: str) -> None:
    with eventmem.connect(target) as store:
        store.token_buffer("s").save_context({"input": PLANT}, {"output": "ok"})
        receipt = store.erase("s", reason="r", by="me")
        assert receipt.by == "me"
        with pytest.raises(eventmem.ErasedSessionError):
            store.messages("s")


def test_finding_a_sessions_forks_reads_the_fork_index_not_the_log(target: str) -> None:
    """An erasure and every session a retention policy seals look for forks first: with
    a scan of the log that cost grew with the store (35 ms an erasure at 20,000 events)."""
    from eventmem.store.erasure import FORK_EVENTS

    eventmem.connect(target).close()
    with raw_database(target) as raw:
        if backend_of(target) == "sqlite":
            plan = " ".join(str(row) for row in raw.execute(f"EXPLAIN QUERY PLAN {FORK_EVENTS}"))
        else:
            raw.execute("SET enable_seqscan = off")  # the table is tiny: make the plan show
            plan = " ".join(str(row) for row in raw.execute(f"EXPLAIN {FORK_EVENTS}"))
    assert "events_forks" in plan
