"""History growth: does a turn get slower as a session's history grows? And how fast is
a fresh process at opening a big store and loading one buffer?

Part 1 (one session, limit 2000, 120-word turns, file DB in WAL):
  * per-turn cost (asave_context + aload_memory_variables) after 100 turns, then again
    after 50,000 turns in the same session; the late blocks are interleaved with blocks
    on fresh 100-turn sessions of the same store (a control measured at the same time,
    so machine drift cancels out of that ratio);
  * load cost (aload_memory_variables alone) on the long and a short session, with the
    view cache (default) and without it (a second handle with cache_sessions=0).

Part 2: a store of 1,000,000 events (--quick: 100,000): a base written through the
public API, replicated by export -> rename + re-chain -> import (real events, valid hash
chains; import re-verifies them). Then, several times, a fresh process opens it and loads
one session's buffer, timed inside the process (interpreter start-up and imports are
reported apart); with the file in the OS page cache, and after dropping the file's pages
(posix_fadvise DONTNEED) for a cold-ish read.

    .venv/bin/python benchmarks/history_growth.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
from _common import (
    TextGen,
    build_store,
    calibration,
    fill,
    median,
    offline_tiktoken,
    table,
    tempdir,
    verdict,
    write_results,
)

LIMIT = 2000
EARLY = 100
LATE = 50_000


async def turn_block(mem: Any, texts: list[tuple[str, str]], start: int, n: int) -> float:
    """µs per turn (save + load) over ``n`` turns."""
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        a, b = texts[(start + i) % len(texts)]
        await mem.asave_context({"input": a}, {"output": b})
        await mem.aload_memory_variables({})
    return (time.perf_counter() - t0) / n * 1e6


async def load_block(mem: Any, n: int) -> float:
    """µs per load over ``n`` loads."""
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        await mem.aload_memory_variables({})
    return (time.perf_counter() - t0) / n * 1e6


async def part1(quick: bool, log: Any) -> dict[str, Any]:
    import eventmem

    work = tempdir("growth")
    texts = TextGen(seed=7).turns(3000)
    early_block = 25  # small blocks, so "after 100 turns" stays near 100
    block = 50 if quick else 100  # late and control blocks: longer, less noisy
    rounds = 7 if quick else 15
    path = work / "growth.db"
    async with eventmem.open(path) as store, eventmem.open(path, cache_sessions=0) as cold:
        grow = store.token_buffer("grow", max_token_limit=LIMIT)
        await fill(store, ["grow"], EARLY, texts, max_token_limit=LIMIT)
        await turn_block(grow, texts, 0, 10)  # warm-up
        early_from = await store.version("grow")  # one event per turn
        early = [
            await turn_block(grow, texts, 100 + r * early_block, early_block)
            for r in range(rounds // 2)
        ]
        early_version = await store.version("grow")
        log(f"  early blocks done (session at {early_version} events); growing to {LATE:,} ...")
        t0 = time.perf_counter()
        missing = LATE - early_version
        await fill(store, ["grow"], missing, texts, max_token_limit=LIMIT, tasks_per_session=25)
        log(
            f"  grew the session to {await store.version('grow'):,} events"
            f" in {time.perf_counter() - t0:.1f} s"
        )
        series: dict[str, list[float]] = {
            name: []
            for name in (
                "late",
                "control",
                "load_long",
                "load_short",
                "load_long_cold",
                "load_short_cold",
            )
        }
        grow_cold = cold.token_buffer("grow", max_token_limit=LIMIT)
        await turn_block(grow, texts, 0, 10)  # warm-up
        late_from = await store.version("grow")
        for r in range(rounds):
            short_id = f"short-{r}"
            await fill(store, [short_id], EARLY, texts, max_token_limit=LIMIT)
            short = store.token_buffer(short_id, max_token_limit=LIMIT)
            short_cold = cold.token_buffer(short_id, max_token_limit=LIMIT)
            steps = [
                ("late", turn_block(grow, texts, r * block, block)),
                ("control", turn_block(short, texts, r * block, block)),
                ("load_long", load_block(grow, block)),
                ("load_short", load_block(short, block)),
                ("load_long_cold", load_block(grow_cold, block)),
                ("load_short_cold", load_block(short_cold, block)),
            ]
            if r % 2:  # alternate the order, so neither side always goes first
                steps.reverse()
            for name, coro in steps:
                series[name].append(await coro)
        late, control = series["late"], series["control"]
        load_long, load_short = series["load_long"], series["load_short"]
        load_long_cold, load_short_cold = series["load_long_cold"], series["load_short_cold"]
        late_version = await store.version("grow")
        events = await store.count_events()
    size_mb = file_mb(path)
    return {
        "limit": LIMIT,
        "early_block_turns": early_block,
        "block_turns": block,
        "rounds": rounds,
        "early_turns": [early_from, early_version],
        "late_turns": [late_from, late_version],
        "store_events": events,
        "db_size_mb": size_mb,
        "early_us_per_turn": early,
        "late_us_per_turn": late,
        "control_us_per_turn": control,
        "load_long_us": load_long,
        "load_short_us": load_short,
        "load_long_cache_off_us": load_long_cold,
        "load_short_cache_off_us": load_short_cold,
        "late_over_early": median(late) / median(early),
        "late_over_control": median(late) / median(control),
        "late_over_control_per_round_median": median(
            [a / b for a, b in zip(late, control, strict=True)]
        ),
    }


# -- part 2 ------------------------------------------------------------------------------

_CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
import anyio
import eventmem
t_imported = time.perf_counter()

async def main(path, session):
    t0 = time.perf_counter()
    store = await eventmem.open(path, create=False)
    t1 = time.perf_counter()
    messages = await store.messages(session)
    t2 = time.perf_counter()
    mem = store.token_buffer(session, max_token_limit=2000)
    t3 = time.perf_counter()
    buffer = (await mem.aload_memory_variables({}))["history"]
    t4 = time.perf_counter()
    await store.aclose()
    return {
        "open_ms": (t1 - t0) * 1e3,
        "load_ms": (t2 - t1) * 1e3,
        "open_and_load_ms": (t2 - t0) * 1e3,
        "token_buffer_ms": (t3 - t2) * 1e3,
        "aload_memory_variables_ms": (t4 - t3) * 1e3,
        "messages": len(messages),
        "chars": len(buffer),
    }

result = anyio.run(main, sys.argv[1], sys.argv[2], backend="asyncio")
result["import_ms"] = (t_imported - t_start) * 1e3
print(json.dumps(result))
"""


