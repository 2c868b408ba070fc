"""The ``eventmem`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import pytest

import eventmem
from eventmem.cli import DEFAULT_DEMO_DB, DEFAULT_DEMO_LIMIT, DEMO_CONVERSATION, main

TURNS = len(DEMO_CONVERSATION)


def _console_script() -> Path:
    """The ``eventmem`` script pip installed next to this interpreter."""
    bindir = Path(sys.executable).parent
    for name in ("eventmem", "eventmem.exe"):
        if (bindir / name).exists():
            return bindir / name
    pytest.fail(f"no 'eventmem' console script in {bindir}; is eventmem pip-installed?")


def run(
    *args: str, cwd: Path, script: bool = False, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(_console_script())] if script else [sys.executable, "-m", "eventmem"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def session_summary(db: Path) -> list[tuple[int, int, int]]:
    """Per session: (events in the log, buffer tokens, messages visible)."""
    with eventmem.connect(db, create=False) as store:
        summary = []
        for session in store.sessions():
            messages = store.messages(session)
            events = store.events(session)
            summary.append((len(events), eventmem.count_tokens(messages), len(messages)))
    return summary


def test_demo_prunes_the_buffer_and_keeps_the_log(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = run("demo", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"reopened {db}: buffer identical" in result.stdout
    assert "\033[" not in result.stdout  # no colour codes when not a terminal
    assert len(result.stdout.splitlines()) <= 40

    [(events, tokens, visible)] = session_summary(db)
    assert events == TURNS  # one event per save_context
    assert tokens <= DEFAULT_DEMO_LIMIT
    assert 0 < visible < 2 * TURNS  # pruned: the buffer is shorter than the history


def test_each_run_adds_a_session(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = run("demo", "--db", str(db), cwd=tmp_path)
    second = run("demo", "--db", str(db), cwd=tmp_path, script=True)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "2 sessions" in second.stdout
    summary = session_summary(db)
    assert len(summary) == 2
    assert summary[0] == summary[1]  # the same script gives the same buffer


def test_demo_defaults_to_a_file_in_the_current_directory(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path, script=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / DEFAULT_DEMO_DB).is_file()


def test_demo_limit_and_model(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = run("demo", "--db", str(db), "--limit", "100000", "--model", "gpt-4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [(events, _, visible)] = session_summary(db)
    assert (events, visible) == (TURNS, 2 * TURNS)  # nothing pruned under a large limit
    assert "openai-chat:cl100k_base" in result.stdout


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "console-script"])
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["demo", "--help"]])
def test_help_and_version(tmp_path: Path, args: list[str], script: bool) -> None:
    result = run(*args, cwd=tmp_path, script=script)
    assert result.returncode == 0, result.stderr
    assert "eventmem" in result.stdout
    if args == ["--version"]:
        assert result.stdout.strip() == f"eventmem {eventmem.__version__}"
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["demo", "--limit", "-1"], "--limit"),
        (["demo", "--limit", "abc"], "--limit"),
        (["demo", "--model", "not-a-model"], "--model"),
        (["demo", "--no-such-option"], "unrecognized"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*args, cwd=tmp_path)
    assert_clean_error(result, 2)
    assert message in result.stderr
    assert "usage: eventmem" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_junk_file_is_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    content = b"these are not the bytes of a SQLite database\x00\xff\x10" * 20
    junk.write_bytes(content)
    result = run("demo", "--db", str(junk), cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not a SQLite database" in result.stderr
    assert junk.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    result = run("demo", "--db", str(tmp_path / "missing" / "demo.db"), cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: ")
    assert "does not exist" in result.stderr


def test_directory_as_db_is_an_error(tmp_path: Path) -> None:
    result = run("demo", "--db", str(tmp_path), cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: ")


def test_main_returns_the_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["demo", "--limit", "x"]) == 2
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"junk" * 100)
    assert main(["demo", "--db", str(junk)]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("eventmem: error: ")


# -- the store commands: sessions, log, buffer, verify, rebuild, export, import, stats -------

STORE_COMMANDS = ("sessions", "log", "buffer", "verify", "rebuild", "export", "import", "stats")
SESSIONS = ("chat", "restart", "agent")
T = TypeVar("T")


def _question(i: int) -> dict[str, str]:
    return {"input": f"Question number {i}: what is the capital of country {i}?"}


def _answer(i: int) -> dict[str, str]:
    return {"output": f"The capital of country {i} is City {i}."}


def _action(tool: str, i: int) -> dict[str, Any]:
    return {"tool": tool, "tool_input": {"q": i}, "log": f"calling {tool}", "message_log": []}


async def _populate(path: Path) -> None:
    async with eventmem.open(path) as store:
        # Three turns under a small limit: the first pruned, the second half pruned.
        chat = store.token_buffer("chat", max_token_limit=60)
        for i in range(3):
            await chat.asave_context(_question(i), _answer(i))
        restart = store.token_buffer("restart", max_token_limit=200)
        await restart.asave_context(_question(7), _answer(7))
        await restart.aclear()
        await restart.asave_context({"input": "Start over, please."}, {"output": "Sure."})
        # An agent: a live step then its turn (with a second step), a step a dead run
        # left behind (abandoned by the next turn), and a live step still pending.
        agent = store.agent_token_buffer("agent", max_token_limit=300)
        found = {"hits": 3, "top": "Lisbon is the capital of Portugal"}
        await agent.arecord_step(_action("search", 1), found)
        steps = [(_action("search", 1), found), (_action("calculator", 2), "42")]
        await agent.asave_context(
            {"input": "Capital of Portugal?"}, {"output": "Lisbon.", "intermediate_steps": steps}
        )
        dead = store.agent_token_buffer("agent", max_token_limit=300)
        await dead.arecord_step(_action("search", 3), "left behind")
        agent = store.agent_token_buffer("agent", max_token_limit=300)
        await agent.asave_context({"input": "And Spain?"}, {"output": "Madrid."})
        await agent.arecord_step(_action("search", 4), "still running")


@pytest.fixture(scope="module")
def store_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a pruned chat, a cleared chat and an agent session (read-only use)."""
    db = tmp_path_factory.mktemp("store") / "agent.db"
    anyio.run(_populate, db)
    return db


