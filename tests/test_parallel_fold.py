"""verify and rebuild folding the log in several processes (SQLite).

A store's sessions are split by id range over child processes, each folding its part in
a snapshot of its own bounded by the highest event id of this process's snapshot. The
findings, the rebuilt projections and the counts must be exactly those of a fold in one
process, for every kind of damage, whichever part the damage falls in, when a child
fails, and while other connections keep appending.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

import eventmem
from eventmem.store import maintenance
from eventmem.store.partition import Part, PartResult
from eventmem.store.sqlite import fold_worker
from eventmem.store.sqlite.connection import SQLiteConnection
from eventmem.store.sqlite.fold_worker import SubprocessSpread
from tests.backends import raw_database
from tests.test_audit import TAMPERING, _populate

pytestmark = pytest.mark.anyio


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The children started, counted (each one's exit status, once it ends)."""
    started: list[int] = []
    spawn = SubprocessSpread._spawn

    def counting(self: SubprocessSpread) -> subprocess.Popen[bytes] | None:
        process = spawn(self)
        if process is not None:
            started.append(process.pid)
        return process

    monkeypatch.setattr(SubprocessSpread, "_spawn", counting)
    return started


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "store.db"

    async def fill() -> None:
        async with eventmem.open(path) as store:
            await _populate(store)

    anyio.run(fill)
    return str(path)


def _findings(report: eventmem.VerifyReport) -> list[tuple[str, int, str]]:
    return sorted((p.session_id, p.position, p.kind) for p in report.problems)


async def _verify(db: str, processes: int | None) -> eventmem.VerifyReport:
    async with eventmem.open(db, triggers="report") as store:
        return await store.verify(processes=processes)


@pytest.mark.parametrize("processes", [2, 3, 6])
async def test_an_intact_store_verifies_alike_in_several_processes(
    db: str, processes: int, spawned: list[int]
) -> None:
    one = await _verify(db, 1)
    assert not spawned
    many = await _verify(db, processes)
    assert len(spawned) == processes - 1
    assert one.ok
    assert many.ok, many.problems
    assert (many.sessions, many.events) == (one.sessions, one.events) == (6, one.events)


@pytest.mark.fast_sample(2)
@pytest.mark.parametrize(
    ("statement", "kind", "position"),
    [t[1:] for t in TAMPERING],
    ids=[t[0] for t in TAMPERING],
)
@pytest.mark.parametrize("processes", [2, 6])
async def test_tampering_is_found_alike_in_several_processes(
    db: str, statement: str, kind: str, position: int, processes: int, spawned: list[int]
) -> None:
    with raw_database(db) as raw:
        raw.allow_tampering()
        for part in statement.split(";"):
            raw.execute(part)
        raw.restore_triggers()
    many = await _verify(db, processes)
    assert spawned
    assert _findings(many) == _findings(await _verify(db, 1)) == [("chat-1", position, kind)]


PROJECTION_DAMAGE = [
    "UPDATE view_messages SET tokens = tokens + 1 WHERE session_id = 'agent-2'",
    "UPDATE view_messages SET tokens = tokens + 1 WHERE session_id = 'chat-0'",
    "DELETE FROM sessions WHERE session_id = 'chat-2'",
    "UPDATE sessions SET watermark = watermark + 1 WHERE session_id = 'agent-0'",
    "INSERT INTO view_messages (session_id, seq, tokens, position, idx)"
    " VALUES ('nobody', 0, 1, 1, 0)",
    # an old-style row (from before schema 5) holding a message that is not the fold's
    "UPDATE view_messages SET position = NULL, idx = NULL,"
    ' message = \'{"role":"human","content":"forged"}\' WHERE session_id = \'chat-2\'',
]


@pytest.mark.fast_sample(2)
@pytest.mark.parametrize("damage", PROJECTION_DAMAGE)
async def test_projection_damage_is_found_alike_in_several_processes(
    db: str, damage: str, spawned: list[int]
) -> None:
    with raw_database(db) as raw:
        raw.execute(damage)
    many = await _verify(db, 2)
    assert spawned
    assert _findings(many) == _findings(await _verify(db, 1))
    assert many.problems
    assert {p.kind for p in many.problems} == {"projection_mismatch"}


