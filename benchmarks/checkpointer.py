"""LangGraph checkpointers: eventmem's EventmemSaver beside langgraph-checkpoint-sqlite
and langgraph-checkpoint-postgres, in one run, in one process.

Contenders: EventmemSaver on a SQLite file against AsyncSqliteSaver (aiosqlite, a file),
and EventmemSaver on PostgreSQL against AsyncPostgresSaver (its ``setup()``, in a schema
of its own); each PostgreSQL contender gets a new schema, dropped at the end.

A ReAct-style thread: each step appends an AIMessage with a tool call and a ToolMessage
(100-200 words each, deterministic) to the ``messages`` channel. The thread is driven the
way a compiled graph drives its checkpointer, through the saver's own methods: the task's
writes (``aput_writes``) against the current checkpoint, then the next checkpoint
(``aput``) made like LangGraph's (``empty_checkpoint``, a uuid6 id, versions from the
saver's ``get_next_version``, ``versions_seen``, the messages list grown by 2 and a small
``branch:to:agent`` channel), with the new versions. A real compiled ``StateGraph``
(``MessagesState``) also runs a few steps on every contender, to check that they read back
the same messages; it does not build the long threads, because the peers store the whole
message list in every checkpoint (quadratic: ~25 GB each for 5,000 steps).

At each size (10, 100, 1,000, 5,000 steps; --quick: 10, 100, 300):
  * bytes on disk: SQLite, the file + its -wal after ``PRAGMA wal_checkpoint(TRUNCATE)``;
    PostgreSQL, ``pg_total_relation_size`` (tables, indexes, TOAST) of every table in
    the contender's schema;
  * one more step's ``aput_writes`` + ``aput`` + ``aget_tuple`` (latest): the contenders
    take turns in a shuffled order each round, median over rounds (each round extends the
    thread by one step).
The peers are built step by step up to 1,000 steps (--quick: 100); past that, their
thread jumps: one checkpoint holding the whole list of the size (what a resumed thread of
that size is), so their step time is measured on a list of the same length, and their
bytes are projected (not measured): their bytes before the thread + a x steps + b x the
serialized message lists they would have stored (computed message by message), a and b
fitted on the last two built sizes. The projection is checked against a measured size
(fitted on the two sizes before, it predicts the last built one).

Then, at the largest size, ``aget_tuple`` from a new saver in a new process (its first
read: no cache of the saver's; the OS page cache is warm), several times, and a check
that the latest checkpoint's messages read back equal (count and contents) everywhere.

    .venv/bin/python benchmarks/checkpointer.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import calibration, median, table, tempdir, write_results

POSTGRES_URL = os.environ.get(
    "EVENTMEM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
THREAD = "react-thread"
KINDS = ("eventmem-sqlite", "langgraph-sqlite", "eventmem-postgres", "langgraph-postgres")
PEER_OF = {"eventmem-sqlite": "langgraph-sqlite", "eventmem-postgres": "langgraph-postgres"}
LABEL = {
    "eventmem-sqlite": "EventmemSaver (SQLite)",
    "langgraph-sqlite": "AsyncSqliteSaver",
    "eventmem-postgres": "EventmemSaver (PostgreSQL)",
    "langgraph-postgres": "AsyncPostgresSaver",
}


# -- the thread's messages -----------------------------------------------------------------
class Messages:
    """The thread's messages, made on demand: step ``s`` (1-based) adds an AIMessage
    calling a tool and the ToolMessage answering it, 100-200 words each."""

    def __init__(self, seed: int = 16) -> None:
        from _common import TextGen

        self._gen = TextGen(seed=seed)
        self._rng = random.Random(seed)
        self.items: list[Any] = []

    def upto(self, step: int) -> list[Any]:
        """A new list of the messages after ``step`` steps (LangGraph's reducer makes a new
        list each step, holding the same message objects)."""
        from langchain_core.messages import AIMessage, ToolMessage

        while len(self.items) < 2 * step:
            n = len(self.items) // 2 + 1
            call = f"call_{n:06d}"
            self.items.append(
                AIMessage(
                    content=self._gen.words(self._rng.randint(100, 200)),
                    id=f"ai-{n:06d}",
                    tool_calls=[
                        {
                            "name": "search",
                            "args": {"query": self._gen.words(6), "limit": n % 7 + 3},
                            "id": call,
                            "type": "tool_call",
                        }
                    ],
                )
            )
            self.items.append(
                ToolMessage(
                    content=self._gen.words(self._rng.randint(100, 200)),
                    id=f"tool-{n:06d}",
                    tool_call_id=call,
                    name="search",
                )
            )
        return self.items[: 2 * step]


# -- the contenders ------------------------------------------------------------------------
class Contender:
    """One saver and its thread: the latest checkpoint's config, versions and step."""

    def __init__(self, kind: str, work: Path, stack: contextlib.AsyncExitStack) -> None:
        self.kind = kind
        self.work = work
        self.stack = stack
        self.saver: Any = None
        self.step = 0
        self.config: dict[str, Any] = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
        self.versions: dict[str, Any] = {}
        self.messages: list[Any] = []  # the channel's value, as the graph holds it
        self.schema = f"lgbench_{kind.split('-')[0]}_{uuid.uuid4().hex[:8]}"
        self.path = work / f"{kind}.db"

    @property
    def target(self) -> str:
        """Where a new process finds this contender's data."""
        if self.kind.endswith("sqlite"):
            return str(self.path)
        if self.kind == "eventmem-postgres":
            return f"{POSTGRES_URL}?schema={self.schema}"
        return f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"

    async def open(self) -> None:
        self.saver = await open_saver(self.kind, self.target, self.stack)

    async def advance(self, messages: Messages, step: int) -> None:
        """The writes of the task that made ``step``, then its checkpoint."""
        from langgraph.checkpoint.base import empty_checkpoint
        from langgraph.checkpoint.base.id import uuid6

        saver = self.saver
        if step == self.step + 1:  # the graph's list (as it read it, if it did) + 2
            values = [*self.messages, *messages.upto(step)[-2:]]
        else:  # a jump: the whole list of that size
            values = messages.upto(step)
        if "checkpoint_id" in self.config["configurable"]:
            await saver.aput_writes(
                self.config,
                [("messages", values[-2:]), ("branch:to:agent", None)],
                str(uuid.UUID(int=step, version=4)),
                "~__pregel_pull, agent",
            )
        seen = self.versions.get("branch:to:agent")
        new = {
            channel: saver.get_next_version(self.versions.get(channel), None)
            for channel in ("messages", "branch:to:agent")
        }
        if not self.versions:
            new["__start__"] = saver.get_next_version(None, None)
        self.versions = {**self.versions, **new}
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=step))
        checkpoint["ts"] = f"2026-01-01T00:00:00.{step:06d}+00:00"
        checkpoint["channel_values"] = {"messages": values, "branch:to:agent": None}
        checkpoint["channel_versions"] = dict(self.versions)
        checkpoint["versions_seen"] = {
            "__input__": {},
            "__start__": {"__start__": self.versions["__start__"]},
            "agent": {"branch:to:agent": seen} if seen else {},
        }
        checkpoint["updated_channels"] = ["branch:to:agent", "messages"]
        metadata = {"source": "loop", "step": step, "parents": {}}
        self.config = await saver.aput(self.config, checkpoint, metadata, new)
        self.step = step
        self.messages = values

    async def latest(self) -> Any:
        return await self.saver.aget_tuple(
            {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
        )

    async def resume(self) -> None:
        """Read the latest checkpoint, as a new run of the graph does, and go on from the
        messages read (so the next put holds those objects, as a graph's would)."""
        found = await self.latest()
        self.messages = found.checkpoint["channel_values"]["messages"]

    def disk_bytes(self) -> dict[str, int]:
        if self.kind.endswith("sqlite"):
            conn = sqlite3.connect(self.path)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                for _ in range(50):  # eventmem may be checkpointing on its own thread
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    if not busy:
                        break
                    time.sleep(0.1)
            finally:
                conn.close()
            if busy:
                raise RuntimeError(f"{self.kind}: the WAL checkpoint was blocked")
            sizes = {}
            for suffix in ("", "-wal"):
                file = Path(f"{self.path}{suffix}")
                sizes[file.name] = file.stat().st_size if file.exists() else 0
            return sizes
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tablename, pg_total_relation_size(format('%%I.%%I', schemaname,"
                " tablename)::regclass) FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                (self.schema,),
            ).fetchall()
        return {name: int(size) for name, size in rows}

    async def create_schema(self) -> None:
        if self.kind == "langgraph-postgres":
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')

    def drop(self) -> None:
        if self.kind.endswith("postgres"):
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


async def open_saver(kind: str, target: str, stack: contextlib.AsyncExitStack) -> Any:
    """A saver of ``kind`` on ``target``, closed with ``stack``."""
    if kind.startswith("eventmem"):
        import eventmem
        from eventmem.integrations.langgraph import EventmemSaver

        store = await stack.enter_async_context(eventmem.open(target))
        return EventmemSaver(store)
    if kind == "langgraph-sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(target))
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(target))
    await saver.setup()
    return saver


# -- measuring -------------------------------------------------------------------------------
async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def measure_steps(
    contenders: list[Contender], messages: Messages, rounds: int, seed: int
) -> dict[str, dict[str, list[float]]]:
    """``rounds`` timed steps per contender (after one untimed), in a shuffled order each
    round: write + put, and the read of the latest checkpoint, in seconds."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[float]]] = {
        c.kind: {"write_put": [], "get": [], "step": []} for c in contenders
    }
    for round_ in range(rounds + 1):
        order = list(contenders)
        rng.shuffle(order)
        for c in order:
            step = c.step + 1
            write = await timed(lambda c=c, step=step: c.advance(messages, step))
            read = await timed(c.resume)
            if round_:
                out[c.kind]["write_put"].append(write)
                out[c.kind]["get"].append(read)
                out[c.kind]["step"].append(write + read)
    return out


def serialized_sizes(messages: Messages, steps: int) -> list[int]:
    """The bytes of each message as LangGraph's serializer writes it (first 2*steps)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    return [len(serde.dumps_typed(m)[1]) for m in messages.upto(steps)]


def stored_list_bytes(sizes: list[int], steps: int) -> int:
    """What a saver storing the whole list in each of ``steps`` checkpoints stores of it:
    the sum over checkpoints of the serialized list (its items)."""
    total = prefix = 0
    for step in range(1, steps + 1):
        prefix += sizes[2 * step - 2] + sizes[2 * step - 1]
        total += prefix
    return total


async def fresh_read(kind: str, target: str) -> dict[str, Any]:
    """In this (new) process: open a saver, time its first ``aget_tuple`` (the modules
    are imported before the clock starts)."""
    import langgraph.checkpoint.postgres.aio
    import langgraph.checkpoint.sqlite.aio  # noqa: F401

    import eventmem.integrations.langgraph  # noqa: F401

    t0 = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        saver = await open_saver(kind, target, stack)
        t1 = time.perf_counter()
        found = await saver.aget_tuple({"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}})
        t2 = time.perf_counter()
    return {
        "open_s": t1 - t0,
        "first_get_s": t2 - t1,
        "messages": len(found.checkpoint["channel_values"]["messages"]),
    }


async def real_graph_check(contenders: list[Contender], steps: int) -> dict[str, Any]:
    """A compiled StateGraph(MessagesState) (an agent node answering with a tool call, a
    tool node) runs ``steps`` ReAct steps on each contender, in a thread of its own; the
    messages read back through the graph must be the same everywhere."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def agent(state):  # no hints: LangGraph would evaluate them (MessagesState is local)
        n = sum(isinstance(m, AIMessage) for m in state["messages"]) + 1
        if n > steps:
            return {"messages": [AIMessage(f"done after {steps} calls", id=f"ai-{n}")]}
        call = {"name": "search", "args": {"n": n}, "id": f"c{n}", "type": "tool_call"}
        return {"messages": [AIMessage(f"step {n}", id=f"ai-{n}", tool_calls=[call])]}

    def tools(state):
        last = state["messages"][-1]
        call = last.tool_calls[0]
        return {"messages": [ToolMessage(f"result {call['args']['n']}", tool_call_id=call["id"])]}

    def route(state):
        return "tools" if state["messages"][-1].tool_calls else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route)
    graph.add_edge("tools", "agent")
    seen = {}
    for c in contenders:
        app = graph.compile(checkpointer=c.saver)
        config = {"configurable": {"thread_id": "real-graph"}}
        await app.ainvoke({"messages": [HumanMessage("go", id="human-1")]}, config)
        state = await app.aget_state(config)
        seen[c.kind] = [(type(m).__name__, m.content) for m in state.values["messages"]]
    first = next(iter(seen.values()))
    return {
        "steps": steps,
        "messages": len(first),
        "same_everywhere": all(v == first for v in seen.values()),
    }


def peer_projection(
    measured: dict[int, dict[str, Any]], sizes: list[int], fit: list[int], size: int
) -> int:
    """A peer's bytes at ``size`` steps: ``base + a * steps + b * L(steps)``, with
    ``base`` its bytes before the thread (measured), ``L`` the serialized message lists it
    stores (``stored_list_bytes``), ``a`` (per checkpoint: its row, metadata, writes,
    index entries) and ``b`` (bytes on disk per serialized byte: page fill, compression)
    fitted on the two measured sizes ``fit``."""
    (n1, n2) = fit
    base = measured[0]["bytes"]
    y1, y2 = measured[n1]["bytes"] - base, measured[n2]["bytes"] - base
    l1, l2 = stored_list_bytes(sizes, n1), stored_list_bytes(sizes, n2)
    b = (y2 * n1 - y1 * n2) / (l2 * n1 - l1 * n2)
    a = (y1 - b * l1) / n1
    return round(base + a * size + b * stored_list_bytes(sizes, size))


# -- the run ---------------------------------------------------------------------------------
async def run(quick: bool) -> dict[str, Any]:
    sizes = [10, 100, 300] if quick else [10, 100, 1000, 5000]
    peer_max = 100 if quick else 1000
    rounds = 3 if quick else 7
    fresh_repeats = 2 if quick else 5
    work = tempdir("checkpointer")
    messages = Messages()
    results: dict[str, Any] = {"sizes": {}, "peer_built_up_to": peer_max, "rounds": rounds}
    async with contextlib.AsyncExitStack() as stack:
        contenders = [Contender(kind, work, stack) for kind in KINDS]
        stack.callback(lambda: [c.drop() for c in contenders])
        for c in contenders:
            await c.create_schema()
            await c.open()
        results["real_graph"] = await real_graph_check(contenders, 3)
        print(f"real graph, 3 ReAct steps on every saver: {results['real_graph']}", flush=True)
        history: dict[str, dict[int, dict[str, Any]]] = {
            c.kind: {0: {"bytes": sum(c.disk_bytes().values())}} for c in contenders
        }
        results["bytes_before_thread"] = {k: v[0]["bytes"] for k, v in history.items()}
        for size in sizes:
            entry: dict[str, Any] = {"contenders": {}}
            for c in contenders:
                peer = not c.kind.startswith("eventmem")
                jump = peer and size > peer_max
                t0 = time.perf_counter()
                if jump:
                    await c.advance(messages, size)
                else:
                    for step in range(c.step + 1, size + 1):
                        await c.advance(messages, step)
                built = time.perf_counter() - t0
                disk = c.disk_bytes()
                entry["contenders"][c.kind] = {
                    "build_s": built,
                    "built_step_by_step": not jump,
                    "disk": disk,
                    "bytes": sum(disk.values()),
                    "bytes_measured": not jump,
                }
                print(
                    f"  {size:>5} steps, {c.kind:<18} {'jumped' if jump else 'built'} in "
                    f"{built:6.1f} s, {sum(disk.values()) / 1e6:9.2f} MB on disk",
                    flush=True,
                )
            timings = await measure_steps(contenders, messages, rounds, seed=size)
            for c in contenders:
                figures = entry["contenders"][c.kind]
                figures["samples_s"] = timings[c.kind]
                for what in ("write_put", "get", "step"):
                    figures[f"{what}_ms"] = median(timings[c.kind][what]) * 1e3
                history[c.kind][size] = figures
            entry["loadavg_1min"] = os.getloadavg()[0]
            results["sizes"][size] = entry
        # projected peer bytes where the thread jumped
        built_sizes = [s for s in sizes if s <= peer_max]
        ser = serialized_sizes(messages, max(sizes))
        results["serialized_message_bytes"] = {"mean": sum(ser) / len(ser), "count": len(ser)}
        check = {}
        for c in contenders:
            if c.kind.startswith("eventmem"):
                continue
            for size in sizes:
                if size > peer_max:
                    figures = history[c.kind][size]
                    figures["bytes"] = peer_projection(history[c.kind], ser, built_sizes[-2:], size)
            if len(built_sizes) >= 3:
                predicted = peer_projection(
                    history[c.kind], ser, built_sizes[-3:-1], built_sizes[-1]
                )
                actual = history[c.kind][built_sizes[-1]]["bytes"]
                check[c.kind] = {
                    "predicted": predicted,
                    "measured": actual,
                    "error": predicted / actual - 1,
                }
        results["projection_check"] = check
        # correctness: every contender reads back the same messages as were written
        steps = {c.step for c in contenders}
        expected = messages.upto(max(steps))
        correct = {}
        for c in contenders:
            found = await c.latest()
            got = found.checkpoint["channel_values"]["messages"]
            correct[c.kind] = {
                "step": c.step,
                "messages": len(got),
                "equal": len(steps) == 1 and len(got) == len(expected) and got == expected,
            }
        results["correct"] = correct
        print(f"latest checkpoint read back: {correct}", flush=True)
        # the first read of a new saver in a new process
        fresh: dict[str, list[dict[str, Any]]] = {c.kind: [] for c in contenders}
        rng = random.Random(5)
        for _ in range(fresh_repeats):
            order = list(contenders)
            rng.shuffle(order)
            for c in order:
                out = subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
                    [sys.executable, __file__, "--fresh-read", c.kind, c.target],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                fresh[c.kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
        results["fresh_read"] = {
            kind: {
                "open_ms": median([r["open_s"] for r in runs]) * 1e3,
                "first_get_ms": median([r["first_get_s"] for r in runs]) * 1e3,
                "messages": runs[0]["messages"],
                "runs": runs,
            }
            for kind, runs in fresh.items()
        }
    return results


def report(results: dict[str, Any]) -> None:
    sizes = list(results["sizes"])
    rows = []
    for size in sizes:
        entry = results["sizes"][size]["contenders"]
        for ours, peer in PEER_OF.items():
            a, b = entry[ours], entry[peer]
            rows.append(
                [
                    size,
                    LABEL[ours] + " / " + LABEL[peer],
                    f"{a['bytes'] / 1e6:.2f}",
                    f"{b['bytes'] / 1e6:.2f}" + ("" if b["bytes_measured"] else " (projected)"),
                    f"{a['bytes'] / b['bytes']:.3f}",
                    a["step_ms"],
                    b["step_ms"],
                    f"{a['step_ms'] / b['step_ms']:.2f}",
                    f"{a['get_ms']:.2f} / {b['get_ms']:.2f}",
                ]
            )
    print()
    print(
        table(
            [
                "steps",
                "eventmem / peer",
                "eventmem MB",
                "peer MB",
                "bytes ratio",
                "eventmem step ms",
                "peer step ms",
                "step ratio",
                "of which get ms",
            ],
            rows,
        )
    )
    print()
    fresh = results["fresh_read"]
    print(
        table(
            ["saver", "messages", "open ms", "first aget_tuple ms"],
            [[LABEL[k], v["messages"], v["open_ms"], v["first_get_ms"]] for k, v in fresh.items()],
        )
    )
    print()
    print(
        f"projection check (the last built size from the two before): {results['projection_check']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10, 100, 300 steps")
    parser.add_argument("--fresh-read", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.fresh_read:
        print(json.dumps(asyncio.run(fresh_read(*args.fresh_read))))
        return
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}", flush=True)
    calib = calibration()
    results = asyncio.run(run(args.quick))
    load_end = os.getloadavg()
    report(results)
    print(f"\nload average at end: {load_end}")
    results["calibration"] = calib
    results["loadavg_start"] = list(load_start)
    results["loadavg_end"] = list(load_end)
    path = write_results("checkpointer", {"quick": args.quick, **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
