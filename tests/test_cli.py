"""The ``eventmem`` command: its arguments, output and exit status.

Most tests call ``eventmem.cli.main`` (what the console script calls) in this process,
with its own standard streams and working directory; a few run the installed console
script in a subprocess, as a user does.

The store commands run against a SQLite file and a PostgreSQL URL alike.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import psycopg
import pytest
from psycopg import sql

import eventmem
from eventmem.cli import DEFAULT_DEMO_DB, DEFAULT_DEMO_LIMIT, DEMO_CONVERSATION, main
from eventmem.store.migrate import known_migrations
from tests.backends import (
    BACKENDS,
    POSTGRES_URL,
    backend_of,
    drop_target,
    new_target,
    raw_database,
    schema_of,
)
from tests.sample_sessions import SAMPLE_SESSIONS, save_samples

pytestmark = pytest.mark.postgres_sample(2, across="module")

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
    """Run ``eventmem ARGS`` in ``cwd``: in this process, through ``main`` (what the
    console script calls), or with ``script=True`` as the installed console script in a
    subprocess. An exception that escapes ``main`` ends like an uncaught one in the
    command: a traceback on stderr and exit status 1."""
    if script:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
        return subprocess.run(
            [str(_console_script()), *args],
            cwd=cwd,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )
    return _run_in_process(list(args), cwd, stdin)


def _run_in_process(
    args: list[str], cwd: Path, stdin: str | None
) -> subprocess.CompletedProcess[str]:
    out, err = io.BytesIO(), io.BytesIO()
    streams = {
        "stdin": io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8"),
        "stdout": io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        "stderr": io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    }
    saved_streams = {name: getattr(sys, name) for name in streams}
    saved_env = {name: os.environ.get(name) for name in ("NO_COLOR", "COLUMNS")}
    saved_cwd = os.getcwd()
    os.environ.update(NO_COLOR="1", COLUMNS="100")
    for name, stream in streams.items():
        setattr(sys, name, stream)
    os.chdir(cwd)
    try:
        code = main(args)
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        os.chdir(saved_cwd)
        for name, stream in saved_streams.items():
            setattr(sys, name, stream)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for stream in streams.values():
            stream.flush()
    return subprocess.CompletedProcess(
        ["eventmem", *args], code, out.getvalue().decode(), err.getvalue().decode()
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def session_summary(db: Path | str) -> list[tuple[int, int, int]]:
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


def test_demo_on_postgresql(tmp_path: Path) -> None:
    target = new_target("postgresql", tmp_path)
    try:
        first = run("demo", "--db", target, cwd=tmp_path)
        second = run("demo", "--db", target, "--limit", "100000", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        assert f"reopened {target}: buffer identical" in first.stdout
        assert f"database: {target} (2 sessions; each run adds one)" in second.stdout
        schema = schema_of(target)
        assert second.stdout.splitlines()[-1] == (
            f"inspect it: psql {POSTGRES_URL} -c 'SELECT session_id, position, kind "
            f"FROM {schema}.events ORDER BY id'"
        )
        assert not list(tmp_path.iterdir())  # no file: the store is on the server
        [(events, tokens, visible), (events_2, _, visible_2)] = session_summary(target)
        assert (events, events_2) == (TURNS, TURNS)
        assert tokens <= DEFAULT_DEMO_LIMIT
        assert 0 < visible < visible_2 == 2 * TURNS
    finally:
        drop_target(target)


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
SESSIONS = SAMPLE_SESSIONS
T = TypeVar("T")


async def _populate(path: Path | str) -> None:
    async with eventmem.open(path) as store:
        await save_samples(store)


@pytest.fixture(scope="module", params=BACKENDS)
def store_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A store with a pruned chat, a cleared chat and an agent session (read-only use):
    a SQLite file named agent.db, then a PostgreSQL URL with a schema of its own."""
    yield from populated_db(request, tmp_path_factory, _populate)


def populated_db(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    populate: Callable[[str], Awaitable[None]],
) -> Iterator[str]:
    """The body of a module-wide store fixture over ``BACKENDS``: a store ``populate``
    filled (a SQLite file named agent.db, or a PostgreSQL schema), dropped afterwards."""
    if request.param == "postgresql":
        request.getfixturevalue("_postgres_server")
        db = new_target("postgresql", tmp_path_factory.mktemp("store"))
    else:
        db = str(tmp_path_factory.mktemp("store") / "agent.db")
    anyio.run(populate, db)
    yield db
    drop_target(db)


