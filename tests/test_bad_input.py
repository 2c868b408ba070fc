"""Bad input gets a typed EventmemError and writes nothing, on each backend; hostile
SQLite files stay untouched."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import eventmem
from tests.backends import backend_of, raw_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]


def _event_count(target: str) -> int:
    with raw_database(target) as db:
        [(count,)] = db.execute("SELECT count(*) FROM events")
    return int(count)


def _snapshot(target: str) -> list[list[tuple[Any, ...]]]:
    """Every row of the store's tables."""
    with raw_database(target) as db:
        return [
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("eventmem_migrations", "events", "sessions", "view_messages")
        ]


class Opaque:
    pass


SAVE_CASES: list[tuple[str, Any, Any, type[eventmem.EventmemError]]] = [
    ("input not a str", {"input": 42}, {"output": "x"}, eventmem.InvalidInputError),
    ("input None", {"input": None}, {"output": "x"}, eventmem.InvalidInputError),
    ("input an object", {"input": Opaque()}, {"output": "x"}, eventmem.InvalidInputError),
    ("output a list", {"input": "x"}, {"output": ["a"]}, eventmem.InvalidInputError),
    ("output a dict", {"input": "x"}, {"output": {"a": 1}}, eventmem.InvalidInputError),
    ("output bytes", {"input": "x"}, {"output": b"x"}, eventmem.InvalidInputError),
    ("lone surrogate", {"input": "a\ud800b"}, {"output": "x"}, eventmem.NotSerializableError),
    ("inputs not a dict", "hello", {"output": "x"}, eventmem.InvalidInputError),
    ("outputs not a dict", {"input": "x"}, ["x"], eventmem.InvalidInputError),
    ("two input keys", {"a": "x", "b": "y"}, {"output": "x"}, eventmem.InputKeyError),
    ("no input key", {"stop": ["\n"]}, {"output": "x"}, eventmem.InputKeyError),
    ("empty inputs", {}, {"output": "x"}, eventmem.InputKeyError),
    ("two output keys", {"input": "x"}, {"a": "1", "b": "2"}, eventmem.InputKeyError),
    ("empty outputs", {"input": "x"}, {}, eventmem.InputKeyError),
]


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    ("inputs", "outputs", "error"),
    [case[1:] for case in SAVE_CASES],
    ids=[case[0] for case in SAVE_CASES],
)
async def test_a_bad_save_raises_and_writes_nothing(
    store: eventmem.Store,
    target: str,
    inputs: Any,
    outputs: Any,
    error: type[eventmem.EventmemError],
) -> None:
    mem = store.token_buffer("s")
    await mem.asave_context({"input": "before"}, {"output": "ok"})
    with pytest.raises(error) as caught:
        await mem.asave_context(inputs, outputs)
    assert str(caught.value)
    assert _event_count(target) == 1
    assert len(await store.messages("s")) == 2


async def test_a_configured_key_that_is_missing_is_a_key_error(
    store: eventmem.Store, target: str
) -> None:
    mem = store.token_buffer("s", input_key="question", output_key="answer")
    with pytest.raises(eventmem.MissingKeyError, match="question") as caught:
        await mem.asave_context({"input": "x"}, {"answer": "y"})
    assert isinstance(caught.value, KeyError)
    with pytest.raises(eventmem.MissingKeyError, match="answer"):
        await mem.asave_context({"question": "x"}, {"output": "y"})
    assert _event_count(target) == 0


async def test_input_key_errors_are_also_value_errors(store: eventmem.Store) -> None:
    with pytest.raises(ValueError, match="One input key expected"):
        await store.token_buffer("s").asave_context({"a": "1", "b": "2"}, {"o": "x"})


class _Counter:
    """A token counter whose name and overhead are whatever the test says."""

    def __init__(self, name: object, overhead: object = 0) -> None:
        self.name: Any = name  # deliberately anything
        self.overhead: Any = overhead

    def count_message(self, message: eventmem.Message) -> int:
        return 1


