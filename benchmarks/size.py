"""Store size: bytes on disk per event against the raw text the events hold.

Sessions of conversation turns (limit 2000, so every session prunes), written through
the public API (``asave_context``, 50 sessions at once so saves share commits), on
SQLite (a file in WAL; the figure is the main file after a checkpoint, plus a WAL left
empty) and on PostgreSQL (every relation of the store's schema, indexes and TOAST
included, after ``CHECKPOINT``; autovacuum stays as the server has it). Raw text = the
UTF-8 bytes of the turns' inputs and outputs. Two turn sizes: 120 words (40 in, 80 out)
and 200 words (70 in, 130 out).

    .venv/bin/python benchmarks/size.py [--quick] [--postgres-url URL]
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import anyio
from _common import TextGen, calibration, fill, parse_args, table, tempdir, write_results

TARGET = 1.25  # bytes on disk / raw text bytes


async def _sqlite_size(directory: Path, texts: list[tuple[str, str]], turns: int) -> int:
    import eventmem

    path = directory / f"{uuid.uuid4().hex}.db"
    sessions = [f"session-{i}" for i in range(turns // 100)]
    async with eventmem.open(path) as store:
        await fill(store, sessions, 100, texts, concurrency=50)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _postgres_size(url: str, texts: list[tuple[str, str]], turns: int) -> int:
    import psycopg

    import eventmem

    schema = f"size_{uuid.uuid4().hex[:12]}"
    target = f"{url}?schema={schema}"
    sessions = [f"session-{i}" for i in range(turns // 100)]
    try:
        async with eventmem.open(target) as store:
            await fill(store, sessions, 100, texts, concurrency=50)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (schema,),
            ).fetchone()
            assert row is not None
            return int(row[0])
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _raw_bytes(texts: list[tuple[str, str]], turns: int) -> int:
    # the turns fill() saves: session n takes texts from offset n * 7919, one per turn
    picked = [texts[(n * 7919 + i) % len(texts)] for n in range(turns // 100) for i in range(100)]
    return sum(len(a.encode()) + len(b.encode()) for a, b in picked)


async def main() -> None:
    args = parse_args(__doc__, "2,000 turns instead of 20,000")
    turns = 2_000 if args.quick else 20_000
    cal = calibration()
    print(f"calibration: {cal}")
    directory = tempdir("size")
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"turns": turns, "calibration": cal, "runs": []}
    for words_in, words_out in ((40, 80), (70, 130)):
        texts = TextGen(seed=7).turns(1000, words_in, words_out)
        raw = _raw_bytes(texts, turns)
        for backend in ("SQLite", "PostgreSQL"):
            if backend == "SQLite":
                size = await _sqlite_size(directory, texts, turns)
            else:
                size = await _postgres_size(args.postgres_url, texts, turns)
            ratio = size / raw
            rows.append(
                [
                    backend,
                    f"{words_in + words_out} words",
                    f"{raw / turns:,.0f}",
                    f"{size / turns:,.0f}",
                    f"{ratio:.2f}x",
                    "MET" if ratio <= TARGET else "MISSED",
                ]
            )
            results["runs"].append(
                {"backend": backend, "words": words_in + words_out, "raw": raw, "size": size}
            )
    print(
        table(
            ["backend", "turn", "raw text B/event", "on disk B/event", "ratio", "<= 1.25x"],
            rows,
        )
    )
    print(f"results: {write_results('size', results)}")


if __name__ == "__main__":
    anyio.run(main)
