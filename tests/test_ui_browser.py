"""The viewer in a real browser: the system's Chromium (Debian's ``chromium`` package,
/usr/bin/chromium) driven by Playwright against uvicorn serving a real store, on a free
port of this machine. Each walk goes sessions -> session -> timeline -> buffer -> diff,
checks what each page shows, and that the browser logged no error (a script error, a
blocked resource, a CSP violation)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright import sync_api as playwright

import eventmem
from tests.backends import drop_target, new_target
from tests.viewer_server import serving
from tests.viewer_store import HOSTILE, fill_viewer_store

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


async def _fill_async(db: str) -> None:
    async with eventmem.open(db) as store:
        await fill_viewer_store(store)


def _in_thread(function: Callable[[], object]) -> object:
    """Run ``function`` in a thread of its own: Playwright's sync API keeps an event loop
    running in this one."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    assert result, "the thread failed"
    return result[0]


def _fill(db: str) -> None:
    _in_thread(lambda: anyio.run(_fill_async, db))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, headless; a missing one fails (CI installs it, see .ci/run)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


class _Watched:
    """A page that records every console error and uncaught exception."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page()
        self.page.set_default_timeout(5000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.failed: list[str] = []
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.statuses: list[tuple[int, str]] = []
        self.page.on("response", lambda r: self.statuses.append((r.status, r.url)))

    def clean(self) -> None:
        assert self.errors == []
        assert self.failed == []
        assert [s for s in self.statuses if s[0] >= 400] == []


def _walk(browser: Any, base: str) -> None:
    watched = _Watched(browser)
    page = watched.page
    page.goto(base + "/")
    assert page.title() == "sessions - eventmem"
    assert page.locator("table.sessions tbody tr").count() == 5
    # sort by events (most first, then fewest), then search
    page.get_by_role("link", name="events").click()
    assert page.locator("td.id a").first.inner_text() == "tools"
    page.get_by_role("link", name="events \u25bc").click()
    assert page.locator("td.id a").first.inner_text() == "hostile <b>id</b>"
    page.get_by_label("search session ids").fill("too")
    page.get_by_role("button", name="search").click()
    assert page.locator("td.id a").all_inner_texts() == ["tools"]
    page.get_by_role("link", name="tools").click()
    # the session: verify status and the chart
    assert "verified" in page.locator("#verify").inner_text()
    assert page.locator("svg.chart polyline.tokens").count() == 1
    page.get_by_role("link", name="timeline").click()
    rows = page.locator("table.timeline tbody tr")
    assert rows.count() == 8
    assert rows.nth(7).locator(".kind").inner_text() == "retract"
    rows.nth(1).locator("summary").click()  # unfold an event's messages
    assert rows.nth(1).locator(".msg").count() == 4
    # the buffer after position 5: the first question pruned, greyed, with the reason
    rows.nth(4).get_by_role("link", name="buffer").click()
    assert "after position 5" in page.locator("h1").inner_text()
    gone = page.locator(".msg.gone")
    assert gone.count() == 1
    assert "pruned at position 5" in gone.first.inner_text()
    grey = gone.first.evaluate("e => getComputedStyle(e).color")
    seen = page.locator(".msg.seen").first.evaluate("e => getComputedStyle(e).color")
    assert grey != seen
    # a tool call links to its result, and pointing at it outlines the result
    page.locator(".call[data-call=call_1]").hover()
    assert page.locator(".msg[data-result=call_1]").get_attribute("class") == "msg seen linked"
    page.locator(".call[data-call=call_1] a.callref").click()
    assert page.url.endswith("#m7")
    # the script hides what left the buffer
    page.locator("#hide-gone").check()
    assert gone.first.is_hidden()
    # the diff, from the session page's form
    page.get_by_role("link", name="tools").first.click()
    page.get_by_label("first position").fill("5")
    page.get_by_label("second position").fill("7")
    page.get_by_role("button", name="diff").click()
    assert "after 5 vs after 7" in page.locator("h1").inner_text()
    assert page.locator("section.diff-came .msg").count() == 8
    assert page.locator("section.diff-left .msg").count() >= 1
    # hostile text stays text
    page.goto(base + "/buffer?id=hostile+%3Cb%3Eid%3C%2Fb%3E")
    assert HOSTILE in page.locator(".msg").first.inner_text()
    assert page.locator("main b:text('id')").count() == 0
    watched.clean()


def test_a_walk_through_a_sqlite_store(browser: Any, tmp_path: Path) -> None:
    db = str(tmp_path / "viewer.db")
    _fill(db)
    with serving(db) as base:
        _walk(browser, base)


def test_a_walk_through_a_postgresql_store(browser: Any, tmp_path: Path) -> None:
    target = new_target("postgresql", tmp_path)
    _fill(target)
    try:
        with serving(target) as base:
            _walk(browser, base)
    finally:
        drop_target(target)


def test_a_report_opens_offline_without_errors(browser: Any, tmp_path: Path) -> None:
    db = str(tmp_path / "viewer.db")
    _fill(db)
    out = tmp_path / "report.html"
    from eventmem.cli import main

    assert _in_thread(lambda: main(["report", db, "tools", "-o", str(out)])) == 0
    watched = _Watched(browser)
    page = watched.page
    page.goto(out.as_uri())
    assert "verified" in page.locator("#verify").inner_text()
    assert page.locator("#timeline tbody tr").count() == 8
    page.locator("#hide-gone").check()  # the inlined script runs under the report's CSP
    assert page.locator(".msg.gone").first.is_hidden()
    watched.clean()