@pytest.fixture
def db_copy(store_db: str, tmp_path: Path) -> Iterator[str]:
    """A private copy of the store, for tests that change it (in PostgreSQL, the same
    sessions written again in a schema of their own)."""
    if backend_of(store_db) == "sqlite":
        copy = tmp_path / "copy.db"
        shutil.copyfile(store_db, copy)
        yield str(copy)
        return
    target = new_target("postgresql", tmp_path)
    anyio.run(_populate, target)
    yield target
    drop_target(target)


def fresh(store_db: str, tmp_path: Path, name: str) -> str:
    """A new store location on the same backend as ``store_db`` (a file, or a schema
    dropped after the test by :func:`dropping`)."""
    if backend_of(store_db) == "sqlite":
        return str(tmp_path / name)
    return new_target("postgresql", tmp_path)


@pytest.fixture
def dropping() -> Iterator[list[str]]:
    """Targets to drop after the test."""
    targets: list[str] = []
    yield targets
    for target in targets:
        drop_target(target)


def api(db: Path | str, fn: Callable[[eventmem.Store], Awaitable[T]]) -> T:
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


def tamper(db: str, session: str, position: int) -> None:
    """Edit an event behind eventmem's back (the immutability trigger switched off, then
    on again)."""
    with raw_database(db) as raw:
        raw.allow_tampering()
        raw.execute(
            "UPDATE events SET data = replace(data, 'City', 'Town')"
            " WHERE session_id = ? AND position = ?",
            (session, position),
        )
        raw.restore_triggers()


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_sessions(store_db: str, tmp_path: Path) -> None:
    expected = api(store_db, _summaries)
    text = ok("sessions", store_db, cwd=tmp_path).splitlines()
    assert text[0].split() == ["session", "events", "visible", "tokens", "last", "activity"]
    for line, (session, events, visible, tokens, _) in zip(text[1:-1], expected, strict=True):
        fields = line.split()
        assert fields[:4] == [session, str(events), str(visible), str(tokens)]
        assert TIME.match(fields[4])
    assert text[-1] == "3 sessions, 12 events"

    rows = json_lines(ok("sessions", store_db, "--json", cwd=tmp_path))
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


def test_log_table(store_db: str, tmp_path: Path) -> None:
    cwd = tmp_path
    chat = ok("log", store_db, "chat", cwd=cwd).splitlines()
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

    restart = ok("log", store_db, "restart", cwd=cwd).splitlines()
    assert [line.split()[2:5] for line in restart[1:-1]] == [
        ["turn", "33", "pruned"],
        ["clear", "0", "-"],
        ["turn", "15", "visible"],
    ]

    agent = ok("log", store_db, "agent", cwd=cwd).splitlines()
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


def test_general_messages_in_the_log_buffer_verify_and_export(target: str, tmp_path: Path) -> None:
    system = eventmem.Message(role="system", content="You are terse.")
    with eventmem.connect(target) as store:
        history = store.history("g", max_tokens=90)
        history.append(
            [
                system,
                eventmem.Message(
                    role="human",
                    content=(
                        "look",
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                        },
                    ),
                ),
            ]
        )
        for i in range(4):
            call = eventmem.ToolCall(name="search", args={"q": i}, id=f"c{i}")
            history.append(
                [
                    eventmem.Message(role="ai", content="", tool_calls=(call,)),
                    eventmem.Message(role="tool", content=f"result {i} " * 3, tool_call_id=f"c{i}"),
                ]
            )
        history.pop()
        view = history.view()
    lines = ok("log", target, "g", cwd=tmp_path).splitlines()[1:-1]
    assert [line.split()[2] for line in lines] == ["messages"] * 5 + ["retract"]
    # The pinned system message stays; the oldest pairs went whole; the pop is marked.
    assert "1/2 visible  System: You are terse. → Human: look [image_url]" in lines[0]
    assert [" pruned " in line for line in lines[1:4]] == [True, True, False]
    assert "1/2 visible, 1 popped  AI: calls search → Tool: result 3" in lines[4]
    assert lines[5].endswith("popped 1 message")
    shown = json_lines(ok("buffer", target, "g", "--json", cwd=tmp_path))
    assert len(shown) == 1
    assert len(shown[0]["messages"]) == len(view)
    assert ok("verify", target, cwd=tmp_path).startswith("ok:")
    exported = ok("export", target, cwd=tmp_path)
    (tmp_path / "g.jsonl").write_text(exported)
    copy = str(tmp_path / "copy.db")
    ok("import", copy, "g.jsonl", cwd=tmp_path)
    with eventmem.connect(copy) as store:
        assert store.history("g").view() == view
        assert store.verify().ok