@pytest.fixture
def db_copy(store_db: Path, tmp_path: Path) -> Path:
    """A private copy of the store, for tests that change it."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(store_db, copy)
    return copy


def api(db: Path, fn: Callable[[eventmem.Store], Awaitable[T]]) -> T:
    """``fn(store)`` through the async API, for the expected values."""

    async def call() -> T:
        async with eventmem.open(db, create=False) as store:
            return await fn(store)

    return anyio.run(call)


async def _all_events(store: eventmem.Store, session: str) -> list[eventmem.StoredEvent]:
    return [event async for event in store.events(session)]


def ok(*args: str, cwd: Path, stdin: str | None = None) -> str:
    """Run a command that must succeed quietly; its stdout."""
    result = run(*args, cwd=cwd, stdin=stdin)
    assert result.returncode == 0, result
    assert result.stderr == ""  # no progress line, no warning when piped
    return result.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def tamper(db: Path, session: str, position: int) -> None:
    """Edit an event behind eventmem's back (the immutability trigger dropped first)."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER events_are_immutable_update")
    conn.execute(
        "UPDATE events SET data = replace(data, 'City', 'Town')"
        " WHERE session_id = ? AND position = ?",
        (session, position),
    )
    conn.commit()
    conn.close()


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_sessions(store_db: Path) -> None:
    expected = api(store_db, _summaries)
    text = ok("sessions", str(store_db), cwd=store_db.parent).splitlines()
    assert text[0].split() == ["session", "events", "visible", "tokens", "last", "activity"]
    for line, (session, events, visible, tokens, _) in zip(text[1:-1], expected, strict=True):
        fields = line.split()
        assert fields[:4] == [session, str(events), str(visible), str(tokens)]
        assert TIME.match(fields[4])
    assert text[-1] == "3 sessions, 12 events"

    rows = json_lines(ok("sessions", str(store_db), "--json", cwd=store_db.parent))
    assert [
        (r["session_id"], r["events"], r["visible_messages"], r["tokens"], r["last_activity"])
        for r in rows
    ] == expected
    assert {r["counter"] for r in rows} == {"openai-chat:o200k_base"}


