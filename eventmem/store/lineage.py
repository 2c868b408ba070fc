"""A fork's history: which session's log holds each of its positions.

A fork's first event ([`SessionForked`][eventmem.SessionForked]) is at position
``at + 1``: the fork's own events hold the positions from there on, and its positions
up to ``at`` are its parent's, and so on up the forks of forks. Nothing is copied, so
every read of a fork's history, and of a visible message its parent holds, asks the
session that holds it. The lineage is read from the log itself (each session's first
event, one index lookup), never from a projection an edit could change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import msgspec

from eventmem.audit import Problem, SessionFold
from eventmem.errors import CorruptDatabaseError, EventmemError
from eventmem.events import (
    GENESIS_HASH,
    Event,
    SessionForked,
    SessionSealed,
    ViewRewound,
    decode_event,
)
from eventmem.projection import Archive
from eventmem.store.content import opener
from eventmem.store.sql import Connection
from eventmem.store.view_rows import Inherited

__all__ = [
    "Holder",
    "fold_history",
    "fork_of",
    "hash_at",
    "history",
    "holders",
    "inherited_data",
    "inheriting",
    "last_seal",
]

# (session, first position it holds, last position it holds; None: to its end)
Holder = tuple[str, int, int | None]

_FIRST_EVENT = "SELECT kind, data FROM events WHERE session_id = ? ORDER BY position LIMIT 1"
_IN_CHUNK = 500  # bound parameters per query, well under SQLite's limit


def fork_of(conn: Connection, session_id: str) -> SessionForked | None:
    """The fork event that begins the session, or None (not a fork, or no events)."""
    row = conn.execute(_FIRST_EVENT, (session_id,)).fetchone()
    if row is None or row[0] != "fork":
        return None
    event = decode_event(row[1], trusted=True)
    if not isinstance(event, SessionForked):
        raise CorruptDatabaseError(
            f"the first event of session {session_id!r} is not the fork its kind column "
            "says; run verify"
        )
    return event


def holders(conn: Connection, session_id: str, upto: int | None = None) -> list[Holder]:
    """The sessions that hold the session's positions (up to ``upto``), oldest first:
    the session itself alone unless it is a fork."""
    found: list[Holder] = []
    seen: set[str] = set()
    current: str | None = session_id
    last = upto
    while current is not None:
        if current in seen:  # only a log put together by hand can loop
            raise CorruptDatabaseError(f"the forks of session {session_id!r} form a loop")
        seen.add(current)
        fork = fork_of(conn, current)
        first = 1 if fork is None else fork.at + 1
        if last is None or first <= last:
            found.append((current, first, last))
        if fork is None or fork.at == 0:
            break
        last = fork.at if last is None else min(last, fork.at)
        current = fork.parent
    found.reverse()
    return found


def history(conn: Connection, session_id: str, upto: int) -> list[Event]:
    """The session's events at positions 1 to ``upto`` (those it inherited included), in
    order: what a fold of the session up to there reads."""
    events: list[Event] = []
    for holder, first, last in holders(conn, session_id, upto):
        rows = conn.execute(
            "SELECT position, data FROM events WHERE session_id = ? AND position >= ?"
            " AND position <= ? ORDER BY position",
            (holder, first, upto if last is None else last),
        ).fetchall()
        for position, data in rows:
            if position != len(events) + 1:
                raise _gap(session_id, len(events) + 1)
            events.append(decode_event(conn.content.open(holder, position, data), trusted=True))
    if len(events) != upto:
        raise _gap(session_id, len(events) + 1)
    return events


def hash_at(conn: Connection, session_id: str, position: int) -> bytes:
    """The chain hash of the session's event at ``position`` (0: the genesis hash)."""
    if position == 0:
        return GENESIS_HASH
    for holder, first, last in holders(conn, session_id, position):
        if first <= position and (last is None or position <= last):
            row = conn.execute(
                "SELECT hash FROM events WHERE session_id = ? AND position = ?",
                (holder, position),
            ).fetchone()
            if row is not None:
                return bytes(row[0])
    raise _gap(session_id, position)


def inherited_data(conn: Connection, session_id: str, positions: Iterable[int]) -> dict[int, Any]:
    """The JSON of the events at ``positions`` of the session's history that its
    ancestors hold (a fork's visible messages from before it forked), by position."""
    wanted = sorted(set(positions))
    found: dict[int, Any] = {}
    for holder, first, last in holders(conn, session_id):
        mine = [p for p in wanted if p >= first and (last is None or p <= last)]
        for start in range(0, len(mine), _IN_CHUNK):
            chunk = mine[start : start + _IN_CHUNK]
            for position, data in conn.execute(
                "SELECT position, data FROM events WHERE session_id = ? AND position IN"
                f" ({', '.join('?' * len(chunk))})",
                (holder, *chunk),
            ).fetchall():
                found[position] = conn.content.open(holder, position, data)
    return found


def inheriting(conn: Connection, session_id: str) -> Inherited:
    """What `eventmem.store.view_rows.resolve` reads a fork's inherited messages with."""
    return lambda positions: inherited_data(conn, session_id, positions)


def last_seal(conn: Connection, session_id: str) -> int:
    """The position of the session's last seal (0: none): its history before that is
    not folded again (rewinds and forks go no further back)."""
    row = conn.execute(
        "SELECT max(position) FROM events WHERE session_id = ? AND kind = 'seal'", (session_id,)
    ).fetchone()
    return int(row[0] or 0)


