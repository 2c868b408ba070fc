"""Whole-store maintenance: verify, rebuild, export and import, and the log's triggers.

Each walks the events in (session, position) order through
``SessionFold``, the same fold the live path uses, and compares or
writes the projections it yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from eventmem._export_format import export_line
from eventmem.audit import ChainChecker, FoldOutcome, Problem, SessionFold, VerifyReport
from eventmem.errors import RebuildRefusedError
from eventmem.projection import HeadState
from eventmem.store import checkpoints
from eventmem.store.base import Progress
from eventmem.store.cache import ViewCache
from eventmem.store.checkpoints import IndexRows
from eventmem.store.content import opener
from eventmem.store.head import HEAD_COLUMNS, INSERT_HEAD, write_transaction
from eventmem.store.lineage import fold_history
from eventmem.store.partition import FoldSpread, Part, PartResult, split
from eventmem.store.reads import count_events
from eventmem.store.sql import Connection
from eventmem.store.view_rows import INSERT_ROW, ROW_COLUMNS, ViewRow

__all__ = [
    "Progress",
    "anchor_heads",
    "anchored_state",
    "export_page",
    "last_event_id",
    "rebuild",
    "restore_triggers",
    "trigger_findings",
    "verify",
    "verify_session",
    "write_projections",
]

_PROGRESS_EVERY = 20_000


def _event_rows(
    conn: Connection, progress: Progress | None, part: Part | None = None, share: int = 1
) -> Iterator[tuple[str, int, int, bytes, bytes, str, bytes | None]]:
    """The events (of ``part``, if given) in append order. ``share``: how many parts the
    log was split into; the progress shown is this part's, scaled to the whole."""
    total = count_events(conn) if progress else 0
    where, parameters = part.where() if part is not None else ("1", ())
    # In append (id) order: a sequential scan; each session's events still come in
    # position order, since positions are assigned on append. ``data_bytes`` hands over
    # the JSON as bytes, the form the hash covers, without a decode/encode round trip.
    chunks = conn.stream(
        f"SELECT session_id, position, recorded_at, {conn.data_bytes}, hash, kind, digest"
        f" FROM events WHERE {where} ORDER BY id",
        parameters,
    )
    done = 0
    for rows in chunks:
        yield from rows
        done += len(rows)
        if progress and done % _PROGRESS_EVERY < len(rows):
            progress(min(done * share, total), total)
    if progress:
        progress(total if share > 1 else done, total)


class _Folded:
    """Every session's fold (or its outcome, from another process) and the chain
    findings, over the whole log or spread over processes by `FoldSpread`."""

    def __init__(self, conn: Connection, progress: Progress | None, *, verifying: bool) -> None:
        """``verifying``: also decode the messages each buffer ends with (see
        `ChainChecker.check_views`), and bring back the messages an old-style stored
        buffer row is compared with."""
        self.checker = ChainChecker(trusted=True, stored=True, opened=opener(conn.content))
        self.outcomes: dict[str, SessionFold | FoldOutcome] = {}
        self._conn, self._progress, self._verifying = conn, progress, verifying

    def run(self, spread: FoldSpread | None) -> None:
        """Fold every event of the snapshot."""
        conn, checker = self._conn, self.checker
        last = last_event_id(conn)
        count = spread.processes(last) if spread is not None else 1
        parts = split(_session_ids(conn, count), count, last) if count > 1 else []
        pending = (
            spread.start(parts[1:], verifying=self._verifying)
            if spread is not None and len(parts) > 1
            else []
        )
        own = [parts[0]] if parts else [Part(last)]
        own += [p for p in parts[1:] if all(p is not q.part for q in pending)]
        for part in own:
            checker.feed(_event_rows(conn, self._progress, part, len(parts) or 1))
        self._finish(checker)
        self.outcomes.update(checker.folds)
        report = checker.report
        for job in pending:
            result = job.result()
            if result is None:  # its process failed: fold the part here
                here = ChainChecker(trusted=True, stored=True, opened=opener(conn.content))
                here.feed(_event_rows(conn, None, job.part))
                self._finish(here)
                self.outcomes.update(here.folds)
                result = PartResult([], here.report.problems, here.report.events)
            self.outcomes.update((o.session_id, o) for o in result.outcomes)
            report.problems.extend(result.problems)
            report.events += result.events
        report.sessions = len(self.outcomes)
        for session_id in [s for s, o in self.outcomes.items() if o.deferred and not o.broken]:
            fold, problem = fold_history(conn, session_id)
            self.outcomes[session_id] = fold
            if problem is not None:
                report.problems.append(problem)

    def _finish(self, checker: ChainChecker) -> None:
        if self._verifying:
            checker.check_views()

    def refold(self, session_id: str) -> SessionFold:
        """The session folded here, from its events in this snapshot."""
        checker = ChainChecker(trusted=True, stored=True, opened=opener(self._conn.content))
        checker.feed(
            row
            for rows in self._conn.stream(
                f"SELECT session_id, position, recorded_at, {self._conn.data_bytes}, hash,"
                " kind, digest FROM events WHERE session_id = ? ORDER BY position",
                (session_id,),
            )
            for row in rows
        )
        fold = checker.folds[session_id]
        self.outcomes[session_id] = fold
        return fold