def file_mb(path: Path) -> float:
    """Size of the database file and its WAL, in MB."""
    return (
        sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))
        / 1e6
    )


def drop_page_cache(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def fresh_open(path: Path, session: str, cold: bool) -> dict[str, Any]:
    if cold:
        drop_page_cache(path)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), session],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["process_wall_ms"] = (time.perf_counter() - t0) * 1e3
    return result


async def part2(quick: bool, log: Any) -> dict[str, Any]:
    target = 100_000 if quick else 1_000_000
    work = tempdir("big")
    path = work / "big.db"
    log(f"building a store of {target:,} events ...")
    info = await build_store(path, target, log=log)
    info["db_size_mb"] = file_mb(path)
    log(f"  {info['events']:,} events, {info['sessions']:,} sessions, {info['db_size_mb']:.0f} MB")
    # a session from the middle of the store (replicated ones are named s00500~3 etc.)
    sessions = [
        "s00500",
        "s00999~4" if not quick else "s00250",
        "s00007~9" if not quick else "s00750",
    ]
    repeats = 7
    warm: list[dict[str, Any]] = []
    coldr: list[dict[str, Any]] = []
    fresh_open(path, sessions[0], cold=False)  # warm the page cache and the .pyc files
    for r in range(repeats):
        session = sessions[r % len(sessions)]
        warm.append(fresh_open(path, session, cold=False))
        coldr.append(fresh_open(path, session, cold=True))

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return median([row[key] for row in rows])

    keys = [
        "open_ms",
        "load_ms",
        "open_and_load_ms",
        "token_buffer_ms",
        "aload_memory_variables_ms",
        "import_ms",
        "process_wall_ms",
    ]
    return {
        "store": info,
        "sessions_loaded": sessions,
        "fresh_processes": repeats,
        "warm": {k: med(warm, k) for k in keys},
        "cold": {k: med(coldr, k) for k in keys},
        "warm_runs": warm,
        "cold_runs": coldr,
        "buffer_messages": warm[0]["messages"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000-event store, fewer blocks")
    parser.add_argument("--part", choices=["1", "2", "both"], default="both")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")

    def log(text: str) -> None:
        print(text, flush=True)

    results: dict[str, Any] = {"quick": args.quick, "calibration": calibration()}
    if args.part in ("1", "both"):
        log(f"part 1: one session, {EARLY} turns vs {LATE:,} turns ...")
        p1 = anyio.run(part1, args.quick, log, backend="asyncio")
        results["growth"] = p1
    if args.part in ("2", "both"):
        log("part 2: open a big store in a fresh process and load one buffer ...")
        p2 = anyio.run(part2, args.quick, log, backend="asyncio")
        results["big_store"] = p2

    print()
    if "growth" in results:
        g = results["growth"]
        cache_off_ratio = median(g["load_long_cache_off_us"]) / median(g["load_short_cache_off_us"])
        ok = g["late_over_early"] <= 1.25
        ok_c = g["late_over_control"] <= 1.25
        g["target"] = 1.25
        g["met"] = ok and ok_c
        early_turns = "turns {:,}-{:,}".format(*g["early_turns"])
        late_turns = "turns {:,}-{:,}".format(*g["late_turns"])
        control_turns = "turns {}-{}".format(EARLY, EARLY + g["block_turns"])
        print(
            table(
                ["measure", "short", "long", "ratio", "per-round", "target", ""],
                [
                    [
                        f"µs/turn, same session: {early_turns} vs {late_turns}",
                        median(g["early_us_per_turn"]),
                        median(g["late_us_per_turn"]),
                        f"{g['late_over_early']:.2f}x",
                        "",
                        "<= 1.25x",
                        verdict(ok),
                    ],
                    [
                        f"µs/turn, interleaved: fresh sessions ({control_turns}) vs the long one",
                        median(g["control_us_per_turn"]),
                        median(g["late_us_per_turn"]),
                        f"{g['late_over_control']:.2f}x",
                        f"{g['late_over_control_per_round_median']:.2f}x",
                        "<= 1.25x",
                        verdict(ok_c),
                    ],
                    [
                        "load µs (view cache on)",
                        median(g["load_short_us"]),
                        median(g["load_long_us"]),
                        f"{median(g['load_long_us']) / median(g['load_short_us']):.2f}x",
                        "",
                        "",
                        "",
                    ],
                    [
                        "load µs (cache_sessions=0)",
                        median(g["load_short_cache_off_us"]),
                        median(g["load_long_cache_off_us"]),
                        f"{cache_off_ratio:.2f}x",
                        "",
                        "",
                        "",
                    ],
                ],
            )
        )
        print(f"(store: {g['store_events']:,} events, {g['db_size_mb']:.0f} MB)")
        print()
    if "big_store" in results:
        b = results["big_store"]
        ok = b["warm"]["open_and_load_ms"] < 50
        b["target_ms"] = 50
        b["met"] = ok
        b["met_cold"] = b["cold"]["open_and_load_ms"] < 50
        rows = []
        for label, key in [
            ("open (eventmem.open)", "open_ms"),
            ("load one buffer (store.messages)", "load_ms"),
            ("open + load", "open_and_load_ms"),
            ("token_buffer() (loads the tokenizer)", "token_buffer_ms"),
            ("then aload_memory_variables", "aload_memory_variables_ms"),
            ("import anyio + eventmem", "import_ms"),
            ("whole process, wall", "process_wall_ms"),
        ]:
            rows.append([label, b["warm"][key], b["cold"][key]])
        print(
            f"fresh process, store of {b['store']['events']:,} events / "
            f"{b['store']['sessions']:,} sessions / {b['store']['db_size_mb']:.0f} MB; "
            f"median of {b['fresh_processes']} processes; buffer of {b['buffer_messages']} messages"
        )
        print(table(["ms", "page cache warm", "file pages dropped"], rows))
        print(
            f"target: open + load < 50 ms: {verdict(ok)} (warm), "
            f"{verdict(b['met_cold'])} (file pages dropped)"
        )
    path = write_results("history_growth", results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
