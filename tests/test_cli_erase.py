"""``eventmem erase``: a session's content removed for good, its receipt printed and
written, every refusal one clean line; on a SQLite file and a PostgreSQL schema alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import eventmem
from tests.backends import BACKENDS, backend_of, drop_target, new_target, raw_database
from tests.test_cli import assert_clean_error, json_lines, ok, run

SECRET = "the passport number 12-34-56"


async def _populate(db: str) -> None:
    """``chat`` (three turns, one naming SECRET) and ``other`` (one turn)."""
    async with eventmem.open(db) as store:
        chat = store.token_buffer("chat")
        await chat.asave_context({"input": f"remember {SECRET}"}, {"output": "noted"})
        for i in range(2):
            await chat.asave_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        await store.token_buffer("other").asave_context({"input": "hi"}, {"output": "hello"})


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store holding ``chat`` and ``other`` (each backend in turn), dropped afterwards."""
    if request.param == "postgresql":
        request.getfixturevalue("_postgres_server")
    target = new_target(str(request.param), tmp_path)
    anyio.run(_populate, target)
    yield target
    drop_target(target)


def _contents(db: str, session: str) -> list[str]:
    with raw_database(db) as raw:
        rows = raw.execute(
            "SELECT data FROM events WHERE session_id = ? ORDER BY position", (session,)
        )
    return [data if isinstance(data, str) else bytes(data).decode() for (data,) in rows]


def _versions(db: str) -> dict[str, int]:
    with eventmem.connect(db, create=False) as store:
        return {s: store.version(s) for s in store.sessions()}


def test_erase_prints_its_receipt_and_the_content_is_gone(db: str, tmp_path: Path) -> None:
    out = ok("erase", db, "chat", "--reason", "user request", "--by", "dpo", cwd=tmp_path)
    with eventmem.connect(db, create=False) as store:
        tombstone = store.events("chat")[-1]
    lines = out.splitlines()
    assert lines[:2] == [
        "erased chat: the content of 3 events removed, every hash kept",
        f"tombstone: position 4, hash {tombstone.hash}",
    ]
    if backend_of(db) == "sqlite":
        assert lines[2:] == ["purged: yes (freed space zeroed, write-ahead log truncated)"]
    else:
        assert lines[2:] == [
            "purged: no: PostgreSQL keeps the old row versions in the table's files until "
            "'VACUUM FULL events' rewrites them (see docs/operations.md)"
        ]
    assert isinstance(tombstone.data, eventmem.SessionErased)
    assert (tombstone.data.reason, tombstone.data.by, tombstone.data.events) == (
        "user request",
        "dpo",
        3,
    )
    assert _contents(db, "chat")[:3] == ['{"kind":"erased"}'] * 3
    assert SECRET not in "".join(_contents(db, "chat"))
    assert _contents(db, "other") != ['{"kind":"erased"}']  # untouched
    assert ok("verify", db, cwd=tmp_path).startswith("ok: 2 sessions, 5 events verified")
    refused = run("buffer", db, "chat", cwd=tmp_path)  # reads of an erased session refuse
    assert_clean_error(refused, 1)
    assert "erased" in refused.stderr


def test_the_json_receipt_and_the_receipt_file(db: str, tmp_path: Path) -> None:
    receipt = tmp_path / "receipt.json"
    (shown,) = json_lines(
        ok("erase", db, "chat", "--reason", "r", "--receipt", str(receipt), "--json", cwd=tmp_path)
    )
    assert json.loads(receipt.read_bytes()) == shown
    assert receipt.read_bytes().endswith(b"}\n")
    with eventmem.connect(db, create=False) as store:
        tombstone = store.events("chat")[-1]
        last_erased = store.events("chat")[-2]
    assert shown["session_id"] == "chat"
    assert (shown["position"], shown["hash"]) == (4, tombstone.hash)
    assert (shown["events"], shown["last_hash"]) == (3, last_erased.hash)
    assert (shown["reason"], shown["by"]) == ("r", None)
    assert shown["purged"] is (backend_of(db) == "sqlite")

    # the text form names the file it wrote
    other = tmp_path / "other.json"
    out = ok("erase", db, "other", "--reason", "r", "--receipt", str(other), cwd=tmp_path)
    assert out.splitlines()[-1] == f"receipt written to {other}"
    assert json.loads(other.read_bytes())["session_id"] == "other"


