"""Concurrency in one process: throughput and latency of concurrent saves, and memory
with many sessions.

1. 500 sessions saving at once: an anyio task group, one task per session, each doing
   many saves (120-word turns, limit 2000, file DB in WAL). Sessions are pre-filled until
   they prune. Reports saves/s and p50/p99 latency of ``asave_context`` (median of runs),
   and with each run the process's CPU time per save and the load average: on a shared
   machine saves/s follows the CPU the process gets, CPU per save much less so.
2. One session, 50 tasks saving to it at once: the same figures.
3. 10,000 sessions touched (each: several saves, then a load) by one process; RSS
   (VmRSS) along the way, with the default cache bound (cache_sessions=1024) and, for
   contrast, with a cache large enough to hold every session. Each variant runs in a
   fresh process.

    .venv/bin/python benchmarks/concurrency.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import anyio
from _common import (
    TextGen,
    calibration,
    concurrent_saves,
    fill,
    median,
    offline_tiktoken,
    rss_kib,
    table,
    tempdir,
    verdict,
    write_results,
)

TARGET_SAVES_PER_S = 10_000  # 500 sessions in one process, on SQLite

LIMIT = 2000
PREFILL_TURNS = 12  # a 2000-token buffer holds ~11 of these turns


async def throughput(quick: bool, log: Any) -> dict[str, Any]:
    import eventmem

    work = tempdir("concurrency")
    texts = TextGen(seed=3).turns(4000)
    runs = 3
    out: dict[str, Any] = {}
    scenarios = [
        ("500 sessions x 1 task", 500, 1, 20 if quick else 40),
        ("1 session x 50 tasks", 1, 50, 40 if quick else 100),
    ]
    for label, n_sessions, tasks, saves in scenarios:
        async with eventmem.open(work / f"{n_sessions}-{tasks}.db") as store:
            sessions = [f"c{n:04d}" for n in range(n_sessions)]
            await fill(store, sessions, PREFILL_TURNS, texts, max_token_limit=LIMIT)
            await concurrent_saves(store, sessions, tasks, 4, texts)  # warm-up
            results = []
            for r in range(runs):
                results.append(await concurrent_saves(store, sessions, tasks, saves, texts))
                last = results[-1]
                log(
                    f"  {label}: run {r + 1}/{runs}: {last['saves_per_s']:,.0f} saves/s,"
                    f" p50 {last['p50_ms']:.1f} ms, p99 {last['p99_ms']:.1f} ms,"
                    f" CPU {last['cpu_us_per_save']:.0f} µs/save, load {last['loadavg_1min']:.1f}"
                )
            report = await store.verify()
            assert report.ok, report.problems
            out[label] = {
                "sessions": n_sessions,
                "tasks": n_sessions * tasks,
                "saves_per_task": saves,
                "runs": results,
                "saves_per_s": median([r["saves_per_s"] for r in results]),
                "p50_ms": median([r["p50_ms"] for r in results]),
                "p99_ms": median([r["p99_ms"] for r in results]),
                "cpu_us_per_save": median([r["cpu_us_per_save"] for r in results]),
                "events": await store.count_events(),
            }
    return out


# -- RSS with 10,000 sessions (run in a child process per cache setting) ---------------


def pymalloc_live_mib() -> float:
    """Bytes in live pymalloc blocks (small Python objects), from sys._debugmallocstats."""
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode()
    for line in text.splitlines():
        if line.startswith("# bytes in allocated blocks"):
            return int(line.split("=")[1].replace(",", "")) / 2**20
    return -1.0


async def touch_sessions(cache_sessions: int, total: int, turns: int) -> dict[str, Any]:
    import eventmem

    work = tempdir("rss")
    texts = TextGen(seed=11).turns(2000)
    checkpoints = [1000, 2000, 5000, 7500, total]
    samples: list[dict[str, int]] = []
    gc.collect()
    samples.append({"sessions": 0, "rss_kib": rss_kib(), "py_mib": pymalloc_live_mib()})
    async with eventmem.open(work / "rss.db", cache_sessions=cache_sessions) as store:
        # open + tokenizer loaded: the baseline is after the first save
        await fill(store, ["warm"], 1, texts)
        await store.messages("warm")
        gc.collect()
        samples.append({"sessions": 1, "rss_kib": rss_kib(), "py_mib": pymalloc_live_mib()})
        done = 0
        for checkpoint in checkpoints:
            batch = [f"u{n:05d}" for n in range(done, checkpoint)]
            await fill(store, batch, turns, texts, max_token_limit=LIMIT)
            limiter = anyio.CapacityLimiter(200)

            async def load(session: str, limiter: anyio.CapacityLimiter = limiter) -> None:
                async with limiter:
                    await store.token_buffer(session).aload_memory_variables({})

            async with anyio.create_task_group() as tg:
                for session in batch:
                    tg.start_soon(load, session)
            done = checkpoint
            gc.collect()
            samples.append(
                {
                    "sessions": done,
                    "rss_kib": rss_kib(),
                    "py_mib": pymalloc_live_mib(),  # live small Python objects
                    "cached_buffers": len(store._backend._cache),  # private: evidence only
                }
            )
        events = await store.count_events()
    return {"cache_sessions": cache_sessions, "samples": samples, "events": events}


def rss_child(cache_sessions: int, total: int, turns: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            str(cache_sessions),
            "--sessions",
            str(total),
            "--turns",
            str(turns),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer saves per task")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=int, default=PREFILL_TURNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")
    if args.rss_child is not None:
        result = anyio.run(
            touch_sessions, args.rss_child, args.sessions, args.turns, backend="asyncio"
        )
        print(json.dumps(result))
        return

    def log(text: str) -> None:
        print(text, flush=True)

    cal = calibration()
    log("throughput: concurrent saves ...")
    tp = anyio.run(throughput, args.quick, log, backend="asyncio")
    turns = 4 if args.quick else PREFILL_TURNS
    log(f"memory: 10,000 sessions x {turns} saves + 1 load each, in fresh processes ...")
    rss = {
        "bounded (cache_sessions=1024, the default)": rss_child(1024, 10_000, turns),
        "unbounded (cache_sessions=20000)": rss_child(20_000, 10_000, turns),
    }

    print()
    rows = []
    for label, r in tp.items():
        rows.append([label, r["tasks"], r["saves_per_s"], r["p50_ms"], r["p99_ms"]])
    print(table(["scenario", "tasks", "saves/s", "p50 ms", "p99 ms"], rows))
    target_ok = tp["500 sessions x 1 task"]["saves_per_s"] >= TARGET_SAVES_PER_S
    print(f"target: 500 sessions >= {TARGET_SAVES_PER_S:,} saves/s: {verdict(target_ok)}")
    print()
    rows = []
    for label, r in rss.items():
        base = r["samples"][1]["rss_kib"]
        for s in r["samples"][1:]:
            rows.append(
                [
                    label,
                    s["sessions"],
                    s.get("cached_buffers", "-"),
                    s["rss_kib"] / 1024,
                    (s["rss_kib"] - base) / 1024,
                    s["py_mib"],
                ]
            )
    print(
        table(
            [
                "cache",
                "sessions touched",
                "buffers cached",
                "RSS MiB",
                "RSS growth MiB",
                "live pymalloc MiB",
            ],
            rows,
        )
    )
    growth: dict[str, dict[str, float]] = {}
    for label, r in rss.items():
        at = {s["sessions"]: s for s in r["samples"]}
        first, last = at[2000], r["samples"][-1]
        span = (last["sessions"] - first["sessions"]) / 1000
        growth[label] = {
            "rss_mib_per_1000_sessions": (last["rss_kib"] - first["rss_kib"]) / 1024 / span,
            "live_pymalloc_mib_per_1000_sessions": (last["py_mib"] - first["py_mib"]) / span,
        }
        print(
            f"{label}: from 2,000 to {last['sessions']:,} sessions, RSS grew "
            f"{growth[label]['rss_mib_per_1000_sessions']:.2f} MiB and live Python objects "
            f"{growth[label]['live_pymalloc_mib_per_1000_sessions']:.2f} MiB per 1,000 sessions"
        )
    path = write_results(
        "concurrency",
        {
            "quick": args.quick,
            "calibration": cal,
            "throughput": tp,
            "target_saves_per_s": TARGET_SAVES_PER_S,
            "met": target_ok,
            "rss": rss,
            "rss_turns_per_session": turns,
            "growth_from_2000_sessions": growth,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
