"""`Store.session_page` (a page of session summaries sorted and filtered in SQL) and
`Store.verify_session` (one session's checks), on both backends, against the whole-store
reads they stand for (`session_summaries`, `verify`)."""

from __future__ import annotations

import pytest

import eventmem
from tests.backends import raw_database
from tests.sample_sessions import save_samples

pytestmark = pytest.mark.anyio

_IDS = ["b_1", "a%2", "B_3", "c\\4", "ab", "plain"]


async def _sessions(store: eventmem.Store) -> None:
    for n, session in enumerate(_IDS):
        memory = store.token_buffer(session, max_token_limit=1000)
        for i in range(n + 1):
            await memory.asave_context({"input": f"q{i} " * (n + 1)}, {"output": "a"})


async def test_a_page_is_the_summaries_in_order_cut_by_the_database(
    store: eventmem.Store,
) -> None:
    await _sessions(store)
    every = await store.session_summaries()
    matching, rows = await store.session_page()
    assert matching == len(_IDS)
    assert rows == every
    _, by_events = await store.session_page(order="events", descending=True)
    assert [r.session_id for r in by_events] == list(reversed(_IDS))
    _, by_tokens = await store.session_page(order="tokens")
    assert [r.tokens for r in by_tokens] == sorted(r.tokens for r in every)
    _, latest = await store.session_page(order="last", descending=True, limit=1)
    assert latest == [every[-1]]
    _, by_id = await store.session_page(order="id")
    assert {r.session_id for r in by_id} == set(_IDS)
    _, second = await store.session_page(offset=2, limit=2)
    assert second == every[2:4]
    assert await store.session_page(offset=100) == (len(_IDS), [])


async def test_a_search_matches_its_text_literally_ignoring_ascii_case(
    store: eventmem.Store,
) -> None:
    await _sessions(store)

    async def found(search: str) -> set[str]:
        matching, rows = await store.session_page(search=search)
        assert matching == len(rows)
        return {r.session_id for r in rows}

    assert await found("_") == {"b_1", "B_3"}  # not a wildcard
    assert await found("%") == {"a%2"}
    assert await found("\\") == {"c\\4"}
    assert await found("b_") == {"b_1", "B_3"}
    assert await found("AB") == {"ab"}
    assert await found("nothing") == set()


@pytest.mark.parametrize(
    "arguments",
    [
        {"order": "size"},
        {"order": None},
        {"search": 3},
        {"descending": 1},
        {"offset": -1},
        {"limit": -1},
        {"limit": True},
        {"offset": 2**63},
        {"limit": "5"},
    ],
)
async def test_bad_page_arguments_are_refused(
    store: eventmem.Store, arguments: dict[str, object]
) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        await store.session_page(**arguments)  # type: ignore[arg-type]


async def test_verify_session_names_the_first_bad_position_of_that_session_only(
    target: str,
) -> None:
    async with eventmem.open(target) as store:
        await save_samples(store)
        report = await store.verify_session("chat")
        assert report.ok
        assert (report.sessions, report.events) == (1, 3)
        assert (await store.verify_session("unknown")).sessions == 0
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute(
            "UPDATE events SET recorded_at = recorded_at + 1"
            " WHERE session_id = 'chat' AND position = 2"
        )
        raw.restore_triggers()
    async with eventmem.open(target, read_only=True) as store:
        report = await store.verify_session("chat")
        assert [(p.session_id, p.position, p.kind) for p in report.problems] == [
            ("chat", 2, "hash_mismatch")
        ]
        assert (await store.verify_session("agent")).ok
        whole = await store.verify()
        assert [p for p in whole.problems if p.session_id == "chat"] == report.problems


async def test_verify_session_finds_a_damaged_buffer_row_and_a_cut_log(target: str) -> None:
    async with eventmem.open(target) as store:
        await save_samples(store)
    with raw_database(target) as raw:
        raw.execute("UPDATE view_messages SET tokens = tokens + 1 WHERE session_id = 'restart'")
        raw.allow_tampering()
        raw.execute("DELETE FROM events WHERE session_id = 'agent' AND position = 6")
        raw.restore_triggers()
    async with eventmem.open(target, read_only=True) as store:
        restart = await store.verify_session("restart")
        assert [(p.position, p.kind) for p in restart.problems] == [(3, "projection_mismatch")]
        agent = await store.verify_session("agent")
        assert [(p.position, p.kind) for p in agent.problems] == [(6, "truncated")]
        assert (await store.verify_session("chat")).ok


def test_the_blocking_store_pages_and_verifies_a_session(target: str) -> None:
    with eventmem.connect(target) as store:
        for session in ("one", "two", "three"):
            store.token_buffer(session, max_token_limit=100).save_context(
                {"input": session}, {"output": "ok"}
            )
        assert store.session_page(search="t", order="id") == (
            2,
            [s for s in store.session_summaries() if s.session_id in ("three", "two")][::-1],
        )
        assert store.verify_session("two").ok
        with pytest.raises(eventmem.InvalidInputError):
            store.session_page(order="nope")