async def _summaries(store: eventmem.Store) -> list[tuple[str, int, int, int, str]]:
    summaries = []
    for session in await store.sessions():
        events = await _all_events(store, session)
        messages = await store.messages(session)
        last = events[-1].recorded_at.isoformat().replace("+00:00", "Z")
        summaries.append(
            (session, len(events), len(messages), eventmem.count_tokens(messages), last)
        )
    return summaries


def test_log_table(store_db: Path) -> None:
    cwd = store_db.parent
    chat = ok("log", str(store_db), "chat", cwd=cwd).splitlines()
    assert chat[0].split() == ["pos", "time", "kind", "tokens", "buffer", "summary"]
    rows = [line.split(maxsplit=5) for line in chat[1:-1]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(TIME.match(r[1]) and r[2] == "turn" and r[3] == "33" for r in rows)
    # turn 1 fully pruned, turn 2 half (its answer is still in the buffer), turn 3 visible
    assert [r[4] for r in rows] == ["pruned", "1/2", "visible"]
    assert rows[1][5] == (
        "visible  Human: Question number 1: what is the capita... → AI: The capital of "
        "country 1 is City 1."
    )
    assert chat[-1] == "3 events; 6 messages entered the buffer, 3 visible now"

    restart = ok("log", str(store_db), "restart", cwd=cwd).splitlines()
    assert [line.split()[2:5] for line in restart[1:-1]] == [
        ["turn", "33", "pruned"],
        ["clear", "0", "-"],
        ["turn", "15", "visible"],
    ]

    agent = ok("log", str(store_db), "agent", cwd=cwd).splitlines()
    rows = [line.split(maxsplit=5) for line in agent[1:-1]]
    assert [(r[2], r[4]) for r in rows] == [
        ("step", "visible"),
        ("step", "visible"),
        ("turn", "visible"),
        ("step", "abandoned"),
        ("turn", "visible"),
        ("step", "pending"),
    ]
    assert rows[0][5].startswith('tool(search) → {"hits": 3')
    assert rows[0][5].endswith("(live)")
    assert rows[1][5] == "tool(calculator) → 42"
    assert rows[2][5] == "Human: Capital of Portugal? → AI: Lisbon. +2 steps"
    assert rows[4][5] == "Human: And Spain? → AI: Madrid. (1 abandoned)"


@pytest.mark.parametrize("session", SESSIONS)
def test_log_json(store_db: Path, session: str) -> None:
    async def expected(
        store: eventmem.Store,
    ) -> tuple[list[eventmem.StoredEvent], list[eventmem.Message]]:
        return await _all_events(store, session), await store.messages(session)

    events, buffer = api(store_db, expected)
    rows = json_lines(ok("log", str(store_db), session, "--json", cwd=store_db.parent))
    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        assert row["session_id"] == session
        assert (row["position"], row["global_position"]) == (
            event.position,
            event.global_position,
        )
        assert row["kind"] == event.kind
        assert row["hash"] == event.hash
        assert row["data"] == json.loads(msgspec.json.encode(event.data))
        assert row["recorded_at"] == event.recorded_at.isoformat().replace("+00:00", "Z")
        assert len(row["message_visible"]) == len(getattr(event.data, "messages", ()))
        assert row["summary"]
    # the messages marked visible are exactly the buffer's
    assert sum(sum(row["message_visible"]) for row in rows) == len(buffer)


def test_buffer(store_db: Path) -> None:
    cwd, db = store_db.parent, str(store_db)

    async def expected(store: eventmem.Store) -> dict[str, list[eventmem.Message]]:
        return {
            "now": await store.messages("chat"),
            "at 1": await store.messages("chat", as_of=1),
            "what-if": await store.replay("chat", max_token_limit=1000, model="gpt-4"),
        }

    buffers = api(store_db, expected)

    text = ok("buffer", db, "chat", cwd=cwd)
    now = buffers["now"]
    assert text.startswith(eventmem.buffer_string(now) + "\n\n")
    tokens = eventmem.count_tokens(now)
    assert text.splitlines()[-1] == (
        f"3 messages, {tokens}/60 tokens (openai-chat:o200k_base); now, after position 3"
    )

    result = json.loads(ok("buffer", db, "chat", "--json", cwd=cwd))
    assert result["messages"] == [m.to_openai() for m in now]
    assert (result["tokens"], result["max_token_limit"], result["position"]) == (tokens, 60, 3)

    result = json.loads(ok("buffer", db, "chat", "--at", "1", "--json", cwd=cwd))
    assert result["messages"] == [m.to_openai() for m in buffers["at 1"]]
    assert result["tokens"] == eventmem.count_tokens(buffers["at 1"])

    args = ("buffer", db, "chat", "--limit", "1000", "--model", "gpt-4", "--json")
    result = json.loads(ok(*args, cwd=cwd))
    what_if = buffers["what-if"]
    assert len(what_if) == 6  # nothing pruned under 1000 tokens
    assert result["messages"] == [m.to_openai() for m in what_if]
    assert result["tokens"] == eventmem.count_tokens(what_if, model="gpt-4")
    assert (result["what_if"], result["counter"]) == (True, "openai-chat:cl100k_base")

    text = ok("buffer", db, "chat", "--at", "2", "--limit", "1000", cwd=cwd)
    assert text.startswith(eventmem.buffer_string(what_if[:4]) + "\n\n")
    assert "what-if replay of positions 1-2 with --limit 1000; nothing was written" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", "--at", "4"], "session 'chat' has 3 events; --at 4 is in its future"),
        (["nobody"], "no session 'nobody' in agent.db (see 'eventmem sessions agent.db')"),
    ],
)
def test_buffer_errors(store_db: Path, args: list[str], message: str) -> None:
    result = run("buffer", "agent.db", *args, cwd=store_db.parent)
    assert_clean_error(result, 1)
    assert result.stdout == ""
    assert result.stderr == f"eventmem: error: {message}\n"