def _session_ids(conn: Connection, parts: int) -> list[str]:
    """Session ids, sorted, to split the log evenly by: the stored heads' (one row each;
    a session without one still falls in one of the ranges), or, when there are too few
    of those, the log's own (a walk of its session index)."""
    ids = [sid for (sid,) in conn.execute("SELECT session_id FROM sessions ORDER BY session_id")]
    if len(ids) >= parts:
        return ids
    return [sid for (sid,) in conn.execute("SELECT DISTINCT session_id FROM events ORDER BY 1")]


def write_projections(conn: Connection, folds: Iterable[SessionFold | FoldOutcome]) -> None:
    """Insert the folds' heads, buffer rows and checkpoint index rows (none exist), a
    statement per table for each ``_WRITE_CHUNK`` of them."""
    heads: list[tuple[Any, ...]] = []
    rows: list[ViewRow] = []
    index: IndexRows = ([], [], [])

    def flush() -> None:
        conn.executemany(INSERT_HEAD, heads)
        if rows:
            conn.executemany(INSERT_ROW, rows)
        checkpoints.insert_index_rows(conn, index)
        heads.clear()
        rows.clear()
        index[0].clear()
        index[1].clear()
        index[2].clear()

    for fold in folds:
        outcome = fold if isinstance(fold, FoldOutcome) else fold.outcome()
        heads.append(outcome.head)
        rows.extend(outcome.view)
        index[0].extend(outcome.index[0])
        index[1].extend(outcome.index[1])
        index[2].extend(outcome.index[2])
        if len(heads) >= _WRITE_CHUNK:
            flush()
    if heads:
        flush()


_WRITE_CHUNK = 1000


def _heads(conn: Connection) -> dict[str, HeadState]:
    """Every stored session head, by session (as stored: an edited row may hold values
    of other types)."""
    return {
        row[0]: HeadState.from_row(bytes(v) if isinstance(v, bytes) else v for v in row)
        for row in conn.execute(f"SELECT {HEAD_COLUMNS} FROM sessions")
    }


def _lost_events(
    folds: Mapping[str, SessionFold | FoldOutcome], heads: dict[str, HeadState]
) -> list[Problem]:
    """Chain findings that only the heads show: a log cut short, or gone."""
    problems = []
    for session_id, head in heads.items():
        fold = folds.get(session_id)
        if fold is None:
            problems.append(
                Problem(
                    session_id,
                    1,
                    "orphan_projection",
                    "the session has a head but no events: its log was removed",
                )
            )
        elif not fold.broken and int(head.version) > fold.state.version:
            problems.append(
                Problem(
                    session_id,
                    fold.state.version + 1,
                    "truncated",
                    f"the session's head names position {head.version} but the log ends at "
                    f"{fold.state.version}: events at the end were removed",
                )
            )
    return problems


def _check_projection(
    fold: SessionFold | FoldOutcome,
    stored_head: HeadState | None,
    stored_view: list[Sequence[Any]],
    stored_index: IndexRows,
    refold: Callable[[str], SessionFold] | None = None,
) -> Problem | None:
    """The projection finding of one session, given its stored rows (read for every
    session at once by `_stored_views` and `checkpoints.read_every_index`)."""
    version = fold.state.version
    if stored_head is None:
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the session has events but no projection row; run rebuild",
        )
    if stored_head != fold.state:
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the stored buffer head differs from the fold of the events; run rebuild",
        )
    differs = fold.view_differs(stored_view)
    if differs is None:  # an outcome without the messages an old-style row needs
        assert refold is not None
        return _check_projection(refold(fold.session_id), stored_head, stored_view, stored_index)
    if differs:
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the stored buffer differs from the fold of the events; run rebuild",
        )
    if stored_index != fold.index_rows():
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the stored checkpoint index differs from the fold of the events; run rebuild",
        )
    return None


_NO_INDEX: IndexRows = ([], [], [])


