"""Shared helpers for the eventmem benchmarks (not a benchmark itself).

* :func:`offline_tiktoken` lets tiktoken / langchain-openai load their encodings with no
  network (the bundled files, copied into a temporary cache named as tiktoken expects).
* :class:`TextGen` makes realistic, varied conversation text of a given word count.
* :func:`median`, :func:`percentile`, :func:`interleaved` time things as ratios within
  one run: blocks of each contender alternate, so drift on a shared machine hits all.
* :func:`machine`, :func:`table`, :func:`write_results` report.
* :func:`calibration` measures the machine against DESIGN.md's reference speeds at the
  start; :func:`verdict` says MET / MISSED only when :func:`machine_state` finds the
  machine calm, else "not judged (load X; why)"; :func:`report_load` prints the load at
  the end.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
_DOWNLOAD_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def offline_tiktoken() -> Path:
    """Point TIKTOKEN_CACHE_DIR at a temp dir holding the bundled encodings (no network)."""
    existing = os.environ.get("EVENTMEM_BENCH_TIKTOKEN_DIR")
    if existing and Path(existing).is_dir():
        os.environ["TIKTOKEN_CACHE_DIR"] = existing
        return Path(existing)
    import eventmem.tokens

    cache = Path(tempfile.mkdtemp(prefix="eventmem-bench-tiktoken-"))
    atexit.register(shutil.rmtree, cache, True)
    bundled = Path(eventmem.tokens.__file__).parent / "encodings"
    for name in ("cl100k_base", "o200k_base"):
        key = hashlib.sha1(_DOWNLOAD_URL.format(name).encode()).hexdigest()
        shutil.copyfile(bundled / f"{name}.tiktoken", cache / key)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return cache


def tempdir(prefix: str) -> Path:
    """A temporary directory removed at exit (on the same disk as /tmp)."""
    path = Path(tempfile.mkdtemp(prefix=f"eventmem-bench-{prefix}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


# -- realistic text --------------------------------------------------------------------

_WORDS = """
the a an and or but if then because while although so that which who what when where how
is are was were be been being have has had do does did can could should would will may
might must need want think know see look find give take make use try ask tell say show
work call help keep start run move change check fix build test deploy install configure
update write read send open close return handle retry wait cache store load save merge
user customer team manager engineer agent model prompt token buffer memory session event
database table query index column row file folder path server client request response
error warning exception timeout limit budget latency throughput cost price invoice order
account password email message thread channel meeting schedule calendar report summary
project deadline release version branch commit review issue ticket bug feature roadmap
week month year today tomorrow yesterday morning afternoon evening hour minute second
first last next previous other same different new old large small quick slow simple
important possible likely clear exact recent current main final total average maximum
really also just only still already even again almost probably usually quickly carefully
about above after against before behind below between during from into near over under
through with without within across along around toward upon per via like
customer's team's model's it's don't can't won't isn't we're they're you'll I'd
London Paris Tokyo Berlin Monday Friday January March September Python SQLite OpenAI
Kubernetes PostgreSQL GitHub Slack Jira AWS Azure Linux macOS Windows Docker Redis
""".split()  # noqa: SIM905 - a word list reads better as text

_FRAGMENTS = [
    "`retry_count`",
    "`max_tokens=2000`",
    "`SELECT * FROM orders`",
    "(see above)",
    "e.g.",
    "i.e.",
    "https://example.com/docs/setup",
    "v2.3.1",
    "#4821",
    "3.5%",
    "$1,299.00",
    "12:45",
    "2024-03-18",
    "~40ms",
    "O(n)",
    "->",
    "café",
    "naïve",
    "Zürich",
    "🙂",
]


class TextGen:
    """Deterministic, varied, English-like text (words, numbers, code, punctuation, UTF-8)."""

    def __init__(self, seed: int = 1234) -> None:
        self._rng = random.Random(seed)

    def words(self, n: int) -> str:
        rng = self._rng
        out: list[str] = []
        sentence: list[str] = []
        target = rng.randint(6, 22)
        while len(out) + len(sentence) < n:
            r = rng.random()
            if r < 0.05:
                word = rng.choice(_FRAGMENTS)
            elif r < 0.08:
                word = str(rng.randint(0, 99999))
            else:
                word = rng.choice(_WORDS)
            sentence.append(word)
            if len(sentence) >= target:
                sentence[0] = sentence[0][:1].upper() + sentence[0][1:]
                end = rng.choice([".", ".", ".", "?", "!", ":", ";"])
                if rng.random() < 0.3 and len(sentence) > 4:
                    sentence[len(sentence) // 2] += ","
                out.extend(sentence)
                out[-1] += end
                sentence = []
                target = rng.randint(6, 22)
        out.extend(sentence)
        text = " ".join(out[:n])
        if self._rng.random() < 0.2:  # some answers are lists
            parts = text.split(". ")
            text = ".\n- ".join(parts)
        return text

    def turns(self, count: int, words_in: int = 40, words_out: int = 80) -> list[tuple[str, str]]:
        """``count`` (input, output) pairs; default 120 words per turn (40 in, 80 out)."""
        return [(self.words(words_in), self.words(words_out)) for _ in range(count)]


# -- statistics ------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, ``p`` in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def interleaved(
    contenders: dict[str, Callable[[], float]], repeats: int, shuffle_seed: int = 7
) -> dict[str, list[float]]:
    """Run each contender's block once per round, in a shuffled order each round.

    A block returns its own measure (e.g. µs per turn). Returns every block's figure.
    """
    rng = random.Random(shuffle_seed)
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            results[name].append(contenders[name]())
    return results


def rss_kib() -> int:
    """Current resident set size (VmRSS) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def now() -> float:
    return time.perf_counter()


