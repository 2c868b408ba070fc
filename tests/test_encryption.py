"""Encryption at rest on both backends: a store opened with a key store keeps every
event's content as AES-256-GCM ciphertext under its session's data key (the raw rows
hold no plaintext), reads and audits as a plain store does, needs its keys to open, and
an erasure destroys the session's key, so a copy of the database made before the
erasure cannot read that session."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import eventmem
from eventmem import Message, ToolCall
from eventmem.encryption import Keyring, KeyStore, generate_master_key
from tests.backends import (
    POSTGRES_URL,
    backend_of,
    drop_target,
    new_target,
    raw_database,
    schema_of,
)
from tests.test_cli import assert_clean_error, run

pytestmark = pytest.mark.anyio

PLANT = "wombat-5512-lantern"  # in every field that holds content


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Keyring]:
    with Keyring(tmp_path / "store.keys", master_key=generate_master_key()) as keyring:
        yield keyring


async def _fill(store: eventmem.Store, session: str = "victim") -> None:
    """A session holding the planted text in a turn, a tool step's arguments and
    observation, a general append with metadata and tool calls, and a summary."""
    memory = store.agent_token_buffer(session, max_token_limit=5000)
    await memory.asave_context({"input": f"my name is {PLANT}"}, {"output": "hello"})
    action = {"tool": "lookup", "tool_input": {"who": PLANT}, "log": f"looking up {PLANT}"}
    await memory.asave_context(
        {"input": f"find {PLANT}"},
        {"output": "found", "intermediate_steps": [(action, f"record of {PLANT}")]},
    )
    history = store.history(session, max_tokens=60, summarize=lambda old, pruned: f"{PLANT} sum")
    await history.append(
        [
            Message("human", f"{PLANT} " + "and some more words " * 40, metadata={"n": PLANT}),
            Message("ai", "", tool_calls=(ToolCall("mail", {"to": PLANT}, "c1"),)),
            Message("tool", "sent", tool_call_id="c1"),
        ]
    )


async def _chat(store: eventmem.Store, session: str) -> None:
    memory = store.token_buffer(session)
    for i in range(3):
        await memory.asave_context({"input": f"q{i}"}, {"output": f"a{i}"})


def _stored_rows(target: str) -> list[tuple[str, int, str, str]]:
    with raw_database(target) as raw:
        return [
            (str(s), int(p), str(k), d if isinstance(d, str) else bytes(d).decode())
            for s, p, k, d in raw.execute(
                "SELECT session_id, position, kind, data FROM events ORDER BY id"
            )
        ]


Shown = tuple[list[Message], list[list[Message]], list[tuple[int, object]], str]


async def _everything(store: eventmem.Store, session: str) -> Shown:
    """What the store shows of a session: its view, every past view, its events."""
    version = await store.version(session)
    return (
        await store.messages(session),
        [await store.messages(session, as_of=p) for p in range(version + 1)],
        [(e.position, e.data) async for e in store.events(session)],
        await store.summary(session),
    )


async def test_content_is_stored_as_ciphertext_and_reads_as_a_plain_store_does(
    target: str, keys: Keyring, tmp_path: Path
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await _fill(store)
        await store.fork("victim", "branch")
        await store.token_buffer("branch").asave_context({"input": PLANT}, {"output": "ok"})
        seen = {s: await _everything(store, s) for s in ("victim", "branch")}
        assert (await store.verify()).ok
        assert await store.rebuild() == 2
        assert {s: await _everything(store, s) for s in ("victim", "branch")} == seen
        assert (await store.verify_session("branch")).ok

    rows = _stored_rows(target)
    assert rows
    assert all(PLANT not in data for *_, data in rows)
    plain_kinds = {"fork"}
    for _, _, kind, data in rows:
        assert data.startswith('{"kind":"encrypted","box":"') == (kind not in plain_kinds)

    # The same writes in a store without keys show the same (the fold does not care).
    plain = _another(backend_of(target), tmp_path, "plain")
    try:
        async with eventmem.open(plain) as store:
            await _fill(store)
            await store.fork("victim", "branch")
            await store.token_buffer("branch").asave_context({"input": PLANT}, {"output": "ok"})
            shown = {s: await _everything(store, s) for s in ("victim", "branch")}
        assert _without_times(shown) == _without_times(seen)
    finally:
        drop_target(plain)


def _without_times(seen: dict[str, Shown]) -> object:
    """The sessions' views, and their events without their (hash-chained) times."""
    return {
        s: (view, past, [p for p, _ in events], summary)
        for s, (view, past, events, summary) in seen.items()
    }