def test_an_existing_receipt_file_is_refused_before_anything_is_erased(
    db: str, tmp_path: Path
) -> None:
    receipt = tmp_path / "receipt.json"
    receipt.write_text("kept")
    before = _contents(db, "chat")
    refused = run("erase", db, "chat", "--reason", "r", "--receipt", str(receipt), cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert "exists (--force replaces it)" in refused.stderr
    assert refused.stdout == ""
    assert receipt.read_text() == "kept"
    assert _contents(db, "chat") == before  # nothing erased
    forced = ("erase", db, "chat", "--reason", "r", "--receipt", str(receipt), "--force")
    ok(*forced, cwd=tmp_path)
    assert json.loads(receipt.read_bytes())["session_id"] == "chat"


def test_a_receipt_never_overwrites_the_store(tmp_path: Path) -> None:
    db = str(tmp_path / "agent.db")
    anyio.run(_populate, db)
    with eventmem.connect(db) as store:  # held open: the -wal and -shm exist meanwhile
        store.token_buffer("held").save_context({"input": "a"}, {"output": "b"})
        companions = [tmp_path / "agent.db-wal", tmp_path / "agent.db-shm"]
        assert all(path.exists() for path in companions)
        spellings = [db, str(tmp_path / "." / "agent.db"), *map(str, companions)]
        (tmp_path / "link.json").symlink_to(tmp_path / "agent.db")
        spellings.append(str(tmp_path / "link.json"))
        before = (tmp_path / "agent.db").read_bytes()
        for output in spellings:
            for force in ([], ["--force"]):
                args = ("erase", db, "chat", "--reason", "r", "--receipt", output, *force)
                refused = run(*args, cwd=tmp_path)
                assert_clean_error(refused, 1)
                assert "refusing to write" in refused.stderr, output
        assert store.version("chat") == 3  # nothing erased
    assert (tmp_path / "agent.db").read_bytes()[:100] == before[:100]
    assert _versions(db) == {"chat": 3, "other": 1, "held": 1}


@pytest.mark.parametrize(
    ("session", "setup", "message"),
    [
        ("nobody", None, "there is no session 'nobody' to erase"),
        ("chat", "erase", "session 'chat' was erased already (its tombstone is at position 4)"),
        ("chat", "fork", "session 'chat' has forks ('alt'), whose history is its events"),
    ],
    ids=["unknown session", "erased already", "with forks"],
)
def test_refusals_are_one_clean_line_and_write_nothing(
    db: str, tmp_path: Path, session: str, setup: str | None, message: str
) -> None:
    if setup == "erase":
        ok("erase", db, "chat", "--reason", "first", cwd=tmp_path)
    elif setup == "fork":
        ok("fork", db, "chat", "alt", cwd=tmp_path)
    before = _versions(db), _contents(db, "chat")
    receipt = tmp_path / "receipt.json"
    refused = run("erase", db, session, "--reason", "r", "--receipt", str(receipt), cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert refused.stderr.startswith(f"eventmem: error: {message}"), refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert refused.stdout == ""
    assert (_versions(db), _contents(db, "chat")) == before
    assert not receipt.exists()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["chat"], 2, "--reason"),  # argparse: required
        (["chat", "--reason", "  "], 1, "reason must be a non-empty str"),
        (["chat", "--reason", "r", "--by", ""], 1, "by must be a non-empty str"),
    ],
)
def test_bad_arguments_are_refused_cleanly(
    db: str, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    before = _versions(db), _contents(db, "chat")
    refused = run("erase", db, *args, cwd=tmp_path)
    assert_clean_error(refused, code)
    assert says in refused.stderr
    assert (_versions(db), _contents(db, "chat")) == before


def test_erase_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    refused = run("erase", str(missing), "chat", "--reason", "r", cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert not missing.exists()


def test_seal_seals_what_the_view_no_longer_holds(db: str, tmp_path: Path) -> None:
    with eventmem.connect(db, create=False) as store:
        view = store.messages("chat")
        small = store.token_buffer("small", max_token_limit=30)
        for i in range(4):
            small.save_context({"input": f"question {i}"}, {"output": "ok"})
    refused = run("seal", db, "small", "--before", "9", cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert "the view still holds" in refused.stderr
    out = ok("seal", db, "small", "--before", "2", cwd=tmp_path)
    assert out.startswith("sealed small before position 2: the content of 1 event removed")
    policy = json_lines(ok("seal", db, "--older-than-days", "0", "--json", cwd=tmp_path))
    assert [line["session_id"] for line in policy] == ["small"]
    assert ok("seal", db, "--older-than-days", "0", cwd=tmp_path) == "nothing to seal\n"
    for bad in (["--before", "-1"], ["--older-than-days", "x"], []):
        assert_clean_error(run("seal", db, "small", *bad, cwd=tmp_path), 2)
    assert_clean_error(run("seal", db, "small", "--older-than-days", "nan", cwd=tmp_path), 1)
    with eventmem.connect(db, create=False) as store:
        assert store.messages("chat") == view
        assert store.verify().ok
