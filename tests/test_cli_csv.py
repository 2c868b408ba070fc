"""``--csv``: the tables of ``sessions``, ``log``, ``buffer`` and ``stats`` as CSV that
reads back to the values their ``--json`` prints, on a SQLite file and a PostgreSQL URL."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import eventmem
from eventmem.cli.common import Style
from tests.backends import BACKENDS, drop_target, new_target
from tests.sample_sessions import save_samples
from tests.test_cli import assert_clean_error, json_lines, ok, populated_db, run

pytestmark = pytest.mark.postgres_sample(2, across="module")

ODD = "odd"
ODD_TEXTS = (
    'Commas, "quotes", and a line\nbreak',
    "emoji 🎉👩‍💻, CRLF\r\nend; tab\tzero-width\u200bjoin, RTL \u05e9\u05dc\u05d5\u05dd",
    '",\n"',
    "",
)


async def _populate(db: str) -> None:
    async with eventmem.open(db) as store:
        await save_samples(store)
        memory = store.token_buffer(ODD, max_token_limit=10_000)
        await memory.asave_context({"input": ODD_TEXTS[0]}, {"output": ODD_TEXTS[1]})
        await memory.asave_context({"input": ODD_TEXTS[2]}, {"output": ODD_TEXTS[3]})


@pytest.fixture(scope="module", params=BACKENDS)
def csv_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The sample sessions and one of awkward text: a SQLite file, then a PostgreSQL URL."""
    yield from populated_db(request, tmp_path_factory, _populate)


def records(text: str) -> list[list[str]]:
    """The CSV records of ``text``, checked to be RFC 4180's CRLF-terminated ones."""
    assert text == "" or text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def assert_cell(cell: str, value: Any) -> None:
    """``cell`` is ``value`` (a JSON value) as ``--csv`` flattens it."""
    if value is None:
        assert cell == ""
    elif isinstance(value, bool):
        assert cell == ("true" if value else "false")
    elif isinstance(value, str):
        assert cell == value
    elif isinstance(value, int | float):
        assert cell == str(value)
    else:
        assert json.loads(cell) == value


def assert_same_rows(text: str, objects: list[dict[str, Any]]) -> list[list[str]]:
    """The CSV ``text`` is a header of the objects' keys and a row of each's values."""
    header, *rows = records(text)
    assert len(rows) == len(objects)
    for row, obj in zip(rows, objects, strict=True):
        assert header == list(obj)
        for cell, value in zip(row, obj.values(), strict=True):
            assert_cell(cell, value)
    return rows


SESSION_ARGS = [[], ["--sort", "id"], ["--sort", "last", "--limit", "2"], ["--limit", "0"]]


@pytest.mark.parametrize("args", SESSION_ARGS)
def test_sessions_csv_is_the_json(csv_db: str, tmp_path: Path, args: list[str]) -> None:
    text = ok("sessions", csv_db, *args, "--csv", cwd=tmp_path)
    objects = json_lines(ok("sessions", csv_db, *args, "--json", cwd=tmp_path))
    rows = assert_same_rows(text, objects)
    header = records(text)[0]
    assert header == [
        "session_id",
        "events",
        "visible_messages",
        "tokens",
        "counter",
        "created_at",
        "last_activity",
    ]
    if args == []:
        assert [row[0] for row in rows] == ["chat", "restart", "agent", ODD]


LOG_ARGS = [
    [],
    ["--limit", "2"],
    ["--offset", "1", "--limit", "1"],
    ["--reverse", "--limit", "3"],
    ["--offset", "9"],
]


@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize("session", ["chat", "restart", "agent", ODD])
@pytest.mark.parametrize("args", LOG_ARGS)
def test_log_csv_is_the_json(csv_db: str, tmp_path: Path, session: str, args: list[str]) -> None:
    text = ok("log", csv_db, session, *args, "--csv", cwd=tmp_path)
    objects = json_lines(ok("log", csv_db, session, *args, "--json", cwd=tmp_path))
    assert_same_rows(text, objects)
    assert records(text)[0][:2] == ["session_id", "position"]  # a header even for no rows


