"""What verify sees beyond the chains, and what rebuild must never hide.

Planted projection rows, removed, disabled or altered triggers, and a rebuild run over a
damaged log, on both backends. The damage is done with plain SQL around eventmem
(:class:`tests.backends.RawDatabase`), as someone with write access to the database would.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import psycopg
import pytest

import eventmem
from tests.backends import backend_of, raw_database
from tests.test_audit import _populate
from tests.test_cli import assert_clean_error, run

pytestmark = pytest.mark.anyio

PLANTED_MESSAGE = '{"role":"human","content":"planted"}'


def _found(report: eventmem.VerifyReport) -> list[tuple[str, str]]:
    return [(p.session_id, p.kind) for p in report.problems]


def _tables(target: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with raw_database(target) as raw:
        return (
            raw.execute("SELECT * FROM sessions ORDER BY session_id"),
            raw.execute("SELECT * FROM view_messages ORDER BY session_id, seq"),
        )


# -- planted projection rows ------------------------------------------------------------

PLANTED: list[tuple[str, str, tuple[str, str]]] = [
    (
        "buffer row of a session with no events",
        "INSERT INTO view_messages (session_id, seq, tokens, message)"
        f" VALUES ('bob', 0, 3, '{PLANTED_MESSAGE}')",
        ("bob", "projection_mismatch"),
    ),
    (
        "buffer row past a session's buffer",
        "INSERT INTO view_messages (session_id, seq, tokens, message)"
        f" VALUES ('chat-1', 999, 3, '{PLANTED_MESSAGE}')",
        ("chat-1", "projection_mismatch"),
    ),
    (
        "buffer row below a session's watermark",
        "INSERT INTO view_messages (session_id, seq, tokens, message)"
        f" VALUES ('chat-1', 0, 3, '{PLANTED_MESSAGE}')",
        ("chat-1", "projection_mismatch"),
    ),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("statement", "finding"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED]
)
async def test_a_planted_buffer_row_is_found_and_rebuild_removes_it(
    target: str, statement: str, finding: tuple[str, str]
) -> None:
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)
        before = {s: await store.messages(s) for s in await store.sessions()}
    with raw_database(target) as raw:
        raw.execute(statement)
    async with eventmem.open(target) as store:
        assert _found(await store.verify()) == [finding]
        assert await store.rebuild() == len(before)
        assert (await store.verify()).ok
        assert {s: await store.messages(s) for s in await store.sessions()} == before
        # the planted row no longer blocks the session's saves
        await store.token_buffer("bob").asave_context({"input": "hi"}, {"output": "hello"})
        assert [m.content for m in await store.messages("bob")] == ["hi", "hello"]
        assert (await store.verify()).ok


async def test_a_planted_head_without_events_is_found(target: str) -> None:
    async with eventmem.open(target) as store:
        await _populate(store, sessions=1, turns=2)
    with raw_database(target) as raw:
        raw.execute(
            "INSERT INTO sessions (session_id, version, head_hash, next_seq, watermark,"
            " total_tokens, overhead, counter, created_at, turn_position, pending_steps)"
            " SELECT 'ghost', version, head_hash, next_seq, watermark, total_tokens, overhead,"
            " counter, created_at, turn_position, pending_steps FROM sessions"
            " WHERE session_id = 'chat-0'"
        )
    async with eventmem.open(target) as store:
        assert _found(await store.verify()) == [("ghost", "orphan_projection")]


# -- triggers ---------------------------------------------------------------------------

SQLITE_TRIGGER_DAMAGE = [
    ("update trigger dropped", ["DROP TRIGGER events_are_immutable_update"], 1),
    ("delete trigger dropped", ["DROP TRIGGER events_are_immutable_delete"], 1),
    ("gapless trigger dropped", ["DROP TRIGGER events_positions_are_gapless"], 1),
    (
        "every trigger dropped",
        [
            "DROP TRIGGER events_are_immutable_update",
            "DROP TRIGGER events_are_immutable_delete",
            "DROP TRIGGER events_positions_are_gapless",
        ],
        3,
    ),
    (
        "update trigger made a no-op",
        [
            "DROP TRIGGER events_are_immutable_update",
            "CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events"
            " WHEN 0 BEGIN SELECT RAISE(ABORT, 'never'); END",
        ],
        1,
    ),
    (
        "foreign trigger on the buffer",
        [
            "CREATE TRIGGER sneaky AFTER INSERT ON view_messages"
            " BEGIN UPDATE view_messages SET tokens = 0 WHERE 0; END"
        ],
        1,
    ),
]

POSTGRES_TRIGGER_DAMAGE = [
    ("every trigger disabled", ["ALTER TABLE events DISABLE TRIGGER USER"], 3),
    ("one trigger disabled", ["ALTER TABLE events DISABLE TRIGGER events_are_immutable"], 1),
    (
        "trigger fires on replicas only",
        ["ALTER TABLE events ENABLE REPLICA TRIGGER events_are_immutable"],
        1,
    ),
    ("truncate trigger dropped", ["DROP TRIGGER events_are_never_truncated ON events"], 1),
    (
        "refusal function made a pass-through",
        [
            "CREATE OR REPLACE FUNCTION eventmem_refuse_change() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END; $$"
        ],
        2,  # both triggers that call it
    ),
    (
        "update trigger narrowed to one column",
        [
            "DROP TRIGGER events_are_immutable ON events",
            "CREATE TRIGGER events_are_immutable BEFORE UPDATE OF kind OR DELETE ON events"
            " FOR EACH ROW EXECUTE FUNCTION eventmem_refuse_change()",
        ],
        1,
    ),
    (
        "foreign trigger on the buffer",
        [
            "CREATE TRIGGER sneaky AFTER INSERT ON view_messages"
            " FOR EACH ROW EXECUTE FUNCTION eventmem_check_gapless()"
        ],
        1,
    ),
]

TRIGGER_DAMAGE = [("sqlite", *d) for d in SQLITE_TRIGGER_DAMAGE] + [
    ("postgresql", *d) for d in POSTGRES_TRIGGER_DAMAGE
]


def _edit_is_refused(target: str) -> bool:
    with raw_database(target) as raw:
        try:
            raw.execute("UPDATE events SET recorded_at = recorded_at + 1 WHERE position = 1")
        except (sqlite3.DatabaseError, psycopg.Error):
            return True
    return False


@pytest.mark.postgres_sample(2)
@pytest.mark.parametrize(
    ("backend", "damage", "findings"),
    [pytest.param(d[0], d[2], d[3], id=f"{d[0]}-{d[1]}") for d in TRIGGER_DAMAGE],
    indirect=["backend"],  # each damage on the backend it belongs to
)
async def test_trigger_damage_refuses_open_is_reported_and_repaired(
    target: str, damage: list[str], findings: int
) -> None:
    async with eventmem.open(target) as store:
        await _populate(store, sessions=1, turns=2)
    tables = _tables(target)
    with raw_database(target) as raw:
        for statement in damage:
            raw.execute(statement)

    with pytest.raises(eventmem.UnprotectedLogError, match="repair-triggers"):
        await eventmem.open(target)
    assert _tables(target) == tables  # the refusal wrote nothing

    async with eventmem.open(target, triggers="report") as store:
        report = await store.verify()
        assert [(p.session_id, p.position, p.kind) for p in report.problems] == [
            ("", 0, "trigger_mismatch")
        ] * findings

    async with eventmem.open(target, triggers="repair") as store:
        assert (await store.verify()).ok
        assert await store.repair_triggers() == []  # nothing left to repair
    assert _edit_is_refused(target)
    assert _tables(target) == tables


# -- rebuild over a damaged log ---------------------------------------------------------

# _populate(sessions=2, turns=4) gives chat-1 five events: three turns, a clear, a turn.
CHAIN_DAMAGE: list[tuple[str, str, tuple[str, str, int]]] = [
    (
        "cut tail",
        "DELETE FROM events WHERE session_id = 'chat-1' AND position > 3",
        ("chat-1", "truncated", 4),
    ),
    (
        "deleted session log",
        "DELETE FROM events WHERE session_id = 'chat-1'",
        ("chat-1", "orphan_projection", 1),
    ),
    (
        "edited event",
        "UPDATE events SET data = replace(data, 'q1', 'qX') WHERE session_id = 'chat-1'"
        " AND position = 2",
        ("chat-1", "hash_mismatch", 2),
    ),
    (
        "deleted event",
        "DELETE FROM events WHERE session_id = 'chat-1' AND position = 2",
        ("chat-1", "missing_event", 2),
    ),
]


def _damage_log(target: str, statement: str) -> None:
    """A chain finding in chat-1 and a projection one in agent-0, triggers back on."""
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute(statement)
        raw.restore_triggers()
        raw.execute("UPDATE view_messages SET tokens = tokens + 1 WHERE session_id = 'agent-0'")


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("statement", "finding"), [c[1:] for c in CHAIN_DAMAGE], ids=[c[0] for c in CHAIN_DAMAGE]
)
async def test_rebuild_refuses_over_chain_findings_and_force_leaves_them_visible(
    target: str, statement: str, finding: tuple[str, str, int]
) -> None:
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)
    _damage_log(target, statement)
    async with eventmem.open(target) as store:
        before = await store.verify()
        assert [(p.session_id, p.kind, p.position) for p in before.problems] == [
            finding,
            ("agent-0", "projection_mismatch", 8),
        ]
        tables = _tables(target)
        with pytest.raises(eventmem.RebuildRefusedError, match=finding[1]) as refused:
            await store.rebuild()
        assert refused.value.problems == before.problems[:1]
        assert _tables(target) == tables  # nothing written

        # forced: the sound sessions are rebuilt, the finding stays exactly as it was
        assert await store.rebuild(force=True) == 3
        after = await store.verify()
        assert after.problems == before.problems[:1]
        assert (await store.rebuild(force=True)) == 3
        assert (await store.verify()).problems == before.problems[:1]


def _populated(target: str) -> None:
    async def populate() -> None:
        async with eventmem.open(target) as store:
            await _populate(store, sessions=2, turns=4)

    anyio.run(populate)


def test_the_rebuild_command_refuses_and_its_force_keeps_the_finding(
    target: str, tmp_path: Path
) -> None:
    _populated(target)
    _damage_log(target, CHAIN_DAMAGE[0][1])
    refused = run("rebuild", target, cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert "rebuild refused" in refused.stderr
    assert "session 'chat-1' position 4: truncated" in refused.stderr

    forced = run("rebuild", "--force", target, cwd=tmp_path)
    assert forced.returncode == 0, forced
    rebuilt, left = forced.stdout.splitlines()
    assert rebuilt == "rebuilt the buffers of 3 sessions from 24 events"
    assert left.startswith("left 1 damaged session as it is: run 'eventmem verify ")
    forced = run("rebuild", "--force", "--json", target, cwd=tmp_path)
    assert json.loads(forced.stdout) == {"sessions": 3, "events": 24, "left_damaged": 1}

    verified = run("verify", target, cwd=tmp_path)
    assert_clean_error(verified, 1)
    assert verified.stdout.splitlines()[0].startswith("session chat-1 position 4: truncated: ")


def test_the_verify_command_reports_and_repairs_triggers(target: str, tmp_path: Path) -> None:
    _populated(target)
    with raw_database(target) as raw:
        raw.allow_tampering()

    refused = run("sessions", target, cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert "eventmem verify --repair-triggers" in refused.stderr

    found = run("verify", target, cwd=tmp_path)
    assert_clean_error(found, 1)
    lines = found.stdout.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("store: trigger_mismatch: the trigger ") for line in lines[:3])
    assert lines[3] == "3 problems in the store's triggers (4 sessions, 26 events checked)"

    repaired = run("verify", "--repair-triggers", target, cwd=tmp_path)
    assert repaired.returncode == 0, repaired
    lines = repaired.stdout.splitlines()
    assert (
        sorted(line.split(" on ")[0] for line in lines[:3])
        == [
            "repaired: the trigger events_are_immutable_delete",
            "repaired: the trigger events_are_immutable_update",
            "repaired: the trigger events_positions_are_gapless",
        ]
        if backend_of(target) == "sqlite"
        else [
            "repaired: the trigger events_are_immutable",
            "repaired: the trigger events_are_never_truncated",
            "repaired: the trigger events_positions_are_gapless",
        ]
    )
    assert lines[3:] == ["ok: 4 sessions, 26 events verified"]
    assert (
        json.loads(run("verify", "--repair-triggers", "--json", target, cwd=tmp_path).stdout)[
            "repaired_triggers"
        ]
        == []
    )
    assert run("verify", target, cwd=tmp_path).returncode == 0
    assert _edit_is_refused(target)


# -- what the chain cannot see (until session heads are anchored outside the store) -----


def _rechain(target: str) -> None:
    """Rewrite chat-1's turns and recompute every hash of its chain, as someone who has
    read this project's hash rule would; then drop its head so rebuild writes a new one."""
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.rechain("chat-1", lambda _, data: data.replace(b"q1", b"qX"))
        raw.restore_triggers()
        raw.execute("DELETE FROM sessions WHERE session_id = 'chat-1'")