def test_verify(store_db: Path, db_copy: Path) -> None:
    cwd = store_db.parent  # (the text of a passing verify: see the round-trip test)
    report = json.loads(ok("verify", str(store_db), "--json", cwd=cwd))
    assert report == {"ok": True, "sessions": 3, "events": 12, "problems": []}

    tamper(db_copy, "chat", 2)
    result = run("verify", str(db_copy), cwd=cwd)
    assert_clean_error(result, 1)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("session chat position 2: hash_mismatch: ")
    assert lines[-1] == "1 problem in 1 session (3 sessions, 12 events checked)"

    result = run("verify", str(db_copy), "--json", cwd=cwd)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert (problem["session_id"], problem["position"], problem["kind"]) == (
        "chat",
        2,
        "hash_mismatch",
    )


def test_rebuild_repairs_a_damaged_buffer(db_copy: Path) -> None:
    cwd = db_copy.parent
    conn = sqlite3.connect(db_copy)
    conn.execute("DELETE FROM view_messages WHERE session_id = 'agent'")  # not the log
    conn.commit()
    conn.close()
    report = api(db_copy, lambda store: store.verify())
    assert [p.kind for p in report.problems] == ["projection_mismatch"]

    text = ok("rebuild", str(db_copy), cwd=cwd)
    assert text == "rebuilt the buffers of 3 sessions from 12 events\n"
    assert json.loads(ok("rebuild", str(db_copy), "--json", cwd=cwd)) == {
        "sessions": 3,
        "events": 12,
    }
    assert ok("verify", str(db_copy), cwd=cwd) == "ok: 3 sessions, 12 events verified\n"


def test_export_import_round_trip(store_db: Path, tmp_path: Path) -> None:
    exported = ok("export", str(store_db), cwd=tmp_path)
    lines = exported.splitlines()
    assert json.loads(lines[0]) == {"format": "eventmem-export", "version": 1}
    assert len(lines) == 1 + 12 + 1  # header, events, end line
    dump = tmp_path / "agent.jsonl"
    dump.write_text(exported, encoding="utf-8")

    copy = tmp_path / "copy.db"
    assert ok("import", str(copy), str(dump), cwd=tmp_path) == (
        f"imported 3 sessions, 12 events into {copy}\n"
    )
    assert ok("verify", str(copy), cwd=tmp_path) == "ok: 3 sessions, 12 events verified\n"
    assert ok("export", str(copy), cwd=tmp_path) == exported  # same events and hashes
    assert api(copy, _views) == api(store_db, _views)  # ...and the same buffers

    stdin_copy = tmp_path / "stdin.db"
    result = ok("import", str(stdin_copy), "-", "--json", cwd=tmp_path, stdin=exported)
    assert json.loads(result) == {"sessions": 3, "events": 12}