async def test_an_encrypted_store_opens_only_with_its_keys(
    target: str, keys: Keyring, tmp_path: Path
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
    with pytest.raises(eventmem.KeysRequiredError, match="encryption=keys"):
        await eventmem.open(target)
    with pytest.raises(eventmem.KeysRequiredError):
        await eventmem.open(target, read_only=True)
    stranger = Keyring(keys.path, master_key=generate_master_key())
    with pytest.raises(eventmem.KeyringError, match="not the one this keyring was made with"):
        await eventmem.open(target, encryption=stranger)  # refused as it opens
    other_keys = Keyring(tmp_path / "other.keys", master_key=generate_master_key())
    async with eventmem.open(target, encryption=other_keys) as store:
        with pytest.raises(eventmem.DataKeyMissingError, match="another store"):
            await store.messages("s")
    async with eventmem.open(target, encryption=keys, read_only=True) as store:
        assert [m.content for m in await store.messages("s")] == [PLANT, "b"]


async def test_a_plain_store_opened_with_keys_encrypts_from_then_on(
    target: str, keys: Keyring
) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "before"}, {"output": "plain"})
    async with eventmem.open(target, encryption=keys) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "after"})
        assert [m.content for m in await store.messages("s")] == [
            "before",
            "plain",
            PLANT,
            "after",
        ]
        assert (await store.verify()).ok
    kinds = [data.startswith('{"kind":"encrypted"') for *_, data in _stored_rows(target)]
    assert kinds == [False, True]  # the first event stays as written: its hash covers it
    with pytest.raises(eventmem.KeysRequiredError):
        await eventmem.open(target)


