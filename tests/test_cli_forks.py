"""``eventmem fork`` and ``eventmem rewind``, and what ``log`` and ``buffer`` show of
forks and rewinds, on a SQLite file and a PostgreSQL schema alike."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import eventmem
from eventmem import timeline
from tests.backends import BACKENDS, drop_target, new_target
from tests.test_cli import assert_clean_error, json_lines, ok, run

pytestmark = pytest.mark.postgres_sample(2, across="module")


def _question(i: int) -> dict[str, str]:
    return {"input": f"Question {i}: what is the capital of country {i}?"}


def _answer(i: int) -> dict[str, str]:
    return {"output": f"The capital of country {i} is City {i}."}


async def _populate(db: str) -> None:
    """``chat``: four turns under a limit that holds about two of them."""
    async with eventmem.open(db) as store:
        chat = store.token_buffer("chat", max_token_limit=80)
        for i in range(4):
            await chat.asave_context(_question(i), _answer(i))


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store holding ``chat`` (each backend in turn), dropped afterwards."""
    if request.param == "postgresql":
        request.getfixturevalue("_postgres_server")
    target = new_target(str(request.param), tmp_path)
    anyio.run(_populate, target)
    yield target
    drop_target(target)


def _messages(db: str, session: str, as_of: int | None = None) -> list[eventmem.Message]:
    with eventmem.connect(db, create=False) as store:
        return store.messages(session, as_of=as_of)


def _save(db: str, session: str, i: int) -> None:
    with eventmem.connect(db, create=False) as store:
        store.token_buffer(session, max_token_limit=80).save_context(_question(i), _answer(i))


_ROW = re.compile(r"^ *(\d+)  \S+Z  (\S+) +\d+  (\S+(?: \S+)*?) {2,}(.*)$")


def _rows(text: str) -> list[list[str]]:
    """The event lines of a ``log`` table: [position, kind, buffer marker, summary]."""
    return [list(m.groups()) for m in map(_ROW.match, text.splitlines()) if m is not None]


# -- fork --------------------------------------------------------------------------------


