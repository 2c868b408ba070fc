"""Kill a writer process with SIGKILL at random moments and check what survived.

After each kill: every save the writer saw return is in the log, no turn is torn (a
turn names exactly the step events recorded for it), ``verify()`` passes, and every
projection equals the fold of its events.

The store is a SQLite file or a PostgreSQL URL (the writer is killed, not the server:
what its connection had not committed must vanish, what it had must stay):

    python -m tests.crash.harness --rounds 200 [--db PATH_OR_URL | --backend postgresql]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

import eventmem
from eventmem.events import StepRecorded, TurnSaved
from eventmem.projection import fold
from tests.backends import BACKENDS, drop_target, new_target


def run_round(db: str | Path, seed: int, rng: random.Random) -> list[str]:
    """Start a writer on the store ``db`` (a file or a URL), kill it once it has
    acknowledged a random number of writes (1 to 4) and a random delay later; return the
    acknowledged lines. Counting writes, not only time, keeps every round's kill among
    writes however slow a loaded machine makes them."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.worker", str(db), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert worker.stdout is not None
    acknowledged = []
    for _ in range(rng.randint(1, 4)):
        line = worker.stdout.readline()
        if not line:
            worker.kill()
            raise RuntimeError(f"the worker died on its own: {worker.communicate()[1]}")
        acknowledged.append(line.strip())
    time.sleep(rng.uniform(0, 0.05))
    os.kill(worker.pid, signal.SIGKILL)
    rest, _ = worker.communicate()
    return [*acknowledged, *[line for line in rest.splitlines() if line.strip()]]


async def check(db: str | Path, acknowledged: list[str]) -> None:
    """Raise AssertionError unless the store holds every acknowledged write, whole."""
    async with eventmem.open(db) as store:
        report = await store.verify()
        assert report.ok, report.problems
        for session in await store.sessions():
            events = [e async for e in store.events(session)]
            turns = {
                m.content
                for e in events
                if isinstance(e.data, TurnSaved)
                for m in e.data.messages[:1]
            }
            steps = {e.data.action.log for e in events if isinstance(e.data, StepRecorded)}
            for line in acknowledged:
                kind, acked_session, what = line.split(" ", 2)
                if acked_session != session:
                    continue
                assert what in (turns if kind == "turn" else steps), f"lost: {line}"
            pending: list[int] = []
            for event in events:
                if isinstance(event.data, StepRecorded):
                    pending.append(event.position)
                elif isinstance(event.data, TurnSaved):
                    # a turn takes its own steps; steps a killed run left are abandoned
                    named = sorted([*event.data.steps, *event.data.abandoned])
                    assert named == pending, f"torn turn at {event.position}"
                    pending = []
            assert fold([e.data for e in events]).messages == await store.messages(session)
        all_sessions = set(await store.sessions())
        for line in acknowledged:
            assert line.split(" ", 2)[1] in all_sessions, f"lost session: {line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--db", default=None, help="a SQLite file or a postgresql:// URL")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="without --db: a new file, or a new schema on the test server (then dropped)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or new_target(args.backend, Path(tmp))
        try:
            acknowledged_total = 0
            for round_number in range(args.rounds):
                acknowledged = run_round(db, round_number, rng)
                anyio.run(check, db, acknowledged)
                acknowledged_total += len(acknowledged)
        finally:
            if args.db is None:
                drop_target(db)
        print(f"{args.rounds} kills, {acknowledged_total} acknowledged writes, all intact")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
