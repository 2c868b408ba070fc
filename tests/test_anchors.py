"""Anchors find what the plain chain cannot (docs/operations.md): a cut tail with its
head fixed, a deleted session, a re-chained rewrite; a forged or altered anchor, or the
wrong key, is reported too, and a key never appears in an anchor, a report or an error."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import eventmem
from eventmem.anchors import Anchor
from tests.backends import raw_database
from tests.test_audit import _populate
from tests.test_cli import assert_clean_error, ok, run
from tests.test_tamper import BLIND_SPOTS, _rechain


async def _populated(target: str) -> None:
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)


pytestmark = pytest.mark.anyio

SECRET = b"an anchor secret kept off the machine"


def _tamper(target: str, statement: str | None) -> None:
    if statement is None:
        _rechain(target)
        return
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute(statement)
        raw.restore_triggers()
        raw.execute("DELETE FROM sessions WHERE session_id = 'chat-1'")
        raw.execute("DELETE FROM view_messages WHERE session_id = 'chat-1'")


EXPECTED = {
    "cut tail with its head": ("chat-1", 4, "anchor_truncated"),
    "deleted session with its rows": ("chat-1", 1, "anchor_session_missing"),
    "re-chained rewrite": ("chat-1", 5, "anchor_rewritten"),  # its last event, anchored
}


@pytest.mark.parametrize(("name", "statement"), BLIND_SPOTS, ids=[b[0] for b in BLIND_SPOTS])
@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
async def test_an_anchor_finds_what_the_chain_cannot(
    target: str, name: str, statement: str | None, kind: str
) -> None:
    private = Ed25519PrivateKey.generate()
    signing, checking = (SECRET, SECRET) if kind == "hmac" else (private, private.public_key())
    async with eventmem.open(target) as store:
        await _populate(store, sessions=2, turns=4)
        anchor = Anchor.from_json((await store.anchor(signing)).to_json())  # kept outside
        assert (await store.verify(anchors=[anchor], key=checking)).ok
    _tamper(target, statement)
    async with eventmem.open(target) as store:
        await store.rebuild()
        assert (await store.verify()).ok  # the plain chain sees nothing
        report = await store.verify(anchors=[anchor], key=checking)
        assert [(p.session_id, p.position, p.kind) for p in report.problems] == [EXPECTED[name]]


async def test_a_session_that_grew_since_the_anchor_is_fine(store: eventmem.Store) -> None:
    memory = store.token_buffer("s")
    await memory.asave_context({"input": "a"}, {"output": "b"})
    anchor = await store.anchor(SECRET)
    await memory.asave_context({"input": "c"}, {"output": "d"})
    await store.token_buffer("new").asave_context({"input": "e"}, {"output": "f"})
    assert (await store.verify(anchors=[anchor], key=SECRET)).ok
    assert [(h.session_id, h.position) for h in anchor.heads] == [("s", 1)]


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.replace(b'["s",1,', b'["s",2,'),  # a head moved
        lambda a: a.replace(b'"created_at":', b'"created_at":1'),  # another moment
        lambda a: a.replace(b'["s",1,"', b'["t",1,"'),  # another session
    ],
    ids=["position", "time", "session"],
)
async def test_an_altered_anchor_is_reported(store: eventmem.Store, change: object) -> None:
    await store.token_buffer("s").asave_context({"input": "a"}, {"output": "b"})
    data = (await store.anchor(SECRET)).to_json()
    altered = Anchor.from_json(change(data))  # type: ignore[operator]
    assert altered.to_json() != data
    report = await store.verify(anchors=[altered], key=SECRET)
    assert [(p.session_id, p.kind) for p in report.problems] == [("", "anchor_signature")]


async def test_another_key_does_not_check(store: eventmem.Store) -> None:
    await store.token_buffer("s").asave_context({"input": "a"}, {"output": "b"})
    private = Ed25519PrivateKey.generate()
    for signing, checking in [
        (SECRET, b"another secret of enough length"),
        (private, Ed25519PrivateKey.generate().public_key()),
        (SECRET, private.public_key()),
    ]:
        anchor = await store.anchor(signing)
        report = await store.verify(anchors=[anchor], key=checking)
        assert [p.kind for p in report.problems] == ["anchor_signature"]


async def test_keys_never_show(store: eventmem.Store) -> None:
    await store.token_buffer("s").asave_context({"input": "a"}, {"output": "b"})
    anchor = await store.anchor(SECRET)
    assert SECRET not in anchor.to_json()
    assert SECRET.hex().encode() not in anchor.to_json()
    report = await store.verify(anchors=[anchor], key=b"another secret of enough length")
    assert all(SECRET.decode() not in p.detail for p in report.problems)
    with pytest.raises(eventmem.InvalidInputError) as caught:
        await store.anchor(b"short")
    assert "short" not in str(caught.value)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"key": 12345}, "HMAC secret"),
        ({"key": b"1234567890"}, "at least 16"),
        ({"key": Ed25519PrivateKey.generate().public_key()}, "private key"),
    ],
)
async def test_bad_anchor_keys_are_refused(
    store: eventmem.Store, call: dict[str, object], match: str
) -> None:
    with pytest.raises(eventmem.InvalidInputError, match=match):
        await store.anchor(call["key"])


async def test_bad_verify_arguments_are_refused(store: eventmem.Store) -> None:
    anchor = await store.anchor(SECRET)
    with pytest.raises(eventmem.InvalidInputError, match="needs the key"):
        await store.verify(anchors=[anchor])
    with pytest.raises(eventmem.InvalidInputError, match="Anchor objects"):
        await store.verify(anchors=[anchor.to_json()], key=SECRET)  # type: ignore[list-item]


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[]", b'{"format":"other","created_at":1}', b"\xff", b'{"format":1}'],
)
def test_a_file_that_is_not_an_anchor_is_refused(data: bytes) -> None:
    with pytest.raises(eventmem.InvalidInputError, match="not an eventmem anchor"):
        Anchor.from_json(data)


# -- the commands ------------------------------------------------------------------------


def _pem(private: Ed25519PrivateKey, tmp_path: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    secret, public = tmp_path / "signing.pem", tmp_path / "checking.pem"
    secret.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return secret, public


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_the_anchor_and_verify_commands(target: str, tmp_path: Path, kind: str) -> None:
    anyio.run(_populated, target)
    if kind == "hmac":
        signing = checking = tmp_path / "anchor.key"
        signing.write_bytes(SECRET)
    else:
        signing, checking = _pem(Ed25519PrivateKey.generate(), tmp_path)
    out = tmp_path / "anchor.json"
    said = ok("anchor", target, "--key-file", str(signing), "-o", str(out), cwd=tmp_path)
    assert said.startswith("anchored 4 sessions with key ")
    assert SECRET.decode() not in said + out.read_text()
    assert ok("anchor", target, "--key-file", str(signing), cwd=tmp_path).startswith("{")
    verified = ok(
        "verify", target, "--anchors", str(out), "--key-file", str(checking), cwd=tmp_path
    )
    assert verified.startswith("ok: ")
    _tamper(target, BLIND_SPOTS[1][1])  # the whole of chat-1 deleted
    found = run("verify", target, "--anchors", str(out), "--key-file", str(checking), cwd=tmp_path)
    assert_clean_error(found, 1)
    assert "session chat-1 position 1: anchor_session_missing" in found.stdout
    other = tmp_path / "other.key"
    other.write_bytes(b"a different secret, long enough")
    wrong = run("verify", target, "--anchors", str(out), "--key-file", str(other), cwd=tmp_path)
    assert_clean_error(wrong, 1)
    assert "store: anchor_signature" in wrong.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "{db}", "--anchors", "{anchor}"], "needs --key-file"),
        (["verify", "{db}", "--anchors", "{missing}", "--key-file", "{key}"], "cannot read"),
        (["verify", "{db}", "--anchors", "{key}", "--key-file", "{key}"], "not an eventmem anchor"),
        (["anchor", "{db}", "--key-file", "{short}"], "at least 16"),
        (["anchor", "{db}", "--key-file", "{public}"], "private key"),
        (["anchor", "{db}", "--key-file", "{badpem}"], "not a PEM key"),
        (["anchor", "{db}", "--key-file", "{key}", "-o", "{db}"], ""),
    ],
)
def test_anchor_commands_refuse_bad_arguments_cleanly(
    db_path: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    anyio.run(_populated, str(db_path))
    key = tmp_path / "k"
    key.write_bytes(SECRET)
    (tmp_path / "short").write_bytes(b"short")
    _, public = _pem(Ed25519PrivateKey.generate(), tmp_path)
    (tmp_path / "bad.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nsecret-looking-stuff\n")
    anchor = tmp_path / "a.json"
    anchor.write_bytes(b"{}")
    places = {
        "db": str(db_path),
        "anchor": str(anchor),
        "missing": str(tmp_path / "missing.json"),
        "key": str(key),
        "short": str(tmp_path / "short"),
        "public": str(public),
        "badpem": str(tmp_path / "bad.pem"),
    }
    before = db_path.read_bytes()
    result = run(*[a.format(**places) for a in args], cwd=tmp_path)
    assert_clean_error(result, 1)
    assert message in result.stderr
    assert "secret-looking-stuff" not in result.stderr
    assert SECRET.decode() not in result.stderr
    assert db_path.read_bytes() == before
