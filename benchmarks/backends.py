"""SQLite beside PostgreSQL: per-turn cost and concurrent saves, in one run.

1. Per turn: ``asave_context`` + ``aload_memory_variables`` (120-word turns, string
   mode), one session pre-filled until it prunes, at limits 2000 and 12000. Blocks of
   each backend alternate in a shuffled order; figures are medians over blocks.
2. Concurrent saves from one process: 500 sessions, one task each, saving at once
   (pre-filled until they prune): saves/s and p50/p99 latency, median of runs.
3. Concurrent saves from several processes: 4 processes x 125 sessions, all started
   together; the saves/s of all of them. SQLite shares one file's write lock; PostgreSQL
   gives each process its own connection and serialises only within a session.

SQLite runs on a file in a temporary directory (WAL, synchronous=NORMAL, eventmem's
default); PostgreSQL on ``EVENTMEM_BENCH_POSTGRES_URL`` (default: the local server),
each scenario in a schema of its own, dropped afterwards. Both are durable stores: a
save returns after its transaction committed.

    .venv/bin/python benchmarks/backends.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
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
    table,
    tempdir,
    write_results,
)

POSTGRES_URL = os.environ.get(
    "EVENTMEM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
LIMITS = (2000, 12000)
PREFILL_TURNS = {2000: 30, 12000: 150}  # about twice what each limit holds
CONCURRENT_LIMIT = 2000
CONCURRENT_PREFILL = 12


def new_target(backend: str) -> str:
    """A new, empty store location of ``backend``."""
    if backend == "sqlite":
        return str(tempdir("backends") / "bench.db")
    return f"{POSTGRES_URL}?schema=bench_{uuid.uuid4().hex[:12]}"


def drop_target(target: str) -> None:
    if target.startswith("postgresql://"):
        import psycopg

        schema = target.rsplit("?schema=", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- 1. per turn -----------------------------------------------------------------------


async def turn_block(memory: Any, texts: Any, position: dict[str, int], block: int) -> float:
    """``block`` turns (save, then load) on ``memory``; µs per turn."""
    t0 = time.perf_counter()
    for _ in range(block):
        a, b = texts[position["n"] % len(texts)]
        position["n"] += 1
        await memory.asave_context({"input": a}, {"output": b})
        await memory.aload_memory_variables({})
    return (time.perf_counter() - t0) / block * 1e6


async def per_turn(block: int, repeats: int, log: Any) -> dict[str, Any]:
    import eventmem

    texts = TextGen(seed=11).turns(600)
    out: dict[str, Any] = {}
    for limit in LIMITS:
        stores: dict[str, Any] = {}
        memories: dict[str, Any] = {}
        targets: dict[str, str] = {}
        try:
            for backend in ("sqlite", "postgresql"):
                targets[backend] = new_target(backend)
                stores[backend] = await eventmem.open(targets[backend])
                memory = stores[backend].token_buffer("bench", max_token_limit=limit)
                for a, b in texts[: PREFILL_TURNS[limit]]:
                    await memory.asave_context({"input": a}, {"output": b})
                memories[backend] = memory
            position = {"n": PREFILL_TURNS[limit]}
            blocks: dict[str, list[float]] = {b: [] for b in memories}

            # Alternate which backend goes first (ABBA...), so drift hits both alike.
            for r in range(repeats):
                order = list(memories) if r % 2 == 0 else list(reversed(memories))
                for backend in order:
                    blocks[backend].append(
                        await turn_block(memories[backend], texts, position, block)
                    )
            for backend, values in blocks.items():
                out[f"{backend}, limit {limit}"] = {
                    "backend": backend,
                    "limit": limit,
                    "us_per_turn": median(values),
                    "blocks": values,
                }
            log(
                f"  limit {limit}: sqlite {median(blocks['sqlite']):,.0f} µs/turn, "
                f"postgresql {median(blocks['postgresql']):,.0f} µs/turn"
            )
        finally:
            for backend, store in stores.items():
                await store.aclose()
                drop_target(targets[backend])
    return out


# -- 2. concurrent saves, one process ----------------------------------------------------


async def one_process(saves: int, runs: int, log: Any) -> dict[str, Any]:
    import eventmem

    texts = TextGen(seed=3).turns(2000)
    sessions = [f"c{n:04d}" for n in range(500)]
    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql"):
        target = new_target(backend)
        try:
            async with eventmem.open(target) as store:
                await fill(store, sessions, CONCURRENT_PREFILL, texts, max_token_limit=2000)
                await concurrent_saves(store, sessions, 1, 2, texts)  # warm-up
                results = []
                for _ in range(runs):
                    results.append(await concurrent_saves(store, sessions, 1, saves, texts))
                log(
                    f"  {backend}: "
                    + ", ".join(f"{r['saves_per_s']:,.0f}" for r in results)
                    + " saves/s"
                )
                report = await store.verify()
                assert report.ok, report.problems
        finally:
            drop_target(target)
        out[backend] = {
            "runs": results,
            "saves_per_s": median([r["saves_per_s"] for r in results]),
            "p50_ms": median([r["p50_ms"] for r in results]),
            "p99_ms": median([r["p99_ms"] for r in results]),
        }
    return out


# -- 3. concurrent saves, several processes -----------------------------------------------


async def child(target: str, first: int, count: int, saves: int, start_at: float) -> None:
    """One of the processes: ``count`` sessions, each saving ``saves`` times."""
    import eventmem

    texts = TextGen(seed=5 + first).turns(500)
    sessions = [f"p{n:04d}" for n in range(first, first + count)]
    async with eventmem.open(target) as store:
        await fill(store, sessions, CONCURRENT_PREFILL, texts, max_token_limit=2000)
        await anyio.sleep(max(0.0, start_at - time.time()))
        result = await concurrent_saves(store, sessions, 1, saves, texts)
    print(json.dumps(result))


def processes(count: int, sessions_each: int, saves: int, log: Any) -> dict[str, Any]:
    import eventmem

    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql"):
        target = new_target(backend)

        async def create(target: str = target) -> None:
            async with eventmem.open(target):
                pass  # the schema exists before the children race to open it

        anyio.run(create, backend="asyncio")
        try:
            # Each child fills its sessions first; all start saving at the same moment.
            start_at = time.time() + 8.0
            children = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        target,
                        str(i * sessions_each),
                        str(sessions_each),
                        str(saves),
                        str(start_at),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(count)
            ]
            results = []
            for proc in children:
                stdout, _ = proc.communicate(timeout=600)
                assert proc.returncode == 0, f"a child failed ({proc.returncode})"
                results.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            drop_target(target)
        # All saves over the span from the first start to the last end (the children
        # start together; any that did not overlap would lower this figure).
        span = max(r["ended"] for r in results) - min(r["started"] for r in results)
        total = sum(r["saves"] for r in results) / span
        log(f"  {backend}: {count} processes, {total:,.0f} saves/s together over {span:.1f} s")
        out[backend] = {
            "processes": count,
            "sessions": count * sessions_each,
            "saves_per_s": total,
            "p99_ms": max(r["p99_ms"] for r in results),
            "children": results,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")
    if args.child:
        target, first, count, saves, start_at = args.child
        anyio.run(
            child,
            target,
            int(first),
            int(count),
            int(saves),
            float(start_at),
            backend="asyncio",
        )
        return

    def log(text: str) -> None:
        print(text, flush=True)

    cal = calibration()
    log("per turn (save + load), interleaved blocks ...")
    turn = anyio.run(
        per_turn, 30 if args.quick else 60, 4 if args.quick else 10, log, backend="asyncio"
    )
    log("500 sessions saving at once, one process ...")
    one = anyio.run(one_process, 10 if args.quick else 30, 3, log, backend="asyncio")
    log("4 processes x 125 sessions saving at once ...")
    many = processes(4, 125, 10 if args.quick else 30, log)

    print()
    rows = []
    for limit in LIMITS:
        lite = turn[f"sqlite, limit {limit}"]["us_per_turn"]
        pg = turn[f"postgresql, limit {limit}"]["us_per_turn"]
        rows.append([f"per turn, limit {limit} (µs)", lite, pg, pg / lite])
    rows.append(
        [
            "500 sessions, 1 process (saves/s)",
            one["sqlite"]["saves_per_s"],
            one["postgresql"]["saves_per_s"],
            one["postgresql"]["saves_per_s"] / one["sqlite"]["saves_per_s"],
        ]
    )
    rows.append(
        [
            "  p99 save latency (ms)",
            one["sqlite"]["p99_ms"],
            one["postgresql"]["p99_ms"],
            one["postgresql"]["p99_ms"] / one["sqlite"]["p99_ms"],
        ]
    )
    rows.append(
        [
            "4 processes x 125 sessions (saves/s)",
            many["sqlite"]["saves_per_s"],
            many["postgresql"]["saves_per_s"],
            many["postgresql"]["saves_per_s"] / many["sqlite"]["saves_per_s"],
        ]
    )
    print(table(["measure", "SQLite", "PostgreSQL", "PostgreSQL / SQLite"], rows))
    path = write_results(
        "backends",
        {"calibration": cal, "per_turn": turn, "one_process": one, "processes": many},
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
