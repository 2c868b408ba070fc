"""Per-turn cost: save a turn, then get the buffer the model sees; eventmem vs its peers.

One turn = save a (40-word input, 80-word output) exchange, then load the token-bounded
buffer. Contenders, all in one process and one run, in shuffled interleaved blocks, at
limits 2000 and 12000, after a short (100 turns) and a long (20,000 turns) history:

* eventmem: ``store.token_buffer(...)`` on a durable file (WAL, synchronous=NORMAL),
  ``asave_context`` + ``aload_memory_variables`` (string mode);
* LangChain in-memory: ``ConversationTokenBufferMemory(llm=ChatOpenAI("gpt-4o"))`` (it
  keeps no history, so it has one figure per limit);
* LangChain SQL: ``SQLChatMessageHistory`` + ``trim_messages`` on every load (short
  history only: it reads the whole history every turn);
* LangGraph: a ``MessagesState`` graph with ``AsyncSqliteSaver``; its one node trims the
  state with ``trim_messages(max_tokens=limit, token_counter=ChatOpenAI)`` and removes
  the dropped messages (``RemoveMessage``); the buffer is what ``ainvoke`` returns;
* OpenAI Agents ``SQLiteSession`` (a file, its defaults: WAL, synchronous=FULL), and the
  same with ``PRAGMA synchronous=NORMAL``: ``add_items`` + ``get_items(limit=n + 2)``
  (n: the last buffer's length, the smallest window that holds the new buffer) trimmed
  oldest-first with ChatOpenAI's counting for gpt-4o (o200k_base, 3 per message, the
  role, +3);
* LlamaIndex ``Memory`` on an aiosqlite file, configured as close to a sliding window as
  it allows (``chat_history_token_ratio=1.0``, ``token_flush_size=1``, the same
  counting through ``tokenizer_fn``): ``aput_messages`` + ``aget``;
* the floor: tiktoken encoding the turn's two texts + one raw sqlite3 INSERT + COMMIT.

Before timing, each contender's buffer is checked against LangChain's
``ConversationTokenBufferMemory`` fed the same turns (as a buffer string, token for
token); a contender that differs is marked in every table. Figures are medians over
blocks; ratios are of medians from the same run.

    .venv/bin/python benchmarks/per_turn.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from _common import (
    TextGen,
    calibration,
    machine_state,
    median,
    offline_tiktoken,
    percentile,
    table,
    tempdir,
    verdict,
    write_results,
)

LIMITS = (2000, 12000)
HISTORIES = {"short": 100, "long": 20_000}
POOL = 2000  # distinct turns; turn i says POOL[i % 2000]
# targets (issue 20): eventmem per turn vs each peer, at every limit and history
TARGET_LC = {2000: 8.0, 12000: 30.0}
TARGET_PEER = 1.5
TARGET_TAIL = 3.0  # eventmem p99 <= 3x p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    args = parser.parse_args()
    offline_tiktoken()
    warnings.filterwarnings("ignore")  # LangChain deprecation notices
    cal = calibration()
    anyio.run(run, args.quick, cal, backend="asyncio")


class Contender:
    """A per-turn implementation: ``save`` and ``load`` one turn, ``buffer`` for the check."""

    name = "?"
    peer = True  # compared against eventmem (the targets)

    def __init__(self, limit: int | None, history: str) -> None:
        self.limit = limit
        self.history = history
        self.index = 0  # the next turn's index
        self.block = 0  # turns per timed block (set after the warm-up)
        self.blocks: list[float] = []  # µs per turn, one per block
        self.block_save: list[float] = []
        self.block_load: list[float] = []
        self.turn_us: list[float] = []
        self.save_us: list[float] = []
        self.load_us: list[float] = []
        self.check: dict[str, Any] = {}

    @property
    def key(self) -> str:
        return f"{self.name} | {self.limit or '-'} | {self.history}"

    async def save(self, a: str, b: str) -> None:
        raise NotImplementedError

    async def load(self) -> Any:
        raise NotImplementedError

    async def buffer(self) -> str | None:
        """The buffer as LangChain's ``get_buffer_string`` would print it (None: no buffer)."""
        return None

    async def prefill(self, turns: int, text: Callable[[int], tuple[str, str]]) -> None:
        """Bring the history to ``turns`` turns (default: real turns, one by one)."""
        while self.index < turns:
            a, b = text(self.index)
            self.index += 1
            await self.save(a, b)
            await self.load()

    async def close(self) -> None:
        return None


