"""PostgreSQL flat: does a turn get slower as a session's history grows, with autovacuum
off (as the server here runs) and no VACUUM in between?

One session, limit 2000, 120-word turns: the per-turn cost (``asave_context`` +
``aload_memory_variables``) in blocks after 100 turns, then the session is filled to
50,000 turns (50 tasks at once, so saves share commits) and measured again, interleaved
with blocks on a fresh 100-turn session of the same schema (a control measured at the
same time: machine drift cancels out of the late/control ratio). Also: PostgreSQL
against SQLite per turn, blocks alternating, in the same run.

    .venv/bin/python benchmarks/pg_growth.py [--quick] [--postgres-url URL]
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
from _common import (
    TextGen,
    calibration,
    fill,
    median,
    parse_args,
    table,
    tempdir,
    verdict,
    write_results,
)

TARGET_GROWTH = 1.25
TARGET_VS_SQLITE = 3.0


async def _blocks(memory: Any, texts: list[tuple[str, str]], start: int, n: int) -> float:
    """µs per turn over ``n`` turns."""
    began = time.perf_counter()
    for i in range(start, start + n):
        a, b = texts[i % len(texts)]
        await memory.asave_context({"input": a}, {"output": b})
        await memory.aload_memory_variables({})
    return (time.perf_counter() - began) / n * 1e6


async def main() -> None:
    import psycopg

    import eventmem

    args = parse_args(__doc__, "10,000 turns instead of 50,000")
    long_turns = 10_000 if args.quick else 50_000
    cal = calibration()
    print(f"calibration: {cal}")
    with psycopg.connect(args.postgres_url) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
        autovacuum = None if row is None else row[0]
    print(f"server autovacuum: {autovacuum}")
    texts = TextGen(seed=42).turns(1000)
    schema = f"growth_{uuid.uuid4().hex[:12]}"
    url = f"{args.postgres_url}?schema={schema}"
    blocks, block_turns = (6, 100) if args.quick else (10, 200)
    results: dict[str, Any] = {"long_turns": long_turns, "autovacuum": autovacuum}
    try:
        async with (
            eventmem.open(url) as pg,
            eventmem.open(tempdir("pg-growth") / "sqlite.db") as lite,
        ):
            await fill(pg, ["grown"], 100, texts, tasks_per_session=1)
            await fill(lite, ["side"], 100, texts, tasks_per_session=1)
            grown = pg.token_buffer("grown", max_token_limit=2000)
            side = lite.token_buffer("side", max_token_limit=2000)
            early, sqlite_early = [], []
            for b in range(blocks):
                early.append(await _blocks(grown, texts, 100 + b * block_turns, block_turns))
                sqlite_early.append(await _blocks(side, texts, b * block_turns, block_turns))
            sqlite_us = median(sqlite_early)
            print(f"after 100 turns: {median(early):,.0f} µs/turn (SQLite {sqlite_us:,.0f})")
            filled = 100 + blocks * block_turns
            await fill(pg, ["grown"], long_turns - filled, texts, tasks_per_session=50)
            await fill(pg, ["control"], 100, texts, tasks_per_session=1)
            control = pg.token_buffer("control", max_token_limit=2000)
            late, fresh = [], []
            for b in range(blocks):
                late.append(await _blocks(grown, texts, b * block_turns, block_turns))
                fresh.append(await _blocks(control, texts, b * block_turns, block_turns))
            late_us, control_us = median(late), median(fresh)
            print(f"after {long_turns:,} turns: {late_us:,.0f} µs/turn (control {control_us:,.0f})")
            assert (await pg.verify()).ok
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    growth, control_ratio = median(late) / median(early), median(late) / median(fresh)
    vs_sqlite = median(early) / median(sqlite_early)
    rows = [
        [
            f"turn after {long_turns:,} / after 100",
            f"{growth:.2f}x",
            f"<= {TARGET_GROWTH}x",
            verdict(growth <= TARGET_GROWTH),
        ],
        [
            f"turn after {long_turns:,} / fresh session (control)",
            f"{control_ratio:.2f}x",
            f"<= {TARGET_GROWTH}x",
            verdict(control_ratio <= TARGET_GROWTH),
        ],
        [
            "PostgreSQL / SQLite per turn",
            f"{vs_sqlite:.2f}x",
            f"<= {TARGET_VS_SQLITE}x",
            verdict(vs_sqlite <= TARGET_VS_SQLITE),
        ],
    ]
    print(table(["measure", "ratio", "target", "verdict"], rows))
    results |= {
        "calibration": cal,
        "early_us": early,
        "late_us": late,
        "control_us": fresh,
        "sqlite_us": sqlite_early,
        "growth": growth,
        "control_ratio": control_ratio,
        "pg_vs_sqlite": vs_sqlite,
    }
    print(f"results: {write_results('pg_growth', results)}")


if __name__ == "__main__":
    anyio.run(main)