async def test_old_style_rows_holding_the_right_messages_verify(
    db: str, spawned: list[int]
) -> None:
    """Rows written before schema 5 hold their message; the child sends the fold's
    messages back for such sessions, so they compare on either side of the split."""
    async with eventmem.open(db) as store:
        views = {s: await store.messages(s) for s in await store.sessions()}
    with raw_database(db) as raw:
        for session_id, messages in views.items():
            rows = raw.execute(
                "SELECT seq FROM view_messages WHERE session_id = ? ORDER BY seq", (session_id,)
            )
            for (seq,), message in zip(rows, messages, strict=True):
                raw.execute(
                    "UPDATE view_messages SET position = NULL, idx = NULL, message = ?"
                    " WHERE session_id = ? AND seq = ?",
                    (msgspec.json.encode(message).decode(), session_id, seq),
                )
    for processes in (1, 2, 6):
        report = await _verify(db, processes)
        assert report.ok, (processes, report.problems)
    assert spawned


async def test_a_failing_child_costs_time_not_findings(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that dies (here: exits at once) has its part folded here instead."""
    with raw_database(db) as raw:
        raw.allow_tampering()
        raw.execute(TAMPERING[0][1])
        raw.restore_triggers()
    expected = _findings(await _verify(db, 1))

    def failing(self: SubprocessSpread) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.exit(3)"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    monkeypatch.setattr(SubprocessSpread, "_spawn", failing)
    report = await _verify(db, 6)
    assert _findings(report) == expected
    assert report.events == (await _verify(db, 1)).events
    monkeypatch.setattr(SubprocessSpread, "_spawn", lambda self: None)  # none starts
    assert _findings(await _verify(db, 6)) == expected


async def test_a_child_that_answers_garbage_is_not_believed(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lying(self: SubprocessSpread) -> subprocess.Popen[bytes]:
        script = "import pickle, sys; sys.stdout.buffer.write(pickle.dumps({'ok': True}))"
        return subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    with raw_database(db) as raw:
        raw.execute(PROJECTION_DAMAGE[1])
    monkeypatch.setattr(SubprocessSpread, "_spawn", lying)
    assert _findings(await _verify(db, 2)) == _findings(await _verify(db, 1)) != []


@pytest.mark.fast_sample(2)
@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM view_messages",
        "DELETE FROM sessions",
        "UPDATE view_messages SET idx = idx + 1",
        "UPDATE sessions SET watermark = 0, total_tokens = 7",
    ],
)
async def test_rebuild_in_several_processes_writes_what_one_does(
    db: str, damage: str, spawned: list[int]
) -> None:
    with raw_database(db) as raw:
        heads = raw.execute("SELECT * FROM sessions ORDER BY session_id")
        view = raw.execute("SELECT * FROM view_messages ORDER BY session_id, seq")
        raw.execute(damage)
    async with eventmem.open(db) as store:
        assert await store.rebuild(processes=3) == 6
        assert (await store.verify(processes=1)).ok
    assert spawned
    with raw_database(db) as raw:
        assert raw.execute("SELECT * FROM sessions ORDER BY session_id") == heads
        assert raw.execute("SELECT * FROM view_messages ORDER BY session_id, seq") == view


async def test_rebuild_in_several_processes_still_refuses_chain_damage(
    db: str, spawned: list[int]
) -> None:
    with raw_database(db) as raw:
        raw.allow_tampering()
        raw.execute(TAMPERING[1][1])  # a deleted event
        raw.restore_triggers()
    async with eventmem.open(db) as store:
        with pytest.raises(eventmem.RebuildRefusedError) as refused:
            await store.rebuild(processes=2)
    assert [(p.session_id, p.kind) for p in refused.value.problems] == [("chat-1", "missing_event")]
    assert spawned


async def test_verify_under_concurrent_appends_sees_one_snapshot(tmp_path: Path) -> None:
    """Every part reads the events up to the highest id of the parent's snapshot, so
    saves committed meanwhile, by another connection, are neither half-seen nor
    reported."""
    path = tmp_path / "busy.db"
    async with eventmem.open(path) as store:
        for s in range(12):
            memory = store.token_buffer(f"s{s:02d}", max_token_limit=60)
            for t in range(20):
                await memory.asave_context({"input": f"q{t} " * 5}, {"output": f"a{t}"})
        before = await store.count_events()
        async with eventmem.open(path) as writer, anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def keep_writing() -> None:
                turn = 0
                while not stop.is_set():
                    memory = writer.token_buffer(f"s{turn % 12:02d}", max_token_limit=60)
                    await memory.asave_context({"input": f"more {turn}"}, {"output": "ok"})
                    turn += 1
                    await anyio.lowlevel.checkpoint()

            tg.start_soon(keep_writing)
            reports = [await store.verify(processes=3) for _ in range(3)]
            stop.set()
        for report in reports:
            assert report.ok, report.problems
            assert report.events >= before
        assert (await store.verify(processes=1)).ok


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
async def test_processes_must_be_a_positive_int(db: str, bad: Any) -> None:
    async with eventmem.open(db) as store:
        with pytest.raises(eventmem.InvalidInputError, match="processes"):
            await store.verify(processes=bad)
        with pytest.raises(eventmem.InvalidInputError, match="processes"):
            await store.rebuild(processes=bad)


async def test_an_in_memory_store_folds_in_this_process(spawned: list[int]) -> None:
    async with eventmem.open(":memory:") as store:
        await _populate(store, sessions=2, turns=3)
        assert (await store.verify(processes=4)).ok
        assert await store.rebuild(processes=4) == 4
    assert not spawned


def test_the_default_spreads_only_large_stores() -> None:
    spread = SubprocessSpread("file:x.db", None)
    assert spread.processes(fold_worker.PARALLEL_FROM - 1) == 1
    assert spread.processes(fold_worker.PARALLEL_FROM) in (1, 2)
    assert SubprocessSpread("file:x.db", 5).processes(10) == 5


async def test_progress_ends_at_the_total(db: str) -> None:
    calls: list[tuple[int, int]] = []
    async with eventmem.open(db) as store:
        report = await store.verify(
            progress=lambda done, total: calls.append((done, total)), processes=2
        )
    assert calls[-1] == (report.events, report.events)
    assert all(done <= total for done, total in calls)


class _Here:
    """A part folded on this thread, as a child would, but without the messages that
    old-style rows need (what a child that saw no such rows in its snapshot sends)."""

    def __init__(self, uri: str, part: Part) -> None:
        self.part = part
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            self._result = fold_worker.fold_part(conn, part, verifying=False)
        finally:
            conn.close()

    def result(self) -> PartResult | None:
        return self._result


class _HereSpread:
    def __init__(self, uri: str) -> None:
        self._uri = uri

    def processes(self, events: int) -> int:
        return 3

    def start(self, parts: Any, *, verifying: bool) -> list[Any]:
        return [_Here(self._uri, part) for part in parts]


@pytest.mark.parametrize("right", [True, False], ids=["right-messages", "forged-message"])
def test_old_style_rows_without_the_messages_are_folded_again_here(db: str, right: bool) -> None:
    with raw_database(db) as raw:
        raw.execute(
            "UPDATE view_messages SET position = NULL, idx = NULL, message = ?"
            " WHERE session_id = 'chat-2' AND seq = (SELECT max(seq) FROM view_messages"
            " WHERE session_id = 'chat-2')",
            ('{"role":"ai","content":"a7"}' if right else '{"role":"ai","content":"no"}',),
        )
    conn = sqlite3.connect(db, factory=SQLiteConnection, isolation_level=None)
    try:
        report = maintenance.verify(conn, None, _HereSpread(f"file:{db}?mode=ro"))
    finally:
        conn.close()
    expected = [] if right else [("chat-2", 10, "projection_mismatch")]  # the version
    assert _findings(report) == expected


@pytest.mark.parametrize("executable", ["", "true", "/no/such/python3"])
def test_no_child_is_started_from_an_interpreter_that_is_not_python(
    monkeypatch: pytest.MonkeyPatch, executable: str, db: str
) -> None:
    """An embedding program (here ``true``, a real executable that would start) is never
    run with the child's arguments."""
    if executable == "true":
        executable = shutil.which("true") or "/bin/true"
    monkeypatch.setattr(sys, "executable", executable)
    assert SubprocessSpread(f"file:{db}", 2)._spawn() is None


def test_no_child_is_started_from_a_frozen_application(
    monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert SubprocessSpread(f"file:{db}", 2)._spawn() is None
