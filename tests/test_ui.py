"""The viewer's pages through Starlette's TestClient, on both backends: what each page
shows, its read-only guarantees (GET only, a read-only store, no -wal/-shm, no password
shown), its escaping and headers, and hostile query strings (400 or 404, never a 500).
Also ``eventmem report`` and ``eventmem ui``'s refusals."""

from __future__ import annotations

import html
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

import eventmem
from eventmem.events import EventData, StoredEvent
from eventmem.ui import pages
from eventmem.ui.app import create_app, mask
from eventmem.ui.html import CSP, asset
from tests.backends import new_target, raw_database
from tests.files import snapshot
from tests.test_cli import assert_clean_error, populated_db, run
from tests.viewer_store import HOSTILE, fill_viewer_store

pytestmark = pytest.mark.postgres_sample(3, across="module")

_LOCAL = "http://127.0.0.1"


async def _fill(db: str) -> None:
    async with eventmem.open(db) as store:
        await fill_viewer_store(store)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def viewer_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The viewer's sample store (read only here), on each backend."""
    yield from populated_db(request, tmp_path_factory, _fill)


@pytest.fixture(scope="module")
def client(viewer_db: str) -> Iterator[TestClient]:
    """The viewer of ``viewer_db``, as this machine's browser reaches it."""
    with TestClient(create_app(viewer_db), base_url=_LOCAL) as client:
        yield client


def _get(client: TestClient, path: str, **query: object) -> str:
    response = client.get(path, params={k: str(v) for k, v in query.items()})
    assert response.status_code == 200, (path, query, response.text[-600:])
    return response.text