def _stored_views(conn: Connection) -> dict[str, list[Sequence[Any]]]:
    """Every session's ``view_messages`` rows in seq order, in one scan of the table."""
    views: dict[str, list[Sequence[Any]]] = {}
    for rows in conn.stream(f"SELECT {ROW_COLUMNS} FROM view_messages ORDER BY session_id, seq"):
        for row in rows:
            views.setdefault(row[0], []).append(row)
    return views


def verify(
    conn: Connection, progress: Progress | None, spread: FoldSpread | None = None
) -> VerifyReport:
    """Check the triggers, every chain, and every projection row (heads and buffer rows,
    also those of sessions that have no events) against the fold, in one read snapshot
    (``spread``: the fold may run in several processes)."""
    conn.begin_read()  # one snapshot for the whole check
    try:
        folded = _Folded(conn, progress, verifying=True)
        checker = folded.checker
        problems = checker.report.problems
        problems.extend(Problem("", 0, "trigger_mismatch", f) for f in conn.trigger_findings())
        folded.run(spread)
        folds, heads = folded.outcomes, _heads(conn)
        lost = _lost_events(folds, heads)
        problems.extend(lost)
        reported = {p.session_id for p in lost}
        views, indexes = _stored_views(conn), checkpoints.read_every_index(conn)
        for fold in list(folds.values()):
            session_id = fold.session_id
            if fold.broken or session_id in reported:
                continue
            if problem := _check_projection(
                fold,
                heads.get(session_id),
                views.get(session_id, []),
                indexes.get(session_id, _NO_INDEX),
                folded.refold,
            ):
                problems.append(problem)
        for session_id in sorted(views.keys() | indexes.keys()):
            if session_id not in folds and session_id not in heads:
                problems.append(_stray_rows(session_id))
    finally:
        conn.execute("COMMIT")
    return checker.report


def _stray_rows(session_id: str) -> Problem:
    return Problem(
        session_id,
        0,
        "projection_mismatch",
        "the session has buffer or checkpoint index rows but neither events nor a head: "
        "they were put there outside eventmem; run rebuild",
    )


