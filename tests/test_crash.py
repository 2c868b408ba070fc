"""Crash safety: SIGKILL at random moments never loses an acknowledged save or tears one."""

from __future__ import annotations

import os
import random
from pathlib import Path

import anyio
import pytest

from tests.crash.harness import check, run_round

ROUNDS = int(os.environ.get("EVENTMEM_CRASH_ROUNDS", "100"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_kill_minus_nine_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(2024)
    db = tmp_path / "crash.db"
    acknowledged = 0
    for round_number in range(ROUNDS):
        lines = run_round(db, round_number, rng)
        anyio.run(check, db, lines)
        acknowledged += len(lines)
    assert acknowledged > ROUNDS  # the writers got real work done between kills
