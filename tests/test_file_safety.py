"""No command, file name or stray file destroys a store.

* ``export -o`` refuses every output that is (or resolves to) the store or one of its
  files, a SQLite file, a directory, an existing file without ``--force``, and writes a
  file aside and renames it, so a failed export leaves nothing behind.
* A ``-wal`` file beside a database that is not its own (another application's, another
  eventmem store's, beside an empty or missing file) is refused before SQLite could copy
  it into the database: the file and the WAL stay byte for byte as they were. A WAL left
  by a crash of the store itself is still replayed.
* A path with a NUL character is refused (the system would open a shorter name).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import eventmem
from tests.backends import backend_of
from tests.files import (
    crashed_copy,
    event_count,
    eventmem_wal,
    foreign_wal,
    make_store,
    snapshot,
    tiny_filesystem,
)
from tests.test_cli import _populate, assert_clean_error, run

EXPORTED = "exported"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """``tmp_path/a.db``: a store with the sessions "kept" and "exported", 5 events each."""
    path = tmp_path / "a.db"
    make_store(path)
    return path


def sessions_of(path: Path | str) -> list[str]:
    async def sessions() -> list[str]:
        async with eventmem.open(path, read_only=True) as store:
            return await store.sessions()

    return anyio.run(sessions)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_clean_error(result, 1)
    assert result.stderr.startswith("eventmem: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr, result.stderr


# -- export -o onto the store ------------------------------------------------------------


def test_export_onto_its_own_database_is_refused_and_the_store_is_intact(
    tmp_path: Path,
) -> None:
    # The report: `eventmem demo --db a.db; eventmem export a.db --session S -o a.db`
    # replaced the store with the export and exited 0.
    for _ in range(2):
        assert run("demo", "--db", "a.db", cwd=tmp_path).returncode == 0
    sessions = sessions_of(tmp_path / "a.db")
    assert len(sessions) == 2
    before = snapshot(tmp_path)
    result = run("export", "a.db", "--session", sessions[0], "-o", "a.db", cwd=tmp_path)
    refused(result, "refusing to write a.db", "nothing was written")
    assert snapshot(tmp_path) == before  # the database byte for byte, and no new file
    assert sessions_of(tmp_path / "a.db") == sessions


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize(
    "spelling",
    [
        "a.db",
        "./a.db",
        "ABSOLUTE/a.db",
        "sub/../a.db",
        "a.db-wal",  # SQLite would replay it into a.db
        "a.db-shm",
        "a.db-journal",
        "symlink-to-db",
        "hard-link-to-db",
        "symlink-to-symlink",
        "symlink-dir/a.db",
    ],
)
def test_export_refuses_every_spelling_of_the_store(
    db: Path, tmp_path: Path, spelling: str, force: bool
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "symlink-to-db").symlink_to("a.db")
    (tmp_path / "symlink-to-symlink").symlink_to("symlink-to-db")
    os.link(db, tmp_path / "hard-link-to-db")
    (tmp_path / "symlink-dir").symlink_to(tmp_path)
    output = spelling.replace("ABSOLUTE", str(tmp_path))
    before = snapshot(tmp_path)
    args = ["export", "a.db", "--session", EXPORTED, "-o", output]
    refused(run(*args, *(["--force"] if force else []), cwd=tmp_path), "refusing to write")
    assert snapshot(tmp_path) == before
    assert sessions_of(db) == ["kept", EXPORTED]


@pytest.mark.parametrize("output", ["../a.db", "ABSOLUTE", "../sub/../a.db-wal"])
def test_the_store_is_recognised_from_another_directory(
    db: Path, tmp_path: Path, output: str
) -> None:
    # The DB and the output spelled relative to a working directory elsewhere.
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    before = snapshot(tmp_path)
    output = output.replace("ABSOLUTE", str(db))
    result = run("export", str(db), "-o", output, "--force", cwd=elsewhere)
    refused(result, "refusing to write")
    assert snapshot(tmp_path) == before


def test_export_refuses_the_wal_of_a_store_in_use(db: Path, tmp_path: Path) -> None:
    # As a crash leaves it: a.db-wal holds commits not yet in a.db; writing the export
    # over that WAL would lose them (and SQLite would then take the export for a WAL).
    crashed = tmp_path / "crashed"
    crashed_copy(db, crashed, session="kept", turns=3)
    before = snapshot(crashed)
    for output in ("a.db-wal", "a.db-shm", "a.db"):
        result = run("export", "a.db", "-o", output, "--force", cwd=crashed)
        refused(result, "refusing to write", output)
    assert snapshot(crashed) == before
    assert event_count(crashed / "a.db") == 13  # the WAL's 3 events are still there


def test_export_refuses_a_hard_link_to_the_wal(db: Path, tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    crashed_copy(db, crashed, session="kept", turns=2)
    os.link(crashed / "a.db-wal", crashed / "innocent.jsonl")
    before = snapshot(crashed)
    result = run("export", "a.db", "-o", "innocent.jsonl", "--force", cwd=crashed)
    refused(result, "same file as")
    assert snapshot(crashed) == before


def test_standard_output_appended_to_the_store_is_refused(db: Path, tmp_path: Path) -> None:
    # `eventmem export a.db >> a.db`: the shell opens the store for appending.
    before = snapshot(tmp_path)
    for name in ("a.db", "hard-link"):
        if name == "hard-link":
            os.link(db, tmp_path / name)
            before = snapshot(tmp_path)
        with (tmp_path / name).open("ab") as stdout:
            result = subprocess.run(
                [sys.executable, "-m", "eventmem", "export", "a.db"],
                cwd=tmp_path,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
            )
        assert result.returncode == 1, result.stderr
        assert "refusing to write standard output" in result.stderr
        assert snapshot(tmp_path) == before


def test_standard_output_appended_to_another_database_is_refused(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    make_store(other, sessions=("x",), turns=1)
    before = snapshot(tmp_path)
    with other.open("ab") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "eventmem", "export", "a.db"],
            cwd=tmp_path,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert "a SQLite database" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_sqlite_uri_is_not_taken_for_the_store_it_names(db: Path, tmp_path: Path) -> None:
    # DB is a path (eventmem takes no file: URIs), so `file:a.db` is a missing file; the
    # output a.db is still a database and is never replaced, --force or not.
    before = snapshot(tmp_path)
    result = run("export", "file:a.db", "-o", "a.db", "--force", cwd=tmp_path)
    refused(result, "a SQLite database")
    result = run("export", f"file://{db}", "-o", str(db), cwd=tmp_path)
    refused(result, "refusing to write")
    assert snapshot(tmp_path) == before


# -- export -o elsewhere: both backends ---------------------------------------------------


@pytest.fixture
def store_target(target: str) -> str:
    """A store (SQLite file or PostgreSQL schema) with the sessions the CLI tests use."""
    anyio.run(_populate, target)
    return target


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_an_existing_file_is_replaced_only_with_force(store_target: str, outdir: Path) -> None:
    existing = outdir / "chat.jsonl"
    existing.write_bytes(b"precious notes\n")
    existing.chmod(0o640)
    before = snapshot(outdir)
    result = run("export", store_target, "--session", "chat", "-o", str(existing), cwd=outdir)
    refused(result, "exists", "--force")
    assert snapshot(outdir) == before
    result = run("export", store_target, "--session", "chat", "-o", str(existing), "-f", cwd=outdir)
    assert result.returncode == 0, result
    lines = existing.read_bytes().splitlines()
    assert lines[0] == b'{"format":"eventmem-export","version":2}'
    assert lines[-1] == b'{"end":"eventmem-export","events":3}'
    assert existing.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    assert sorted(p.name for p in outdir.iterdir()) == ["chat.jsonl"]  # no partial left


def test_a_new_file_gets_the_usual_mode(store_target: str, outdir: Path) -> None:
    result = run("export", store_target, "-o", "new.jsonl", cwd=outdir)
    assert result.returncode == 0, result
    umask = os.umask(0)
    os.umask(umask)
    assert (outdir / "new.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_symlink_is_replaced_only_with_force_and_its_target_is_kept(
    store_target: str, outdir: Path
) -> None:
    (outdir / "notes.txt").write_bytes(b"keep me\n")
    (outdir / "link.jsonl").symlink_to("notes.txt")
    (outdir / "dangling.jsonl").symlink_to("nowhere/at/all")
    before = snapshot(outdir)
    for name in ("link.jsonl", "dangling.jsonl"):
        refused(run("export", store_target, "-o", name, cwd=outdir), "exists", "--force")
    assert snapshot(outdir) == before
    assert run("export", store_target, "-o", "link.jsonl", "--force", cwd=outdir).returncode == 0
    assert not (outdir / "link.jsonl").is_symlink()  # the name was replaced, not followed
    assert (outdir / "notes.txt").read_bytes() == b"keep me\n"


def test_any_sqlite_database_or_wal_is_never_replaced(
    store_target: str, outdir: Path, tmp_path: Path
) -> None:
    other = outdir / "other.db"
    make_store(other, sessions=("x",), turns=1)
    foreign_wal(outdir / "loose-wal", tmp_path)
    before = snapshot(outdir)
    for name, what in [
        ("other.db", "a SQLite database"),
        ("loose-wal", "a SQLite WAL file"),
        ("other.db-wal", "other.db"),  # absent, but SQLite would replay it into other.db
        ("other.db-journal", "other.db"),
    ]:
        refused(run("export", store_target, "-o", name, "--force", cwd=outdir), what)
    assert snapshot(outdir) == before


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("OUT", "is a directory"),
        ("OUT/missing/x.jsonl", "does not exist"),
        ("/dev/full", "No space left on device"),
    ],
)
def test_unwritable_outputs_are_refused_cleanly(
    store_target: str, outdir: Path, tmp_path: Path, output: str, message: str
) -> None:
    before = snapshot(tmp_path)
    result = run("export", store_target, "-o", output.replace("OUT", str(outdir)), cwd=outdir)
    refused(result, message)
    assert snapshot(tmp_path) == before  # no directory made, no partial file left


def test_a_block_device_is_refused(store_target: str, outdir: Path) -> None:
    devices = [p for p in Path("/dev").glob("*") if p.is_block_device()]
    if not devices:
        pytest.skip("no block device in /dev")
    result = run("export", store_target, "-o", str(devices[0]), "--force", cwd=outdir)
    refused(result, "block device")


def test_character_devices_and_fifos_are_streams(store_target: str, outdir: Path) -> None:
    result = run("export", store_target, "-o", "/dev/null", cwd=outdir)
    assert result.returncode == 0, result
    fifo = outdir / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = run("export", store_target, "--session", "chat", "-o", str(fifo), cwd=outdir)
    out, _ = reader.communicate(timeout=60)
    assert result.returncode == 0, result
    assert out.splitlines()[-1] == b'{"end":"eventmem-export","events":3}'


def test_a_failed_export_leaves_no_file(store_target: str, outdir: Path) -> None:
    result = run("export", store_target, "--session", "nope", "-o", "x.jsonl", cwd=outdir)
    refused(result, "no session 'nope'")
    assert list(outdir.iterdir()) == []
    (outdir / "x.jsonl").write_bytes(b"old export\n")
    result = run(
        "export", store_target, "--session", "nope", "-o", "x.jsonl", "--force", cwd=outdir
    )
    refused(result, "no session 'nope'")
    assert sorted(p.name for p in outdir.iterdir()) == ["x.jsonl"]
    assert (outdir / "x.jsonl").read_bytes() == b"old export\n"


def test_a_full_disk_leaves_the_old_file_and_no_partial(store_target: str) -> None:
    with tiny_filesystem(kilobytes=64) as full:
        (full / "x.jsonl").write_bytes(b"old export\n")

        async def grow() -> None:  # an export larger than the 64 KiB filesystem
            async with eventmem.open(store_target) as store:
                memory = store.token_buffer("big", max_token_limit=10**6)
                await memory.asave_context({"input": "x" * 200_000}, {"output": "y"})

        anyio.run(grow)
        result = run("export", store_target, "-o", "x.jsonl", "--force", cwd=full)
        refused(result, "cannot write x.jsonl", "No space left on device")
        assert sorted(p.name for p in full.iterdir()) == ["x.jsonl"]
        assert (full / "x.jsonl").read_bytes() == b"old export\n"


def test_an_interrupted_export_leaves_no_file(store_target: str, outdir: Path) -> None:
    # Killed at some moment (SIGKILL: no cleanup runs): at worst a hidden .partial file;
    # a file under the output's name is always a whole export.
    async def grow() -> None:
        async with eventmem.open(store_target) as store:
            memory = store.token_buffer("big", max_token_limit=10**6)
            for i in range(300):
                await memory.asave_context({"input": f"turn {i} " * 50}, {"output": "y"})

    anyio.run(grow)
    process = subprocess.Popen(
        [sys.executable, "-m", "eventmem", "export", store_target, "-o", "x.jsonl"],
        cwd=outdir,
    )
    anyio.run(anyio.sleep, 0.5)
    process.kill()
    process.wait(timeout=60)
    written = outdir / "x.jsonl"
    if written.exists():  # killed after the rename: then the file is whole
        lines = written.read_bytes().splitlines()
        assert lines[-1] == b'{"end":"eventmem-export","events":%d}' % (len(lines) - 2)
    for left in outdir.iterdir():
        assert left.name == "x.jsonl" or left.name.endswith(".partial"), left


# -- a -wal file that is not the store's --------------------------------------------------


async def _open(path: Path) -> None:
    async with eventmem.open(path) as store:
        await store.sessions()


async def _open_read_only(path: Path) -> None:
    async with eventmem.open(path, read_only=True) as store:
        await store.sessions()


async def _open_existing(path: Path) -> None:
    async with eventmem.open(path, create=False) as store:
        await store.sessions()


async def _connect(path: Path) -> None:
    def blocking() -> None:
        with eventmem.connect(path) as store:
            store.sessions()

    await anyio.to_thread.run_sync(blocking)


OPENERS: dict[str, Callable[[Path], Awaitable[None]]] = {
    "open": _open,
    "read_only": _open_read_only,
    "create=False": _open_existing,
    "connect": _connect,
}
OPENER_IDS = list(OPENERS)


def open_with(how: str, path: Path) -> None:
    anyio.run(OPENERS[how], path)


@pytest.mark.parametrize("how", OPENER_IDS)
def test_a_foreign_wal_is_refused_and_both_files_stay_byte_identical(
    db: Path, tmp_path: Path, how: str
) -> None:
    # The report: a -wal of another database beside the store; opening raised
    # NotAnEventmemDatabaseError, then SQLite copied that WAL into the file on close:
    # the 10-event store became the other database.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    foreign_wal(tmp_path / "a.db-wal", scratch)
    shutil.rmtree(scratch)
    before = snapshot(tmp_path)
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="-wal file beside it"):
        open_with(how, db)
    assert snapshot(tmp_path) == before  # a.db and a.db-wal byte for byte; no -shm left
    (tmp_path / "a.db-wal").rename(tmp_path / "moved-away")
    assert event_count(db) == 10
    assert sessions_of(db) == ["kept", EXPORTED]


@pytest.mark.parametrize("with_shm", [True, False], ids=["with-shm", "without-shm"])
@pytest.mark.parametrize("how", OPENER_IDS)
def test_the_wal_of_another_eventmem_store_is_refused(
    db: Path, tmp_path: Path, how: str, with_shm: bool
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    eventmem_wal(tmp_path / "a.db-wal", scratch)
    if with_shm:  # a stale index beside it too, as if both were copied over
        shutil.copyfile(scratch / "another-store-crashed" / "another-store.db-shm", f"{db}-shm")
    shutil.rmtree(scratch)
    before = snapshot(tmp_path)
    with pytest.raises(eventmem.NotAnEventmemDatabaseError, match="another eventmem store"):
        open_with(how, db)
    if with_shm:
        # SQLite may rebuild its -shm index; the database and the WAL are what count.
        before.pop("a.db-shm")
        after = snapshot(tmp_path)
        after.pop("a.db-shm")
        assert after == before
    else:
        assert snapshot(tmp_path) == before
    (tmp_path / "a.db-wal").unlink()
    Path(f"{db}-shm").unlink(missing_ok=True)
    assert event_count(db) == 10


@pytest.mark.parametrize("how", OPENER_IDS)
@pytest.mark.parametrize("beside", ["an empty file", "no file", "a junk file", "a foreign db"])
def test_a_wal_beside_what_is_not_its_store_is_refused(
    tmp_path: Path, how: str, beside: str
) -> None:
    path = tmp_path / "x.db"
    if beside == "an empty file":
        path.write_bytes(b"")
    elif beside == "a junk file":
        path.write_bytes(b"not a database at all\n" * 300)
    elif beside == "a foreign db":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
        conn.execute("INSERT INTO accounts VALUES (1, 100)")
        conn.commit()
        conn.close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    eventmem_wal(tmp_path / "x.db-wal", scratch)  # the most tempting one: eventmem's
    shutil.rmtree(scratch)
    before = snapshot(tmp_path)
    errors: Any = (eventmem.NotAnEventmemDatabaseError, eventmem.StorageError)
    with pytest.raises(errors):
        open_with(how, path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("with_shm", [True, False], ids=["with-shm", "without-shm"])
@pytest.mark.parametrize("how", ["open", "create=False", "connect"])
def test_the_wal_a_crash_of_the_store_left_is_replayed(
    db: Path, tmp_path: Path, how: str, with_shm: bool
) -> None:
    crashed = tmp_path / "crashed"
    crashed_copy(db, crashed, session="kept", turns=4, with_shm=with_shm)
    open_with(how, crashed / "a.db")
    assert not (crashed / "a.db-wal").exists()  # checkpointed into the file on close

    async def check() -> None:
        async with eventmem.open(crashed / "a.db") as store:
            assert await store.count_events() == 14
            assert (await store.verify()).ok
            assert (await store.messages("kept"))[-1].content == "in the WAL"

    anyio.run(check)


@pytest.mark.parametrize("with_shm", [True, False], ids=["with-shm", "without-shm"])
def test_a_crashed_store_reads_read_only_with_its_wal_untouched(
    db: Path, tmp_path: Path, with_shm: bool
) -> None:
    crashed = tmp_path / "crashed"
    crashed_copy(db, crashed, session="kept", turns=4, with_shm=with_shm)
    database, wal = (crashed / "a.db").read_bytes(), (crashed / "a.db-wal").read_bytes()
    assert event_count(crashed / "a.db") == 14  # read through the WAL, read-only
    assert (crashed / "a.db").read_bytes() == database
    assert (crashed / "a.db-wal").read_bytes() == wal
    # Reading a WAL needs its index: a missing -shm is made (documented), nothing else.
    assert sorted(p.name for p in crashed.iterdir()) == ["a.db", "a.db-shm", "a.db-wal"]


def test_a_store_in_use_by_another_connection_opens(db: Path, tmp_path: Path) -> None:
    async def both() -> None:
        async with eventmem.open(db) as first:
            await first.token_buffer("kept").asave_context({"input": "a"}, {"output": "b"})
            assert Path(f"{db}-wal").stat().st_size > 32  # a live WAL, with frames
            async with eventmem.open(db) as second, eventmem.open(db, read_only=True) as third:
                assert await second.count_events() == await third.count_events() == 11

    anyio.run(both)


@pytest.mark.parametrize("command", ["sessions", "verify", "stats", "export", "rebuild", "demo"])
def test_the_commands_refuse_a_foreign_wal_untouched(
    db: Path, tmp_path: Path, command: str
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    foreign_wal(tmp_path / "a.db-wal", scratch)
    shutil.rmtree(scratch)
    before = snapshot(tmp_path)
    args = ["demo", "--db", "a.db"] if command == "demo" else [command, "a.db"]
    refused(run(*args, cwd=tmp_path), "-wal file beside it")
    assert snapshot(tmp_path) == before


# -- NUL in a path ------------------------------------------------------------------------


def test_a_path_with_a_nul_is_refused(target: str, tmp_path: Path) -> None:
    # The report: eventmem.open('dir/tenant.db\x00.other') silently opened dir/tenant.db.
    (tmp_path / "dir").mkdir(exist_ok=True)
    spelled = (
        str(tmp_path / "dir" / "tenant.db") + "\x00.other"
        if backend_of(target) == "sqlite"
        else target + "\x00.other"
    )
    as_path: Path | str = Path(spelled) if backend_of(target) == "sqlite" else spelled
    before = snapshot(tmp_path)
    for attempt in (
        lambda: eventmem.open(spelled),
        lambda: eventmem.open(as_path, read_only=True),
        lambda: eventmem.connect(spelled),
        lambda: eventmem.connect(as_path, read_only=True),
    ):
        with pytest.raises(eventmem.InvalidInputError, match="NUL") as caught:
            attempt()
        assert isinstance(caught.value, ValueError)  # as open() raises for the same name
    with pytest.raises(ValueError, match="null"):
        open(spelled)  # noqa: SIM115 - the built-in's behaviour eventmem follows
    assert snapshot(tmp_path) == before  # dir/tenant.db was not created


# -- a database created where SQLite would take it for another's file ---------------------


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_store_is_never_created_as_another_databases_wal(
    db: Path, tmp_path: Path, suffix: str
) -> None:
    # A new store named a.db-wal would be taken by SQLite for a.db's WAL: replayed into
    # a.db, or overwritten by it.
    before = snapshot(tmp_path)
    with pytest.raises(eventmem.InvalidInputError, match="choose another name"):
        anyio.run(eventmem.open, tmp_path / f"a.db{suffix}")
    export = tmp_path / "x.jsonl"
    export.write_bytes(run("export", "a.db", cwd=tmp_path).stdout.encode())
    before = snapshot(tmp_path)
    for args in (["demo", "--db", f"a.db{suffix}"], ["import", f"a.db{suffix}", "x.jsonl"]):
        refused(run(*args, cwd=tmp_path), "choose another name")
    assert snapshot(tmp_path) == before
    assert event_count(db) == 10


def test_a_refused_import_leaves_a_foreign_wal_where_it_was(db: Path, tmp_path: Path) -> None:
    # Importing into new.db, beside which lies another database's WAL: the open refuses
    # it, and removing "the files the import made" must not remove that WAL.
    (tmp_path / "x.jsonl").write_bytes(run("export", "a.db", cwd=tmp_path).stdout.encode())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    foreign_wal(tmp_path / "new.db-wal", scratch)
    shutil.rmtree(scratch)
    before = snapshot(tmp_path)
    refused(run("import", "new.db", "x.jsonl", cwd=tmp_path), "-wal file beside it")
    assert snapshot(tmp_path) == before
