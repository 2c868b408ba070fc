"""The viewer's pages: server time of the first page of the session list on a
10,000-session store, and of the first page of a 50,000-event session's timeline.

Both stores are SQLite files in a temporary directory, written through the public API
(the 10,000 sessions: 1,000 sessions of 2 turns, replicated by export -> rename +
re-chain -> import; the long session: 50,000 appends of two messages to one history,
bounded at 2,000 tokens). Each page is requested in-process through Starlette's
TestClient (no network): the first request cold, then a median of repeated ones; the
target is 300 ms for the session list (every sort order) and the timeline. The other
pages of the long session (the buffer at its last position, the diff of its last two
positions and its overview with the chart and verify) fold the whole session; their
times are shown, without a target. The load average is printed beside the figures.

    .venv/bin/python benchmarks/viewer.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
from _common import (
    TextGen,
    build_store,
    calibration,
    median,
    offline_tiktoken,
    table,
    tempdir,
    verdict,
    write_results,
)

TARGET_MS = 300.0
REPEATS = 15


async def _long_session(path: Path, events: int, log: Any) -> float:
    import eventmem

    texts = TextGen(seed=7).turns(500, words_in=20, words_out=40)
    t0 = time.perf_counter()
    async with eventmem.open(path) as store:
        history = store.history("long", max_tokens=2000)
        for i in range(events):
            question, answer = texts[i % len(texts)]
            await history.append(
                [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            )
    seconds = time.perf_counter() - t0
    log(f"  wrote {events:,} events to one session in {seconds:.1f} s")
    return seconds


def _timed(client: Any, path: str, repeats: int) -> dict[str, float]:
    """Milliseconds of the first request and the median of ``repeats`` more."""
    t0 = time.perf_counter()
    response = client.get(path)
    cold = (time.perf_counter() - t0) * 1000
    assert response.status_code == 200, (path, response.status_code)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
    return {"cold_ms": cold, "median_ms": median(samples), "loadavg_1min": os.getloadavg()[0]}


def run(quick: bool, log: Any) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from eventmem.ui.app import create_app

    work = tempdir("viewer")
    many, long = work / "sessions.db", work / "long.db"
    sessions = 2_000 if quick else 10_000
    events = 10_000 if quick else 50_000
    log(f"building a {sessions:,}-session store")
    built = anyio.run(
        lambda: build_store(
            many, sessions * 2, sessions_per_base=1000, turns_per_session=2, log=log
        )
    )
    log(f"building a {events:,}-event session")
    anyio.run(_long_session, long, events, log)
    timed: dict[str, dict[str, float]] = {}
    with TestClient(create_app(str(many)), base_url="http://127.0.0.1") as client:
        for query in ("/", "/?sort=last&desc=1", "/?sort=tokens&desc=1", "/?sort=id", "/?q=~3"):
            timed[f"sessions {query}"] = _timed(client, query, REPEATS)
    with TestClient(create_app(str(long)), base_url="http://127.0.0.1") as client:
        timed["timeline (first page)"] = _timed(client, "/timeline?id=long", REPEATS)
        timed["timeline (last page)"] = _timed(
            client, f"/timeline?id=long&from={events - 99}", REPEATS
        )
        for name, path in (
            ("buffer (last position)", "/buffer?id=long"),
            ("diff (last two positions)", f"/diff?id=long&a={events - 1}&b={events}"),
            ("session overview (chart, verify)", "/session?id=long"),
        ):
            timed[name] = _timed(client, path, 2)
    return {"sessions": built["sessions"], "long_session_events": events, "pages": timed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 sessions, 10,000 events")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")
    cal = calibration()
    res = run(args.quick, lambda text: print(text, flush=True))
    rows, met = [], {}
    for name, figures in res["pages"].items():
        targeted = name.startswith(("sessions", "timeline"))
        ok = figures["median_ms"] < TARGET_MS and figures["cold_ms"] < TARGET_MS
        if targeted:
            met[name] = ok
        rows.append(
            [
                name,
                figures["cold_ms"],
                figures["median_ms"],
                f"{figures['loadavg_1min']:.2f}",
                f"< {TARGET_MS:.0f} ms" if targeted else "(none)",
                verdict(ok) if targeted else "",
            ]
        )
    print()
    print(
        f"stores: {res['sessions']:,} sessions; one session of "
        f"{res['long_session_events']:,} events"
    )
    print(table(["page", "first ms", "median ms", "load avg", "target", ""], rows))
    path = write_results(
        "viewer",
        {"quick": args.quick, "calibration": cal, **res, "target_ms": TARGET_MS, "met": met},
    )
    print(f"results: {Path(path)}")


if __name__ == "__main__":
    main()
