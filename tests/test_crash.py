"""Crash safety: SIGKILL at random moments never loses an acknowledged save or tears one.

The full run (marked slow) kills the writer 100 times on a SQLite file and 30 times on
PostgreSQL (where each round also pays for a new server connection);
EVENTMEM_CRASH_ROUNDS sets both. The quick run, in the fast loop, kills it twice.
"""

from __future__ import annotations

import os
import random

import anyio
import pytest

from tests.crash.harness import check, run_round

QUICK_ROUNDS = 2
FULL_ROUNDS = {"sqlite": 100, "postgresql": 30}
_ROUNDS = os.environ.get("EVENTMEM_CRASH_ROUNDS")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_minus_nine_at_random_moments(backend: str, depth: str, target: str) -> None:
    rounds = (
        int(_ROUNDS)
        if _ROUNDS and depth == "full"
        else (QUICK_ROUNDS if depth == "quick" else FULL_ROUNDS[backend])
    )
    rng = random.Random(2024)
    acknowledged = 0
    for round_number in range(rounds):
        lines = run_round(target, round_number, rng)
        anyio.run(check, target, lines)
        acknowledged += len(lines)
    assert acknowledged > rounds  # the writers got real work done between kills