@pytest.mark.parametrize("session", SESSIONS)
def test_log_json(store_db: str, session: str, tmp_path: Path) -> None:
    async def expected(
        store: eventmem.Store,
    ) -> tuple[list[eventmem.StoredEvent], list[eventmem.Message]]:
        return await _all_events(store, session), await store.messages(session)

    events, buffer = api(store_db, expected)
    rows = json_lines(ok("log", store_db, session, "--json", cwd=tmp_path))
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


def test_buffer(store_db: str, tmp_path: Path) -> None:
    cwd, db = tmp_path, store_db

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
        (["nobody"], "no session 'nobody' in {db} (see 'eventmem sessions {quoted}')"),
    ],
)
def test_buffer_errors(store_db: str, args: list[str], message: str) -> None:
    if backend_of(store_db) == "sqlite":  # as typed in the store's directory
        db, quoted, cwd = "agent.db", "agent.db", Path(store_db).parent
    else:  # a URL's '?' is quoted for the shell
        db, quoted, cwd = store_db, f'"{store_db}"', Path.cwd()
    result = run("buffer", db, *args, cwd=cwd)
    assert_clean_error(result, 1)
    assert result.stdout == ""
    assert result.stderr == f"eventmem: error: {message.format(db=db, quoted=quoted)}\n"


def test_verify(store_db: str, db_copy: str, tmp_path: Path) -> None:
    cwd = tmp_path  # (the text of a passing verify: see the round-trip test)
    report = json.loads(ok("verify", store_db, "--json", cwd=cwd))
    assert report == {"ok": True, "sessions": 3, "events": 12, "problems": []}

    tamper(db_copy, "chat", 2)
    result = run("verify", db_copy, cwd=cwd)
    assert_clean_error(result, 1)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("session chat position 2: hash_mismatch: ")
    assert lines[-1] == "1 problem in 1 session (3 sessions, 12 events checked)"

    result = run("verify", db_copy, "--json", cwd=cwd)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert (problem["session_id"], problem["position"], problem["kind"]) == (
        "chat",
        2,
        "hash_mismatch",
    )


def test_rebuild_repairs_a_damaged_buffer(db_copy: str, tmp_path: Path) -> None:
    cwd = tmp_path
    with raw_database(db_copy) as raw:
        raw.execute("DELETE FROM view_messages WHERE session_id = 'agent'")  # not the log
    report = api(db_copy, lambda store: store.verify())
    assert [p.kind for p in report.problems] == ["projection_mismatch"]

    text = ok("rebuild", db_copy, cwd=cwd)
    assert text == "rebuilt the buffers of 3 sessions from 12 events\n"
    assert json.loads(ok("rebuild", db_copy, "--json", cwd=cwd)) == {
        "sessions": 3,
        "events": 12,
    }
    assert ok("verify", db_copy, cwd=cwd) == "ok: 3 sessions, 12 events verified\n"


def test_export_import_round_trip(store_db: str, tmp_path: Path, dropping: list[str]) -> None:
    exported = ok("export", store_db, cwd=tmp_path)
    lines = exported.splitlines()
    assert json.loads(lines[0]) == {"format": "eventmem-export", "version": 2}
    assert len(lines) == 1 + 12 + 1  # header, events, end line
    dump = tmp_path / "agent.jsonl"
    dump.write_text(exported, encoding="utf-8")

    copy = fresh(store_db, tmp_path, "copy.db")
    dropping.append(copy)
    assert ok("import", copy, str(dump), cwd=tmp_path) == (
        f"imported 3 sessions, 12 events into {copy}\n"
    )
    assert ok("verify", copy, cwd=tmp_path) == "ok: 3 sessions, 12 events verified\n"
    assert ok("export", copy, cwd=tmp_path) == exported  # same events and hashes
    assert api(copy, _views) == api(store_db, _views)  # ...and the same buffers

    stdin_copy = fresh(store_db, tmp_path, "stdin.db")
    dropping.append(stdin_copy)
    result = ok("import", stdin_copy, "-", "--json", cwd=tmp_path, stdin=exported)
    assert json.loads(result) == {"sessions": 3, "events": 12}


