"""What encryption at rest costs: a plain store against an encrypted one, in one run.

* **per turn**: ``asave_context`` of a 120-word turn (40 words in, 80 out) +
  ``aload_memory_variables``, one session, limit 2000, pre-filled until it prunes; on a
  SQLite file and on PostgreSQL (a fresh schema per process, every schema of the run
  dropped at the end). Each (backend, variant) runs in a fresh process per round, in a
  shuffled order each round, so drift on a shared machine hits all four; a figure is
  the median (and p10 / p90) of the per-block means, the ratio encrypted / plain of the
  same run (also the median of the per-round ratios).
* **saves/s and bytes on disk**: the same kind of turns written through the API to both
  stores in chunks of 50 sessions x 100 turns, the 50 saving at once (as
  ``benchmarks/size.py`` writes them), the stores alternating chunk by chunk in this
  process; then the SQLite files after a ``TRUNCATE`` checkpoint, each event's ``data``
  alone, the free bytes of the events table's pages (``dbstat``) and the keyring's file.
* **verify / export**: those two stores (50,000 events; --quick: 2,000), each opened in
  a fresh process per round (the variants alternating): ``store.verify(processes=1)``
  after a warm-up verify, then ``store.export_to(file)``. An encrypted store always
  verifies in one process (its keys stay there); the plain one is held to one process
  too, which is also what it picks below 200,000 events.
* **the content layer**: ``EncryptedContent.close`` (what a save adds) and ``open`` (what
  each decoded event adds) called directly on 5,000 of the plain store's turn events,
  beside AES-GCM and base64 alone on the same bytes; median and best of 9 passes. And
  what a session's first encrypted save adds: its new data key written to the keyring
  (``Keyring.data_key(..., create=True)``, 50 new sessions).

Encrypted: ``eventmem.open(..., encryption=Keyring(keys_path, master_key=...))``, a
keyring file beside the database. Every phase prints the load averages before and after.

    .venv/bin/python benchmarks/encryption.py [--quick] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from _common import (
    BENCH_POSTGRES_URL,
    TextGen,
    calibration,
    fill,
    median,
    percentile,
    table,
    tempdir,
    write_results,
)

VARIANTS = ("plain", "encrypted")
BACKENDS = ("SQLite", "PostgreSQL")
MASTER_KEY_ENV = "EVENTMEM_BENCH_MASTER_KEY"  # to the verify workers: never on a command line


def _keys(path: str | None, master_key: bytes | None = None) -> Any:
    """None (plain), or a keyring at ``path`` under ``master_key`` (a new one if None)."""
    if path is None:
        return None
    from eventmem.encryption import Keyring, generate_master_key

    return Keyring(path, master_key=master_key or generate_master_key())


def _loads() -> tuple[float, float, float]:
    return os.getloadavg()


def _fmt_load(load: tuple[float, float, float] | list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


# -- workers (each in a fresh process) -------------------------------------------------


async def _turn_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``blocks`` blocks of ``turns`` turns on one session; µs per turn per block."""
    import eventmem

    texts = TextGen(seed=11).turns(200)
    keys = _keys(spec["keys"])
    load_start = _loads()
    async with eventmem.open(spec["target"], encryption=keys) as store:
        memory = store.token_buffer("bench", max_token_limit=2000)
        i = 0
        for _ in range(spec["prefill"]):  # ~157 tokens a turn: prunes after ~12
            a, b = texts[i % len(texts)]
            i += 1
            await memory.asave_context({"input": a}, {"output": b})
            await memory.aload_memory_variables({})
        kept = len(await memory.amessages())
        assert kept < 2 * spec["prefill"], "the buffer did not prune"
        figures = []
        for _ in range(spec["blocks"]):
            gc.collect()
            start = time.perf_counter()
            for _ in range(spec["turns"]):
                a, b = texts[i % len(texts)]
                i += 1
                await memory.asave_context({"input": a}, {"output": b})
                await memory.aload_memory_variables({})
            figures.append((time.perf_counter() - start) / spec["turns"] * 1e6)
    return {
        "figures": figures,
        "kept_messages": kept,
        "loadavg_start": load_start,
        "loadavg_end": _loads(),
        "code": eventmem.__file__,
    }


