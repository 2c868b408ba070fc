"""Whole-store maintenance: verify, rebuild, export and import, and the log's triggers.

Each walks the events in (session, position) order through
``SessionFold``, the same fold the live path uses, and compares or
writes the projections it yields.
"""

from __future__ import annotations

from collections.abc import Iterator

from eventmem._export_format import ExportReader, export_line
from eventmem.audit import ChainChecker, Problem, SessionFold, VerifyReport
from eventmem.errors import ImportRefusedError, RebuildRefusedError, StorageError
from eventmem.projection import HeadState
from eventmem.store import checkpoints
from eventmem.store.base import Progress
from eventmem.store.cache import ViewCache
from eventmem.store.head import HEAD_COLUMNS, INSERT_HEAD, write_transaction
from eventmem.store.reads import count_events
from eventmem.store.sql import Connection
from eventmem.store.view_rows import INSERT_ROW, ROW_COLUMNS

__all__ = [
    "Progress",
    "anchor_heads",
    "anchored_state",
    "export_page",
    "import_lines",
    "last_event_id",
    "rebuild",
    "restore_triggers",
    "trigger_findings",
    "verify",
    "verify_session",
]

_PROGRESS_EVERY = 20_000


def _event_rows(
    conn: Connection, progress: Progress | None
) -> Iterator[tuple[str, int, int, bytes, bytes, str]]:
    total = count_events(conn) if progress else 0
    # In append (id) order: a sequential scan; each session's events still come in
    # position order, since positions are assigned on append. ``data_bytes`` hands over
    # the JSON as bytes, the form the hash covers, without a decode/encode round trip.
    chunks = conn.stream(
        f"SELECT session_id, position, recorded_at, {conn.data_bytes}, hash, kind FROM events"
        " ORDER BY id"
    )
    done = 0
    for rows in chunks:
        yield from rows
        done += len(rows)
        if progress and done % _PROGRESS_EVERY < len(rows):
            progress(done, total)
    if progress:
        progress(done, total)


def _write_projection(conn: Connection, fold: SessionFold) -> None:
    conn.execute(INSERT_HEAD, fold.state.row())
    conn.executemany(INSERT_ROW, fold.view_rows())
    checkpoints.write_index(conn, fold.checkpoints)


def _heads(conn: Connection) -> dict[str, HeadState]:
    """Every stored session head, by session (as stored: an edited row may hold values
    of other types)."""
    return {
        row[0]: HeadState.from_row(bytes(v) if isinstance(v, bytes) else v for v in row)
        for row in conn.execute(f"SELECT {HEAD_COLUMNS} FROM sessions")
    }


def _lost_events(folds: dict[str, SessionFold], heads: dict[str, HeadState]) -> list[Problem]:
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
    conn: Connection, fold: SessionFold, stored_head: HeadState | None
) -> Problem | None:
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
    stored_view = conn.execute(
        f"SELECT {ROW_COLUMNS} FROM view_messages WHERE session_id = ? ORDER BY seq",
        (fold.session_id,),
    ).fetchall()
    if fold.view_differs(stored_view):
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the stored buffer differs from the fold of the events; run rebuild",
        )
    if checkpoints.read_index(conn, fold.session_id) != checkpoints.index_rows(fold.checkpoints):
        return Problem(
            fold.session_id,
            version,
            "projection_mismatch",
            "the stored checkpoint index differs from the fold of the events; run rebuild",
        )
    return None