def test_export_moves_a_store_between_backends(tmp_path: Path, dropping: list[str]) -> None:
    """SQLite -> PostgreSQL -> SQLite through export and import: the same bytes."""
    sqlite_db = str(tmp_path / "agent.db")
    anyio.run(_populate, sqlite_db)
    exported = ok("export", sqlite_db, cwd=tmp_path)
    postgres = new_target("postgresql", tmp_path)
    dropping.append(postgres)
    ok("import", postgres, "-", cwd=tmp_path, stdin=exported)
    assert ok("export", postgres, cwd=tmp_path) == exported
    assert api(postgres, _views) == api(sqlite_db, _views)
    back = str(tmp_path / "back.db")
    ok("import", back, "-", cwd=tmp_path, stdin=ok("export", postgres, cwd=tmp_path))
    assert ok("export", back, cwd=tmp_path) == exported


async def _views(store: eventmem.Store) -> list[tuple[Any, ...]]:
    return [
        (session, await _all_events(store, session), await store.messages(session))
        for session in await store.sessions()
    ]


async def _export(store: eventmem.Store) -> bytes:
    return b"".join([line async for line in store.export()])


def test_import_refuses_twice_and_tampered_files(
    store_db: str, tmp_path: Path, dropping: list[str]
) -> None:
    dump = tmp_path / "agent.jsonl"
    dump.write_bytes(api(store_db, _export))
    copy = fresh(store_db, tmp_path, "copy.db")
    dropping.append(copy)
    ok("import", copy, str(dump), cwd=tmp_path)
    before = api(copy, _views)
    file_before = Path(copy).read_bytes() if backend_of(copy) == "sqlite" else b""
    again = run("import", copy, str(dump), cwd=tmp_path)
    assert_clean_error(again, 1)
    assert again.stderr == (
        "eventmem: error: line 2: session 'chat' already exists in this store; "
        "an import never merges into or duplicates a session\n"
    )
    assert api(copy, _views) == before
    if backend_of(copy) == "sqlite":
        assert Path(copy).read_bytes() == file_before

    forged = tmp_path / "forged.jsonl"
    forged.write_text(dump.read_text().replace("City 1.", "Town 1."), encoding="utf-8")
    new = "new.db" if backend_of(store_db) == "sqlite" else fresh(store_db, tmp_path, "")
    dropping.append(new)
    result = run("import", new, str(forged), cwd=tmp_path)
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: line 3: session 'chat' position 2: ")
    assert "hash_mismatch" in result.stderr
    if backend_of(store_db) == "sqlite":
        assert not (tmp_path / "new.db").exists()  # a refused import leaves no new file
    else:  # the schema keeps the empty store the import created, and nothing else
        assert api(new, lambda store: store.count_events()) == 0