def fold_history(
    conn: Connection, session_id: str, *, trusted: bool = True
) -> tuple[SessionFold, Problem | None]:
    """The session's fold over its whole history, and the first problem it found: what
    verify, rebuild and import use for a fork, or a session with rewinds, that a stream
    of one session's events could not fold (`SessionFold.deferred`).

    A fork's inherited events are folded without their chain checks (their sessions'
    folds check those); its own must chain to the parent's event at the fork point, and
    the fork event must name that event's hash. Every rewind is checked against the
    view the fold had after the position it goes back to.
    """
    own = _rows(conn, session_id, 1, None)
    opened = opener(conn.content)
    inherited: list[Sequence[Any]] = []
    fork = None
    if own and own[0][5] == "fork":
        fork = _decoded_fork(own[0][3])
    if fork is not None and fork.at > 0:
        try:
            for holder, first, last in holders(conn, fork.parent, fork.at):
                inherited += _rows(conn, holder, first, fork.at if last is None else last)
        except EventmemError:
            inherited = []  # a parent that loops: reported as missing below
    targets = {e.to for e in map(_decoded_rewind, own + inherited) if e is not None}
    fold = SessionFold(session_id, trusted=trusted, archive=Archive(targets))
    buffer = fold.buffer
    seals = [(row[1], seal) for row in own if (seal := _decoded_seal(row)) is not None]
    if seals:
        fold.start_at = seals[-1][0]
        fold.sealed_to = max(seal.before for _, seal in seals)
    if fork is not None:
        if [row[1] for row in inherited] != list(range(1, fork.at + 1)):
            held = (
                f"the store has no events of {fork.parent!r} (a fork is imported with its "
                "parent, or into a store that holds it)"
                if not inherited
                else f"that session's history holds {len(inherited)} of the positions up to there"
            )
            return fold, fold._fail(
                own[0][1],
                "fork_mismatch",
                f"the session is a fork of {fork.parent!r} at position {fork.at}, but {held}",
            )
        # An erased fork's view starts over at its tombstone: what it inherited is only
        # chained (its parent, erased since, may hold no content to fold).
        erased = any(row[5] == "erase" for row in own)
        try:
            for holder, position, recorded_at, data, digest, *_ in inherited:
                if erased:
                    buffer.state.chain(position, recorded_at, bytes(digest))
                else:
                    fold.inherit(
                        position,
                        recorded_at,
                        bytes(data),
                        bytes(digest),
                        None if opened is None else partial(opened, holder, position),
                    )
        except (EventmemError, msgspec.DecodeError, msgspec.ValidationError) as e:
            return fold, fold._fail(
                fork.at, "fork_mismatch", f"the history the fork inherits does not fold: {e}"
            )
        if fork.parent_hash != buffer.state.head_hash.hex():
            return fold, fold._fail(
                own[0][1],
                "fork_mismatch",
                f"the fork names the hash {fork.parent_hash[:12]}... of its parent's event "
                f"at {fork.at}, which is {buffer.state.head_hash.hex()[:12]}...",
            )
    for _, position, recorded_at, data, digest, kind, content in own:
        content = None if content is None else bytes(content)
        problem = fold.add_stored(
            position, recorded_at, bytes(data), bytes(digest), kind, content, opened
        )
        if problem is not None:
            return fold, problem
    sealed = fold.first_own + fold.erased_run + 1 == fold.sealed_to
    if fold.erased_run and not buffer.state.erased and not sealed:
        return fold, fold._fail(
            buffer.state.version,
            "undecodable",
            f"{fold.erased_run} events' content was erased, but no tombstone or seal covers them",
        )
    return fold, fold.check_view()


_decode_fork = msgspec.json.Decoder(SessionForked).decode
_decode_rewind = msgspec.json.Decoder(ViewRewound).decode
_decode_seal = msgspec.json.Decoder(SessionSealed).decode


def _decoded_fork(data: Any) -> SessionForked | None:
    try:
        return _decode_fork(bytes(data))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the fold reports it


def _decoded_rewind(row: Sequence[Any]) -> ViewRewound | None:
    if row[5] != "rewind":
        return None
    try:
        return _decode_rewind(bytes(row[3]))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the fold reports it


def _decoded_seal(row: Sequence[Any]) -> SessionSealed | None:
    if row[5] != "seal":
        return None
    try:
        return _decode_seal(bytes(row[3]))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the fold reports it


def _rows(conn: Connection, session_id: str, first: int, last: int | None) -> list[Sequence[Any]]:
    """The session's events from ``first`` to ``last`` (None: its end) as verify reads
    them: (session, position, recorded_at, data as bytes, hash, kind, digest)."""
    return [
        row
        for rows in conn.stream(
            f"SELECT session_id, position, recorded_at, {conn.data_bytes}, hash, kind, digest"
            " FROM events WHERE session_id = ? AND position >= ? AND position <= ?"
            " ORDER BY position",
            (session_id, first, _PAST_ANY if last is None else last),
        )
        for row in rows
    ]


_PAST_ANY = (1 << 63) - 1


def _gap(session_id: str, position: int) -> CorruptDatabaseError:
    return CorruptDatabaseError(
        f"the history of session {session_id!r} has no event at position {position}; run verify"
    )