async def _audit_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One warm-up verify, then verify and export_to timed once each."""
    import eventmem

    master = bytes.fromhex(os.environ[MASTER_KEY_ENV]) if spec["keys"] else None
    keys = _keys(spec["keys"], master)
    load_start = _loads()
    out = Path(spec["export"])
    async with eventmem.open(spec["target"], encryption=keys) as store:
        n = await store.count_events()
        report = await store.verify(processes=1)  # warm the page cache (and the keys)
        assert report.ok, report.problems[:3]
        gc.collect()
        t0 = time.perf_counter()
        report = await store.verify(processes=1)
        verify_s = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        assert report.events == n
        gc.collect()
        with out.open("wb") as f:  # noqa: ASYNC230 - the loop has nothing else to do
            t0 = time.perf_counter()
            assert await store.export_to(f) == n
            export_s = time.perf_counter() - t0
    export_bytes = out.stat().st_size  # noqa: ASYNC240 - as above
    out.unlink()  # noqa: ASYNC240
    return {
        "events": n,
        "verify_s": verify_s,
        "export_s": export_s,
        "export_bytes": export_bytes,
        "loadavg_start": load_start,
        "loadavg_end": _loads(),
    }


async def _content_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """µs per event of the content layer alone, on the plain store's turn events: what a
    save adds (``EncryptedContent.close``) and what each decoded event adds (``open``),
    and their parts (AES-GCM, base64). Median and best of ``repeats`` passes."""
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from eventmem.store.content import EncryptedContent

    conn = sqlite3.connect(spec["target"])
    rows = [
        (sid, pos, bytes(data))
        for sid, pos, data in conn.execute(
            "SELECT session_id, position, CAST(data AS BLOB) FROM events"
            " WHERE kind = 'turn' ORDER BY id LIMIT 5000"
        )
    ]
    conn.close()
    content = EncryptedContent(_keys(spec["keys"]))
    boxes = [(sid, pos, content.close(sid, pos, "turn", data)) for sid, pos, data in rows]
    aead, nonce, aad = AESGCM(bytes(32)), bytes(12), bytes(30)
    sealed = [aead.encrypt(nonce, data, aad) for _, _, data in rows]
    encoded = [base64.b64encode(box) for box in sealed]
    parts: dict[str, Callable[[], object]] = {
        "close": lambda: [content.close(s, p, "turn", d) for s, p, d in rows],
        "open": lambda: [content.open(s, p, b) for s, p, b in boxes],
        "aes_gcm_encrypt": lambda: [aead.encrypt(nonce, d, aad) for _, _, d in rows],
        "aes_gcm_decrypt": lambda: [aead.decrypt(nonce, b, aad) for b in sealed],
        "base64_encode": lambda: [base64.b64encode(b) for b in sealed],
        "base64_decode": lambda: [base64.b64decode(b, validate=True) for b in encoded],
    }
    figures: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(spec["repeats"]):
        for name, run in parts.items():
            gc.collect()
            t0 = time.perf_counter()
            run()
            figures[name].append((time.perf_counter() - t0) / len(rows) * 1e6)
    # A session's first encrypted save makes its data key: a write to the keyring's file
    # (rollback journal, synchronous=FULL), on the connection's thread.
    keyring = content.keys
    new_keys = []
    for i in range(50):
        t0 = time.perf_counter()
        keyring.data_key(f"new-{i}", create=True)
        new_keys.append((time.perf_counter() - t0) * 1e6)
    figures["new_data_key"] = new_keys
    return {
        "events": len(rows),
        "event_json_bytes": sum(len(d) for _, _, d in rows) / len(rows),
        "us_per_event": {k: {"median": median(v), "best": min(v)} for k, v in figures.items()},
        "loadavg_start": spec["loadavg"],
        "loadavg_end": _loads(),
    }


def _spawn(kind: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise SystemExit(f"{kind} worker {spec} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# -- the parent ------------------------------------------------------------------------


def _drop_schemas(url: str, prefix: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
            ).fetchall()
        ]
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    return len(names)


def per_turn(
    work: Path, url: str, rounds: int, blocks: int, turns: int, prefill: int, log: Any
) -> dict[str, Any]:
    prefix = f"bench_enc_{uuid.uuid4().hex[:8]}_"
    contenders = [(b, v) for b in BACKENDS for v in VARIANTS]
    figures: dict[str, list[list[float]]] = {f"{b} {v}": [] for b, v in contenders}
    worker_loads: list[float] = []
    rng = random.Random(7)
    before = _loads()
    log(f"per turn: load average before {_fmt_load(before)}")
    try:
        for r in range(rounds):
            rng.shuffle(contenders)
            for backend, variant in contenders:
                name = f"{backend}-{variant}-{r}"
                if backend == "SQLite":
                    target = str(work / f"{name}.db")
                else:
                    target = f"{url}?schema={prefix}{variant}_{r}"
                spec = {
                    "target": target,
                    "keys": str(work / f"{name}.keys") if variant == "encrypted" else None,
                    "blocks": blocks,
                    "turns": turns,
                    "prefill": prefill,
                }
                res = _spawn("turn", spec)
                if not res["code"].startswith(str(Path(__file__).resolve().parent.parent)):
                    raise SystemExit(f"the worker ran {res['code']}, not this tree's eventmem")
                figures[f"{backend} {variant}"].append(res["figures"])
                worker_loads.append(res["loadavg_start"][0])
                for path in work.glob(f"{name}.*"):
                    path.unlink()
            log(
                f"  round {r + 1}/{rounds}: "
                + ", ".join(f"{k} {median(v[-1]):,.0f}" for k, v in figures.items())
                + f" µs/turn; load {_loads()[0]:.2f}"
            )
    finally:
        dropped = _drop_schemas(url, prefix)
    after = _loads()
    log(f"per turn: load average after {_fmt_load(after)} ({dropped} schemas dropped)")
    summary: dict[str, Any] = {}
    for backend in BACKENDS:
        row: dict[str, Any] = {}
        for variant in VARIANTS:
            flat = [x for block in figures[f"{backend} {variant}"] for x in block]
            row[variant] = {
                "median": median(flat),
                "p10": percentile(flat, 10),
                "p90": percentile(flat, 90),
            }
        per_round = [
            median(e) / median(p)
            for p, e in zip(
                figures[f"{backend} plain"], figures[f"{backend} encrypted"], strict=True
            )
        ]
        row["ratio_median"] = row["encrypted"]["median"] / row["plain"]["median"]
        row["ratio_p10"] = row["encrypted"]["p10"] / row["plain"]["p10"]
        row["ratio_per_round"] = median(per_round)
        row["per_round_ratios"] = per_round
        summary[backend] = row
    return {
        "rounds": rounds,
        "blocks": blocks,
        "turns": turns,
        "prefill": prefill,
        "figures": figures,
        "summary": summary,
        "worker_loadavg_1min": [min(worker_loads), max(worker_loads)],
        "loadavg_before": list(before),
        "loadavg_after": list(after),
    }


def _raw_bytes(texts: list[tuple[str, str]], sessions: int) -> int:
    # the turns one fill() saves: session n takes texts from offset n * 7919, one per turn
    picked = [texts[(n * 7919 + i) % len(texts)] for n in range(sessions) for i in range(100)]
    return sum(len(a.encode()) + len(b.encode()) for a, b in picked)


async def build(work: Path, events: int, master: bytes, log: Any) -> dict[str, Any]:
    """The two stores of ``events`` turns, written alike through the API in chunks of 50
    sessions x 100 turns (50 at once), the stores alternating chunk by chunk: saves/s
    per chunk; then their sizes."""
    import eventmem

    texts = TextGen(seed=7).turns(1000)
    per_chunk = min(50, max(1, events // 200))
    chunks = events // (per_chunk * 100)
    before = _loads()
    log(f"stores: load average before {_fmt_load(before)}")
    out: dict[str, Any] = {
        "raw_bytes": _raw_bytes(texts, per_chunk) * chunks,
        "events": events,
        "chunks": chunks,
        "sessions_per_chunk": per_chunk,
    }
    paths = {v: work / f"audit-{v}.db" for v in VARIANTS}
    keys_path = work / "audit-encrypted.keys"
    keys = _keys(str(keys_path), master)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    async with (
        eventmem.open(paths["plain"]) as plain,
        eventmem.open(paths["encrypted"], encryption=keys) as encrypted,
    ):
        stores = {"plain": plain, "encrypted": encrypted}
        order = list(VARIANTS)
        for k in range(chunks):
            order.reverse()
            sessions = [f"session-{k}-{i}" for i in range(per_chunk)]
            for variant in order:
                gc.collect()
                t0 = time.perf_counter()
                saved = await fill(stores[variant], sessions, 100, texts, concurrency=50)
                rates[variant].append(saved / (time.perf_counter() - t0))
        for store in stores.values():
            assert await store.count_events() == chunks * per_chunk * 100
    keys.close()
    for variant in VARIANTS:
        path = paths[variant]
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data_bytes = conn.execute("SELECT sum(length(CAST(data AS BLOB))) FROM events").fetchone()
        try:  # the events table's pages: row bytes and free space (if SQLite has dbstat)
            pages = conn.execute(
                "SELECT sum(pgsize), sum(payload), sum(unused) FROM dbstat WHERE name = 'events'"
            ).fetchone()
        except sqlite3.Error:
            pages = (None, None, None)
        conn.close()
        wal = path.with_name(path.name + "-wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        out[variant] = {
            "path": str(path),
            "keys": str(keys_path) if variant == "encrypted" else None,
            "file_bytes": size,
            "data_bytes": int(data_bytes[0]),
            "events_table": dict(zip(("pages", "payload", "unused"), pages, strict=True)),
            "keyring_bytes": keys_path.stat().st_size if variant == "encrypted" else 0,
            "saves_per_s": rates[variant],
        }
        log(
            f"  {variant}: {events:,} events, {median(rates[variant]):,.0f} saves/s "
            f"(median of {chunks} chunks), {size / events:,.0f} B/event on disk"
        )
    out["saves_ratio_per_chunk"] = median(
        [e / p for p, e in zip(rates["plain"], rates["encrypted"], strict=True)]
    )
    after = _loads()
    log(f"stores: load average after {_fmt_load(after)}")
    out["loadavg_before"], out["loadavg_after"] = list(before), list(after)
    return out


def audit(
    work: Path, stores: dict[str, Any], rounds: int, master: bytes, log: Any
) -> dict[str, Any]:
    env = {**os.environ, MASTER_KEY_ENV: master.hex()}
    times: dict[str, dict[str, list[float]]] = {v: {"verify": [], "export": []} for v in VARIANTS}
    export_bytes: dict[str, int] = {}
    before = _loads()
    log(f"verify / export: load average before {_fmt_load(before)}")
    order = list(VARIANTS)
    for r in range(rounds):
        order.reverse()
        for variant in order:
            spec = {
                "target": stores[variant]["path"],
                "keys": stores[variant]["keys"],
                "export": str(work / f"export-{variant}.jsonl"),
            }
            res = _spawn("audit", spec, env)
            times[variant]["verify"].append(res["verify_s"])
            times[variant]["export"].append(res["export_s"])
            export_bytes[variant] = res["export_bytes"]
        log(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(
                f"{v} verify {times[v]['verify'][-1]:.2f} s export {times[v]['export'][-1]:.2f} s"
                for v in VARIANTS
            )
            + f"; load {_loads()[0]:.2f}"
        )
    after = _loads()
    log(f"verify / export: load average after {_fmt_load(after)}")
    n = stores["events"]
    rates = {v: {op: n / median(times[v][op]) for op in ("verify", "export")} for v in VARIANTS}
    per_round = {
        op: median([p / e for p, e in zip(times["plain"][op], times["encrypted"][op], strict=True)])
        for op in ("verify", "export")
    }
    return {
        "rounds": rounds,
        "seconds": times,
        "ratio_per_round": per_round,
        "events_per_s": rates,
        "export_bytes": export_bytes,
        "loadavg_before": list(before),
        "loadavg_after": list(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (~1 min)")
    parser.add_argument("--postgres-url", default=BENCH_POSTGRES_URL)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, spec = args.worker
        run = {"turn": _turn_worker, "audit": _audit_worker, "content": _content_worker}[kind]
        print(json.dumps(anyio.run(run, json.loads(spec))))
        return
    if args.quick:
        rounds, blocks, turns, prefill, events, audit_rounds = 2, 2, 30, 30, 2_000, 2
    else:
        rounds, blocks, turns, prefill, events, audit_rounds = 12, 4, 100, 60, 50_000, 7

    def log(text: str) -> None:
        print(text, flush=True)

    cal = calibration()
    from eventmem.encryption import generate_master_key

    master = generate_master_key()
    work = tempdir("encryption")
    turn = per_turn(work, args.postgres_url, rounds, blocks, turns, prefill, log)
    stores = anyio.run(build, work, events, master, log)
    checks = audit(work, stores, audit_rounds, master, log)
    spec = {
        "target": stores["plain"]["path"],
        "keys": str(work / "content.keys"),
        "repeats": 3 if args.quick else 9,
        "loadavg": _loads(),
    }
    parts = _spawn("content", spec)
    log(
        f"content layer: load average before {_fmt_load(parts['loadavg_start'])}, "
        f"after {_fmt_load(parts['loadavg_end'])}"
    )

    def load_span(section: dict[str, Any]) -> str:
        return f"{section['loadavg_before'][0]:.2f} → {section['loadavg_after'][0]:.2f}"

    rows: list[list[Any]] = []
    for backend in BACKENDS:
        s = turn["summary"][backend]
        p, e = s["plain"], s["encrypted"]
        rows.append(
            [
                f"{backend} per turn, median µs (p10-p90)",
                f"{p['median']:,.0f} ({p['p10']:,.0f}-{p['p90']:,.0f})",
                f"{e['median']:,.0f} ({e['p10']:,.0f}-{e['p90']:,.0f})",
                f"{s['ratio_median']:.3f}x (p10 {s['ratio_p10']:.3f}x, "
                f"per round {s['ratio_per_round']:.3f}x)",
                load_span(turn),
            ]
        )
    p_s, e_s = (median(stores[v]["saves_per_s"]) for v in VARIANTS)
    rows.append(
        [
            f"SQLite, 50 sessions saving at once, saves/s ({stores['chunks']} chunks)",
            f"{p_s:,.0f}",
            f"{e_s:,.0f}",
            f"{e_s / p_s:.3f}x (per chunk {stores['saves_ratio_per_chunk']:.3f}x)",
            load_span(stores),
        ]
    )
    raw = stores["raw_bytes"] / events
    sizes = [
        ("on disk", {v: stores[v]["file_bytes"] for v in VARIANTS}),
        ("`data` alone", {v: stores[v]["data_bytes"] for v in VARIANTS}),
    ]
    if stores["plain"]["events_table"]["unused"] is not None:
        unused = {v: stores[v]["events_table"]["unused"] for v in VARIANTS}
        sizes.append(("free in events' pages", unused))
    for what, size in sizes:
        p_b, e_b = size["plain"] / events, size["encrypted"] / events
        rows.append(
            [
                f"SQLite bytes per event, {what} (raw text {raw:,.0f})",
                f"{p_b:,.0f} ({p_b / raw:.2f}x the text)",
                f"{e_b:,.0f} ({e_b / raw:.2f}x the text)",
                f"{e_b / p_b:.3f}x",
                "(bytes: no load)",
            ]
        )
    for op in ("verify", "export"):
        p_r = checks["events_per_s"]["plain"][op]
        e_r = checks["events_per_s"]["encrypted"][op]
        rows.append(
            [
                f"{op} {events:,} events, events/s (one process)"
                if op == "verify"
                else f"export_to {events:,} events, events/s",
                f"{p_r:,.0f}",
                f"{e_r:,.0f}",
                f"{e_r / p_r:.3f}x (per round {checks['ratio_per_round'][op]:.3f}x)",
                load_span(checks),
            ]
        )
    p_x = checks["export_bytes"]["plain"] / events
    e_x = checks["export_bytes"]["encrypted"] / events
    rows.append(
        [
            "export file bytes per event",
            f"{p_x:,.0f}",
            f"{e_x:,.0f}",
            f"{e_x / p_x:.3f}x",
            "(bytes: no load)",
        ]
    )
    us = parts["us_per_event"]
    pieces = [
        ("a save: `close`", "close", ("aes_gcm_encrypt", "base64_encode")),
        ("a decoded event: `open`", "open", ("aes_gcm_decrypt", "base64_decode")),
    ]
    rows.append(
        [
            "a session's first save: a new data key in the keyring, µs",
            "0",
            f"{us['new_data_key']['median']:,.0f} (best {us['new_data_key']['best']:,.0f})",
            "",
            f"{parts['loadavg_start'][0]:.2f} → {parts['loadavg_end'][0]:.2f}",
        ]
    )
    for what, key, (aes, b64) in pieces:
        rows.append(
            [
                f"content layer, µs per event, {what}",
                "0",
                f"{us[key]['median']:.1f} (best {us[key]['best']:.1f}; AES-GCM "
                f"{us[aes]['best']:.1f}, base64 {us[b64]['best']:.1f})",
                "",
                f"{parts['loadavg_start'][0]:.2f} → {parts['loadavg_end'][0]:.2f}",
            ]
        )
    print()
    print(
        f"{rounds} rounds x {blocks} blocks x {turns} turns per variant and backend; "
        f"{events:,}-event stores, {audit_rounds} verify/export rounds; keyring "
        f"{stores['encrypted']['keyring_bytes']:,} bytes for {events // 100:,} sessions"
    )
    print(
        table(
            ["measure", "plain", "encrypted", "encrypted / plain", "load (1 min) before → after"],
            rows,
        )
    )
    print(
        "per-turn workers started at a 1-minute load of "
        f"{turn['worker_loadavg_1min'][0]:.2f}-{turn['worker_loadavg_1min'][1]:.2f}"
    )
    for variant in VARIANTS:
        stores[variant].pop("path")
        stores[variant].pop("keys")
    path = write_results(
        "encryption_quick" if args.quick else "encryption",
        {
            "quick": args.quick,
            "calibration": cal,
            "per_turn": turn,
            "size": stores,
            "audit": checks,
            "content_layer": parts,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
