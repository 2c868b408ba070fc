"""Per-turn cost: save_context + load_memory_variables, eventmem vs LangChain.

One turn = save a (40-word input, 80-word output) exchange, then load the buffer as a
string. Contenders, all in one process and one run, in interleaved blocks:

* eventmem: ``store.token_buffer(...)`` on a durable file (WAL, synchronous=NORMAL),
  ``asave_context`` + ``aload_memory_variables`` (and the same with the view cache off);
* LangChain in-memory: ``ConversationTokenBufferMemory(llm=ChatOpenAI("gpt-4o"))``;
* LangChain persistent: ``SQLChatMessageHistory`` (SQLite file, WAL, synchronous=NORMAL)
  + ``trim_messages(max_tokens=limit, token_counter=ChatOpenAI, strategy="last")`` on
  every load (+ ``get_buffer_string``);
* floors: raw sqlite3 (one INSERT + COMMIT per turn, WAL, synchronous=NORMAL) and
  tiktoken encoding the turn's two texts.

Every memory is pre-filled until it prunes, so the timed turns are steady state.
Figures are medians over blocks; speedups are ratios of medians from the same run.

    .venv/bin/python benchmarks/per_turn.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from _common import (
    TextGen,
    calibration,
    median,
    offline_tiktoken,
    percentile,
    table,
    tempdir,
    verdict,
    write_results,
)

LIMITS = (2000, 12000)
PREFILL = 150  # turns before timing: >= 2x what a 12000-token buffer holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")  # LangChain deprecation notices
    cal = calibration()
    block = 40 if args.quick else 100
    repeats = 5 if args.quick else 15
    anyio.run(run, block, repeats, args.quick, cal, backend="asyncio")


class Contender:
    """A per-turn implementation: prefill, then blocks of timed turns."""

    def __init__(self, name: str, limit: int | None) -> None:
        self.name = name
        self.limit = limit
        self.turn_index = 0
        self.blocks: list[float] = []  # µs per turn
        self.save_us: list[float] = []
        self.load_us: list[float] = []
        self.block_save: list[float] = []  # median save µs of each block
        self.block_load: list[float] = []
        self.turn_us: list[float] = []  # every timed turn (save + load)
        self.last_load: Any = None
        self.block: int | None = None  # turns per timed block (None: the run's default)


async def run(block: int, repeats: int, quick: bool, cal: dict[str, float]) -> None:
    from langchain_classic.memory import ConversationTokenBufferMemory
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from langchain_core.messages import AIMessage, HumanMessage, get_buffer_string, trim_messages
    from langchain_openai import ChatOpenAI
    from sqlalchemy import create_engine, event

    import eventmem
    import eventmem.tokens

    warnings.filterwarnings("ignore")  # again: LangChain adds its own filters on import
    gen = TextGen(seed=42)
    pool = gen.turns(PREFILL + block * (repeats + 1) + 10)
    work = tempdir("per-turn")
    llm = ChatOpenAI(model="gpt-4o", api_key="x")
    encoding = eventmem.tokens.get_encoding("o200k_base")

    def texts(c: Contender) -> tuple[str, str]:
        pair = pool[c.turn_index % len(pool)]
        c.turn_index += 1
        return pair

    contenders: list[Contender] = []
    async_turns: dict[str, Callable[[Contender], Any]] = {}
    sync_turns: dict[str, Callable[[Contender], None]] = {}

    # -- eventmem -----------------------------------------------------------------------
    store = await eventmem.open(work / "eventmem.db")
    store_nocache = await eventmem.open(work / "eventmem-nocache.db", cache_sessions=0)
    eventmem_mems: dict[str, Any] = {}
    for limit in LIMITS:
        for label, st in (("eventmem", store), ("eventmem (cache off)", store_nocache)):
            c = Contender(label, limit)
            contenders.append(c)
            eventmem_mems[f"{label}@{limit}"] = st.token_buffer(
                f"bench-{limit}", max_token_limit=limit, model="gpt-4o"
            )

    async def eventmem_turn(c: Contender) -> None:
        mem = eventmem_mems[f"{c.name}@{c.limit}"]
        a, b = texts(c)
        t0 = time.perf_counter()
        await mem.asave_context({"input": a}, {"output": b})
        t1 = time.perf_counter()
        c.last_load = await mem.aload_memory_variables({})
        t2 = time.perf_counter()
        c.save_us.append((t1 - t0) * 1e6)
        c.load_us.append((t2 - t1) * 1e6)

    for c in contenders:
        async_turns[c.name] = eventmem_turn

    # -- LangChain in-memory --------------------------------------------------------------
    lc_mems: dict[int, Any] = {}
    for limit in LIMITS:
        contenders.append(Contender("LangChain in-memory", limit))
        lc_mems[limit] = ConversationTokenBufferMemory(llm=llm, max_token_limit=limit)

    def lc_turn(c: Contender) -> None:
        assert c.limit is not None
        mem = lc_mems[c.limit]
        a, b = texts(c)
        t0 = time.perf_counter()
        mem.save_context({"input": a}, {"output": b})
        t1 = time.perf_counter()
        c.last_load = mem.load_memory_variables({})
        t2 = time.perf_counter()
        c.save_us.append((t1 - t0) * 1e6)
        c.load_us.append((t2 - t1) * 1e6)

    sync_turns["LangChain in-memory"] = lc_turn

    # -- LangChain persistent: SQLChatMessageHistory + trim_messages ------------------------
    engine = create_engine(f"sqlite:///{work / 'langchain.db'}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    histories: dict[int, Any] = {}
    for limit in LIMITS:
        sql_c = Contender("LangChain SQL + trim_messages", limit)
        sql_c.block = max(4, block // 10)  # ~100x slower: fewer turns give the same precision
        contenders.append(sql_c)
        histories[limit] = SQLChatMessageHistory(session_id=f"bench-{limit}", connection=engine)

    def sql_turn(c: Contender) -> None:
        assert c.limit is not None
        history = histories[c.limit]
        a, b = texts(c)
        t0 = time.perf_counter()
        history.add_messages([HumanMessage(content=a), AIMessage(content=b)])
        t1 = time.perf_counter()
        trimmed = trim_messages(
            history.messages, max_tokens=c.limit, token_counter=llm, strategy="last"
        )
        c.last_load = {"history": get_buffer_string(trimmed)}
        t2 = time.perf_counter()
        c.save_us.append((t1 - t0) * 1e6)
        c.load_us.append((t2 - t1) * 1e6)

    sync_turns["LangChain SQL + trim_messages"] = sql_turn

    # -- floors -----------------------------------------------------------------------------
    raw = sqlite3.connect(work / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY, session TEXT NOT NULL, data TEXT NOT NULL)"
    )
    contenders.append(Contender("raw sqlite3 INSERT+COMMIT", None))

    def raw_turn(c: Contender) -> None:
        a, b = texts(c)
        t0 = time.perf_counter()
        raw.execute("BEGIN")
        raw.execute(
            "INSERT INTO turns (session, data) VALUES (?, ?)",
            ("bench", json.dumps({"input": a, "output": b})),
        )
        raw.execute("COMMIT")
        t1 = time.perf_counter()
        c.save_us.append((t1 - t0) * 1e6)
        c.load_us.append(0.0)

    sync_turns["raw sqlite3 INSERT+COMMIT"] = raw_turn

    contenders.append(Contender("tiktoken encode of the turn", None))

    def tiktoken_turn(c: Contender) -> None:
        a, b = texts(c)
        t0 = time.perf_counter()
        c.last_load = len(encoding.encode_ordinary(a)) + len(encoding.encode_ordinary(b))
        t1 = time.perf_counter()
        c.save_us.append((t1 - t0) * 1e6)
        c.load_us.append(0.0)

    sync_turns["tiktoken encode of the turn"] = tiktoken_turn

    async def run_block(c: Contender, n: int, record: bool) -> None:
        if c.block is not None:
            n = min(n, c.block)
        gc.collect()
        c.save_us.clear()
        c.load_us.clear()
        if c.name in async_turns:
            fn_a = async_turns[c.name]
            t0 = time.perf_counter()
            for _ in range(n):
                await fn_a(c)
            elapsed = time.perf_counter() - t0
        else:
            fn_s = sync_turns[c.name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn_s(c)
            elapsed = time.perf_counter() - t0
        if record:
            c.blocks.append(elapsed / n * 1e6)
            c.block_save.append(median(c.save_us))
            c.block_load.append(median(c.load_us))
            c.turn_us.extend(a + b for a, b in zip(c.save_us, c.load_us, strict=True))

    print(f"pre-filling {len(contenders)} contenders with {PREFILL} turns each ...", flush=True)
    for c in contenders:
        while c.turn_index < PREFILL:  # (blocks capped by c.block)
            await run_block(c, PREFILL - c.turn_index, record=False)
    for c in contenders:  # warm-up block
        await run_block(c, block // 2, record=False)

    # check the buffers really are full and pruning, and eventmem agrees with LangChain
    checks: dict[str, Any] = {}
    for limit in LIMITS:
        lc_buffer = lc_mems[limit].load_memory_variables({})["history"]
        em_buffer = (await eventmem_mems[f"eventmem@{limit}"].aload_memory_variables({}))["history"]
        lc_tokens = llm.get_num_tokens_from_messages(lc_mems[limit].chat_memory.messages)
        checks[str(limit)] = {
            "langchain_buffer_messages": len(lc_mems[limit].chat_memory.messages),
            "langchain_buffer_tokens": lc_tokens,
            "eventmem_buffer_chars": len(em_buffer),
            "langchain_buffer_chars": len(lc_buffer),
        }
        assert lc_tokens > limit * 0.9, f"LangChain buffer not full at {limit}: {lc_tokens}"
        # same turns in the same order: the drop-in must give the very same buffer
        assert em_buffer == lc_buffer, f"eventmem and LangChain buffers differ at {limit}"
        checks[str(limit)]["identical_buffers"] = True

    import random

    rng = random.Random(5)
    print(f"timing {repeats} rounds of {block}-turn blocks, interleaved ...", flush=True)
    for r in range(repeats):
        order = list(contenders)
        rng.shuffle(order)
        for c in order:
            await run_block(c, block, record=True)
        print(f"  round {r + 1}/{repeats} done", flush=True)

    history_len = {
        limit: len(histories[limit].messages) for limit in LIMITS
    }  # SQL route loads all of it
    await store.aclose()
    await store_nocache.aclose()
    raw.close()
    engine.dispose()

    def find(name: str, limit: int | None) -> Contender:
        return next(c for c in contenders if c.name == name and c.limit == limit)

    raw_c = find("raw sqlite3 INSERT+COMMIT", None)
    tik_c = find("tiktoken encode of the turn", None)
    floor = median(raw_c.blocks) + median(tik_c.blocks)
    rows = []
    results: dict[str, Any] = {"block_turns": block, "rounds": repeats, "prefill": PREFILL}
    per: dict[str, Any] = {}
    speedups: dict[str, Any] = {}
    for limit in LIMITS:
        em = median(find("eventmem", limit).blocks)
        lc = median(find("LangChain in-memory", limit).blocks)
        for c in contenders:
            if c.limit != limit:
                continue
            m = median(c.blocks)
            rows.append(
                [
                    limit,
                    c.name,
                    m,
                    percentile(c.turn_us, 50),
                    percentile(c.turn_us, 99),
                    median(c.block_save),
                    median(c.block_load),
                    f"{m / em:.2f}x",
                    f"{lc / m:.1f}x",
                ]
            )
            per[f"{c.name}@{limit}"] = {
                "us_per_turn_median": m,
                "us_per_turn_blocks": c.blocks,
                "save_us_median": median(c.block_save),
                "load_us_median": median(c.block_load),
                "turn_us_p50": percentile(c.turn_us, 50),
                "turn_us_p99": percentile(c.turn_us, 99),
            }
        # ratio of the per-round figures too (pairs measured close in time)
        pairs = [
            lc_b / em_b
            for lc_b, em_b in zip(
                find("LangChain in-memory", limit).blocks,
                find("eventmem", limit).blocks,
                strict=True,
            )
        ]
        sql = median(find("LangChain SQL + trim_messages", limit).blocks)
        speedups[str(limit)] = {
            "eventmem_vs_langchain_in_memory": lc / em,
            "eventmem_vs_langchain_in_memory_per_round_median": median(pairs),
            "eventmem_vs_langchain_sql_trim": sql / em,
            "eventmem_vs_langchain_in_memory_p50_turn": percentile(
                find("LangChain in-memory", limit).turn_us, 50
            )
            / percentile(find("eventmem", limit).turn_us, 50),
            "eventmem_over_floor": em / floor,
        }
    for c in (raw_c, tik_c):
        m = median(c.blocks)
        rows.append(
            [
                "-",
                c.name,
                m,
                percentile(c.turn_us, 50),
                percentile(c.turn_us, 99),
                median(c.block_save),
                "-",
                "-",
                "-",
            ]
        )
        per[c.name] = {"us_per_turn_median": m, "us_per_turn_blocks": c.blocks}

    print()
    print(
        table(
            [
                "limit",
                "contender",
                "µs/turn",
                "p50 turn",
                "p99 turn",
                "save p50",
                "load p50",
                "vs eventmem",
                "LC-mem/this",
            ],
            rows,
        )
    )
    print()
    targets = {"12000": 20.0, "2000": 5.0}
    summary_rows = []
    for limit in LIMITS:
        s = speedups[str(limit)]
        need = targets[str(limit)]
        s["target"] = need
        s["met"] = s["eventmem_vs_langchain_in_memory"] >= need
        summary_rows.append(
            [
                limit,
                f"{s['eventmem_vs_langchain_in_memory']:.1f}x",
                f"{s['eventmem_vs_langchain_in_memory_per_round_median']:.1f}x",
                f"{s['eventmem_vs_langchain_in_memory_p50_turn']:.1f}x",
                f">= {need:.0f}x",
                verdict(s["met"]),
                f"{s['eventmem_vs_langchain_sql_trim']:.1f}x",
                f"{s['eventmem_over_floor']:.1f}x",
            ]
        )
    print(
        table(
            [
                "limit",
                "eventmem speedup vs LC in-memory",
                "(per-round median)",
                "(p50 turn)",
                "target",
                "",
                "vs LC SQL+trim",
                "eventmem / floor",
            ],
            summary_rows,
        )
    )
    print(
        f"\nfloor = raw sqlite3 INSERT+COMMIT + tiktoken encode = {floor:.0f} µs/turn;"
        f" the SQL route loads the whole history each turn (it had "
        f"{history_len[12000]} messages at the end)"
    )
    results.update(
        {
            "contenders": per,
            "speedups": speedups,
            "floor_us": floor,
            "sql_history_messages_at_end": history_len,
            "buffer_checks": checks,
            "quick": quick,
            "calibration": cal,
        }
    )
    path = write_results("per_turn", results)
    print(f"results: {Path(path).relative_to(Path.cwd()) if Path.cwd() in path.parents else path}")


if __name__ == "__main__":
    main()