def verify(conn: Connection, progress: Progress | None) -> VerifyReport:
    """Check the triggers, every chain, and every projection row (heads and buffer rows,
    also those of sessions that have no events) against the fold, in one read snapshot."""
    conn.begin_read()  # one snapshot for the whole check
    try:
        checker = ChainChecker(trusted=True)
        problems = checker.report.problems
        problems.extend(Problem("", 0, "trigger_mismatch", f) for f in conn.trigger_findings())
        checker.feed(_event_rows(conn, progress))
        folds, heads = checker.folds, _heads(conn)
        lost = _lost_events(folds, heads)
        problems.extend(lost)
        reported = {p.session_id for p in lost}
        for fold in folds.values():
            if fold.broken or fold.session_id in reported:
                continue
            if problem := _check_projection(conn, fold, heads.get(fold.session_id)):
                problems.append(problem)
        for (session_id,) in conn.execute(
            "SELECT session_id FROM view_messages UNION SELECT session_id FROM lg_checkpoints"
            " UNION SELECT session_id FROM lg_values UNION SELECT session_id FROM lg_writes"
        ):
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
        checker = ChainChecker(trusted=True)
        problems = checker.report.problems
        problems.extend(Problem("", 0, "trigger_mismatch", f) for f in conn.trigger_findings())
        checker.feed(
            row
            for rows in conn.stream(
                f"SELECT session_id, position, recorded_at, {conn.data_bytes}, hash, kind"
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
        lost = _lost_events(checker.folds, heads)
        problems.extend(lost)
        fold = checker.folds.get(session_id)
        problem = (
            _check_projection(conn, fold, heads.get(session_id))
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


def rebuild(conn: Connection, cache: ViewCache, progress: Progress | None, force: bool) -> int:
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
        checker = ChainChecker(trusted=True, stored=True)
        checker.feed(_event_rows(conn, progress))
        folds, heads = checker.folds, _heads(conn)
        findings = checker.report.problems + _lost_events(folds, heads)
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
        count = 0
        for fold in folds.values():
            if fold.session_id not in damaged:
                _write_projection(conn, fold)
                count += 1
        conn.executemany(INSERT_HEAD, [heads[s].row() for s in damaged if s in heads])
        conn.executemany(INSERT_ROW, kept_view)
        for rows in kept_index:
            checkpoints.insert_index_rows(conn, rows)
        return count

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
        f"SELECT id, session_id, position, recorded_at, kind, {conn.data_bytes}, hash"
        f" FROM events WHERE {where} ORDER BY id LIMIT ?",
        (*parameters, limit),
    ).fetchall()
    lines = [
        export_line(sid, position, recorded_at, kind, data, digest)
        for _, sid, position, recorded_at, kind, data, digest in rows
    ]
    return (rows[-1][0] if rows else after_id), lines


def last_event_id(conn: Connection) -> int:
    """The highest global position (0 in an empty store)."""
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return int(row[0] or 0)


def import_lines(conn: Connection, cache: ViewCache, reader: ExportReader) -> tuple[int, int]:
    """Import an export file in one transaction, reading it line by line."""
    if reader.started:
        # A backend runs a call again when its connection was lost before the commit;
        # the lines read then are gone, so the import cannot resume.
        raise StorageError(
            "the connection was lost during the import; nothing was written: run it again"
        )
    cache.clear()

    def body() -> tuple[int, int]:
        conn.lock_store()
        folds: dict[str, SessionFold] = {}
        rows: list[tuple[str, int, str, int, str, bytes]] = []
        written = 0
        for number, item, data in reader.events():
            fold = folds.get(item.session_id)
            if fold is None:
                exists = conn.execute(
                    "SELECT 1 FROM events WHERE session_id = ? LIMIT 1", (item.session_id,)
                ).fetchone()
                if exists:
                    raise ImportRefusedError(
                        f"line {number}: session {item.session_id!r} already exists in this "
                        "store; an import never merges into or duplicates a session"
                    )
                fold = folds[item.session_id] = SessionFold(item.session_id)
            digest = bytes.fromhex(item.hash)
            problem = fold.add(item.position, item.recorded_at, data, digest, item.kind)
            if problem is not None:
                raise ImportRefusedError(
                    f"line {number}: session {problem.session_id!r} position "
                    f"{problem.position}: {problem.kind}: {problem.detail}"
                )
            # valid UTF-8: the event decoded, and re-encodes to these very bytes
            rows.append(
                (item.session_id, item.position, item.kind, item.recorded_at, data.decode(), digest)
            )
            if len(rows) >= _IMPORT_ROWS:
                written += _insert_events(conn, rows)
        written += _insert_events(conn, rows)
        for fold in folds.values():
            conn.execute("DELETE FROM view_messages WHERE session_id = ?", (fold.session_id,))
            conn.execute("DELETE FROM sessions WHERE session_id = ?", (fold.session_id,))
            checkpoints.delete_index(conn, fold.session_id)
            _write_projection(conn, fold)
        return len(folds), written

    return write_transaction(conn, body)


_IMPORT_ROWS = 1000  # events inserted per statement batch while an import reads on


def _insert_events(conn: Connection, rows: list[tuple[str, int, str, int, str, bytes]]) -> int:
    """Insert the rows read so far, and forget them."""
    count = len(rows)
    if rows:
        conn.executemany(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        rows.clear()
    return count


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