BLIND_SPOTS: list[tuple[str, str | None]] = [
    # a tail cut together with the session's head row: the shorter chain is whole
    ("cut tail with its head", "DELETE FROM events WHERE session_id = 'chat-1' AND position > 3"),
    # a session removed with its head and buffer rows: nothing names it any more
    ("deleted session with its rows", "DELETE FROM events WHERE session_id = 'chat-1'"),
    ("re-chained rewrite", None),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize("statement", [b[1] for b in BLIND_SPOTS], ids=[b[0] for b in BLIND_SPOTS])
async def test_known_blind_spots_of_the_plain_chain(target: str, statement: str | None) -> None:
    """Documented as not detected (docs/operations.md): these pass verify once the
    projection is rebuilt. A change here is a change of the documented guarantees."""
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)
    if statement is None:
        _rechain(target)
    else:
        with raw_database(target) as raw:
            raw.allow_tampering()
            raw.execute(statement)
            raw.restore_triggers()
            raw.execute("DELETE FROM sessions WHERE session_id = 'chat-1'")
            raw.execute("DELETE FROM view_messages WHERE session_id = 'chat-1'")
    async with eventmem.open(target) as store:
        found = _found(await store.verify())
        assert found in ([], [("chat-1", "projection_mismatch")])  # never a chain finding
        await store.rebuild()
        assert (await store.verify()).ok
