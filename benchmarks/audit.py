"""Audit throughput: verify, rebuild and export (and import) in events/s.

The store holds 200,000 real events (--quick: 100,000): a base written through the
public API (sessions of 100 120-word turns, limit 2000), replicated by export ->
rename + re-chain -> import. Each operation runs several times, interleaved, on the same
store; figures are medians.

* ``verify``: every hash chain, every session head and buffer against the fold;
* ``rebuild``: every projection recomputed from the events (one transaction);
* ``export``: every line written to a file;
* ``import`` (not a target): the export imported into an empty store.

    .venv/bin/python benchmarks/audit.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
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
    table,
    tempdir,
    verdict,
    write_results,
)

TARGET = 100_000  # events/s


async def run(quick: bool, log: Any) -> dict[str, Any]:
    import eventmem

    work = tempdir("audit")
    path = work / "audit.db"
    events = 100_000 if quick else 200_000
    log(f"building a store of {events:,} events ...")
    info = await build_store(path, events, sessions_per_base=500, log=log)
    log(f"  {info['events']:,} events in {info['sessions']:,} sessions")
    repeats = 3
    times: dict[str, list[float]] = {"verify": [], "rebuild": [], "export": [], "import": []}
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
            lines = 0
            with export_path.open("wb") as f:
                async for line in store.export():
                    f.write(line)
                    lines += 1
            assert lines in (n + 1, n + 2)  # a header, the events, (an end line)

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
    lines = export_path.read_bytes().splitlines()
    for r in range(2):
        async with eventmem.open(work / f"import-{r}.db") as target:
            gc.collect()
            t0 = time.perf_counter()
            _, imported = await target.import_events(lines)
            times["import"].append(time.perf_counter() - t0)
            assert imported == n
    return {
        "store": info,
        "events": n,
        "repeats": repeats,
        "seconds": times,
        "events_per_s": {k: n / median(v) for k, v in times.items()},
        "export_mb": export_path.stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 100,000-event store")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")
    cal = calibration()

    def log(text: str) -> None:
        print(text, flush=True)

    res = anyio.run(run, args.quick, log, backend="asyncio")
    rows = []
    met = {}
    for name in ("verify", "rebuild", "export", "import"):
        rate = res["events_per_s"][name]
        target = name != "import"
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
    print(f"store: {res['events']:,} events, {res['store']['sessions']:,} sessions")
    print(table(["operation", "seconds", "events/s", "target", ""], rows))
    path = write_results(
        "audit", {"quick": args.quick, "calibration": cal, **res, "target": TARGET, "met": met}
    )
    print(f"results: {Path(path)}")


if __name__ == "__main__":
    main()