def test_log_csv_keeps_awkward_text_whole(csv_db: str, tmp_path: Path) -> None:
    header, *rows = records(ok("log", csv_db, ODD, "--csv", cwd=tmp_path))
    data = [json.loads(row[header.index("data")]) for row in rows]
    texts = [m["content"] for event in data for m in event["messages"]]
    assert tuple(texts) == ODD_TEXTS


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize("session", ["chat", "restart", "agent", ODD])
@pytest.mark.parametrize("args", [[], ["--at", "1"], ["--limit", "1000", "--model", "gpt-4"]])
def test_buffer_csv_is_the_json(csv_db: str, tmp_path: Path, session: str, args: list[str]) -> None:
    header, *rows = records(ok("buffer", csv_db, session, *args, "--csv", cwd=tmp_path))
    (view,) = json_lines(ok("buffer", csv_db, session, *args, "--json", cwd=tmp_path))
    messages = view.pop("messages")
    assert header == [
        *view,
        "role",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "function_call",
    ]
    assert len(rows) == len(messages)
    for row, message in zip(rows, messages, strict=True):
        for cell, value in zip(row[: len(view)], view.values(), strict=True):
            assert_cell(cell, value)
        for column, cell in zip(header[len(view) :], row[len(view) :], strict=True):
            assert_cell(cell, message.get(column))
    if session == ODD and not args:
        assert tuple(row[header.index("content")] for row in rows) == ODD_TEXTS


def test_stats_csv_is_the_json(csv_db: str, tmp_path: Path) -> None:
    text = ok("stats", csv_db, "--csv", cwd=tmp_path)
    (document,) = json_lines(ok("stats", csv_db, "--json", cwd=tmp_path))
    assert_same_rows(text, [document])


@pytest.mark.parametrize(
    "args", [["sessions"], ["log", "agent"], ["buffer", "agent"], ["stats"]], ids=str
)
def test_csv_and_json_together_are_a_usage_error(
    csv_db: str, tmp_path: Path, args: list[str]
) -> None:
    command, *rest = args
    result = run(command, csv_db, *rest, "--csv", "--json", cwd=tmp_path)
    assert_clean_error(result, 2)
    assert result.stdout == ""
    assert "argument --json: not allowed with argument --csv" in result.stderr


@pytest.mark.parametrize("args", [["sessions"], ["log", ODD], ["buffer", ODD], ["stats"]], ids=str)
def test_csv_is_never_styled(
    csv_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Even where the text output is styled (a colour terminal), CSV carries no escape."""
    monkeypatch.setattr(Style, "for_stream", classmethod(lambda cls, stream: cls(True)))
    command, *rest = args
    if command in ("sessions", "log"):  # their text tables have a dimmed header
        assert "\033[" in ok(command, csv_db, *rest, cwd=tmp_path)
    assert "\033" not in ok(command, csv_db, *rest, "--csv", cwd=tmp_path)


@pytest.mark.fast_sample(2)
@pytest.mark.postgres_sample(4)
@pytest.mark.parametrize("args", [["sessions"], ["log", ODD], ["buffer", ODD], ["stats"]])
def test_csv_into_a_closed_pipe_ends_as_json_does(csv_db: str, args: list[str]) -> None:
    """Written into a pipe whose reader is gone, ``--csv`` stops as ``--json`` does: the
    same exit status and nothing on stderr (no traceback, no "Exception ignored")."""
    command, *rest = args
    ends = []
    for output in ("--json", "--csv"):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader has left before the first write
        try:
            done = subprocess.run(
                [sys.executable, "-m", "eventmem", command, csv_db, *rest, output],
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=120,
                check=False,
            )
        finally:
            os.close(write_end)
        assert done.stderr == b"", done.stderr
        ends.append(done.returncode)
    assert ends[0] == ends[1] == 1  # as main ends any output into a closed pipe


async def _create_empty(db: str) -> None:
    async with eventmem.open(db):
        pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_sessions_csv_of_an_empty_store_is_its_header(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "postgresql":
        request.getfixturevalue("_postgres_server")
    db = new_target(backend, tmp_path)
    try:
        anyio.run(_create_empty, db)
        assert ok("sessions", db, "--json", cwd=tmp_path) == ""
        header = ["session_id", "events", "visible_messages", "tokens", "counter"]
        header += ["created_at", "last_activity"]
        assert records(ok("sessions", db, "--csv", cwd=tmp_path)) == [header]
    finally:
        drop_target(db)