def lc_string(pairs: Sequence[tuple[str, str]]) -> str:
    """get_buffer_string's format for (role, content) pairs."""
    prefix = {"user": "Human", "assistant": "AI"}
    return "\n".join(f"{prefix[role]}: {content}" for role, content in pairs)


def tail_turns(limit: int) -> int:
    """Real turns at the end of a bulk prefill: more than the buffer holds (~157/turn)."""
    return limit // 150 + 25


BULK_FROM = 1000  # histories longer than this are prefilled in bulk (then real turns)


async def run(quick: bool, cal: dict[str, float]) -> None:
    import aiosqlite
    import tiktoken
    from agents import SQLiteSession
    from langchain_classic.memory import ConversationTokenBufferMemory
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        HumanMessage,
        RemoveMessage,
        get_buffer_string,
        trim_messages,
    )
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import START, MessagesState, StateGraph
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.memory import Memory
    from llama_index.core.storage.chat_store.base_db import MessageStatus
    from sqlalchemy import create_engine, event

    import eventmem
    import eventmem.tokens

    warnings.filterwarnings("ignore")  # again: LangChain adds its own filters on import
    pool = TextGen(seed=42).turns(POOL)
    work = tempdir("per-turn")
    llm = ChatOpenAI(model="gpt-4o", api_key="x")
    encoding = tiktoken.encoding_for_model("gpt-4o")  # what ChatOpenAI counts with
    em_encoding = eventmem.tokens.get_encoding("o200k_base")
    block_seconds = 0.15 if quick else 0.3
    max_block = 40 if quick else 100
    repeats = 4 if quick else 8
    histories = {"short": 100, "long": 2000} if quick else HISTORIES

    def text(i: int) -> tuple[str, str]:
        return pool[i % POOL]

    def role_tokens(role: str) -> int:
        return len(encoding.encode(role))

    per_message = {r: 3 + role_tokens(r) for r in ("user", "assistant")}

    def trim_pairs(pairs: list[tuple[str, str]], limit: int) -> int:
        """How many of the newest (role, content) pairs fit: ChatOpenAI's counting."""
        total, kept = 3, 0
        for role, content in reversed(pairs):
            total += per_message[role] + len(encoding.encode(content))
            if total > limit:
                break
            kept += 1
        return kept

    # -- eventmem -----------------------------------------------------------------------
    stores = {h: await eventmem.open(work / f"eventmem-{h}.db") for h in histories}

    class Eventmem(Contender):
        name = "eventmem"
        peer = False

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            self.store = stores[history]
            self.mem = self.store.token_buffer(
                f"bench-{limit}", max_token_limit=limit, model="gpt-4o"
            )

        async def save(self, a: str, b: str) -> None:
            await self.mem.asave_context({"input": a}, {"output": b})

        async def load(self) -> Any:
            return await self.mem.aload_memory_variables({})

        async def buffer(self) -> str:
            return str((await self.load())["history"])

        async def prefill(self, turns: int, text: Callable[[int], tuple[str, str]]) -> None:
            assert self.limit is not None
            bulk = turns - tail_turns(self.limit) if turns > BULK_FROM else 0
            if bulk > self.index:  # 50 tasks on the session at once (saves share commits)
                lock_free = iter(range(self.index, bulk))

                async def worker() -> None:
                    for i in lock_free:
                        a, b = text(i)
                        await self.save(a, b)

                async with anyio.create_task_group() as tg:
                    for _ in range(50):
                        tg.start_soon(worker)
                self.index = bulk
            await super().prefill(turns, text)

    # -- LangChain in-memory ----------------------------------------------------------------
    class LangChainMemory(Contender):
        name = "LangChain in-memory"

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            self.mem = ConversationTokenBufferMemory(llm=llm, max_token_limit=limit)

        async def save(self, a: str, b: str) -> None:
            self.mem.save_context({"input": a}, {"output": b})

        async def load(self) -> Any:
            return self.mem.load_memory_variables({})

        async def buffer(self) -> str:
            return str(self.mem.load_memory_variables({})["history"])

    # -- LangChain SQL + trim_messages ------------------------------------------------------
    engine = create_engine(f"sqlite:///{work / 'langchain.db'}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    class LangChainSQL(Contender):
        name = "LangChain SQL + trim_messages"

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            self.history_ = SQLChatMessageHistory(session_id=f"bench-{limit}", connection=engine)
            self.last: list[BaseMessage] = []

        async def save(self, a: str, b: str) -> None:
            self.history_.add_messages([HumanMessage(content=a), AIMessage(content=b)])

        async def load(self) -> Any:
            self.last = trim_messages(
                self.history_.messages, max_tokens=self.limit, token_counter=llm, strategy="last"
            )
            return self.last

        async def buffer(self) -> str:
            return get_buffer_string(await self.load())

    # -- LangGraph: MessagesState + AsyncSqliteSaver, trimmed in the graph --------------------
    class LangGraph(Contender):
        name = "LangGraph AsyncSqliteSaver + trim"

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            self.path = work / f"langgraph-{history}-{limit}.db"
            self.config: Any = {"configurable": {"thread_id": f"bench-{limit}"}}
            self.out: dict[str, Any] = {}

        async def open(self) -> None:
            limit = self.limit

            def trim(state: MessagesState) -> dict[str, Any]:
                messages = state["messages"]
                kept = trim_messages(messages, max_tokens=limit, token_counter=llm, strategy="last")
                dropped = messages[: len(messages) - len(kept)]
                return {"messages": [RemoveMessage(id=m.id) for m in dropped if m.id]}

            builder = StateGraph(MessagesState)
            builder.add_node("trim", trim)
            builder.add_edge(START, "trim")
            self.conn = await aiosqlite.connect(self.path)
            saver = AsyncSqliteSaver(self.conn)
            await saver.setup()
            self.graph = builder.compile(checkpointer=saver)

        async def save(self, a: str, b: str) -> None:
            self.out = await self.graph.ainvoke(
                {"messages": [HumanMessage(content=a), AIMessage(content=b)]}, self.config
            )

        async def load(self) -> Any:
            return self.out["messages"]  # the graph's (trimmed) state: no further I/O

        async def buffer(self) -> str:
            state = await self.graph.aget_state(self.config)
            return get_buffer_string(state.values["messages"])

        async def prefill(self, turns: int, text: Callable[[int], tuple[str, str]]) -> None:
            assert self.limit is not None
            tail = tail_turns(self.limit) if turns > BULK_FROM else turns
            await super().prefill(min(turns, tail), text)
            if turns > tail:  # the older turns' checkpoints: copies of the newest one
                await self.conn.commit()
                per_turn, rows = await self.replicate(turns - tail)
                self.check["replicated_checkpoints"] = rows
                self.check["checkpoints_per_turn"] = per_turn
                self.index = turns - tail
                await super().prefill(turns, text)

        async def replicate(self, older_turns: int) -> tuple[float, int]:
            raw = sqlite3.connect(self.path, isolation_level=None)
            (count,) = raw.execute("SELECT count(*) FROM checkpoints").fetchone()
            per_turn = count / self.index
            rows = int(per_turn * older_turns)
            (newest,) = raw.execute("SELECT max(checkpoint_id) FROM checkpoints").fetchone()
            raw.execute("BEGIN")
            # ids '0000000001'... sort before every real (uuid6, '1f...') checkpoint id
            raw.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
                "INSERT INTO checkpoints SELECT c.thread_id, c.checkpoint_ns, "
                "printf('%010d', n.x), printf('%010d', n.x - 1), c.type, c.checkpoint, "
                "c.metadata FROM checkpoints c, n WHERE c.checkpoint_id = ?",
                (rows, newest),
            )
            raw.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
                "INSERT INTO writes SELECT w.thread_id, w.checkpoint_ns, printf('%010d', n.x), "
                "w.task_id, w.task_path, w.idx, w.channel, w.type, w.value "
                "FROM writes w, n WHERE w.checkpoint_id = ?",
                (rows, newest),
            )
            raw.execute("COMMIT")
            raw.close()
            return per_turn, rows

        async def close(self) -> None:
            await self.conn.close()

    # -- OpenAI Agents SQLiteSession ----------------------------------------------------------
    class NormalSQLiteSession(SQLiteSession):
        """SQLiteSession whose connections also run PRAGMA synchronous=NORMAL."""

        @staticmethod
        def _configure_connection(conn: sqlite3.Connection) -> None:
            SQLiteSession._configure_connection(conn)
            conn.execute("PRAGMA synchronous=NORMAL")

    class OpenAIAgents(Contender):
        name = "OpenAI Agents SQLiteSession + trim"
        session_class: Any = SQLiteSession

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            slug = "normal" if self.session_class is NormalSQLiteSession else "default"
            self.session = self.session_class(
                f"bench-{limit}", work / f"openai-{slug}-{history}-{limit}.db"
            )
            self.kept: int | None = None  # the last buffer's length
            self.last: list[Any] = []

        async def save(self, a: str, b: str) -> None:
            await self.session.add_items(
                [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
            )

        async def load(self) -> Any:
            assert self.limit is not None
            window = 4000 if self.kept is None else self.kept + 2
            items = await self.session.get_items(limit=window)
            kept = trim_pairs([(i["role"], i["content"]) for i in items], self.limit)
            # enough: the last buffer was the longest suffix that fit, so the new one is at
            # most it + the 2 new items (4000 items hold > 12000 tokens at 4+ per item)
            self.kept = kept
            self.last = items[len(items) - kept :]
            return self.last

        async def buffer(self) -> str:
            await self.load()
            return lc_string([(i["role"], i["content"]) for i in self.last])

        async def prefill(self, turns: int, text: Callable[[int], tuple[str, str]]) -> None:
            assert self.limit is not None
            bulk = turns - tail_turns(self.limit) if turns > BULK_FROM else 0
            if bulk > self.index:  # one add_items call (one executemany, one commit)
                items: list[Any] = []
                for i in range(self.index, bulk):
                    a, b = text(i)
                    items += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
                await self.session.add_items(items)
                self.index = bulk
            await super().prefill(turns, text)

        async def close(self) -> None:
            self.session.close()

    class OpenAIAgentsNormal(OpenAIAgents):
        name = "OpenAI Agents SQLiteSession (sync=NORMAL) + trim"
        session_class = NormalSQLiteSession

    # -- LlamaIndex Memory --------------------------------------------------------------------
    def li_tokenizer(text: str) -> list[int]:
        # LlamaIndex counts each message's text; ChatOpenAI adds 3 + the role (1 token for
        # both roles in o200k_base: checked below), and 3 for the whole list (limit - 3)
        return [*encoding.encode(text), 0, 0, 0, 0]

    assert per_message == {"user": 4, "assistant": 4}, per_message

    class LlamaIndex(Contender):
        name = "LlamaIndex Memory"

        def __init__(self, limit: int, history: str) -> None:
            super().__init__(limit, history)
            li_path = work / f"llamaindex-{history}-{limit}.db"
            self.mem = Memory.from_defaults(
                session_id=f"bench-{limit}",
                token_limit=limit - 3,
                chat_history_token_ratio=1.0,
                token_flush_size=1,
                tokenizer_fn=li_tokenizer,
                async_database_uri=f"sqlite+aiosqlite:///{li_path}",
            )
            self.last: list[Any] = []

        async def save(self, a: str, b: str) -> None:
            await self.mem.aput_messages(
                [
                    ChatMessage(role=MessageRole.USER, content=a),
                    ChatMessage(role=MessageRole.ASSISTANT, content=b),
                ]
            )

        async def load(self) -> Any:
            self.last = await self.mem.aget()
            return self.last

        async def buffer(self) -> str:
            await self.load()
            return lc_string([(str(m.role.value), str(m.content)) for m in self.last])

        async def prefill(self, turns: int, text: Callable[[int], tuple[str, str]]) -> None:
            assert self.limit is not None
            bulk = turns - tail_turns(self.limit) if turns > BULK_FROM else 0
            if bulk > self.index:  # the older turns as archived messages, one batch
                messages = []
                for i in range(self.index, bulk):
                    a, b = text(i)
                    messages += [
                        ChatMessage(role=MessageRole.USER, content=a),
                        ChatMessage(role=MessageRole.ASSISTANT, content=b),
                    ]
                await self.mem.sql_store.add_messages(
                    self.mem.session_id, messages, status=MessageStatus.ARCHIVED
                )
                self.index = bulk
            await super().prefill(turns, text)

    # -- the floor ------------------------------------------------------------------------------
    raw = sqlite3.connect(work / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY, session TEXT NOT NULL, data TEXT NOT NULL)"
    )

    class RawInsert(Contender):
        name = "floor: raw sqlite3 INSERT+COMMIT"
        peer = False

        async def save(self, a: str, b: str) -> None:
            raw.execute("BEGIN")
            raw.execute(
                "INSERT INTO turns (session, data) VALUES (?, ?)",
                ("bench", json.dumps({"input": a, "output": b})),
            )
            raw.execute("COMMIT")

        async def load(self) -> Any:
            return None

    class Tiktoken(Contender):
        name = "floor: tiktoken encode of the turn"
        peer = False

        def __init__(self, limit: int | None, history: str) -> None:
            super().__init__(limit, history)
            self.n = 0

        async def save(self, a: str, b: str) -> None:
            self.n = len(em_encoding.encode_ordinary(a)) + len(em_encoding.encode_ordinary(b))

        async def load(self) -> Any:
            return None

    contenders: list[Contender] = []
    for limit in LIMITS:
        contenders.append(LangChainMemory(limit, "any"))
        contenders.append(LangChainSQL(limit, "short"))
        for history in histories:
            contenders.append(Eventmem(limit, history))
            lg = LangGraph(limit, history)
            await lg.open()
            contenders.append(lg)
            contenders.append(OpenAIAgents(limit, history))
            contenders.append(OpenAIAgentsNormal(limit, history))
            contenders.append(LlamaIndex(limit, history))
    contenders.append(RawInsert(None, "-"))
    contenders.append(Tiktoken(None, "-"))

    async def run_block(c: Contender, n: int, record: bool) -> None:
        gc.collect()
        c.save_us.clear()
        c.load_us.clear()
        perf = time.perf_counter
        t_start = perf()
        for _ in range(n):
            a, b = text(c.index)
            c.index += 1
            t0 = perf()
            await c.save(a, b)
            t1 = perf()
            await c.load()
            t2 = perf()
            c.save_us.append((t1 - t0) * 1e6)
            c.load_us.append((t2 - t1) * 1e6)
        elapsed = perf() - t_start
        if record:
            c.blocks.append(elapsed / n * 1e6)
            c.block_save.append(median(c.save_us))
            c.block_load.append(median(c.load_us))
            c.turn_us.extend(s + lo for s, lo in zip(c.save_us, c.load_us, strict=True))

    print(f"pre-filling {len(contenders)} contenders ({histories}) ...", flush=True)
    for c in contenders:
        t0 = time.perf_counter()
        turns = histories.get(c.history, histories["short"])
        await c.prefill(turns, text)
        c.check["prefill_turns"] = c.index
        c.check["prefill_seconds"] = time.perf_counter() - t0
        print(f"  {c.key}: {c.index:,} turns in {c.check['prefill_seconds']:.1f} s", flush=True)

    # warm-up, and each block sized to ~block_seconds of this contender's turns
    for c in contenders:
        await run_block(c, 5, record=False)
        per_turn = median(c.save_us) + median(c.load_us)
        c.block = max(3, min(max_block, round(block_seconds / (per_turn / 1e6))))

    # every contender's buffer against LangChain's ConversationTokenBufferMemory, same turns
    references: dict[tuple[int, int], str] = {}

    def reference(limit: int, end: int) -> str:
        if (limit, end) not in references:
            mem = ConversationTokenBufferMemory(llm=llm, max_token_limit=limit)
            start = max(0, end - 2 * tail_turns(limit))
            for i in range(start, end):
                a, b = text(i)
                mem.save_context({"input": a}, {"output": b})
            held = len(mem.chat_memory.messages)
            assert start == 0 or held < 2 * (end - start), "reference buffer not pruned"
            tokens = llm.get_num_tokens_from_messages(mem.chat_memory.messages)
            assert tokens > limit * 0.9, f"reference buffer not full at {limit}: {tokens}"
            references[(limit, end)] = str(mem.load_memory_variables({})["history"])
        return references[(limit, end)]

    print("checking every buffer against ConversationTokenBufferMemory ...", flush=True)
    for c in contenders:
        if c.limit is None:
            continue
        got = await c.buffer()
        want = reference(c.limit, c.index)
        c.check["buffer_equal"] = got == want
        c.check["reference_messages"] = want.count("\nHuman: ") + want.count("\nAI: ") + 1
        if got is not None and got != want:
            # how it differs: a suffix of the reference (drops more), or not even that
            c.check["suffix_of_reference"] = want.endswith(got)
            c.check["reference_chars"] = len(want)
            c.check["buffer_chars"] = len(got)
            c.check["buffer_starts_with"] = got[:6]
            c.check["reference_starts_with"] = want[:6]
        state = "equal" if c.check["buffer_equal"] else f"DIFFERS {c.check}"
        print(f"  {c.key}: {state}", flush=True)

    rng = random.Random(5)
    print(
        f"timing {repeats} rounds of interleaved blocks (~{block_seconds} s each) ...", flush=True
    )
    for r in range(repeats):
        order = list(contenders)
        rng.shuffle(order)
        t0 = time.perf_counter()
        for c in order:
            await run_block(c, c.block, record=True)
        print(f"  round {r + 1}/{repeats}: {time.perf_counter() - t0:.1f} s", flush=True)

    for c in contenders:
        await c.close()
    for st in stores.values():
        await st.aclose()
    raw.close()
    engine.dispose()
    report(contenders, histories, quick, cal)


