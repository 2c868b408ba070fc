"""Splitting a whole-store fold (verify, rebuild) over several processes.

A fold is Python per event, so one process keeps one core busy. Sessions fold
independently, so the log splits by session: each part is a range of session ids, and
every part reads the events up to one global id, the highest committed when the
operation's snapshot began (with one writer at a time, ids are assigned in commit order,
so every other process reads exactly the events that snapshot holds, however many are
appended meanwhile). Each other process returns, per session, where its fold ended
(`FoldOutcome`) and the chain findings; this process compares or writes the
projections in its own snapshot. A part whose process fails is folded here instead, so
a failure costs time, never a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Protocol

import msgspec

from eventmem.audit import FoldOutcome, Problem

__all__ = ["FoldSpread", "Part", "PartResult", "PendingPart", "split"]


class Part(msgspec.Struct, frozen=True):
    """The events of the sessions ``low <= session_id < high`` (None: unbounded) with
    ``id <= last``."""

    last: int
    low: str | None = None
    high: str | None = None

    def where(self) -> tuple[str, tuple[object, ...]]:
        """The SQL condition selecting the part's events, and its parameters."""
        clauses, parameters = ["id <= ?"], list[object]([self.last])
        if self.low is not None:
            clauses.append("session_id >= ?")
            parameters.append(self.low)
        if self.high is not None:
            clauses.append("session_id < ?")
            parameters.append(self.high)
        return " AND ".join(clauses), tuple(parameters)


class PartResult(msgspec.Struct, frozen=True):
    """A part folded elsewhere: its sessions' outcomes, chain findings and events read."""

    outcomes: list[FoldOutcome]
    problems: list[Problem]
    events: int


class PendingPart(Protocol):
    """A part being folded by another process."""

    part: Part

    def result(self) -> PartResult | None:
        """Wait for it; None if the process failed (the caller folds the part itself)."""
        ...


class FoldSpread(Protocol):
    """Starts other processes folding parts of the log, for one operation."""

    def start(self, parts: Sequence[Part], *, verifying: bool) -> list[PendingPart]:
        """Begin folding ``parts`` elsewhere (``verifying``: also decode the messages
        each buffer ends with, and send back those an old-style stored buffer row is
        compared with). A part that could not be started is left out."""
        ...

    def processes(self, events: int) -> int:
        """How many processes (this one included) to fold ``events`` events with."""
        ...


def split(session_ids: Sequence[str], parts: int, last: int) -> list[Part]:
    """``parts`` ranges of session ids holding about as many sessions each, covering
    every possible id (one unbounded at each end), from the sorted ``session_ids``."""
    count = len(session_ids)
    parts = max(1, min(parts, count))
    bounds = sorted({session_ids[count * k // parts] for k in range(1, parts)})
    edges: list[str | None] = [None, *bounds, None]
    return [Part(last, low, high) for low, high in pairwise(edges)]
