"""Several processes writing overlapping sessions of one store at once.

The full run (marked slow): SQLite, 4 processes x 50 tasks on one database file, for 30
seconds; PostgreSQL, 8 processes x 50 tasks, each process on its own connection, for 20
seconds. EVENTMEM_STRESS_SECONDS sets the duration of both. The quick run, in the fast
loop, is 2 processes for 1 second on each backend. The tasks save to 20 shared
sessions; each worker records every save that returned and every error it saw.
Afterwards: no worker saw an error (no DatabaseLockedError), every returned save is in
its session exactly once, positions are gapless, verify() is clean and every projection
equals the fold of its events.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
import traceback
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import anyio

import eventmem
from eventmem.events import TurnSaved
from eventmem.projection import fold

# (backend, depth) -> processes; "quick" is the fast loop's short run, "full" is slow.
PROCESSES = {"sqlite": {"quick": 2, "full": 4}, "postgresql": {"quick": 2, "full": 8}}
TASKS_PER_PROCESS = 50
SHARED_SESSIONS = [f"shared-{n:02d}" for n in range(20)]
LIMIT = 200
QUICK_SECONDS = 1.0
FULL_SECONDS = {"sqlite": 30.0, "postgresql": 20.0}
_SECONDS = os.environ.get("EVENTMEM_STRESS_SECONDS")

_FILLER = "please keep this in mind for the rest of the conversation because it matters later on"


def _worker(index: int, path: str, result_path: str, seconds: float, barrier: Barrier) -> None:
    """Process entry point (spawned): run the tasks, then write what happened as JSON."""
    result: dict[str, Any] = {"saved": [], "errors": [], "loads": 0}
    try:
        anyio.run(_work, index, path, seconds, barrier, result, backend="asyncio")
    except BaseException as e:  # report it, whatever it is
        result["errors"].append(f"worker {index}: {e!r}\n{traceback.format_exc()}")
    finally:
        Path(result_path).write_text(json.dumps(result))


async def _work(
    index: int, path: str, seconds: float, barrier: Barrier, result: dict[str, Any]
) -> None:
    saved: list[list[str]] = result["saved"]
    errors: list[str] = result["errors"]
    async with eventmem.open(path) as store:
        # every process has opened (and, for the first, created) the store: start together
        await anyio.to_thread.run_sync(barrier.wait, 120.0)
        deadline = time.monotonic() + seconds

        async def task(t: int) -> None:
            rng = random.Random(index * 1000 + t)
            n = 0
            while time.monotonic() < deadline:
                session = rng.choice(SHARED_SESSIONS)
                mem = store.token_buffer(session, max_token_limit=LIMIT, return_messages=True)
                text = f"p{index} t{t} n{n}"
                n += 1
                try:
                    await mem.asave_context(
                        {"input": f"{text} {_FILLER}"}, {"output": f"noted {text}"}
                    )
                except Exception as e:
                    errors.append(f"save {session} {text}: {e!r}")
                    return  # its fate is unknown: stop this task, the test fails anyway
                saved.append([session, text])
                if n % 4 == 0:
                    try:
                        messages = (await mem.aload_memory_variables({}))["history"]
                    except Exception as e:
                        errors.append(f"load {session}: {e!r}")
                        return
                    result["loads"] += 1
                    tokens = eventmem.count_tokens(messages, "gpt-4o")
                    if tokens > LIMIT:
                        errors.append(f"load {session}: {tokens} tokens > limit {LIMIT}")

        async with anyio.create_task_group() as tg:
            for t in range(TASKS_PER_PROCESS):
                tg.start_soon(task, t)


async def _check_store(path: str, saved: Counter[tuple[str, str]]) -> None:
    async with eventmem.open(path) as store:
        report = await store.verify()
        assert report.ok, report.problems[:5]
        found: Counter[tuple[str, str]] = Counter()
        sessions = await store.sessions()
        assert set(sessions) <= set(SHARED_SESSIONS)
        for session in sessions:
            events = [e async for e in store.events(session)]
            assert [e.position for e in events] == list(range(1, len(events) + 1)), session
            for e in events:
                assert isinstance(e.data, TurnSaved)
                text = e.data.messages[0].text.removesuffix(f" {_FILLER}")
                found[(session, text)] += 1
            assert fold([e.data for e in events]).messages == await store.messages(session)
        duplicated = {k: v for k, v in found.items() if v > 1}
        assert not duplicated, f"saved more than once: {list(duplicated)[:5]}"
        lost = saved - found
        assert not lost, f"{sum(lost.values())} returned saves are missing: {list(lost)[:5]}"
        unknown = found - saved
        assert not unknown, f"events no worker saved: {list(unknown)[:5]}"
        assert await store.count_events() == sum(saved.values())


def _default_seconds(backend: str, depth: str) -> float:
    return QUICK_SECONDS if depth == "quick" else FULL_SECONDS[backend]


def test_processes_writing_shared_sessions_lose_and_duplicate_nothing(
    backend: str, depth: str, target: str, tmp_path: Path
) -> None:
    # ``target`` does not exist yet: whichever worker gets there first creates the store.
    processes = PROCESSES[backend][depth]
    seconds = float(_SECONDS) if _SECONDS and depth == "full" else _default_seconds(backend, depth)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = [tmp_path / f"worker-{i}.json" for i in range(processes)]
    workers = [
        ctx.Process(target=_worker, args=(i, target, str(results[i]), seconds, barrier))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 180)
        if worker.is_alive():
            worker.kill()
            worker.join()
    assert [w.exitcode for w in workers] == [0] * processes

    saved: Counter[tuple[str, str]] = Counter()
    errors: list[str] = []
    per_worker: list[int] = []
    for result_path in results:
        result = json.loads(result_path.read_text())
        errors.extend(result["errors"])
        per_worker.append(len(result["saved"]))
        saved.update((session, text) for session, text in result["saved"])
    assert not [e for e in errors if "locked" in e.lower()], errors[:5]
    assert not errors, errors[:5]
    assert all(n > 0 for n in per_worker), per_worker  # every process got to write
    assert max(saved.values()) == 1  # each text names its process, task and counter
    anyio.run(_check_store, target, saved, backend="asyncio")
    loads = sum(json.loads(p.read_text())["loads"] for p in results)
    print(
        f"{backend}: {processes} processes x {TASKS_PER_PROCESS} tasks, {seconds:g} s: "
        f"{sum(saved.values())} saves ({sum(saved.values()) / seconds:.0f}/s), {loads} loads"
    )