def report(
    contenders: list[Contender], histories: dict[str, int], quick: bool, cal: dict[str, float]
) -> None:
    def find(name: str, limit: int | None, history: str) -> Contender | None:
        for c in contenders:
            if c.name == name and c.limit == limit and c.history in (history, "any"):
                return c
        return None

    raw_c = find("floor: raw sqlite3 INSERT+COMMIT", None, "-")
    tik_c = find("floor: tiktoken encode of the turn", None, "-")
    assert raw_c
    assert tik_c
    floor = median(raw_c.blocks) + median(tik_c.blocks)

    rows = []
    per: dict[str, Any] = {}
    for c in contenders:
        m = median(c.blocks)
        p50, p99 = percentile(c.turn_us, 50), percentile(c.turn_us, 99)
        em = find("eventmem", c.limit, c.history) if c.limit else None
        if c.history == "any" and c.limit:  # LangChain in-memory: vs both eventmem figures
            ems = [find("eventmem", c.limit, h) for h in histories]
            vs_em = " / ".join(f"{m / median(e.blocks):.1f}x" for e in ems if e)
        else:
            vs_em = f"{m / median(em.blocks):.2f}x" if em else "-"
        buffer = "-" if c.limit is None else ("equal" if c.check["buffer_equal"] else "DIFFERS")
        rows.append(
            [
                c.limit or "-",
                c.history,
                c.name,
                m,
                p50,
                p99,
                f"{p99 / p50:.1f}",
                median(c.block_save),
                median(c.block_load),
                vs_em,
                f"{m / floor:.1f}x",
                buffer,
                c.block,
            ]
        )
        per[c.key] = {
            "name": c.name,
            "limit": c.limit,
            "history": c.history,
            "us_per_turn_median": m,
            "us_per_turn_blocks": c.blocks,
            "turn_us_p50": p50,
            "turn_us_p99": p99,
            "save_us_median": median(c.block_save),
            "load_us_median": median(c.block_load),
            "block_turns": c.block,
            "over_floor": m / floor,
            "check": c.check,
        }
    print()
    print(
        table(
            [
                "limit",
                "history",
                "contender",
                "µs/turn",
                "p50 turn",
                "p99 turn",
                "p99/p50",
                "save p50",
                "load p50",
                "vs eventmem",
                "vs floor",
                "buffer",
                "block",
            ],
            rows,
        )
    )
    print(
        f"\nfloor = tiktoken encode of the turn + raw sqlite3 INSERT+COMMIT = {floor:.0f} µs/turn"
        f"; history: {', '.join(f'{h} = {n:,} turns before timing' for h, n in histories.items())}"
    )

    # the targets
    targets = []
    for limit in LIMITS:
        for history in histories:
            em = find("eventmem", limit, history)
            assert em
            em_m = median(em.blocks)
            for c in contenders:
                if not c.peer or c.limit != limit or c.history not in (history, "any"):
                    continue
                need = TARGET_LC[limit] if c.name == "LangChain in-memory" else TARGET_PEER
                ratio = median(c.blocks) / em_m
                pairs = [x / y for x, y in zip(c.blocks, em.blocks, strict=False)]
                note = "" if c.check["buffer_equal"] else " (buffer differs)"
                targets.append(
                    {
                        "limit": limit,
                        "history": history,
                        "peer": c.name + note,
                        "ratio": ratio,
                        "per_round_median": median(pairs),
                        "target": need,
                        "met": ratio >= need,
                        "verdict": verdict(ratio >= need),
                    }
                )
            p50, p99 = percentile(em.turn_us, 50), percentile(em.turn_us, 99)
            targets.append(
                {
                    "limit": limit,
                    "history": history,
                    "peer": "eventmem p99 / p50 (<= 3x)",
                    "ratio": p99 / p50,
                    "per_round_median": float("nan"),
                    "target": TARGET_TAIL,
                    "met": p99 / p50 <= TARGET_TAIL,
                    "verdict": verdict(p99 / p50 <= TARGET_TAIL),
                }
            )
    print()
    print(
        table(
            ["limit", "history", "eventmem vs", "speedup", "per-round", "target", "verdict"],
            [
                [
                    t["limit"],
                    t["history"],
                    t["peer"],
                    f"{t['ratio']:.2f}x",
                    "-"
                    if t["per_round_median"] != t["per_round_median"]
                    else f"{t['per_round_median']:.2f}x",
                    ("<= " if "p99" in t["peer"] else ">= ") + f"{t['target']:g}x",
                    t["verdict"],
                ]
                for t in targets
            ],
        )
    )
    state = machine_state()
    results = {
        "quick": quick,
        "histories": histories,
        "rounds": len(contenders[0].blocks),
        "floor_us": floor,
        "contenders": per,
        "targets": targets,
        "calibration": cal,
        "machine_state_before_verdicts": state,
    }
    path = write_results("per_turn_quick" if quick else "per_turn", results)
    print(f"results: {Path(path).relative_to(Path.cwd()) if Path.cwd() in path.parents else path}")


if __name__ == "__main__":
    main()