def test_export_one_session_to_a_file(store_db: str, tmp_path: Path) -> None:
    out = tmp_path / "agent.jsonl"
    text = ok("export", store_db, "--session", "agent", "-o", str(out), cwd=tmp_path)
    assert text == f"exported 6 events of 1 session to {out}\n"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8  # header, 6 events, end line
    assert {json.loads(line)["session_id"] for line in lines[1:-1]} == {"agent"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.jsonl"]  # no partial file

    missing = run("export", store_db, "--session", "nobody", "-o", "x.jsonl", cwd=tmp_path)
    assert_clean_error(missing, 1)
    assert "no session 'nobody'" in missing.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_stats(store_db: str, tmp_path: Path) -> None:
    cwd = tmp_path
    text = ok("stats", store_db, cwd=cwd).splitlines()
    facts = {line[:15].strip(): line[16:] for line in text}
    assert facts["database"] == store_db
    assert facts["schema version"] == str(len(known_migrations()))
    assert facts["sessions"] == "3"
    assert facts["events"] == "12 (clear 1, step 4, turn 7)"
    assert facts["messages"] == "16 entered buffers, 11 visible, 5 pruned"
    assert TIME.match(facts["first event"])
    assert TIME.match(facts["last event"])
    stats = json.loads(ok("stats", store_db, "--json", cwd=cwd))
    assert stats["path"] == store_db
    assert stats["events_by_kind"] == {"clear": 1, "step": 4, "turn": 7}
    assert (stats["sessions"], stats["events"], stats["visible_messages"]) == (3, 12, 11)
    assert stats["messages_entered"] == 16
    assert "encryption" not in stats  # (an encrypted store's: tests/test_encryption.py)
    assert "encryption" not in facts
    file_figures = {"file_bytes", "page_size", "page_count", "freelist_pages", "wal_bytes"}
    if backend_of(store_db) == "sqlite":
        assert stats["file_bytes"] == Path(store_db).stat().st_size
        assert stats["page_size"] * stats["page_count"] == stats["file_bytes"]
        assert stats["wal_bytes"] == 0
        assert "schema_bytes" not in stats
        assert "schema size" not in facts
    else:  # no file: the schema's tables, indexes and TOAST instead
        assert not file_figures & set(stats)
        assert stats["schema_bytes"] > 0
        assert facts["schema size"] == f"{stats['schema_bytes']} bytes (tables, indexes and TOAST)"
        assert "file size" not in facts


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


def _schema_tables(target: str) -> list[str] | None:
    """The tables in a target's schema, or None if the schema does not exist."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        schema = schema_of(target)
        if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall():
            return None
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        return sorted(row[0] for row in rows)


@pytest.mark.fast_sample(3)
@pytest.mark.usefixtures("_postgres_server")
@pytest.mark.parametrize("args", READING, ids=[a[0] for a in READING])
def test_reading_commands_never_create_a_postgresql_store(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str], dropping: list[str]
) -> None:
    target = new_target("postgresql", tmp_path)
    dropping.append(target)
    schema = schema_of(target)
    assert main(_with_db(args, target)) == 1
    assert capsys.readouterr().err == (
        f"eventmem: error: there is no eventmem store in schema '{schema}' "
        "(it was opened to read an existing store, so nothing was created)\n"
    )
    assert _schema_tables(target) is None  # not even the schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    assert main(_with_db(args, target)) == 1  # an empty schema is no store either
    assert "there is no eventmem store" in capsys.readouterr().err
    assert _schema_tables(target) == []


@pytest.mark.usefixtures("_postgres_server")
def test_passwords_are_never_printed(tmp_path: Path, dropping: list[str]) -> None:
    # The test server trusts local connections, so any password is accepted.
    plain = new_target("postgresql", tmp_path)
    dropping.append(plain)
    secret = "s3cr3t-pw"
    url = plain.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    assert url != plain
    copy = new_target("postgresql", tmp_path)
    dropping.append(copy)
    copy_url = copy.replace("?schema=", f"?password={secret}&schema=")
    dump = tmp_path / "dump.jsonl"
    commands = [
        ["demo", "--db", url],
        ["sessions", url],
        ["log", url, "nobody"],
        ["buffer", url, "nobody"],
        ["verify", url],
        ["rebuild", url],
        ["export", url, "-o", str(dump)],
        ["import", copy_url, str(dump)],
        ["import", copy_url, str(dump)],  # refused: the sessions exist
        ["stats", copy_url, "--json"],
        ["sessions", url.replace(plain.rsplit("=", 1)[1], "t_nothing_here")],
    ]
    outputs = []
    for command in commands:
        result = run(*command, cwd=tmp_path)
        assert "Traceback" not in result.stderr, result
        outputs.append(result.stdout + result.stderr)
    assert not [text for text in outputs if secret in text]
    assert f"reopened {plain}: buffer identical" in outputs[0]
    assert f"imported 1 session, 10 events into {copy}\n" == outputs[7]
    assert json.loads(outputs[-2])["path"] == copy


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
def test_progress_shows_on_a_terminal_only(store_db: str) -> None:  # both backends
    status, stdout, terminal = _on_a_terminal(["verify", store_db])
    assert status == 0
    assert b"\rverify: 12/12 events" in terminal
    assert terminal.endswith(b"\r")  # the line is erased before the result is printed
    assert stdout == b"ok: 3 sessions, 12 events verified\n"  # the result itself is clean


def _on_a_terminal(args: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run ``python -m eventmem ARGS`` with stderr on a pseudo-terminal (so its progress
    line shows); return its exit status, stdout and what the terminal received."""
    import pty

    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "eventmem", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=secondary,
    ) as process:
        os.close(secondary)
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()
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
    return process.returncode, stdout, terminal


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_import_counts_only_the_events(store_db: str, tmp_path: Path, dropping: list[str]) -> None:
    """The counts an import shows are its events: not the header, the end line, nor the
    blank lines the import skips."""
    lines = api(store_db, _export).splitlines(keepends=True)
    assert len(lines) == 1 + 12 + 1
    spaced = b"\n".join(lines[:3]) + b"".join(lines[3:]) + b"\n  \n\n"  # blank lines too
    copy = fresh(store_db, tmp_path, "copy.db")
    dropping.append(copy)
    status, stdout, terminal = _on_a_terminal(["import", copy, "-"], stdin=spaced)
    assert status == 0, terminal
    assert stdout == f"imported 3 sessions, 12 events into {copy}\n".encode()
    assert b"import: 12 events read; writing" in terminal
    assert api(copy, lambda store: store.count_events()) == 12


