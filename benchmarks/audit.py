"""Audit at scale: verify, rebuild, export and import in events/s, import's peak memory.

The store holds 1,000,000 real events (--quick: 200,000): a base written through the
public API (sessions of 100 120-word turns, limit 2000), replicated by export ->
rename + re-chain -> import. Each operation runs several times, interleaved, on the same
store; figures are medians.

* ``verify``: every hash chain, every session head and buffer against the fold (on a
  SQLite file this large, in two processes: the default);
* ``rebuild``: every projection recomputed from the events (one transaction);
* ``export``: ``Store.export_to`` writing the file (a page per write); ``export lines``,
  for comparison (no target): ``async for line in store.export()`` writing each line;
* ``import``: the export file streamed into an empty store (``import_events`` on the
  open file, every hash re-verified), in a child process whose peak RSS is reported.

    .venv/bin/python benchmarks/audit.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
from _common import (
    build_store,
    calibration,
    median,
    offline_tiktoken,
    report_load,
    table,
    tempdir,
    verdict,
    write_results,
)

TARGET = 150_000  # events/s
RSS_TARGET_MIB = 200  # the import's peak resident memory

# Run in a child: one import of FILE into a new DB, its time and peak RSS as JSON.
_IMPORT_CHILD = """
import json, sys, time, anyio, eventmem
async def main():
    async with eventmem.open(sys.argv[1]) as store:
        with open(sys.argv[2], "rb") as lines:
            t0 = time.perf_counter()
            sessions, events = await store.import_events(lines)
            seconds = time.perf_counter() - t0
    return events, seconds
events, seconds = anyio.run(main)
# VmHWM: this process's own peak. ru_maxrss would also count the parent's memory, which
# Linux carries over from the fork into the child's figure across its exec.
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"events": events, "seconds": seconds, "rss_mib": hwm / 1024}))
"""


async def run(quick: bool, log: Any) -> dict[str, Any]:
    import eventmem

    work = tempdir("audit")
    path = work / "audit.db"
    events = 200_000 if quick else 1_000_000
    log(f"building a store of {events:,} events ...")
    info = await build_store(path, events, sessions_per_base=500, log=log)
    log(f"  {info['events']:,} events in {info['sessions']:,} sessions")
    repeats = 3
    times: dict[str, list[float]] = {
        "verify": [],
        "rebuild": [],
        "export": [],
        "export lines": [],
        "import": [],
    }
    export_path = work / "export.jsonl"
    async with eventmem.open(path) as store:
        n = await store.count_events()

        async def verify() -> None:
            report = await store.verify()
            assert report.ok, report.problems[:3]
            assert report.events == n

        async def rebuild() -> None:
            sessions = await store.rebuild()
            assert sessions == info["sessions"]

        async def export() -> None:
            with export_path.open("wb") as f:
                assert await store.export_to(f) == n

        async def export_lines() -> None:
            lines = 0
            with (work / "lines.jsonl").open("wb") as f:
                async for line in store.export():
                    f.write(line)
                    lines += 1
            assert lines == n + 2  # a header, the events, an end line

        ops = {"verify": verify, "rebuild": rebuild, "export": export}
        await verify()  # warm the page cache
        for r in range(repeats):
            order = list(ops) if r % 2 == 0 else list(reversed(ops))
            for name in order:
                gc.collect()
                t0 = time.perf_counter()
                await ops[name]()
                times[name].append(time.perf_counter() - t0)
            log(
                f"  round {r + 1}/{repeats}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v)
            )
        await verify()  # the rebuilt projections still check out
        gc.collect()
        t0 = time.perf_counter()
        await export_lines()
        times["export lines"].append(time.perf_counter() - t0)
        (work / "lines.jsonl").unlink()
    rss: list[float] = []
    for r in range(2):
        target = work / f"import-{r}.db"
        done = subprocess.run(  # noqa: ASYNC221 - the loop has nothing else to do
            [sys.executable, "-c", _IMPORT_CHILD, str(target), str(export_path)],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(done.stdout)
        assert figures["events"] == n
        times["import"].append(figures["seconds"])
        rss.append(figures["rss_mib"])
        log(
            f"  import {r + 1}/2: {figures['seconds']:.2f} s, peak RSS {figures['rss_mib']:.0f} MiB"
        )
        for path in target.parent.glob(f"{target.name}*"):
            path.unlink()
    return {
        "import_peak_rss_mib": max(rss),
        "store": info,
        "events": n,
        "repeats": repeats,
        "seconds": times,
        "events_per_s": {k: n / median(v) for k, v in times.items()},
        "export_mb": export_path.stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 200,000-event store")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")
    cal = calibration()

    def log(text: str) -> None:
        print(text, flush=True)

    res = anyio.run(run, args.quick, log, backend="asyncio")
    rows = []
    met = {}
    for name in ("verify", "rebuild", "export", "export lines", "import"):
        rate = res["events_per_s"][name]
        target = name != "export lines"
        met[name] = rate >= TARGET if target else None
        rows.append(
            [
                name,
                median(res["seconds"][name]),
                rate,
                f">= {TARGET:,}" if target else "(none)",
                verdict(rate >= TARGET) if target else "",
            ]
        )
    print()
    rss = res["import_peak_rss_mib"]
    met["import_rss"] = rss <= RSS_TARGET_MIB
    judged = "MET" if met["import_rss"] else "MISSED"  # memory, not time: whatever the load
    rows.append(["import peak RSS (MiB)", "", rss, f"<= {RSS_TARGET_MIB}", judged])
    print(f"store: {res['events']:,} events, {res['store']['sessions']:,} sessions")
    print(table(["operation", "seconds", "events/s", "target", ""], rows))
    state = report_load()
    path = write_results(
        "audit",
        {
            "quick": args.quick,
            "calibration": cal,
            **res,
            "target": TARGET,
            "met": met,
            "machine_state": state,
        },
    )
    print(f"results: {Path(path)}")


if __name__ == "__main__":
    main()