def _text(page: str) -> str:
    """The page's visible text, roughly: tags out, entities in."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# -- what the pages show ------------------------------------------------------------------


def test_the_session_list_shows_every_session_with_its_figures(client: TestClient) -> None:
    page = _get(client, "/")
    for session in ("chat", "restart", "agent", "tools"):
        assert f'href="/session?id={session}"' in page
    assert "5 sessions" in page
    assert "lineage" in page
    rows = re.findall(r"<tr><td class=\"id\">.*?</tr>", page)
    assert len(rows) == 5
    chat = next(r for r in rows if "id=chat" in r)
    assert [int(n) for n in re.findall(r'class="num">(\d+)<', chat)][:1] == [3]  # events


def test_the_session_list_sorts_searches_and_pages(client: TestClient) -> None:
    by_events = _get(client, "/", sort="events", desc=1)
    order = re.findall(r'href="/session\?id=([^"]+)"', by_events)
    assert order[0] == "tools"  # 8 events, the most
    assert order.index("agent") < order.index("chat")
    by_id = re.findall(r'href="/session\?id=([^"]+)"', _get(client, "/", sort="id"))
    assert by_id[:2] == ["agent", "chat"]
    found = _get(client, "/", q="AG")
    assert re.findall(r'href="/session\?id=([^"]+)"', found) == ["agent"]
    assert "1 session match" in _text(found)
    assert "no session id contains" in _get(client, "/", q="zzz")
    assert client.get("/", params={"page": "2"}).status_code == 404


def test_a_session_page_shows_verify_status_figures_and_the_token_chart(
    client: TestClient,
) -> None:
    page = _get(client, "/session", id="tools")
    assert "verified: the hash chain of 8 events" in page
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page, re.S)
    assert svg is not None
    assert svg.group(0).count('class="tokens"') == 1  # the line
    assert 'class="limit"' in svg.group(0)  # a bound: the limit is drawn
    assert "of 220" in _text(page)


def test_the_timeline_shows_every_kind_of_event(client: TestClient) -> None:
    agent = _get(client, "/timeline", id="agent")
    kinds = re.findall(r'<span class="kind">(\w+)</span>', agent)
    assert kinds == ["step", "step", "turn", "step", "turn", "step"]
    assert "tool search" in agent
    assert "(live)" in agent
    assert "abandoned" in agent
    restart = _text(_get(client, "/timeline", id="restart"))
    assert "cleared the buffer" in restart
    tools = _get(client, "/timeline", id="tools")
    assert re.findall(r'<span class="kind">(\w+)</span>', tools) == ["messages"] * 7 + ["retract"]
    assert "popped 1 message" in tools
    assert 'href="/buffer?id=tools&amp;at=5"' in tools
    assert 'href="/diff?id=tools&amp;a=4&amp;b=5"' in tools


def test_the_timeline_pages_by_position(client: TestClient) -> None:
    page = _get(client, "/timeline", id="tools", **{"from": 6})
    assert re.findall(r'<tr id="e(\d+)"', page) == ["6", "7", "8"]
    assert "positions 6\u20138 of 8" in page
    assert client.get("/timeline", params={"id": "tools", "from": "9"}).status_code == 404


def test_the_buffer_greys_what_left_with_the_reason_and_links_calls_to_results(
    client: TestClient,
) -> None:
    page = _get(client, "/buffer", id="tools", at=5)
    assert "after position 5" in page
    gone = re.findall(r'<div class="msg gone" id="m(\d+)".*?class="why">([^<]*)<', page)
    assert gone == [("1", "pruned at position 5 (over the token limit)")]
    assert '<span class="pin">pinned</span>' in page  # the system message, kept
    assert "16 messages visible, 220 tokens / limit 220" in _text(page).replace("  ", " ")
    # the call (message m2) and its result (m3) link to each other
    assert re.search(r'id="m2".*?href="#m3">\u2192 result', page, re.S)
    assert re.search(r'id="m3" data-result="call_0".*?href="#m2">result of call_0', page, re.S)
    assert re.findall(r"(\d+) tokens</span>", page)[:2] == ["10", "13"]
    now = _text(_get(client, "/buffer", id="tools"))
    assert "popped at position 8" in now


def test_the_buffer_after_a_clear_and_an_agent_turn(client: TestClient) -> None:
    restart = _get(client, "/buffer", id="restart", at=2)
    assert re.findall(r'class="why">([^<]*)<', restart) == ["cleared at position 2"] * 2
    agent = _text(_get(client, "/buffer", id="agent"))
    assert "1 step(s) pending their turn" in agent
    assert "Lisbon" in agent


def test_the_diff_shows_what_left_came_and_stayed(client: TestClient) -> None:
    page = _get(client, "/diff", id="tools", a=5, b=7)
    text = _text(page)
    assert "left the buffer between 5 and 7 (" in text
    sections = dict(re.findall(r'<section class="diff-(\w+)"><h2>[^<]*\((\d+)\)</h2>', page))
    assert sections["came"] == "8"  # two appends of four messages
    assert int(sections["left"]) > 0
    assert int(sections["stayed"]) > 0
    same = _get(client, "/diff", id="chat", a=2, b=2)
    assert "0 left, 0 came" in _text(same)
    reversed_ = _get(client, "/diff", id="tools", a=7, b=5)
    assert _text(reversed_).count("left the buffer between 5 and 7") == 1


# -- escaping, headers, read-only ------------------------------------------------------------


def test_message_text_and_session_ids_are_shown_as_text(client: TestClient) -> None:
    session = "hostile <b>id</b>"
    for path in ("/session", "/timeline", "/buffer"):
        page = _get(client, path, id=session)
        assert "<script>alert" not in page
        assert "<b>id</b>" not in page
        assert "hostile &lt;b&gt;id&lt;/b&gt;" in page
    buffer = _get(client, "/buffer", id=session)
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in buffer
    assert HOSTILE in _text(buffer)
    listing = _get(client, "/")
    assert "/session?id=hostile+%3Cb%3Eid%3C%2Fb%3E" in listing


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/session?id=chat", "/static/viewer.css", "/nope", "/buffer?id=x"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP
    assert "script-src 'self'" in CSP


def test_the_assets_are_served_from_the_package_and_nothing_else(client: TestClient) -> None:
    css = client.get("/static/viewer.css")
    assert css.headers["content-type"].startswith("text/css")
    assert css.text == asset("viewer.css")
    assert client.get("/static/viewer.js").text == asset("viewer.js")
    for name in ("../app.py", "..%2fapp.py", "app.py", "", "viewer.css.map"):
        assert client.get(f"/static/{name}").status_code == 404
    page = _get(client, "/")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no other origin, no CDN


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_only_get_is_served(client: TestClient, method: str) -> None:
    for path in ("/", "/session?id=chat", "/buffer?id=chat", "/static/viewer.css", "/nope"):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET"


def test_an_unknown_host_is_refused(viewer_db: str) -> None:
    with TestClient(create_app(viewer_db), base_url="http://evil.example") as other:
        assert other.get("/").status_code == 400
    with TestClient(create_app(viewer_db, hosts=None), base_url="http://evil.example") as anyone:
        assert anyone.get("/").status_code == 200


_HOSTILE_VALUES = [
    "-1",
    "0",
    "abc",
    "1e3",
    "1.5",
    " 1",
    "0x10",
    "9" * 19,
    "9" * 5000,
    "99999999999",
    "",
    "\u0661",  # an Arabic-Indic digit: int() would take it
    "%00",
]
_ODD_IDS = ["", "\x00", "x" * 5000, "../../etc/passwd", "chat/..", "?", "%", "\u202e", "chat "]


@pytest.mark.parametrize("path", ["/", "/session", "/timeline", "/buffer", "/diff"])
def test_hostile_query_strings_get_400_or_404_never_500(client: TestClient, path: str) -> None:
    names = {
        "/": ["page", "sort", "desc", "q"],
        "/session": [],
        "/timeline": ["from"],
        "/buffer": ["at", "page"],
        "/diff": ["a", "b"],
    }[path]
    base = {} if path == "/" else {"id": "tools"}
    if path == "/diff":
        base.update({"a": "1", "b": "2"})
    seen = set()
    for name in names:
        for value in _HOSTILE_VALUES:
            response = client.get(path, params={**base, name: value})
            assert response.status_code in (200, 400, 404), (path, name, value)
            seen.add(response.status_code)
    if path != "/":
        for odd in _ODD_IDS:
            response = client.get(path, params={**base, "id": odd})
            assert response.status_code in (400, 404), (path, odd)
        assert (
            client.get(path, params={k: v for k, v in base.items() if k != "id"}).status_code == 400
        )
        assert client.get(path + "?id=tools&id=chat").status_code == 400
    assert client.get(path + "?" + "&".join(["q=1"] * 3)).status_code in (200, 400)
    raw = client.get(path + "?id=%ff%fe&at=%ff&from=%c0&page=%ff")
    assert raw.status_code in ((200, 400) if path == "/" else (400, 404))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/buffer?id=tools&at=9", 404),
        ("/buffer?id=tools&at=0", 400),
        ("/buffer?id=tools&page=2", 404),
        ("/buffer?id=nobody", 404),
        ("/diff?id=tools&a=1", 400),
        ("/diff?id=tools&a=1&b=9", 404),
        ("/session?id=" + "x" * 5000, 400),
        ("/?sort=name", 400),
        ("/?desc=yes", 400),
        ("/?q=" + "q" * 501, 400),
        ("/timeline?id=tools&from=0", 400),
    ],
)
def test_bad_requests_name_what_is_wrong(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"<h1>{status}</h1>" in response.text


def test_serving_a_sqlite_store_changes_no_file_and_leaves_no_wal(tmp_path: Path) -> None:
    db = str(tmp_path / "viewer.db")
    anyio.run(_fill, db)
    before = snapshot(tmp_path)
    with TestClient(create_app(db), base_url=_LOCAL) as client:
        for path in ("/", "/session?id=tools", "/timeline?id=agent", "/buffer?id=chat&at=2"):
            assert client.get(path).status_code == 200
        assert client.get("/diff?id=tools&a=1&b=8").status_code == 200
    assert snapshot(tmp_path) == before


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(eventmem.EventmemError), TestClient(create_app(str(db))):
        pass
    assert not db.exists()


def test_no_page_shows_the_postgresql_password(tmp_path: Path) -> None:
    target = new_target("postgresql", tmp_path)
    anyio.run(_fill, target)
    parts = urllib.parse.urlsplit(target)
    secret = "pa:ss/w%40rd-s3cret"
    quoted = urllib.parse.quote(secret, safe="")
    with_password = parts._replace(netloc=f"postgres:{quoted}@{parts.netloc.split('@')[-1]}")
    url = urllib.parse.urlunsplit(with_password)
    assert mask(url) == target  # the same URL without the password
    with TestClient(create_app(url), base_url=_LOCAL) as client:
        pages = [
            client.get(path).text
            for path in ("/", "/session?id=tools", "/buffer?id=nope", "/?sort=bad", "/x")
        ]
    for page in pages:
        assert "s3cret" not in page
        assert quoted not in page
        assert "127.0.0.1" in page  # the store is named, masked
    result = run(
        "ui",
        urllib.parse.urlunsplit(with_password._replace(netloc=f"postgres:{quoted}@127.0.0.1:1")),
        cwd=tmp_path,
    )
    assert_clean_error(result, 1)
    assert "s3cret" not in result.stderr + result.stdout
    assert quoted not in result.stderr


# -- the commands ------------------------------------------------------------------------------


def test_report_writes_one_self_contained_file(viewer_db: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("report", viewer_db, "tools", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert asset("viewer.css") in page
    assert asset("viewer.js") in page
    assert not re.search(r'(src|href)="(?!#)', page)  # nothing loaded, links stay inside
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    assert html.unescape(policy.group(1)).startswith("default-src 'none'; style-src 'sha256-")
    assert "verified: the hash chain of 8 events" in page
    assert "<svg" in page
    assert re.findall(r'<tr id="e(\d+)"', page) == [str(n) for n in range(1, 9)]
    assert "popped at position 8" in _text(page)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # nothing left aside
    again = run("report", viewer_db, "tools", "-o", str(out), cwd=tmp_path)
    assert_clean_error(again, 1)
    assert "exists" in again.stderr
    assert (
        run("report", viewer_db, "tools", "-o", str(out), "--force", cwd=tmp_path).returncode == 0
    )
    hostile = tmp_path / "hostile.html"
    assert (
        run("report", viewer_db, "hostile <b>id</b>", "-o", str(hostile), cwd=tmp_path).returncode
        == 0
    )
    assert "<script>alert" not in hostile.read_text()


def test_report_refuses_the_database_and_its_companions(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    anyio.run(_fill, str(db))
    before = snapshot(tmp_path)
    for output in (db, tmp_path / "agent.db-wal", tmp_path / "agent.db-shm", tmp_path):
        result = run("report", str(db), "chat", "-o", str(output), "--force", cwd=tmp_path)
        assert_clean_error(result, 1)
        assert "refusing to write" in result.stderr
    assert snapshot(tmp_path) == before
    missing = run("report", str(db), "nobody", "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert_clean_error(missing, 1)
    assert "no session 'nobody'" in missing.stderr


def test_ui_without_the_extra_names_the_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None  # as if the extra were not installed\n"
        "from eventmem.cli import main\n"
        "sys.exit(main(['ui', 'agent.db']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2, result
    assert "pip install 'eventmem[ui]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_ui_refuses_a_missing_store_before_serving(tmp_path: Path) -> None:
    result = run("ui", str(tmp_path / "absent.db"), "--port", "0", cwd=tmp_path)
    assert_clean_error(result, 1)
    assert not (tmp_path / "absent.db").exists()
    assert run("ui", "x.db", "--port", "70000", cwd=tmp_path).returncode == 2


# -- long and damaged sessions ------------------------------------------------------------------


def test_long_sessions_are_paged(target: str) -> None:
    async def fill() -> None:
        async with eventmem.open(target) as store:
            history = store.history("long")
            for i in range(130):
                await history.append(
                    [
                        {"role": "user", "content": f"q{i}"},
                        {"role": "assistant", "content": f"a{i}"},
                    ]
                )

    anyio.run(fill)
    with TestClient(create_app(target), base_url=_LOCAL) as client:
        first = _get(client, "/timeline", id="long")
        assert re.findall(r'<tr id="e(\d+)"', first) == [str(n) for n in range(1, 101)]
        assert 'href="/timeline?id=long&amp;from=101"' in first
        second = _get(client, "/timeline", id="long", **{"from": 101})
        assert len(re.findall(r'<tr id="e(\d+)"', second)) == 30
        newest = _get(client, "/buffer", id="long")  # 260 messages: the last page first
        assert re.findall(r'<div class="msg seen" id="m(\d+)"', newest)[0] == "200"
        assert "messages 201\u2013260 of 260" in newest
        oldest = _get(client, "/buffer", id="long", page=1)
        assert len(re.findall(r'class="msg seen"', oldest)) == 200
        chart = _get(client, "/session", id="long")
        assert "no limit" not in chart  # no limit is drawn: no bound
        assert 'class="limit"' not in chart


def test_a_damaged_session_names_its_first_bad_position(target: str) -> None:
    anyio.run(_fill, target)
    with raw_database(target) as raw:
        raw.allow_tampering()
        raw.execute(
            "UPDATE events SET recorded_at = recorded_at + 1"
            " WHERE session_id = 'tools' AND position = 3"
        )
        raw.restore_triggers()
    with TestClient(create_app(target), base_url=_LOCAL) as client:
        page = _get(client, "/session", id="tools")
        assert "verify failed (first bad position: 3)" in page
        assert '<b>hash_mismatch</b> at <a href="/timeline?id=tools#e3">position 3</a>' in page
        assert "verified" in _get(client, "/session", id="chat")


class _FutureEvent(EventData, tag="fork", frozen=True):
    """A kind of event a later eventmem might write (the viewer cannot know it)."""

    parent: str


def test_an_event_of_an_unknown_kind_is_shown_as_its_data() -> None:
    stored = StoredEvent(
        session_id="s",
        position=1,
        global_position=1,
        recorded_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        data=_FutureEvent(parent="<main>"),  # type: ignore[arg-type]
        hash="00",
        recorded_at_us=1_767_225_600_000_000,
    )
    row = pages.event_rows([stored], pages.Links())
    assert '<span class="kind">fork</span>' in row
    assert "an event of a kind this eventmem does not know (fork)" in row
    assert "&quot;parent&quot;: &quot;&lt;main&gt;&quot;" in row
    assert "2026-01-01 00:00:00Z" in row


@pytest.mark.slow
def test_the_command_serves_until_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    anyio.run(_fill, str(db))
    before = snapshot(tmp_path)
    script = Path(sys.executable).with_name("eventmem")
    server = subprocess.Popen(
        [str(script), "ui", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"read-only at (http://127\.0\.0\.1:\d+/) ", line)
        assert found is not None, line
        with urllib.request.urlopen(found.group(1) + "session?id=tools", timeout=30) as page:
            assert page.status == 200
            assert "verified" in page.read().decode()
        post = urllib.request.Request(found.group(1), data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=30)
        refused.value.close()
        assert refused.value.code == 405
    finally:
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 130, errors  # interrupted, as every command
    assert errors == "eventmem: error: interrupted\n"
    assert snapshot(tmp_path) == before