async def _save_many_turns(path: str, turns: int) -> None:
    async with eventmem.open(path) as store:
        memory = store.token_buffer("long", max_token_limit=200)
        for i in range(turns):
            await memory.asave_context({"input": f"{i} " + "q" * 1500}, {"output": "a" * 500})


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_stops_quietly_when_the_reader_leaves(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, dropping: list[str]
) -> None:
    """``eventmem export DB | head -1``: once the reader has its line and closes the
    pipe, the export ends with exit 0, nothing on stderr and the store untouched."""
    if backend == "postgresql":
        request.getfixturevalue("_postgres_server")
    db = new_target(backend, tmp_path)
    dropping.append(db)
    anyio.run(_save_many_turns, db, 400)
    whole = api(db, _export)
    assert len(whole) > 8 * 65536  # far more than a pipe holds: the writer must block
    before = api(db, _views)
    file_before = Path(db).read_bytes() if backend == "sqlite" else b""

    export = subprocess.Popen(
        [sys.executable, "-m", "eventmem", "export", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.readline())"],
        stdin=export.stdout,
        stdout=subprocess.PIPE,
    )
    assert export.stdout is not None
    assert export.stderr is not None
    export.stdout.close()  # only the reader holds the pipe's reading end
    first, _ = reader.communicate(timeout=120)
    stderr = export.stderr.read()
    export.stderr.close()
    assert export.wait(timeout=120) == 0, stderr
    assert reader.returncode == 0
    assert first == whole.splitlines(keepends=True)[0]
    assert stderr == b""  # no traceback, no "BrokenPipeError", no "Exception ignored"
    assert api(db, _views) == before
    if backend == "sqlite":
        assert Path(db).read_bytes() == file_before


PAGES = [
    ([], [1, 2, 3, 4, 5, 6]),
    (["--limit", "2"], [1, 2]),
    (["--offset", "4"], [5, 6]),
    (["--limit", "2", "--offset", "1"], [2, 3]),
    (["--limit", "9", "--offset", "3"], [4, 5, 6]),
    (["--reverse"], [6, 5, 4, 3, 2, 1]),
    (["--reverse", "--limit", "2"], [6, 5]),
    (["--reverse", "--offset", "1", "--limit", "2"], [5, 4]),
    (["--reverse", "--offset", "5", "--limit", "3"], [1]),
    (["--offset", "6"], []),
    (["--reverse", "--offset", "10"], []),
    (["--limit", "0"], []),
]