async def _views(store: eventmem.Store) -> list[tuple[Any, ...]]:
    return [
        (session, await _all_events(store, session), await store.messages(session))
        for session in await store.sessions()
    ]


async def _export(store: eventmem.Store) -> bytes:
    return b"".join([line async for line in store.export()])


def test_import_refuses_twice_and_tampered_files(store_db: Path, tmp_path: Path) -> None:
    dump = tmp_path / "agent.jsonl"
    dump.write_bytes(api(store_db, _export))
    copy = tmp_path / "copy.db"
    ok("import", str(copy), str(dump), cwd=tmp_path)
    before = copy.read_bytes()
    again = run("import", str(copy), str(dump), cwd=tmp_path)
    assert_clean_error(again, 1)
    assert again.stderr == (
        "eventmem: error: session 'chat' already exists in this store; "
        "an import never merges into or duplicates a session\n"
    )
    assert copy.read_bytes() == before

    forged = tmp_path / "forged.jsonl"
    forged.write_text(dump.read_text().replace("City 1.", "Town 1."), encoding="utf-8")
    result = run("import", "new.db", str(forged), cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: line 3: session 'chat' position 2: ")
    assert "hash_mismatch" in result.stderr
    assert not (tmp_path / "new.db").exists()  # a refused import leaves no new file


def test_export_one_session_to_a_file(store_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "agent.jsonl"
    text = ok("export", str(store_db), "--session", "agent", "-o", str(out), cwd=tmp_path)
    assert text == f"exported 6 events of 1 session to {out}\n"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8  # header, 6 events, end line
    assert {json.loads(line)["session_id"] for line in lines[1:-1]} == {"agent"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.jsonl"]  # no partial file

    missing = run("export", str(store_db), "--session", "nobody", "-o", "x.jsonl", cwd=tmp_path)
    assert_clean_error(missing, 1)
    assert "no session 'nobody'" in missing.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_stats(store_db: Path) -> None:
    cwd = store_db.parent
    text = ok("stats", str(store_db), cwd=cwd).splitlines()
    facts = {line[:15].strip(): line[16:] for line in text}
    assert facts["schema version"] == "2"
    assert facts["sessions"] == "3"
    assert facts["events"] == "12 (clear 1, step 4, turn 7)"
    assert facts["messages"] == "16 entered buffers, 11 visible, 5 pruned"
    stats = json.loads(ok("stats", str(store_db), "--json", cwd=cwd))
    assert stats["file_bytes"] == store_db.stat().st_size
    assert stats["page_size"] * stats["page_count"] == stats["file_bytes"]
    assert stats["events_by_kind"] == {"clear": 1, "step": 4, "turn": 7}
    assert (stats["sessions"], stats["events"], stats["visible_messages"]) == (3, 12, 11)
    assert stats["wal_bytes"] == 0


READING = [
    ["sessions"],
    ["log", "DB", "chat"],
    ["buffer", "DB", "chat"],
    ["verify"],
    ["rebuild"],
    ["export"],
    ["stats"],
]


def _with_db(args: list[str], db: str) -> list[str]:
    return [args[0], db, *(a for a in args[1:] if a != "DB")]


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    result = run("log", "missing.db", "chat", cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr == "eventmem: error: cannot open missing.db: no such database file\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", READING, ids=[a[0] for a in READING])
def test_reading_commands_never_create_a_database(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    assert main(_with_db(args, str(missing))) == 1
    err = capsys.readouterr().err
    assert err == f"eventmem: error: cannot open {missing}: no such database file\n"
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(_with_db(args, str(empty))) == 1
    assert "the file is empty, not an eventmem database" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eventmem {command} ")
    assert "DB" in out


def test_help_in_a_subprocess(tmp_path: Path) -> None:
    result = run("import", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "'-' for standard input" in result.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_shows_on_a_terminal_only(store_db: Path) -> None:
    import pty

    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "eventmem", "verify", str(store_db)],
        stdout=subprocess.PIPE,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        terminal = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO once the process closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
        stdout = process.stdout.read() if process.stdout else b""
    os.close(primary)
    assert process.returncode == 0
    assert b"\rverify: 12/12 events" in terminal
    assert terminal.endswith(b"\r")  # the line is erased before the result is printed
    assert stdout == b"ok: 3 sessions, 12 events verified\n"  # the result itself is clean