BAD_OPTIONS: list[tuple[str, Callable[[eventmem.Store], object]]] = [
    ("negative limit", lambda s: s.token_buffer("s", max_token_limit=-1)),
    ("float limit", lambda s: s.token_buffer("s", max_token_limit=2.5)),  # type: ignore[arg-type]
    ("str limit", lambda s: s.token_buffer("s", max_token_limit="100")),  # type: ignore[arg-type]
    ("bool limit", lambda s: s.token_buffer("s", max_token_limit=True)),
    ("None limit", lambda s: s.token_buffer("s", max_token_limit=None)),  # type: ignore[arg-type]
    ("empty session", lambda s: s.token_buffer("")),
    ("int session", lambda s: s.token_buffer(7)),  # type: ignore[arg-type]
    ("None session", lambda s: s.token_buffer(None)),  # type: ignore[arg-type]
    ("huge session", lambda s: s.token_buffer("x" * 5000)),
    ("surrogate session", lambda s: s.token_buffer("\udcff")),
    ("NUL in session", lambda s: s.token_buffer("a\x00b")),  # PostgreSQL's text has no NUL
    ("unknown model", lambda s: s.token_buffer("s", model="claude-3-opus")),
    ("non-str model", lambda s: s.token_buffer("s", model=4)),  # type: ignore[arg-type]
    ("empty model", lambda s: s.token_buffer("s", model="")),
    ("non-callable counter", lambda s: s.token_buffer("s", token_counter=5)),  # type: ignore[arg-type]
    ("NUL in counter name", lambda s: s.token_buffer("s", token_counter=_Counter("a\x00b"))),
    ("surrogate counter name", lambda s: s.token_buffer("s", token_counter=_Counter("\udcff"))),
    ("empty counter name", lambda s: s.token_buffer("s", token_counter=_Counter(""))),
    ("int counter name", lambda s: s.token_buffer("s", token_counter=_Counter(7))),
    ("negative overhead", lambda s: s.token_buffer("s", token_counter=_Counter("c", -1))),
    ("float overhead", lambda s: s.token_buffer("s", token_counter=_Counter("c", 1.5))),
    ("int memory_key", lambda s: s.token_buffer("s", memory_key=1)),  # type: ignore[arg-type]
    ("int prefix", lambda s: s.token_buffer("s", human_prefix=1)),  # type: ignore[arg-type]
    ("int input_key", lambda s: s.token_buffer("s", input_key=1)),  # type: ignore[arg-type]
    ("str return_messages", lambda s: s.token_buffer("s", return_messages="yes")),  # type: ignore[arg-type]
]