# -- reporting -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    import tiktoken

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "tiktoken": getattr(tiktoken, "__version__", "?"),
        "platform": platform.platform(),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "command": " ".join([".venv/bin/python", f"benchmarks/{name}.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "machine_state": report_load(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


# -- the machine's state and the verdicts ----------------------------------------------

# DESIGN.md's performance notes, measured on a quiet machine of this kind (2 cores):
REFERENCE_TIKTOKEN_US = 18.0  # tiktoken, a plain 120-word text
REFERENCE_SQLITE_US = 17.0  # raw sqlite3 INSERT+COMMIT, WAL, synchronous=NORMAL
# The machine counts as calm while both calibration figures are within this factor of
# the reference (the quiet runs of docs/benchmarks.md measured 16-31 µs and 12-19 µs) and
# the 1-minute load average, at the start and when the verdict is given, is at most the
# number of CPUs (the benchmark itself accounts for ~1 of it).
CALM_FACTOR = 1.75

_RUN: dict[str, Any] = {}


def machine_state() -> dict[str, Any]:
    """Is the machine calm enough to judge a target? From the run's calibration (taken at
    its start by :func:`calibration`) and the load averages at the start and now."""
    cal = _RUN.get("calibration")
    load_now = os.getloadavg()
    cpus = os.cpu_count() or 1
    reasons: list[str] = []
    if cal is None:
        reasons.append("no calibration")
        start_load = load_now[0]
    else:
        start_load = cal["loadavg_1min"]
        tik = cal["tiktoken_plain_120_words_us"] / REFERENCE_TIKTOKEN_US
        sql = cal["sqlite_insert_commit_us"] / REFERENCE_SQLITE_US
        if tik > CALM_FACTOR:
            reasons.append(f"tiktoken {tik:.1f}x the reference")
        if sql > CALM_FACTOR:
            reasons.append(f"sqlite3 {sql:.1f}x the reference")
    if start_load > cpus:
        reasons.append(f"load {start_load:.1f} at the start")
    if load_now[0] > cpus or reasons:
        reasons.insert(0, f"load {load_now[0]:.1f}")
    return {
        "calm": not reasons,
        "reasons": reasons,
        "loadavg_start": start_load,
        "loadavg_now": list(load_now),
        "cpus": cpus,
        "calm_factor": CALM_FACTOR,
    }


def verdict(ok: bool) -> str:
    """'MET' or 'MISSED' when the machine is calm (see :func:`machine_state`); on a busy
    machine no verdict: 'not judged (load X, why)', the figures still printed beside it."""
    state = machine_state()
    if state["calm"]:
        return "MET" if ok else "MISSED"
    return f"not judged ({', '.join(state['reasons'])})"


def report_load() -> dict[str, Any]:
    """Print and return the machine's state at the end of a run (load averages, calm?)."""
    state = machine_state()
    one, five, fifteen = state["loadavg_now"]
    print(
        f"load average at the end: {one:.2f} {five:.2f} {fifteen:.2f} "
        f"(start {state['loadavg_start']:.2f}, {state['cpus']} CPUs): "
        + (
            "calm, verdicts given"
            if state["calm"]
            else "busy, no verdict: " + "; ".join(state["reasons"])
        ),
        flush=True,
    )
    return state


# -- building stores -------------------------------------------------------------------


async def fill(
    store: Any,
    sessions: Sequence[str],
    turns_per_session: int,
    texts: Sequence[tuple[str, str]],
    *,
    max_token_limit: int = 2000,
    concurrency: int = 500,
    tasks_per_session: int = 1,
) -> int:
    """Save ``turns_per_session`` turns to each session through the public API.

    Sessions run concurrently (at most ``concurrency`` at once), so saves share commits.
    Returns the number of saves.
    """
    import anyio

    limiter = anyio.CapacityLimiter(concurrency)
    counter = {"n": 0}

    async def one(session: str, offset: int, count: int) -> None:
        async with limiter:
            mem = store.token_buffer(session, max_token_limit=max_token_limit)
            for i in range(count):
                a, b = texts[(offset + i) % len(texts)]
                await mem.asave_context({"input": a}, {"output": b})
                counter["n"] += 1

    async with anyio.create_task_group() as tg:
        for n, session in enumerate(sessions):
            share, extra = divmod(turns_per_session, tasks_per_session)
            for t in range(tasks_per_session):
                count = share + (1 if t < extra else 0)
                tg.start_soon(one, session, n * 7919 + t * 104729, count)
    return counter["n"]


async def concurrent_saves(
    store: Any,
    sessions: Sequence[str],
    tasks_per_session: int,
    saves_per_task: int,
    texts: Sequence[tuple[str, str]],
    *,
    max_token_limit: int = 2000,
) -> dict[str, Any]:
    """``tasks_per_session`` tasks per session, released together, each saving
    ``saves_per_task`` times: saves/s, latencies, CPU per save, and when it ran."""
    import gc

    import anyio

    latencies: list[float] = []
    start = anyio.Event()

    async def task(session: str, offset: int) -> None:
        mem = store.token_buffer(session, max_token_limit=max_token_limit)
        await start.wait()
        for i in range(saves_per_task):
            a, b = texts[(offset + i) % len(texts)]
            t0 = time.perf_counter()
            await mem.asave_context({"input": a}, {"output": b})
            latencies.append(time.perf_counter() - t0)

    gc.collect()
    async with anyio.create_task_group() as tg:
        n = 0
        for session in sessions:
            for _ in range(tasks_per_session):
                tg.start_soon(task, session, n * 31)
                n += 1
        await anyio.sleep(0.05)  # every task is waiting on the start line
        t0, started = time.perf_counter(), time.time()
        cpu0 = time.process_time()  # every thread's: the event loop's and the connection's
        start.set()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "started": started,
        "ended": started + wall,
        "saves": len(latencies),
        "wall_s": wall,
        "saves_per_s": len(latencies) / wall,
        "cpu_us_per_save": cpu / len(latencies) * 1e6,
        "loadavg_1min": os.getloadavg()[0],
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


def rechain(lines: Sequence[bytes], suffix: str) -> list[bytes]:
    """The export ``lines`` (header excluded) as the same events of sessions renamed
    ``{id}{suffix}``: payload bytes unchanged, hash chains recomputed with eventmem's own
    :func:`eventmem.events.chain_hash`, so :meth:`Store.import_events` verifies them."""
    import msgspec

    from eventmem.audit import ExportLine, export_line
    from eventmem.events import GENESIS_HASH, chain_hash

    decode = msgspec.json.Decoder(ExportLine).decode
    heads: dict[str, bytes] = {}
    out = []
    for line in lines:
        try:
            item = decode(line)
        except msgspec.ValidationError:  # not an event (the end line): same count, kept
            out.append(line)
            continue
        session = item.session_id + suffix
        data = bytes(item.data)
        digest = chain_hash(
            heads.get(session, GENESIS_HASH), session, item.position, item.recorded_at, data
        )
        heads[session] = digest
        out.append(export_line(session, item.position, item.recorded_at, item.kind, data, digest))
    return out


async def build_store(
    path: Path,
    events: int,
    *,
    sessions_per_base: int = 1000,
    turns_per_session: int = 100,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """A store of ``events`` real events: a base written through the public API
    (``sessions_per_base`` sessions x ``turns_per_session`` turns, concurrently), then
    replicated by export -> rename sessions + re-chain -> import until ``events``."""
    import eventmem

    base_events = sessions_per_base * turns_per_session
    if events < base_events:
        sessions_per_base = max(1, events // turns_per_session)
        base_events = sessions_per_base * turns_per_session
    texts = TextGen(seed=99).turns(2000)
    t0 = time.perf_counter()
    async with eventmem.open(path) as store:
        await fill(store, [f"s{n:05d}" for n in range(sessions_per_base)], turns_per_session, texts)
        t1 = time.perf_counter()
        log(f"  wrote {base_events:,} events through the API in {t1 - t0:.1f} s")
        copies = 0
        if events > base_events:
            header, *lines = [line async for line in store.export()]
            copy = 1
            while await store.count_events() + base_events <= events:
                await store.import_events([header, *rechain(lines, f"~{copy}")])
                copy += 1
            copies = copy - 1
            log(
                f"  replicated x{copies} by export/re-chain/import in "
                f"{time.perf_counter() - t1:.1f} s"
            )
        total = await store.count_events()
    return {
        "events": total,
        "api_events": base_events,
        "sessions": sessions_per_base * (copies + 1),
        "turns_per_session": turns_per_session,
        "build_seconds": time.perf_counter() - t0,
        "api_saves_per_second": base_events / (t1 - t0),
    }


def calibration() -> dict[str, Any]:
    """How fast (loaded) the machine is right now, in the units of DESIGN.md's
    performance notes: tiktoken encoding a plain 120-word turn (noted ~18 µs there) and a
    raw sqlite3 INSERT+COMMIT in WAL with synchronous=NORMAL (noted ~17 µs), plus the
    1-minute load average. Printed with every benchmark so absolute figures can be read."""
    import eventmem.tokens

    encoding = eventmem.tokens.get_encoding("o200k_base")
    sentence = (
        "The quick brown fox jumps over the lazy dog and then it runs away into the "
        "forest where nobody can find it again. "
    )
    text = " ".join((sentence * 6).split()[:120])
    for _ in range(200):
        encoding.encode_ordinary(text)
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(500):
            encoding.encode_ordinary(text)
        samples.append((time.perf_counter() - t0) / 500 * 1e6)
    work = tempdir("calibration")
    conn = sqlite3.connect(work / "c.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)")
    payload = text * 2
    inserts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(300):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (data) VALUES (?)", (payload,))
            conn.execute("COMMIT")
        inserts.append((time.perf_counter() - t0) / 300 * 1e6)
    conn.close()
    loads = os.getloadavg()
    result: dict[str, Any] = {
        "tiktoken_plain_120_words_us": median(samples),
        "sqlite_insert_commit_us": median(inserts),
        "loadavg_1min": loads[0],
        "loadavg": list(loads),
    }
    _RUN["calibration"] = result
    state = machine_state()
    verdicts = (
        "calm"
        if state["calm"]
        else "busy (" + "; ".join(state["reasons"]) + "): no verdict will be given"
    )
    print(
        f"calibration: tiktoken 120 plain words {result['tiktoken_plain_120_words_us']:.0f} µs"
        f" (DESIGN.md: ~{REFERENCE_TIKTOKEN_US:.0f}), sqlite3 INSERT+COMMIT"
        f" {result['sqlite_insert_commit_us']:.0f} µs (~{REFERENCE_SQLITE_US:.0f}), load"
        f" average {loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f} on {os.cpu_count()} CPUs:"
        f" {verdicts}",
        flush=True,
    )
    return result


BENCH_POSTGRES_URL = os.environ.get(
    "EVENTMEM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""The PostgreSQL server the benchmarks use (``EVENTMEM_BENCH_POSTGRES_URL``)."""


def parse_args(doc: str, quick_help: str) -> argparse.Namespace:
    """``--quick`` and ``--postgres-url`` (default: ``BENCH_POSTGRES_URL``)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--postgres-url", default=BENCH_POSTGRES_URL)
    return parser.parse_args()
