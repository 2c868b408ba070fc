"""The viewer's pages of forks, rewinds and erasures (through Starlette's TestClient,
both backends): the fork's lineage on its page, fork and rewind events on the timeline,
the events a rewind rewound over marked, the buffer saying why messages left, and an
erased session's pages saying so, with no content."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import eventmem
from eventmem.ui.app import create_app
from tests.test_cli import ok, populated_db

pytestmark = pytest.mark.postgres_sample(2, across="module")


async def _fill(db: str) -> None:
    async with eventmem.open(db) as store:
        chat = store.token_buffer("chat", max_token_limit=80)
        for i in range(4):
            await chat.asave_context({"input": f"Question {i}?"}, {"output": f"Answer {i}."})
        await store.fork("chat", "alt", at=2)
        await store.token_buffer("alt", max_token_limit=80).asave_context(
            {"input": "Another way?"}, {"output": "Yes."}
        )
        await store.rewind("chat", to=1)
        gone = store.token_buffer("gone", max_token_limit=80)
        for i in range(2):
            await gone.asave_context({"input": f"Secret {i}?"}, {"output": "Noted."})
        await store.erase("gone", reason="the user asked", by="dpo")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def forks_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``chat`` (four turns, then a rewind to 1) and ``alt`` (a fork of it at 2)."""
    yield from populated_db(request, tmp_path_factory, _fill)


@pytest.fixture(scope="module")
def client(forks_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(forks_db), base_url="http://127.0.0.1") as client:
        yield client


def _get(client: TestClient, path: str, **query: object) -> str:
    response = client.get(path, params={k: str(v) for k, v in query.items()})
    assert response.status_code == 200, (path, query, response.text[-600:])
    return response.text


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _row(page: str, position: int) -> str:
    found = re.search(rf'<tr id="e{position}" .*?</tr>', page, re.S)
    assert found is not None, position
    return found.group(0)


def test_a_forks_page_names_its_parent_and_fork_point(client: TestClient) -> None:
    page = _get(client, "/session", id="alt")
    assert 'class="lineage"' in page
    assert "fork of chat at position 2 (inherited: 1\u20132 from chat)" in _text(page)
    assert 'href="/session?id=chat"' in page
    assert 'class="lineage"' not in _get(client, "/session", id="chat")


def test_the_timeline_of_a_fork_marks_what_it_inherited(client: TestClient) -> None:
    page = _get(client, "/timeline", id="alt")
    for position in (1, 2):
        row = _row(page, position)
        assert '<span class="holder">chat</span>' in row
        assert 'href="/buffer?id=alt&amp;at=' in row  # the fork's own views
    fork = _row(page, 3)
    assert 'class="kind-fork"' in fork
    assert "fork of chat at position 2" in _text(fork)
    assert 'class="holder"' not in _row(page, 4)


def test_the_timeline_marks_what_a_rewind_rewound_over(client: TestClient) -> None:
    page = _get(client, "/timeline", id="chat")
    assert "rewound-over" not in _row(page, 1)
    for position in (2, 3, 4):
        row = _row(page, position)
        assert "rewound-over" in row
        assert '<span class="rewound">rewound at 5</span>' in row
    rewind = _row(page, 5)
    assert 'class="kind-rewind"' in rewind
    assert "rewind to 1, 2 messages restored" in _text(rewind)
    # a page after the rewound events still reads the rewinds
    later = _get(client, "/timeline", **{"id": "chat", "from": 3})
    assert '<span class="rewound">rewound at 5</span>' in _row(later, 3)


def test_the_buffer_after_a_rewind_says_why_messages_left(client: TestClient) -> None:
    text = _text(_get(client, "/buffer", id="chat"))
    assert "rewound over by the rewind at position 5" in text
    assert "Question 0?" in text
    before = _text(_get(client, "/buffer", id="chat", at=4))
    assert "rewound over" not in before
    diff = _text(_get(client, "/diff", id="chat", a=4, b=5))
    assert "Answer 3." in diff


def test_the_buffer_of_a_fork_is_the_parents_then_its_own(client: TestClient) -> None:
    text = _text(_get(client, "/buffer", id="alt"))
    assert "Another way?" in text
    assert "Question 1?" in text
    assert "Question 3?" not in text
    assert "verify failed" not in _get(client, "/session", id="alt")


def test_a_report_of_a_fork_and_of_a_rewound_session(forks_db: str, tmp_path: Path) -> None:
    for session in ("alt", "chat"):
        out = tmp_path / f"{session}.html"
        ok("report", forks_db, session, "-o", str(out), cwd=tmp_path)
        page = out.read_text()
        if session == "alt":
            assert "fork of chat at position 2" in _text(page)
            assert '<span class="holder">chat</span>' in page
        else:
            assert '<span class="rewound">rewound at 5</span>' in page
            assert "rewind to 1, 2 messages restored" in _text(page)


def test_an_erased_sessions_pages_say_so_and_show_no_content(client: TestClient) -> None:
    note = "erased at position 3 by dpo: the user asked. The content of its 2 earlier events"
    for path in ("/session", "/buffer"):
        text = _text(_get(client, path, id="gone"))
        assert note in text
        assert "Secret" not in text
    assert "no content is left" in _text(_get(client, "/buffer", id="gone"))
    assert "the stored buffer differs" not in _get(client, "/buffer", id="gone")
    timeline = _get(client, "/timeline", id="gone")
    assert "(content erased)" in _text(_row(timeline, 1))
    assert "erased 2 events by dpo: the user asked" in _text(_row(timeline, 3))
    assert "Secret" not in timeline


def test_a_report_of_an_erased_session(forks_db: str, tmp_path: Path) -> None:
    out = tmp_path / "gone.html"
    ok("report", forks_db, "gone", "-o", str(out), cwd=tmp_path)
    page = _text(out.read_text())
    assert "erased at position 3 by dpo" in page
    assert "Secret" not in page