@pytest.mark.postgres_sample(5)
@pytest.mark.parametrize("make", [c[1] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
async def test_bad_memory_options_are_refused(
    store: eventmem.Store, make: Callable[[eventmem.Store], object]
) -> None:
    with pytest.raises(eventmem.InvalidInputError) as caught:
        make(store)
    assert str(caught.value)
    assert await store.sessions() == []


@pytest.mark.parametrize("session", ["", None, 3, "x" * 2000, "a\x00b", "\x00"])
async def test_store_reads_refuse_bad_session_ids(store: eventmem.Store, session: Any) -> None:
    with pytest.raises(eventmem.InvalidInputError):
        await store.messages(session)
    with pytest.raises(eventmem.InvalidInputError):
        [e async for e in store.events(session)]


@pytest.mark.parametrize(
    "session",
    ["'; DROP TABLE events; --", "../../etc/passwd", "%s?", "名前 🙂", " ", "\n", "\x01"],
)
async def test_odd_but_valid_session_ids_are_plain_data(
    store: eventmem.Store, session: str
) -> None:
    mem = store.token_buffer(session, return_messages=True)
    await mem.asave_context({"input": "x"}, {"output": "y"})
    assert await store.sessions() == [session]
    assert len(await store.messages(session)) == 2


async def test_a_custom_counter_returning_junk_is_refused(
    store: eventmem.Store, target: str
) -> None:
    calls = {"n": 0}

    def counter(messages: list[eventmem.Message]) -> int:
        calls["n"] += 1
        return 0 if not messages else "many"  # type: ignore[return-value]

    mem = store.token_buffer("s", token_counter=counter)
    with pytest.raises(eventmem.InvalidInputError, match="int"):
        await mem.asave_context({"input": "x"}, {"output": "y"})
    assert _event_count(target) == 0


async def test_huge_and_odd_texts_are_stored_intact(store: eventmem.Store) -> None:
    huge = "word " * 400_000 + "\x00 NUL, \u202e RTL, e\u0301, 🧑‍🚀, <|endoftext|>"
    mem = store.token_buffer("s", max_token_limit=10**7, return_messages=True)
    await mem.asave_context({"input": huge}, {"output": ""})
    loaded = (await mem.aload_memory_variables({}))["history"]
    assert [m.content for m in loaded] == [huge, ""]


async def test_a_closed_store_refuses_calls(target: str) -> None:
    store = await eventmem.open(target)
    mem = store.token_buffer("s")
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(eventmem.ClosedError):
        await mem.asave_context({"input": "x"}, {"output": "y"})
    with pytest.raises(eventmem.ClosedError):
        await store.sessions()


async def test_a_store_from_a_newer_eventmem_is_refused_untouched(target: str) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    with raw_database(target) as db:
        db.execute("INSERT INTO eventmem_migrations VALUES (99, 'future', '2031-01-01')")
    before = _snapshot(target)
    file_before = Path(target).read_bytes() if backend_of(target) == "sqlite" else b""
    for create in (True, False):
        with pytest.raises(eventmem.SchemaVersionError, match="newer eventmem"):
            await eventmem.open(target, create=create)
    assert _snapshot(target) == before
    if backend_of(target) == "sqlite":
        assert Path(target).read_bytes() == file_before


async def test_a_store_with_a_missing_migration_is_refused(target: str) -> None:
    async with eventmem.open(target):
        pass
    with raw_database(target) as db:
        db.execute("DELETE FROM eventmem_migrations WHERE version = 1")
    before = _snapshot(target)
    with pytest.raises(eventmem.SchemaVersionError, match="missing"):
        await eventmem.open(target)
    assert _snapshot(target) == before


async def test_a_store_never_closed_warns(target: str) -> None:
    store = await eventmem.open(target)
    backend = store._backend
    with pytest.warns(ResourceWarning, match="never closed"):
        store.__del__()
    await backend.close()


# -- hostile SQLite files (PostgreSQL's counterparts are in test_postgres.py) ---------------


async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    junk = b"these are my notes, not a database\n" * 200
    path.write_bytes(junk)
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="not a SQLite database"):
        await eventmem.open(path)
    assert path.read_bytes() == junk


async def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="another application"):
        await eventmem.open(path)
    assert path.read_bytes() == before


async def test_a_directory_is_refused_as_a_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(eventmem.StorageError, match="directory"):
        await eventmem.open(tmp_path)


async def test_create_false_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(eventmem.StorageError, match="no such"):
        await eventmem.open(path, create=False)
    assert not path.exists()


async def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with eventmem.open(path) as store:
        assert await store.sessions() == []


def test_a_missing_directory_is_a_clean_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import anyio, eventmem\n"
        "async def main():\n"
        "    try:\n"
        f"        await eventmem.open({str(tmp_path / 'no' / 'such' / 'dir.db')!r})\n"
        "    except eventmem.StorageError as e:\n"
        "        print(type(e).__name__)\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "StorageError", "")


async def test_create_false_leaves_an_empty_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="empty"):
        await eventmem.open(path, create=False)
    assert path.stat().st_size == 0