def verify_session(conn: Connection, session_id: str) -> VerifyReport:
    """`verify` for one session: the triggers, its chain, and its head and buffer rows
    against the fold, in one read snapshot (reading only this session's rows)."""
    conn.begin_read()
    try:
        checker = ChainChecker(trusted=True, opened=opener(conn.content))
        problems = checker.report.problems
        problems.extend(Problem("", 0, "trigger_mismatch", f) for f in conn.trigger_findings())
        checker.feed(
            row
            for rows in conn.stream(
                f"SELECT session_id, position, recorded_at, {conn.data_bytes}, hash, kind, digest"
                " FROM events WHERE session_id = ? ORDER BY position",
                (session_id,),
            )
            for row in rows
        )
        row = conn.execute(
            f"SELECT {HEAD_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        heads = (
            {}
            if row is None
            else {
                session_id: HeadState.from_row(bytes(v) if isinstance(v, bytes) else v for v in row)
            }
        )
        fold = checker.folds.get(session_id)
        if fold is not None and fold.deferred and not fold.broken:
            fold, problem = fold_history(conn, session_id, trusted=True)
            checker.folds[session_id] = fold
            if problem is not None:
                problems.append(problem)
        lost = _lost_events(checker.folds, heads)
        problems.extend(lost)
        problem = (
            _check_projection(
                fold,
                heads.get(session_id),
                conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM view_messages WHERE session_id = ? ORDER BY seq",
                    (session_id,),
                ).fetchall(),
                checkpoints.read_index(conn, session_id),
            )
            if fold is not None and not fold.broken and not lost
            else None
        )
        if problem is not None:
            problems.append(problem)
        if fold is None and not heads:
            stray = conn.execute(
                "SELECT count(*) FROM view_messages WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            if stray or checkpoints.has_index(conn, session_id):
                problems.append(_stray_rows(session_id))
    finally:
        conn.execute("COMMIT")
    return checker.report


def _refusal(findings: list[Problem]) -> str:
    shown = "; ".join(
        f"session {p.session_id!r} position {p.position}: {p.kind}" for p in findings[:5]
    )
    more = f" and {len(findings) - 5} more" if len(findings) > 5 else ""
    return (
        f"rebuild refused: the log shows {len(findings)} chain problem(s) that rebuilding "
        f"would hide ({shown}{more}). Find out what happened first (verify lists them); "
        "a forced rebuild recomputes every other session and leaves these as they are"
    )


def rebuild(
    conn: Connection,
    cache: ViewCache,
    progress: Progress | None,
    force: bool,
    spread: FoldSpread | None = None,
) -> int:
    """Recompute the projections from the events, in one transaction; return how many.

    The chains are checked first. A chain finding refuses the rebuild (nothing is
    written) unless ``force``; then the damaged sessions keep their stored head and
    buffer rows as they are, since those are the evidence verify reports (a head that
    names events the log no longer has), and every other session is rebuilt. Buffer
    rows of sessions with neither events nor a head go.
    """
    cache.clear()

    def body() -> int:
        conn.lock_store()
        folded = _Folded(conn, progress, verifying=False)
        folded.run(spread)
        folds, heads = folded.outcomes, _heads(conn)
        findings = folded.checker.report.problems + _lost_events(folds, heads)
        if findings and not force:
            raise RebuildRefusedError(_refusal(findings), findings)
        damaged = {p.session_id for p in findings}
        kept_view = [
            row
            for session_id in damaged
            for row in conn.execute(
                f"SELECT {ROW_COLUMNS} FROM view_messages WHERE session_id = ?", (session_id,)
            ).fetchall()
        ]
        kept_index = [checkpoints.read_index(conn, session_id) for session_id in damaged]
        conn.execute("DELETE FROM view_messages")
        conn.execute("DELETE FROM sessions")
        checkpoints.delete_index(conn, None)
        rebuilt = [fold for fold in folds.values() if fold.session_id not in damaged]
        write_projections(conn, rebuilt)
        conn.executemany(INSERT_HEAD, [heads[s].row() for s in damaged if s in heads])
        conn.executemany(INSERT_ROW, kept_view)
        for rows in kept_index:
            checkpoints.insert_index_rows(conn, rows)
        return len(rebuilt)

    return write_transaction(conn, body)


def trigger_findings(conn: Connection) -> list[str]:
    """How the store's triggers differ from the schema's (empty: as they should be)."""
    return conn.trigger_findings()


def restore_triggers(conn: Connection) -> list[str]:
    """Make the store's triggers the schema's again, in one transaction; return the
    findings repaired."""
    return write_transaction(conn, conn.restore_triggers)


def export_page(
    conn: Connection,
    session_id: str | None,
    after_id: int,
    limit: int,
    up_to: int | None = None,
) -> tuple[int, list[bytes]]:
    """Export lines of the events after global position ``after_id`` (and, with
    ``up_to``, at or before it), and the last id."""
    where = "id > ?"
    parameters: list[object] = [after_id]
    if session_id is not None:
        where, parameters = "session_id = ? AND id > ?", [session_id, after_id]
    if up_to is not None:
        where, parameters = f"{where} AND id <= ?", [*parameters, up_to]
    rows = conn.execute(
        f"SELECT id, session_id, position, recorded_at, kind, {conn.data_bytes}, hash, digest"
        f" FROM events WHERE {where} ORDER BY id LIMIT ?",
        (*parameters, limit),
    ).fetchall()
    lines = [
        export_line(sid, position, recorded_at, kind, data, digest, content)
        for _, sid, position, recorded_at, kind, data, digest, content in rows
    ]
    return (rows[-1][0] if rows else after_id), lines


def last_event_id(conn: Connection) -> int:
    """The highest global position (0 in an empty store)."""
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return int(row[0] or 0)


def anchor_heads(conn: Connection) -> list[tuple[str, int, bytes]]:
    """Each session's last event, as the log holds it: (session, position, hash), read
    in one snapshot."""
    conn.begin_read()
    try:
        return [
            (sid, position, bytes(digest))
            for sid, position, digest in conn.execute(
                "SELECT e.session_id, e.position, e.hash FROM events AS e JOIN"
                " (SELECT session_id, max(position) AS last FROM events GROUP BY session_id)"
                " AS m ON e.session_id = m.session_id AND e.position = m.last"
            )
        ]
    finally:
        conn.execute("COMMIT")


def anchored_state(
    conn: Connection, heads: list[tuple[str, int]]
) -> list[tuple[int, bytes | None]]:
    """For each ``(session, position)``: the session's last position now (0: no events)
    and the hash of its event at ``position`` (None: there is none), in one snapshot."""
    conn.begin_read()
    try:
        found = []
        for session_id, position in heads:
            last = conn.execute(
                "SELECT max(position) FROM events WHERE session_id = ?", (session_id,)
            ).fetchone()
            row = conn.execute(
                "SELECT hash FROM events WHERE session_id = ? AND position = ?",
                (session_id, position),
            ).fetchone()
            found.append((int(last[0] or 0), None if row is None else bytes(row[0])))
        return found
    finally:
        conn.execute("COMMIT")