def test_fork_prints_the_new_version_and_begins_the_new_session(db: str, tmp_path: Path) -> None:
    out = ok("fork", db, "chat", "alt", "--at", "2", cwd=tmp_path)
    assert out == "forked chat at position 2 as alt: alt is at version 3\n"
    assert _messages(db, "alt") == _messages(db, "chat", as_of=2)
    assert len(_messages(db, "chat", as_of=4)) == len(_messages(db, "chat"))  # untouched

    # default: at the source's last position; --json
    (row,) = json_lines(ok("fork", db, "chat", "now", "--json", cwd=tmp_path))
    assert row == {"session_id": "now", "parent": "chat", "at": 4, "version": 5}
    assert _messages(db, "now") == _messages(db, "chat")
    assert ok("verify", db, cwd=tmp_path).startswith("ok: 3 sessions")


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "x"], "there is no session 'nobody' to fork"),
        (["chat", "chat"], "session 'chat' already exists; a fork begins a new session"),
        (["chat", "x", "--at", "5"], "session 'chat' has 4 events; a fork at 5 is in its future"),
        (["chat", ""], "session id"),
    ],
)
def test_fork_refusals_are_one_line_and_write_nothing(
    db: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("fork", db, *args, cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stdout == ""
    assert result.stderr.startswith("eventmem: error: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    with eventmem.connect(db, create=False) as store:
        assert store.sessions() == ["chat"]
        assert store.version("chat") == 4


@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize("value", ["-1", "two", "1.5", ""])
def test_fork_and_rewind_refuse_bad_positions_as_usage_errors(
    db: str, tmp_path: Path, value: str
) -> None:
    for args in (
        ["fork", db, "chat", "x", "--at", value],
        ["rewind", db, "chat", "--to", value],
        ["rewind", db, "chat", "--to", "1", "--expected-version", value],
    ):
        result = run(*args, cwd=tmp_path)
        assert_clean_error(result, 2)
        assert "expected a whole number" in result.stderr or "must be >= 0" in result.stderr
    with eventmem.connect(db, create=False) as store:
        assert store.sessions() == ["chat"]


def test_rewind_needs_to(db: str, tmp_path: Path) -> None:
    result = run("rewind", db, "chat", cwd=tmp_path)
    assert_clean_error(result, 2)
    assert "--to" in result.stderr


# -- rewind ------------------------------------------------------------------------------


def test_rewind_restores_an_earlier_view_and_prints_the_new_version(
    db: str, tmp_path: Path
) -> None:
    before = _messages(db, "chat", as_of=1)
    out = ok("rewind", db, "chat", "--to", "1", "--expected-version", "4", cwd=tmp_path)
    assert out == "rewound chat to position 1 (2 messages restored): chat is at version 5\n"
    assert _messages(db, "chat") == before
    assert len(_messages(db, "chat", as_of=4)) > 0  # the past views are still there
    (row,) = json_lines(ok("rewind", db, "chat", "--to", "0", "--json", cwd=tmp_path))
    assert row == {"session_id": "chat", "to": 0, "version": 6, "restored": 0}
    assert _messages(db, "chat") == []
    assert ok("verify", db, cwd=tmp_path).startswith("ok: ")


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "--to", "1"], "there is no session 'nobody' to rewind"),
        (["chat", "--to", "5"], "session 'chat' has 4 events; a rewind to 5 is in its future"),
        (["chat", "--to", "1", "--expected-version", "3"], "is at version 4, not the expected 3"),
    ],
)
def test_rewind_refusals_are_one_line_and_write_nothing(
    db: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("rewind", db, *args, cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    with eventmem.connect(db, create=False) as store:
        assert store.version("chat") == 4


# -- log ---------------------------------------------------------------------------------


def test_log_of_a_fork_names_its_lineage_and_marks_what_it_inherited(
    db: str, tmp_path: Path
) -> None:
    ok("fork", db, "chat", "alt", "--at", "2", cwd=tmp_path)
    _save(db, "alt", 9)
    ok("fork", db, "alt", "alt2", "--at", "3", cwd=tmp_path)
    text = ok("log", db, "alt2", cwd=tmp_path)
    lines = text.splitlines()
    assert lines[0] == "fork of alt at position 3 (inherited: 1-2 from chat, 3 from alt)"
    rows = _rows(text)
    assert [row[:2] for row in rows] == [["1", "turn"], ["2", "turn"], ["3", "fork"], ["4", "fork"]]
    assert rows[0][3].startswith("[chat] Human: Question 0")
    assert rows[1][3].startswith("[chat] Human: Question 1")
    assert rows[2][3] == "[alt] fork of chat at position 2"
    assert rows[3][3] == "fork of alt at position 3"
    assert lines[-1].startswith("4 events; ")

    # the JSON names the session holding each event
    objects = json_lines(ok("log", db, "alt2", "--json", cwd=tmp_path))
    assert [o["session_id"] for o in objects] == ["chat", "chat", "alt", "alt2"]
    assert objects[3]["data"] == {"kind": "fork", "parent": "alt", "at": 3,
                                  "parent_hash": objects[2]["hash"]}  # fmt: skip
    assert objects[3]["summary"] == "fork of alt at position 3"
    # a session that is not a fork has no lineage line
    assert ok("log", db, "chat", cwd=tmp_path).splitlines()[0].startswith("pos")
    # the visible markers add up to what a load returns
    visible = sum(sum(o["message_visible"]) for o in objects)
    assert visible == len(_messages(db, "alt2"))


def test_log_marks_what_a_rewind_rewound_over(db: str, tmp_path: Path) -> None:
    ok("rewind", db, "chat", "--to", "1", cwd=tmp_path)
    _save(db, "chat", 5)
    text = ok("log", db, "chat", cwd=tmp_path)
    rows = _rows(text)
    assert [row[1:3] for row in rows] == [
        ["turn", "visible"],
        ["turn", "rewound"],
        ["turn", "rewound"],
        ["turn", "rewound"],
        ["rewind", "-"],
        ["turn", "visible"],
    ]
    for row in rows[1:4]:
        assert row[3].startswith("[rewound at 5] Human: ")
    assert rows[4][3] == "rewind to 1, 2 messages restored"
    assert not rows[0][3].startswith("[")
    assert not rows[5][3].startswith("[")
    # restored messages count once as having entered the buffer
    assert text.splitlines()[-1] == "6 events; 10 messages entered the buffer, 4 visible now"
    objects = json_lines(ok("log", db, "chat", "--json", cwd=tmp_path))
    assert [o["rewound_at"] for o in objects] == [None, 5, 5, 5, None, None]
    assert [o["buffer"] for o in objects] == [r[2] for r in rows]
    visible = sum(sum(o["message_visible"]) for o in objects)
    assert visible == len(_messages(db, "chat")) == 4
    csv = ok("log", db, "chat", "--csv", cwd=tmp_path).splitlines()
    assert csv[0].split(",")[8:10] == ["message_visible", "rewound_at"]


def test_a_second_rewind_marks_the_first_rewind_over_and_brings_messages_back(
    db: str, tmp_path: Path
) -> None:
    ok("rewind", db, "chat", "--to", "1", cwd=tmp_path)  # 5: over 2-4
    ok("rewind", db, "chat", "--to", "4", cwd=tmp_path)  # 6: over 5, brings 4's view back
    objects = json_lines(ok("log", db, "chat", "--json", cwd=tmp_path))
    assert [o["rewound_at"] for o in objects] == [None, 5, 5, 5, 6, None]
    assert _messages(db, "chat") == _messages(db, "chat", as_of=4)
    # position 4's messages are in the buffer again, so it is no longer "rewound"
    assert objects[3]["buffer"] == "visible"
    visible = sum(sum(o["message_visible"]) for o in objects)
    assert visible == len(_messages(db, "chat"))


def test_a_pop_after_a_rewind_is_placed_on_the_restored_messages(db: str, tmp_path: Path) -> None:
    async def write() -> None:
        async with eventmem.open(db, create=False) as store:
            history = store.history("pops")
            await history.append([eventmem.Message("human", f"m{i}") for i in range(4)])
            await history.append([eventmem.Message("ai", "later")])
            await store.rewind("pops", to=1)
            await store.history("pops").pop(1)

    anyio.run(write)
    objects = json_lines(ok("log", db, "pops", "--json", cwd=tmp_path))
    assert [o["kind"] for o in objects] == ["messages", "messages", "rewind", "retract"]
    assert objects[0]["message_visible"] == [True, True, True, False]
    assert objects[0]["buffer"] == "3/4 visible, 1 popped"
    assert objects[1]["buffer"] == "rewound"


# -- buffer ------------------------------------------------------------------------------


def test_buffer_reads_a_fork_through_its_parent(db: str, tmp_path: Path) -> None:
    ok("fork", db, "chat", "alt", "--at", "2", cwd=tmp_path)
    _save(db, "alt", 9)
    for at in range(5):
        view = json_lines(ok("buffer", db, "alt", "--at", str(at), "--json", cwd=tmp_path))[0]
        expected = [m.to_openai() for m in _messages(db, "alt", as_of=at)]
        assert view["messages"] == expected
        assert view["position"] == at
    now = json_lines(ok("buffer", db, "alt", "--json", cwd=tmp_path))[0]
    assert now["messages"] == [m.to_openai() for m in _messages(db, "alt")]
    assert "City 9" in ok("buffer", db, "alt", cwd=tmp_path)
    result = run("buffer", db, "alt", "--at", "5", cwd=tmp_path)
    assert_clean_error(result, 1)
    assert "in its future" in result.stderr


def test_buffer_time_travels_across_a_rewind(db: str, tmp_path: Path) -> None:
    ok("rewind", db, "chat", "--to", "2", cwd=tmp_path)
    _save(db, "chat", 7)
    for at in range(7):
        view = json_lines(ok("buffer", db, "chat", "--at", str(at), "--json", cwd=tmp_path))[0]
        assert view["messages"] == [m.to_openai() for m in _messages(db, "chat", as_of=at)]
    now = json_lines(ok("buffer", db, "chat", "--json", cwd=tmp_path))[0]
    assert now["messages"] == [m.to_openai() for m in _messages(db, "chat")]


def test_buffer_what_if_over_a_rewind_restores_the_replays_own_view(
    db: str, tmp_path: Path
) -> None:
    ok("rewind", db, "chat", "--to", "2", cwd=tmp_path)
    wide = json_lines(ok("buffer", db, "chat", "--limit", "1000", "--json", cwd=tmp_path))[0]
    assert len(wide["messages"]) == 4  # positions 1 and 2, none pruned under 1000 tokens
    at_two = json_lines(
        ok("buffer", db, "chat", "--limit", "1000", "--at", "2", "--json", cwd=tmp_path)
    )[0]
    assert wide["messages"] == at_two["messages"]
    other = json_lines(ok("buffer", db, "chat", "--model", "gpt-4", "--json", cwd=tmp_path))[0]
    assert other["counter"] == "openai-chat:cl100k_base"
    assert other["messages"] == [m.to_openai() for m in _messages(db, "chat", as_of=2)]


@pytest.mark.anyio
async def test_placement_of_a_list_matches_the_store(db: str) -> None:
    async with eventmem.open(db, create=False) as store:
        await store.rewind("chat", to=2)
        events = [e.data async for e in store.events("chat")]
        assert timeline.place(events, "chat") == await timeline.placement(store, "chat")
