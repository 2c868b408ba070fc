"""Audit and replay: exact time travel, tamper evidence, rebuild, export/import.

Every test runs against both backends (the ``backend``/``target``/``store`` fixtures);
the damage is done with plain SQL around eventmem (:class:`tests.backends.RawDatabase`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventmem
from eventmem.messages import Message
from eventmem.projection import fold
from tests.backends import BACKENDS, fresh_target, raw_database
from tests.reference import examples_for

pytestmark = pytest.mark.anyio


def _action(i: int) -> dict[str, Any]:
    return {"tool": "lookup", "tool_input": {"i": i}, "log": f"look {i}", "message_log": []}


async def _populate(store: eventmem.Store, sessions: int = 3, turns: int = 8) -> None:
    for s in range(sessions):
        chat = store.token_buffer(f"chat-{s}", max_token_limit=40 + 10 * s)
        agent = store.agent_token_buffer(f"agent-{s}", max_token_limit=80, prune="pair_safe")
        for t in range(turns):
            await chat.asave_context({"input": f"q{t} " * (t + 1)}, {"output": f"a{t}"})
            if t % 3 == 2:
                await chat.aclear()
            await agent.arecord_step(_action(t), {"rows": t})
            await agent.asave_context(
                {"input": f"task {t}"},
                {"output": "done", "intermediate_steps": [(_action(t), {"rows": t})]},
            )


# -- time travel --------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.text(max_size=60), st.text(max_size=60)),
        st.tuples(st.just("clear"), st.just(""), st.just("")),
        st.tuples(st.just("limit"), st.integers(0, 120).map(str), st.just("")),
        st.tuples(st.just("model"), st.sampled_from(["gpt-4o", "gpt-4"]), st.just("")),
        st.tuples(st.just("step"), st.text(max_size=30), st.just("")),
    ),
    min_size=1,
    max_size=25,
)


def test_time_travel_returns_exactly_what_was_served(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=40, postgresql=40)
    @given(ops=operations)
    def example(ops: Any) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(_serve_and_travel, target, ops)

    example()


async def _serve_and_travel(target: str, ops: Any) -> None:
    served: dict[int, list[Message]] = {}
    limit, model = 60, "gpt-4o"
    pending: list[tuple[dict[str, Any], str]] = []
    async with eventmem.open(target) as store:
        for op, a, b in ops:
            mem = store.agent_token_buffer("s", max_token_limit=limit, model=model)
            if op == "save":
                await mem.asave_context({"input": a}, {"output": b})
                pending = []
            elif op == "clear":
                await mem.aclear()
            elif op == "limit":
                limit = int(a)
                continue
            elif op == "model":
                model = a
                continue
            else:
                action = {"tool": "t", "log": a, "message_log": []}
                await mem.arecord_step(action, a)
                pending.append((action, a))
            served[await store.version("s")] = await store.messages("s")
        for position, view in served.items():
            assert await store.messages("s", as_of=position) == view
        assert await store.messages("s", as_of=0) == []
        version = await store.version("s")
        assert await store.messages("s", as_of=version) == await store.messages("s")


async def test_as_of_out_of_range_is_refused(store: eventmem.Store) -> None:
    await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    for bad in [-1, 2, 1.5, True, "1"]:
        with pytest.raises(eventmem.InvalidInputError):
            await store.messages("s", as_of=bad)  # type: ignore[arg-type]


async def test_replay_under_another_limit_and_tokenizer(store: eventmem.Store) -> None:
    mem = store.token_buffer("s", max_token_limit=30)
    for i in range(10):
        await mem.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
    now = await store.messages("s")
    assert await store.replay("s") == now
    wider = await store.replay("s", max_token_limit=10_000)
    assert [m.content for m in wider] == [
        text for i in range(10) for text in (f"question {i}", f"answer {i}")
    ]
    one_each = await store.replay("s", max_token_limit=100, token_counter=lambda ms: 10 * len(ms))
    assert len(one_each) == 10
    assert await store.messages("s") == now  # replay writes nothing


# -- verify ---------------------------------------------------------------------------


async def test_an_intact_store_verifies(store: eventmem.Store) -> None:
    await _populate(store)
    report = await store.verify()
    assert report.ok, report.problems
    assert report.sessions == 6
    assert report.events == await store.count_events()


TAMPERING: list[tuple[str, str, str, int]] = [
    (
        "edited payload",
        "UPDATE events SET data = replace(data, 'q3', 'q4') WHERE session_id = 'chat-1'"
        " AND position = 5",
        "hash_mismatch",
        5,
    ),
    (
        "deleted event",
        "DELETE FROM events WHERE session_id = 'chat-1' AND position = 4",
        "missing_event",
        4,
    ),
    (
        "swapped events",
        # through a free position, as the UNIQUE constraint wants
        "UPDATE events SET position = 999 WHERE session_id = 'chat-1' AND position = 3;"
        "UPDATE events SET position = 3 WHERE session_id = 'chat-1' AND position = 6;"
        "UPDATE events SET position = 6 WHERE session_id = 'chat-1' AND position = 999",
        "missing_event",  # position 6 turns up where 3 belongs
        3,
    ),
    (
        "truncated tail",
        "DELETE FROM events WHERE session_id = 'chat-1' AND position > 7",
        "truncated",
        8,
    ),
    (
        "edited recorded_at",
        "UPDATE events SET recorded_at = recorded_at + 1 WHERE session_id = 'chat-1'"
        " AND position = 2",
        "hash_mismatch",
        2,
    ),
    (
        "edited hash",  # another event's valid hash
        "UPDATE events SET hash = (SELECT hash FROM events WHERE session_id = 'chat-0'"
        " AND position = 1) WHERE session_id = 'chat-1' AND position = 5",
        "hash_mismatch",
        5,
    ),
    (
        "appended copy",  # the last event again, one position on
        "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
        " SELECT session_id, 11, kind, recorded_at, data, hash FROM events"
        " WHERE session_id = 'chat-1' AND position = 10",
        "hash_mismatch",
        11,
    ),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("statement", "kind", "position"),
    [t[1:] for t in TAMPERING],
    ids=[t[0] for t in TAMPERING],
)
async def test_tampering_is_found_at_its_first_bad_position(
    target: str, statement: str, kind: str, position: int
) -> None:
    async with eventmem.open(target) as store:
        await _populate(store)
    with raw_database(target) as raw:
        raw.allow_tampering()
        for part in statement.split(";"):
            raw.execute(part)
        raw.restore_triggers()
    async with eventmem.open(target) as store:
        report = await store.verify()
    assert not report.ok
    assert [(p.session_id, p.kind, p.position) for p in report.problems] == [
        ("chat-1", kind, position)
    ]


async def test_an_edited_kind_column_is_found(target: str) -> None:
    """``kind`` duplicates the event's own tag outside the hash: an edit makes the store
    disagree with itself (its export is refused on import), so verify must report it."""
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2)
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute("UPDATE events SET kind = 'clear' WHERE session_id = 'chat-1' AND position = 2")
        raw.restore_triggers()
    async with eventmem.open(target) as store:
        report = await store.verify()
    assert [(p.session_id, p.position, p.kind) for p in report.problems] == [
        ("chat-1", 2, "kind_mismatch")
    ]


async def test_a_tampered_projection_is_found(target: str) -> None:
    async with eventmem.open(target) as store:
        await _populate(store)
    with raw_database(target) as raw:
        raw.execute("UPDATE view_messages SET tokens = tokens + 1 WHERE session_id = 'agent-2'")
    async with eventmem.open(target) as store:
        report = await store.verify()
        assert [(p.session_id, p.kind) for p in report.problems] == [
            ("agent-2", "projection_mismatch")
        ]
        await store.rebuild()
        assert (await store.verify()).ok


# -- rebuild ----------------------------------------------------------------------------


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM view_messages",
        "DELETE FROM sessions",
        # a row holding a forged message instead of pointing at the log (as before schema 5)
        "UPDATE view_messages SET position = NULL, idx = NULL,"
        ' message = \'{"role":"human","content":"forged"}\'',
        "UPDATE view_messages SET idx = idx + 1",
        "UPDATE sessions SET watermark = 0, total_tokens = 7",
    ],
)
async def test_rebuild_restores_projections_from_events_alone(target: str, damage: str) -> None:
    async with eventmem.open(target) as store:
        await _populate(store)
        sessions = await store.sessions()
        before = {s: await store.messages(s) for s in sessions}
    with raw_database(target) as raw:
        snapshot = raw.execute("SELECT * FROM sessions ORDER BY session_id")
        view = raw.execute("SELECT * FROM view_messages ORDER BY session_id, seq")
        raw.execute(damage)
    async with eventmem.open(target) as store:
        assert await store.rebuild() == len(sessions)
        assert {s: await store.messages(s) for s in sessions} == before
        assert (await store.verify()).ok
    with raw_database(target) as raw:
        assert raw.execute("SELECT * FROM sessions ORDER BY session_id") == snapshot
        assert raw.execute("SELECT * FROM view_messages ORDER BY session_id, seq") == view


# -- export / import ----------------------------------------------------------------------


async def _export(store: eventmem.Store, session: str | None = None) -> list[bytes]:
    return [line async for line in store.export(session)]


@pytest.mark.parametrize("copy_backend", BACKENDS, ids=lambda b: f"into-{b}")
async def test_export_then_import_reproduces_events_hashes_and_views(
    store: eventmem.Store, tmp_path: Path, copy_backend: str
) -> None:
    """From either backend into either backend (a migration between them)."""
    await _populate(store)
    lines = await _export(store)
    assert lines[0].startswith(b'{"format":"eventmem-export","version":2')
    assert lines[-1] == b'{"end":"eventmem-export","events":%d}\n' % (len(lines) - 2)
    assert len(lines) == 2 + await store.count_events()
    with fresh_target(copy_backend, tmp_path) as copy_target:
        await _check_import(store, copy_target, lines)


async def _check_import(store: eventmem.Store, copy_target: str, lines: list[bytes]) -> None:
    async with eventmem.open(copy_target) as copy:
        assert await copy.import_events(lines) == (6, len(lines) - 2)
        for session in await store.sessions():
            original = [e async for e in store.events(session)]
            imported = [e async for e in copy.events(session)]
            assert [(e.position, e.hash, e.recorded_at, e.data) for e in imported] == [
                (e.position, e.hash, e.recorded_at, e.data) for e in original
            ]
            assert await copy.messages(session) == await store.messages(session)
        assert (await copy.verify()).ok
        assert await _export(copy) == lines


async def test_export_of_one_session(store: eventmem.Store) -> None:
    await _populate(store)
    lines = await _export(store, "chat-0")
    assert len(lines) == 2 + len([e async for e in store.events("chat-0")])
    assert all(b'"session_id":"chat-0"' in line for line in lines[1:-1])


ImportCase = Callable[[list[bytes]], list[bytes]]


def _tamper_line(lines: list[bytes]) -> list[bytes]:
    changed = list(lines)
    index = next(i for i, line in enumerate(lines) if b'"content":"q0 "' in line)
    changed[index] = lines[index].replace(b'"content":"q0 "', b'"content":"qX "')
    return changed


def _drop_line_and_fix_count(lines: list[bytes]) -> list[bytes]:
    end = b'{"end":"eventmem-export","events":%d}\n' % (len(lines) - 3)
    return [*lines[:3], *lines[4:-1], end]


IMPORT_REFUSALS: list[tuple[str, ImportCase, str]] = [
    ("tampered content", _tamper_line, "hash_mismatch"),
    # read line by line: the gap shows before the end line's count can
    ("dropped line", lambda ls: ls[:3] + ls[4:], "missing_event"),
    ("dropped line, count forged", _drop_line_and_fix_count, "missing_event"),
    ("cut short", lambda ls: ls[:-3], "no end line"),
    ("no header", lambda ls: ls[1:], "header"),
    ("empty", lambda ls: [], "empty"),
    ("garbage line", lambda ls: [*ls[:3], b"{not json", *ls[4:]], "not an export line"),
    ("foreign header", lambda ls: [b'{"format":"other","version":1}\n', *ls[1:]], "unsupported"),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("change", "message"),
    [c[1:] for c in IMPORT_REFUSALS],
    ids=[c[0] for c in IMPORT_REFUSALS],
)
async def test_bad_imports_are_refused_and_write_nothing(
    store: eventmem.Store, backend: str, tmp_path: Path, change: ImportCase, message: str
) -> None:
    await _populate(store, sessions=1, turns=4)
    lines = await _export(store)
    with fresh_target(backend, tmp_path) as copy_target:
        async with eventmem.open(copy_target) as copy:
            with pytest.raises(eventmem.ImportRefusedError, match=message):
                await copy.import_events(change(lines))
            assert await copy.count_events() == 0
            assert await copy.sessions() == []


async def test_importing_twice_is_refused(
    store: eventmem.Store, backend: str, tmp_path: Path
) -> None:
    await _populate(store, sessions=1, turns=3)
    lines = await _export(store)
    with fresh_target(backend, tmp_path) as copy_target:
        async with eventmem.open(copy_target) as copy:
            await copy.import_events(lines)
            count = await copy.count_events()
            with pytest.raises(eventmem.ImportRefusedError, match="already exists"):
                await copy.import_events(lines)
            assert await copy.count_events() == count
            assert (await copy.verify()).ok


async def test_importing_into_a_store_that_has_the_session_is_refused(
    store: eventmem.Store, backend: str, tmp_path: Path
) -> None:
    """An import never appends to, or interleaves with, a session the store already has."""
    await _populate(store, sessions=1, turns=3)
    lines = await _export(store, "chat-0")
    with fresh_target(backend, tmp_path) as copy_target:
        async with eventmem.open(copy_target) as copy:
            await copy.token_buffer("chat-0").asave_context({"input": "x"}, {"output": "y"})
            with pytest.raises(eventmem.ImportRefusedError, match="already exists"):
                await copy.import_events(lines)
            assert await copy.count_events() == 1
            assert (await copy.verify()).ok


async def test_fold_of_events_equals_every_stored_projection(store: eventmem.Store) -> None:
    await _populate(store)
    for session in await store.sessions():
        events = [e.data async for e in store.events(session)]
        assert fold(events).messages == await store.messages(session)


# -- messages that do not decode, under a chain made to verify ------------------------


async def _forge_first_message(target: str, turns: int, role: bytes) -> None:
    """Give the session's first event a message of another ``role`` and chain the whole
    session (and its head) again: only decoding the message can tell."""
    async with eventmem.open(target) as store:
        memory = store.token_buffer("forged", max_token_limit=30)
        for t in range(turns):
            await memory.asave_context({"input": f"question {t}"}, {"output": f"answer {t}"})
    with raw_database(target) as raw:
        raw.allow_tampering()
        previous = raw.rechain(
            "forged",
            lambda position, data: (
                data.replace(b'"role":"human"', b'"role":' + role, 1) if position == 1 else data
            ),
        )
        raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = 'forged'", (previous,))
        raw.restore_triggers()


async def test_a_visible_message_that_does_not_decode_is_reported(target: str) -> None:
    await _forge_first_message(target, turns=1, role=b'"robot"')
    async with eventmem.open(target) as store:
        report = await store.verify()
        single = await store.verify_session("forged")
    assert [(p.session_id, p.position, p.kind) for p in report.problems] == [
        ("forged", 1, "undecodable")
    ]
    assert [(p.position, p.kind) for p in single.problems] == [(1, "undecodable")]


async def test_a_pruned_message_that_does_not_decode_is_for_verify_session(target: str) -> None:
    """verify folds with the messages left as JSON and decodes the ones a load would:
    a forged, re-chained message the buffer no longer holds is found by verify_session,
    which decodes every message of its session."""
    await _forge_first_message(target, turns=6, role=b'"robot"')
    async with eventmem.open(target) as store:
        assert (await store.verify()).ok
        single = await store.verify_session("forged")
    assert [(p.position, p.kind) for p in single.problems] == [(1, "undecodable")]
