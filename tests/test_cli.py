"""The ``eventmem`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run(*args: str, cwd: Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(_console_script())] if script else [sys.executable, "-m", "eventmem"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
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