@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize(("args", "positions"), PAGES)
def test_log_pages(store_db: str, tmp_path: Path, args: list[str], positions: list[int]) -> None:
    """``--limit``, ``--offset`` and ``--reverse`` select lines of the whole log, each
    exactly as the whole log shows it (where its messages are in the buffer now)."""
    whole = ok("log", store_db, "agent", cwd=tmp_path).splitlines()
    by_position = {int(line.split()[0]): line for line in whole[1:-1]}
    assert sorted(by_position) == [1, 2, 3, 4, 5, 6]
    text = ok("log", store_db, "agent", *args, cwd=tmp_path).splitlines()
    assert text[0] == whole[0]
    assert text[1:-1] == [by_position[p] for p in positions]
    tail = whole[-1].removeprefix("6 events")
    paged = args not in ([], ["--reverse"])  # --limit or --offset given
    assert text[-1] == (f"{len(positions)} of 6 events shown{tail}" if paged else whole[-1])

    rows = json_lines(ok("log", store_db, "agent", *args, "--json", cwd=tmp_path))
    everything = {
        row["position"]: row
        for row in json_lines(ok("log", store_db, "agent", "--json", cwd=tmp_path))
    }
    assert rows == [everything[p] for p in positions]


@pytest.mark.parametrize(
    ("args", "reads"),
    [
        ([], 6 + 6),
        (["--limit", "2"], 6 + 2),
        (["--offset", "1", "--limit", "2"], 6 + 3),
        (["--limit", "0"], 6),
        (["--offset", "6"], 6),
    ],
)
def test_log_pages_stop_reading_at_their_end(
    store_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], reads: int
) -> None:
    """Past the fold that places every event, a page reads no event after its last."""
    counted = 0
    events = eventmem.Store.events

    async def counting(self: eventmem.Store, session_id: str) -> Any:
        nonlocal counted
        async for event in events(self, session_id):
            counted += 1
            yield event

    monkeypatch.setattr(eventmem.Store, "events", counting)
    ok("log", store_db, "agent", *args, cwd=tmp_path)
    assert counted == reads


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], "argument --limit: must be >= 0, got -1"),
        (["--offset", "-3"], "argument --offset: must be >= 0, got -3"),
        (["--reverse", "--offset", "two"], "argument --offset: expected a whole number, got 'two'"),
    ],
)
def test_log_refuses_negative_pages(
    store_db: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("log", store_db, "agent", *args, cwd=tmp_path)
    assert_clean_error(result, 2)
    assert result.stdout == ""
    assert result.stderr.endswith(f"eventmem log: error: {message}\n")


@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize(
    ("args", "order"),
    [
        ([], ["chat", "restart", "agent"]),
        (["--sort", "created"], ["chat", "restart", "agent"]),
        (["--sort", "id"], ["agent", "chat", "restart"]),
        (["--sort", "events"], ["agent", "chat", "restart"]),  # a tie keeps the oldest first
        (["--sort", "last"], ["agent", "restart", "chat"]),
        (["--sort", "last", "--limit", "2"], ["agent", "restart"]),
        (["--sort", "id", "--limit", "1"], ["agent"]),
        (["--limit", "2"], ["chat", "restart"]),
        (["--limit", "3"], ["chat", "restart", "agent"]),
        (["--limit", "0"], []),
    ],
)
def test_sessions_sort_and_limit(
    store_db: str, tmp_path: Path, args: list[str], order: list[str]
) -> None:
    whole = ok("sessions", store_db, cwd=tmp_path).splitlines()
    by_id = {line.split()[0]: line for line in whole[1:-1]}
    text = ok("sessions", store_db, *args, cwd=tmp_path).splitlines()
    assert text[0] == whole[0]
    assert text[1:-1] == [by_id[session] for session in order]
    events = {"chat": 3, "restart": 3, "agent": 6}
    if len(order) == 3:
        assert text[-1] == "3 sessions, 12 events"
    else:
        shown_events = sum(events[s] for s in order)
        assert text[-1] == f"{len(order)} of 3 sessions shown ({shown_events} events of 12)"

    everything = {
        r["session_id"]: r for r in json_lines(ok("sessions", store_db, "--json", cwd=tmp_path))
    }
    rows = json_lines(ok("sessions", store_db, *args, "--json", cwd=tmp_path))
    assert rows == [everything[session] for session in order]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], "argument --limit: must be >= 0, got -1"),
        (["--sort", "tokens"], "argument --sort: invalid choice: 'tokens'"),
    ],
)
def test_sessions_refuses_bad_pages(
    store_db: str, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run("sessions", store_db, *args, cwd=tmp_path)
    assert_clean_error(result, 2)
    assert result.stdout == ""
    assert f"eventmem sessions: error: {message}" in result.stderr