async def test_a_changed_or_moved_box_is_found_by_verify_even_rechained(
    target: str, keys: Keyring
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await _chat(store, "s")
    rows = {p: d for s, p, _, d in _stored_rows(target)}

    def moved(position: int, data: bytes) -> bytes:
        return rows[1].encode() if position == 2 else data  # position 1's box at 2

    problems = await _rechained(target, keys, moved)
    assert [(p.position, p.kind) for p in problems] == [(2, "undecodable")]
    assert "does not open with the session's data key" in problems[0].detail
    async with eventmem.open(target, encryption=keys) as store:
        with pytest.raises(eventmem.CorruptDatabaseError, match="run verify"):
            await store.messages("s", as_of=2)

    def flipped(position: int, data: bytes) -> bytes:
        if position != 3:
            return rows[position].encode()
        box = bytearray(base64.b64decode(data[len(b'{"kind":"encrypted","box":"') : -2]))
        box[20] ^= 1
        return b'{"kind":"encrypted","box":"' + base64.b64encode(bytes(box)) + b'"}'

    problems = await _rechained(target, keys, flipped)
    assert [(p.position, p.kind) for p in problems] == [(3, "undecodable")]


async def _rechained(
    target: str, keys: Keyring, rewrite: Callable[[int, bytes], bytes]
) -> list[eventmem.Problem]:
    """Session ``s`` with each event's data rewritten and the chain recomputed, as
    someone who knows the hash rule would; what verify then finds."""
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.rechain("s", rewrite)
        raw.restore_triggers()
    async with eventmem.open(target, encryption=keys) as store:
        return (await store.verify()).problems


async def test_export_carries_ciphertext_and_imports_only_where_the_keys_are(
    target: str, keys: Keyring, tmp_path: Path
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await _fill(store)
        seen = await _everything(store, "victim")
        exported = tmp_path / "export.jsonl"
        with exported.open("wb") as sink:
            await store.export_to(sink)
    text = exported.read_text()
    assert PLANT not in text
    assert '"kind":"encrypted"' in text
    backend = backend_of(target)
    elsewhere = _another(backend, tmp_path, "elsewhere")
    try:
        async with eventmem.open(elsewhere) as plain:
            with pytest.raises(eventmem.ImportRefusedError, match="encryption=keys"):
                await _import(plain, exported)
            assert await plain.sessions() == []
        strangers = Keyring(tmp_path / "strangers.keys", master_key=generate_master_key())
        async with eventmem.open(elsewhere, encryption=strangers) as other:
            with pytest.raises(eventmem.ImportRefusedError, match="no data key"):
                await _import(other, exported)
            assert await other.sessions() == []
    finally:
        drop_target(elsewhere)
    again = _another(backend, tmp_path, "again")
    try:
        async with eventmem.open(again, encryption=keys) as store:
            await _import(store, exported)
            assert await _everything(store, "victim") == seen
            assert (await store.verify()).ok
    finally:
        drop_target(again)


async def _import(store: eventmem.Store, exported: Path) -> None:
    with exported.open("rb") as lines:
        await store.import_events(lines)


def _another(backend: str, tmp_path: Path, name: str) -> str:
    """Another store location, apart from the test's own."""
    return str(tmp_path / f"{name}.db") if backend == "sqlite" else new_target(backend, tmp_path)


async def _backup(target: str, tmp_path: Path) -> str:
    """A copy of the whole store as it is now: the SQLite file (by SQLite's backup), or
    every table of the PostgreSQL schema copied into a new one."""
    if backend_of(target) == "sqlite":
        copied = tmp_path / "backup.db"
        with sqlite3.connect(target) as source, sqlite3.connect(copied) as into:
            source.backup(into)
        return str(copied)
    copy = new_target("postgresql", tmp_path)
    async with eventmem.open(copy):
        pass  # an empty store of the same schema
    old, new = schema_of(target), schema_of(copy)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for table in ("events", "sessions", "view_messages", "eventmem_settings"):
            admin.execute(
                f'INSERT INTO "{new}".{table} OVERRIDING SYSTEM VALUE SELECT * FROM "{old}".{table}'
            )
    return copy


async def test_erasure_destroys_the_key_so_a_backup_cannot_read_the_session(
    target: str, keys: Keyring, tmp_path: Path
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await _fill(store)
        await store.token_buffer("other").asave_context({"input": "kept"}, {"output": "too"})
        kept = await store.messages("other")
        victim_key = keys.data_key("victim", create=False)
        assert victim_key is not None
        backup = await _backup(target, tmp_path)
        receipt = await store.erase("victim", reason="GDPR art. 17")
        assert receipt.key_destroyed is True
        assert (await store.verify()).ok
        with pytest.raises(eventmem.ErasedSessionError, match="erased already"):
            await store.erase("victim", reason="again")  # (and the key stays destroyed)
    assert keys.destroyed_at("victim") is not None
    with pytest.raises(eventmem.DataKeyMissingError, match="was destroyed"):
        keys.data_key("victim", create=True)  # never made again
    keys.close()
    keyring_bytes = keys.path.read_bytes()
    assert victim_key not in keyring_bytes
    assert not list(keys.path.parent.glob(keys.path.name + "-*"))  # no WAL, no journal

    try:
        async with eventmem.open(backup, encryption=keys) as restored:
            with pytest.raises(eventmem.DataKeyMissingError):
                await restored.messages("victim")
            assert await restored.messages("other") == kept
            report = await restored.verify()
            assert {(p.session_id, p.kind) for p in report.problems} == {("victim", "undecodable")}
            assert "was destroyed" in report.problems[0].detail
    finally:
        if backend_of(backup) == "postgresql":
            drop_target(backup)


async def test_a_fork_keeps_its_own_key_and_its_erasure_spares_the_parent(
    target: str, keys: Keyring
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await _chat(store, "parent")
        await store.fork("parent", "fork", at=2)
        await store.token_buffer("fork").asave_context({"input": PLANT}, {"output": "mine"})
        parent = await store.messages("parent")
        receipt = await store.erase("fork", reason="the user asked")
        assert receipt.key_destroyed is True
        assert await store.messages("parent") == parent
        assert keys.data_key("parent", create=False) is not None
        assert (await store.verify()).ok


class _FakeKms:
    """A KMS stand-in: it holds one key of its own and wraps data keys with it."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.calls = 0
        self.broken = False

    def wrap(self, session_id: str, data_key: bytes) -> bytes:
        self.calls += 1
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, session_id.encode())

    def unwrap(self, session_id: str, wrapped: bytes) -> bytes:
        self.calls += 1
        if self.broken:
            raise ConnectionError("kms unreachable")
        return self._aead.decrypt(wrapped[:12], wrapped[12:], session_id.encode())


async def test_a_keyring_can_leave_the_wrapping_to_a_kms(target: str, tmp_path: Path) -> None:
    kms = _FakeKms()
    path = tmp_path / "kms.keys"
    keyring = Keyring(path, wrap=kms.wrap, unwrap=kms.unwrap)
    async with eventmem.open(target, encryption=keyring) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
    assert kms.calls >= 2
    keyring.close()
    kms.broken = True
    with pytest.raises(eventmem.KeyringError, match=r"unwrap callback failed.*ConnectionError"):
        async with eventmem.open(
            target, encryption=Keyring(path, wrap=kms.wrap, unwrap=kms.unwrap)
        ) as store:
            await store.messages("s")
    with pytest.raises(eventmem.KeyringError, match="made with KMS callbacks"):
        Keyring(path, master_key=generate_master_key()).data_key("s", create=False)


class _DictKeys:
    """The smallest key store: what a user writes for a vault of their own."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        if session_id not in self.keys and create:
            self.keys[session_id] = os.urandom(32)
        return self.keys.get(session_id)

    def destroy(self, session_id: str) -> bool:
        return self.keys.pop(session_id, None) is not None


async def test_any_key_store_will_do(target: str) -> None:
    vault = _DictKeys()
    assert isinstance(vault, KeyStore)
    async with eventmem.open(target, encryption=vault) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
        assert set(vault.keys) == {"s"}
        assert (await store.erase("s", reason="asked")).key_destroyed is True
        assert vault.keys == {}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_bad_keys_and_keyrings_are_refused_and_change_nothing(backend: str, tmp_path: Path) -> None:
    master = generate_master_key()
    for bad in (b"short", "x" * 32, None):
        with pytest.raises(eventmem.InvalidInputError):
            Keyring(tmp_path / "k", master_key=bad)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="not both"):
        Keyring(tmp_path / "k", master_key=master, wrap=bytes, unwrap=bytes)  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="a file"):
        Keyring(":memory:", master_key=master)
    with pytest.raises(eventmem.InvalidInputError, match="key store"):
        eventmem.open(tmp_path / "a.db", encryption=master)  # type: ignore[arg-type]
    db = tmp_path / "a.db"
    with pytest.raises(eventmem.InvalidInputError, match="the store's own database"):
        eventmem.open(db, encryption=Keyring(db, master_key=master))
    with pytest.raises(eventmem.InvalidInputError, match="the store's own database"):
        eventmem.open(db, encryption=Keyring(f"{db}-wal", master_key=master))

    eventmem.connect(db).close()  # a store is not a keyring
    before = db.read_bytes()
    with pytest.raises(eventmem.KeyringError, match="not an eventmem keyring"):
        Keyring(db, master_key=master).data_key("s", create=True)
    assert db.read_bytes() == before
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database at all " * 100)
    with pytest.raises(eventmem.KeyringError, match="not a readable keyring"):
        Keyring(junk, master_key=master).data_key("s", create=True)
    assert junk.read_bytes() == b"not a database at all " * 100

    keyring = Keyring(tmp_path / "ok.keys", master_key=master)
    assert master.hex() not in repr(keyring)
    assert str(master) not in repr(keyring)
    key = keyring.data_key("s", create=True)
    assert key is not None
    assert keyring.data_key("s", create=False) == key
    assert master not in (tmp_path / "ok.keys").read_bytes()
    assert key not in (tmp_path / "ok.keys").read_bytes()  # wrapped, never as it is
    keyring.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_commands_read_the_keyring_from_the_environment(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = generate_master_key()
    db = tmp_path / "a.db"
    with eventmem.connect(db, encryption=Keyring(tmp_path / "a.keys", master_key=master)) as s:
        s.token_buffer("s").save_context({"input": PLANT}, {"output": "b"})

    refused = run("log", str(db), "s", cwd=tmp_path)
    assert_clean_error(refused, 1)
    assert "EVENTMEM_KEYRING" in refused.stderr

    monkeypatch.setenv("EVENTMEM_KEYRING", str(tmp_path / "a.keys"))
    monkeypatch.setenv("EVENTMEM_MASTER_KEY", base64.b64encode(master).decode())
    shown = run("log", str(db), "s", cwd=tmp_path)
    assert shown.returncode == 0, shown
    assert PLANT in shown.stdout
    assert run("verify", str(db), cwd=tmp_path).returncode == 0
    stats = run("stats", str(db), cwd=tmp_path)
    assert "encryption      aes-256-gcm, a data key per session" in stats.stdout
    figures = json.loads(run("stats", str(db), "--json", cwd=tmp_path).stdout)
    assert figures["encryption"] == "aes-256-gcm"
    erased = run("erase", str(db), "s", "--reason", "asked", cwd=tmp_path)
    assert erased.returncode == 0, erased
    assert "data key: destroyed" in erased.stdout

    monkeypatch.setenv("EVENTMEM_MASTER_KEY", "not-a-key")
    bad = run("log", str(db), "s", cwd=tmp_path)
    assert_clean_error(bad, 1)
    assert "not a master key" in bad.stderr
    assert "not-a-key" not in bad.stderr
    monkeypatch.delenv("EVENTMEM_MASTER_KEY")
    half = run("log", str(db), "s", cwd=tmp_path)
    assert_clean_error(half, 1)
    assert "go together" in half.stderr


async def test_an_erasure_record_shows_the_key_destroyed(target: str, keys: Keyring) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
        receipt = await store.erase("s", reason="asked")
    assert msgspec.json.decode(msgspec.json.encode(receipt))["key_destroyed"] is True
    with pytest.raises(eventmem.KeysRequiredError):
        await eventmem.open(target)  # an erasure leaves the store encrypted


async def test_no_copy_of_the_plaintext_reaches_the_sqlite_files(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    keyring = Keyring(tmp_path / "store.keys", master_key=generate_master_key())
    async with eventmem.open(path, encryption=keyring) as store:
        await _fill(store)
        files = {p.name: p.read_bytes() for p in tmp_path.glob("store.db*")}
        assert files
        assert all(PLANT.encode() not in b for b in files.values())
    shutil.copy(path, tmp_path / "copy.db")
    assert PLANT.encode() not in (tmp_path / "copy.db").read_bytes()


async def test_a_digest_cannot_confirm_a_guess_of_encrypted_content(
    target: str, keys: Keyring
) -> None:
    from eventmem.events import content_digest, encode_event

    async with eventmem.open(target, encryption=keys) as store:
        await store.token_buffer("s").asave_context({"input": "yes"}, {"output": "no"})
        (event,) = [e async for e in store.events("s")]
        await store.erase("s", reason="asked")
    guess = content_digest(encode_event(event.data))  # the exact JSON, known to the guesser
    with raw_database(target) as raw:
        digests = {bytes(d) for (d,) in raw.execute("SELECT digest FROM events")}
    assert guess not in digests


async def test_what_an_encrypted_store_leaves_in_the_clear(target: str, keys: Keyring) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
        await store.fork("s", "copy")
        await store.rewind("copy", to=1)
        await store.erase("copy", reason="asked by the user", by="dpo")
    with raw_database(target) as raw:
        rows = raw.execute("SELECT session_id, kind, data FROM events ORDER BY id")
        counts = raw.execute("SELECT session_id, total_tokens FROM sessions ORDER BY 1")
    assert [(s, k) for s, k, _ in rows] == [
        ("s", "turn"),
        ("copy", "fork"),
        ("copy", "rewind"),
        ("copy", "erase"),
    ]
    clear = [d for _, k, d in rows if k in ("fork", "rewind", "erase")]
    assert all(not d.startswith('{"kind":"encrypted"') for d in clear)
    assert "asked by the user" in clear[-1]  # a tombstone's reason and author stay readable
    assert dict(counts)["s"] > 0  # and so do token counts, ids, kinds and times


class _FailingOnce(_DictKeys):
    """A key store whose first destroy fails (the process stopped, the vault was down)."""

    failed = False

    def destroy(self, session_id: str) -> bool:
        if not self.failed:
            self.failed = True
            raise ConnectionError("vault unreachable")
        return super().destroy(session_id)


async def test_an_erasure_run_again_destroys_a_key_the_first_left(target: str) -> None:
    vault = _FailingOnce()
    async with eventmem.open(target, encryption=vault) as store:
        await store.token_buffer("s").asave_context({"input": PLANT}, {"output": "b"})
        with pytest.raises(ConnectionError):
            await store.erase("s", reason="asked")
        assert "s" in vault.keys  # the erasure committed, the key is still there
        with pytest.raises(eventmem.ErasedSessionError):
            await store.messages("s")
        with pytest.raises(eventmem.ErasedSessionError, match="erased already"):
            await store.erase("s", reason="asked")
        assert vault.keys == {}


class _Watched(_DictKeys):
    """A key store that notes the threads it is called on, and whether the store's
    connection was in a transaction when a new key was made."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.in_transaction: Callable[[], bool] = lambda: False
        self.made_in_transaction: list[bool] = []

    def data_key(self, session_id: str, *, create: bool) -> bytes | None:
        self.threads.add(threading.get_ident())
        if session_id not in self.keys and create:
            self.made_in_transaction.append(self.in_transaction())
        return super().data_key(session_id, create=create)


async def test_the_key_store_is_never_called_on_the_event_loop(target: str) -> None:
    vault = _Watched()
    async with eventmem.open(target, encryption=vault) as store:
        backend = store._backend  # (the test looks at the connection's transaction)
        connection = getattr(backend, "_conn", None) or backend._pg  # type: ignore[attr-defined]
        vault.in_transaction = lambda: bool(connection.in_transaction)
        for session in ("a", "b"):
            memory = store.token_buffer(session)
            for i in range(3):
                await memory.asave_context({"input": f"q{i}"}, {"output": PLANT})
            await memory.aload_memory_variables({})
        await store.fork("a", "c")
        await store.token_buffer("c").asave_context({"input": "x"}, {"output": "y"})
    assert vault.threads
    assert threading.get_ident() not in vault.threads  # (a KMS call would block the loop)
    # nor inside a write transaction (the keyring syncs its file: the lock would wait)
    assert vault.made_in_transaction == [False, False, False]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_viewer_reads_an_encrypted_store_with_its_keys(
    backend: str, tmp_path: Path, keys: Keyring
) -> None:
    from starlette.testclient import TestClient

    from eventmem.ui.app import create_app

    db = str(tmp_path / "a.db")
    with eventmem.connect(db, encryption=keys) as store:
        store.token_buffer("s").save_context({"input": PLANT}, {"output": "b"})
    app = create_app(db, open_options={"encryption": keys})
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/buffer", params={"id": "s"})
        assert page.status_code == 200
        assert PLANT in page.text
    plain = TestClient(create_app(db), base_url="http://127.0.0.1")
    with pytest.raises(eventmem.KeysRequiredError), plain:  # (it opens the store on start)
        pass


_WRITER = """
import sys, eventmem
from eventmem.encryption import Keyring
db, keyring, master, name = sys.argv[1:5]
keys = Keyring(keyring, master_key=bytes.fromhex(master))
with eventmem.connect(db, encryption=keys) as store:
    for i in range(40):
        for session in ("shared", f"own-{name}"):
            store.history(session).append([eventmem.Message("human", f"{name} {i}")])
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_sharing_a_keyring_make_one_key_per_session(target: str, tmp_path: Path) -> None:
    master = generate_master_key()
    keyring = tmp_path / "shared.keys"
    eventmem.connect(target).close()  # the store exists before they race
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, target, str(keyring), master.hex(), name],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b", "c")
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    with eventmem.connect(target, encryption=Keyring(keyring, master_key=master)) as store:
        shared = [m.content for m in store.messages("shared")]
        assert sorted(shared) == sorted(f"{n} {i}" for n in "abc" for i in range(40))
        assert store.verify().ok


async def test_an_export_of_saves_near_the_size_limit_imports_again(
    target: str, keys: Keyring, tmp_path: Path
) -> None:
    """Ciphertext in base64 is a third larger than the save it holds: a save within
    ``max_save_bytes`` still imports into a store of the same limit, and no larger one
    does."""
    limit = 64 * 1024
    async with eventmem.open(target, encryption=keys, max_save_bytes=limit) as store:
        await store.history("big").append([Message("human", "x" * (limit - 1024))])
        exported = tmp_path / "big.jsonl"
        with exported.open("wb") as sink:
            await store.export_to(sink)
        seen = await store.messages("big")
    assert max(len(line) for line in exported.read_bytes().splitlines()) > limit  # the box
    again = _another(backend_of(target), tmp_path, "again")
    smaller = _another(backend_of(target), tmp_path, "smaller")
    try:
        async with eventmem.open(again, encryption=keys, max_save_bytes=limit) as store:
            await _import(store, exported)
            assert await store.messages("big") == seen
        async with eventmem.open(smaller, encryption=keys, max_save_bytes=limit // 2) as store:
            with pytest.raises(eventmem.ImportRefusedError, match="more than a save may store"):
                await _import(store, exported)
            assert await store.sessions() == []
    finally:
        drop_target(again)
        drop_target(smaller)


async def test_a_seal_in_an_encrypted_store_keeps_the_view_and_the_key(
    target: str, keys: Keyring
) -> None:
    async with eventmem.open(target, encryption=keys) as store:
        memory = store.token_buffer("s", max_token_limit=30)
        for i in range(6):
            await memory.asave_context({"input": f"{PLANT} {i}"}, {"output": "ok"})
        view = await store.messages("s")
        [sealed] = await store.seal("s", older_than=timedelta(0))
        assert sealed.events > 0
        assert await store.messages("s") == view
        assert (await store.verify()).ok
        assert await store.rebuild() == 1
        assert await store.messages("s") == view
        assert keys.data_key("s", create=False) is not None  # the rest still needs it
    kinds = [(k, d[:20]) for _, _, k, d in _stored_rows(target)]
    assert kinds[0] == ("turn", '{"kind":"erased"}')
    assert ("seal", '{"kind":"seal","befo') in kinds


async def test_the_master_key_rotates_and_the_old_one_stops_opening(
    target: str, tmp_path: Path
) -> None:
    old, new = generate_master_key(), generate_master_key()
    path = tmp_path / "rotating.keys"
    keyring = Keyring(path, master_key=old)
    async with eventmem.open(target, encryption=keyring) as store:
        for session in ("a", "b"):
            await store.token_buffer(session).asave_context({"input": PLANT}, {"output": "b"})
        seen = await store.messages("a")
    with sqlite3.connect(path) as raw:
        wrapped = [bytes(w) for (w,) in raw.execute("SELECT wrapped FROM data_keys")]
    raw.close()
    stale = Keyring(path, master_key=old)
    stale.check()  # another process that opened the keyring with the old key
    assert keyring.rotate(new) == 2
    keyring.close()
    after = path.read_bytes()
    assert len(wrapped) == 2
    assert all(w not in after for w in wrapped)  # overwritten, not left in free space
    with pytest.raises(eventmem.KeyringError, match="not the one"):
        await eventmem.open(target, encryption=Keyring(path, master_key=old))
    with pytest.raises(eventmem.KeyringError, match="rotated since it was opened"):
        stale.data_key("c", create=True)  # it cannot add a key wrapped under the old one
    stale.close()
    async with eventmem.open(target, encryption=Keyring(path, master_key=new)) as store:
        assert await store.messages("a") == seen
        assert (await store.verify()).ok
    with pytest.raises(eventmem.InvalidInputError, match="32 bytes"):
        Keyring(path, master_key=new).rotate(b"short")
    kms = _FakeKms()
    with pytest.raises(eventmem.InvalidInputError, match="rotate them there"):
        Keyring(tmp_path / "kms.keys", wrap=kms.wrap, unwrap=kms.unwrap).rotate(new)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_keyring_command_makes_a_key_and_rotates_the_keyring(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = run("keyring", "--new-master-key", cwd=tmp_path)
    assert made.returncode == 0, made
    old = base64.b64decode(made.stdout.strip())
    assert len(old) == 32
    db, keyring = tmp_path / "a.db", tmp_path / "a.keys"
    with eventmem.connect(db, encryption=Keyring(keyring, master_key=old)) as store:
        store.token_buffer("s").save_context({"input": PLANT}, {"output": "b"})
    new = generate_master_key()
    monkeypatch.setenv("EVENTMEM_MASTER_KEY", old.hex())
    monkeypatch.setenv("EVENTMEM_NEW_MASTER_KEY", base64.b64encode(new).decode())
    rotated = run("keyring", "--rotate", str(keyring), cwd=tmp_path)
    assert rotated.returncode == 0, rotated
    assert "1 data key wrapped under the new master key" in rotated.stdout
    assert old.hex() not in rotated.stdout + rotated.stderr
    monkeypatch.setenv("EVENTMEM_KEYRING", str(keyring))
    stale = run("log", str(db), "s", cwd=tmp_path)
    assert_clean_error(stale, 1)
    assert "not the one this keyring was made with" in stale.stderr
    monkeypatch.setenv("EVENTMEM_MASTER_KEY", new.hex())
    assert PLANT in run("log", str(db), "s", cwd=tmp_path).stdout
    for refused, replacing, why in (
        (("--rotate", str(tmp_path / "missing.keys")), old, "no keyring file"),
        (("--rotate", str(keyring)), new, "nothing to rotate"),
        (("--rotate", str(db)), old, "not an eventmem keyring"),
    ):
        monkeypatch.setenv("EVENTMEM_NEW_MASTER_KEY", replacing.hex())
        result = run("keyring", *refused, cwd=tmp_path)
        assert_clean_error(result, 1)
        assert why in result.stderr
    assert_clean_error(run("keyring", cwd=tmp_path), 2)  # one of the two actions


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_encrypted_store_verifies_alike_in_two_processes(
    backend: str, tmp_path: Path, keys: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each child folding part of the store is handed the data keys of its part's
    sessions: the findings are those of one process, a tampered box included."""
    from eventmem.store.sqlite import fold_worker
    from eventmem.store.sqlite.fold_worker import SubprocessSpread

    started: list[dict[str, bytes] | None] = []
    keys_of = SubprocessSpread._keys_of

    def noting(self: SubprocessSpread, part: Any) -> dict[str, bytes]:
        found = keys_of(self, part)
        started.append(found)
        return found

    monkeypatch.setattr(SubprocessSpread, "_keys_of", noting)
    answered: list[bool] = []  # whether each child's fold came back (else: folded here)
    result = fold_worker._Running.result

    def noted(self: Any) -> Any:
        found = result(self)
        answered.append(found is not None)
        return found

    monkeypatch.setattr(fold_worker._Running, "result", noted)
    db = str(tmp_path / "a.db")
    async with eventmem.open(db, encryption=keys) as store:
        for session in [f"s{i:02}" for i in range(20)]:
            await _chat(store, session)
        assert (await store.verify(processes=2)).ok
    assert len(started) == 1  # one child, for the second half of the sessions
    assert started[0] is not None
    assert len(started[0]) == 10
    last = max(started[0])
    rows = {p: d for s, p, _, d in _stored_rows(db) if s == last}

    def moved(position: int, data: bytes) -> bytes:
        return rows[1].encode() if position == 3 else data

    with raw_database(db) as raw:
        raw.allow_tampering()
        raw.rechain(last, moved)
        raw.restore_triggers()
    async with eventmem.open(db, encryption=keys) as store:
        one = await store.verify(processes=1)
        two = await store.verify(processes=2)
    assert [(p.session_id, p.position, p.kind) for p in two.problems] == [(last, 3, "undecodable")]
    assert two.problems == one.problems
    assert answered == [True, True]  # both times the child's own fold, with its keys
