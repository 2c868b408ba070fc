"""The live path's view of one session: its projection row as a ``Buffer``.

``SessionHead`` reads the session's row once per write into a ``HeadState``, fetches
only the buffer rows it prunes, and writes its changes back on ``SessionHead.flush``;
the pure ``eventmem.projection.apply`` drives it exactly as it drives an in-memory
buffer, and ``eventmem._decide`` reads it to choose what a write appends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from eventmem.errors import CorruptDatabaseError, ErasedSessionError
from eventmem.events import (
    Event,
    StepRecorded,
    ViewRewound,
    content_digest,
    decode_event,
    encode_event,
    event_hash,
)
from eventmem.messages import Message
from eventmem.projection import HEAD_FIELDS, HeadState, MemoryBuffer
from eventmem.store.cache import ViewCache
from eventmem.store.content import opened_in
from eventmem.store.lineage import inheriting
from eventmem.store.sql import HEAD_COLUMNS, Connection
from eventmem.store.view_rows import ROW_COLUMNS, resolve

__all__ = [
    "HEAD_COLUMNS",
    "INSERT_HEAD",
    "VIEW_ROWS",
    "SessionHead",
    "now_us",
    "write_transaction",
]

T = TypeVar("T")
_ROWS_PER_INSERT = 100

INSERT_HEAD = f"INSERT INTO sessions ({HEAD_COLUMNS}) VALUES ({', '.join('?' * len(HEAD_FIELDS))})"
# A head's identity and creation time never change once it is written.
_UPDATED = [name for name in HEAD_FIELDS if name not in ("session_id", "created_at")]
_UPSERT_HEAD = f"{INSERT_HEAD} ON CONFLICT (session_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in _UPDATED
)

# The buffer rows of a session (``(seq, position, idx, message, data)``, for
# ``view_rows.resolve``) joined to the events that hold their text.
VIEW_ROWS = (
    "SELECT v.seq, v.position, v.idx, v.message, e.data FROM view_messages AS v"
    " LEFT JOIN events AS e ON e.session_id = v.session_id AND e.position = v.position"
)
_INSERT_ROWS = f"INSERT INTO view_messages ({ROW_COLUMNS}) VALUES "


def now_us() -> int:
    """Now, in microseconds since the Unix epoch (the events' ``recorded_at``)."""
    return time.time_ns() // 1000


class SessionHead:
    """A session's projection row, used as the ``Buffer``
    of the live path: it reads only the rows it prunes and writes its changes on flush.
    """

    def __init__(self, conn: Connection, session_id: str, cache: ViewCache | None = None) -> None:
        self._conn = conn
        self._cache = cache
        self.session_id = session_id
        row = conn.read_head(session_id)
        self.exists = row is not None
        self.state = HeadState(session_id) if row is None else HeadState.from_row(row)
        self._stored_version = self.state.version
        self._stored_next_seq = self.state.next_seq  # rows below this are in view_messages
        self._stored_watermark = self.state.watermark
        self._stored_pinned = self.state.pinned
        self._new: list[tuple[int, int, int, int]] = []  # (seq, tokens, position, idx)
        self._new_messages: list[Message] = []
        self._retracted = False  # stored rows left the view from its end
        # The running summary is not in the row: a summary buffer's write, which reads it
        # in its plan, sets the position of the one in force before it folds its events.
        self.summary = ""
        self.summary_position = 0
        self.last_prune: tuple[int, int, int] | None = None
        # A rewind's write knows the messages it brings back (see `recall`).
        self.recalled: dict[tuple[int, int], Message] = {}
        self.recalled_summary = ""
        self.what_if = False  # the live path: never a replay
        # The view was replaced whole (a fork's start, an erasure): the cache forgets it.
        self._forget_cache = False
        self._recounted = False  # the stored counts were replaced: the cache's are stale
        self.appended_at = 0  # recorded_at of the last event this write appended

    @property
    def version(self) -> int:
        """The session's version: the position of its last event."""
        return self.state.version

    # -- Buffer protocol -------------------------------------------------------------
    def append(self, message: Message, tokens: int, position: int, index: int) -> None:
        """Add a message to the buffer (its row, pointing at its event, is written on
        flush)."""
        state = self.state
        self._new.append((state.next_seq, tokens, position, index))
        self._new_messages.append(message)
        state.next_seq += 1
        state.total_tokens += tokens

    def _count(self, seq: int) -> int:
        """The count of the visible message ``seq``: new in this write, or stored."""
        if seq >= self._stored_next_seq:
            return self._new[seq - self._stored_next_seq][1]
        cache = self._cache
        if cache is not None and not self._recounted:
            known = cache.count(self.session_id, self._stored_version, seq)
            if known is not None:
                return known
        return self._conn.stored_count(self.session_id, seq)

    def drop_oldest(self) -> None:
        """Prune the message at the watermark, reading its count if it is stored."""
        state = self.state
        state.total_tokens -= self._count(state.watermark)
        state.watermark += 1

    def drop_all(self) -> None:
        """Prune every visible message."""
        self.state.watermark = self.state.next_seq
        self.state.total_tokens = 0
        self.state.pinned = -1

    def pin_oldest(self) -> None:
        """Keep the pinned message, at the watermark, visible below it."""
        self.state.watermark += 1

    def drop_pinned(self) -> None:
        """Prune the pinned message (its row goes on flush)."""
        state = self.state
        state.total_tokens -= self._count(state.pinned)
        state.pinned = -1

    def drop_newest(self) -> None:
        """Remove the newest visible message (a stored row goes on flush)."""
        state = self.state
        seq = state.next_seq - 1 if state.next_seq > state.watermark else state.pinned
        state.total_tokens -= self._count(seq)
        if seq >= self._stored_next_seq:
            self._new.pop()
            self._new_messages.pop()
        else:
            self._retracted = True
        if seq == state.pinned:
            state.pinned = -1
        if seq >= state.watermark:
            state.next_seq = seq

    def visible(self) -> list[Message]:
        """The visible messages: the stored rows, then the ones this write added."""
        # The table holds the rows from before this write; new ones are not flushed yet.
        state, stored_next = self.state, self._stored_next_seq
        pinned = state.pinned if 0 <= state.pinned < state.watermark else -1
        messages = self.visible_messages(min(state.next_seq, stored_next))
        if pinned >= stored_next:
            messages.append(self._new_messages[pinned - stored_next])
        first_new = max(state.watermark - stored_next, 0)
        return messages + self._new_messages[first_new : state.next_seq - stored_next]

    def add_pending(self, position: int, step: StepRecorded) -> None:
        """Hold a step: nothing to keep, its event row is what is held."""

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        """The steps recorded since the last turn, read from their events."""
        return self.held()

    def held(self) -> list[tuple[int, StepRecorded]]:
        """The steps held for the next turn (``HeadState.pending_steps`` of them, after
        ``HeadState.turn_position``), read from their events."""
        held: list[tuple[int, StepRecorded]] = []
        if self.state.pending_steps:
            for position, data in self._conn.execute(
                "SELECT position, data FROM events WHERE session_id = ? AND position > ?"
                " AND kind = 'step' ORDER BY position",
                (self.session_id, self.state.turn_position),
            ):
                step = decode_event(
                    self._conn.content.open(self.session_id, position, data), trusted=True
                )
                assert isinstance(step, StepRecorded)
                held.append((position, step))
        return held

    def recall(self, position: int, index: int) -> Message:
        """A message a rewind brings back: its write folded the history and put the
        messages in ``recalled``."""
        message = self.recalled.get((position, index))
        if message is None:
            raise CorruptDatabaseError(
                f"the rewind restores message {index} of position {position}, which its "
                "write did not fold"
            )
        return message

    def recall_summary(self, position: int) -> str:
        """The summary in force at the point a rewind goes back to (``recalled_summary``)."""
        return self.recalled_summary

    def restores(self, event: ViewRewound) -> ViewRewound:
        """The rewind as it is: its write built it from the fold itself."""
        return event

    def adopt(self, buffer: MemoryBuffer, version: int, head_hash: bytes) -> None:
        """Begin a new session as ``buffer`` (another session's view after ``version``,
        whose event has hash ``head_hash``): a fork's start. Its rows, pointing at the
        parent's events, are written on flush."""
        state = HeadState.from_row(buffer.state.row())
        state.session_id = self.session_id
        state.version, state.head_hash = version, head_hash
        self.state = state
        self._new = [(e.seq, e.tokens, e.position, e.index) for e in buffer.entries]
        self._new_messages = [e.message for e in buffer.entries]
        self._forget_cache = True

    def forget_cached(self) -> None:
        """Have the cache forget the session once this write commits (its rows were
        replaced other than through the buffer)."""
        self._forget_cache = True

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Replace the stored counts of the visible messages."""
        watermark = self.state.watermark
        self._conn.executemany(
            "UPDATE view_messages SET tokens = ? WHERE session_id = ? AND seq = ?",
            [(t, self.session_id, watermark + i) for i, t in enumerate(tokens)],
        )
        self.state.total_tokens = sum(tokens)
        self._conn.counts_changed(self.session_id)
        self._recounted = self._forget_cache = True  # the cached counts are the old ones

    # -- persistence -----------------------------------------------------------------
    def visible_messages(self, end: int | None = None) -> list[Message]:
        """The visible messages of the stored rows (before this write's additions), those
        below ``end`` if given: from the cache when it holds the stored version (no row
        read, nothing decoded), else from the table."""
        state = self.state
        pinned = state.pinned if 0 <= state.pinned < state.watermark else state.watermark
        stop = state.next_seq if end is None else end
        cached = (
            None
            if self._cache is None
            else self._cache.items(self.session_id, self._stored_version)
        )
        if cached is not None:
            return [
                message
                for seq, message in cached
                if (seq >= state.watermark or seq == pinned) and seq < stop
            ]
        rows = self._conn.execute(
            f"{VIEW_ROWS} WHERE v.session_id = ? AND (v.seq >= ? OR v.seq = ?) AND v.seq < ?"
            " ORDER BY v.seq",
            (self.session_id, state.watermark, pinned, stop),
        )
        opened = opened_in(self._conn.content, self.session_id)
        return [
            message for _, message in resolve(rows, inheriting(self._conn, self.session_id), opened)
        ]

    def append_event(self, event: Event, now_us: int, data: bytes | None = None) -> int:
        """Insert the next event of the session, chained to the previous one; ``data`` is
        its encoding, if the caller already has it."""
        state = self.state
        if state.erased:
            raise ErasedSessionError(
                f"session {self.session_id!r} was erased (its tombstone is at position "
                f"{state.erased}); it takes no more writes"
            )
        if data is None:
            data = encode_event(event)
        position = state.version + 1
        kind = event.__struct_config__.tag
        assert isinstance(kind, str)
        data = self._conn.content.close(self.session_id, position, kind, data)
        content = content_digest(data)
        digest = event_hash(state.head_hash, self.session_id, position, now_us, content)
        self._conn.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.session_id,
                position,
                kind,
                now_us,
                data.decode(),
                digest,
                content,
            ),
        )
        state.chain(position, now_us, digest)
        self.appended_at = now_us
        return position

    def update_cache(self, cache: ViewCache) -> None:
        """Tell the cache what this (committed) write changed."""
        if self._forget_cache:
            cache.forget([self.session_id])  # read again on the next load
            return
        first_new = self._stored_next_seq
        state = self.state
        cache.advance(
            self.session_id,
            self._stored_version,
            state.version,
            (state.watermark, state.pinned, state.next_seq),
            [(first_new + i, m) for i, m in enumerate(self._new_messages)],
            [row[1] for row in self._new],
        )

    def flush(self) -> None:
        """Write the buffer's changes and the session's head row."""
        state = self.state
        watermark, stored, pinned = state.watermark, self._stored_watermark, state.pinned
        stored_pinned = self._stored_pinned
        end = min(watermark, self._stored_next_seq)
        if (watermark > stored and self._stored_next_seq > stored) or (
            0 <= stored_pinned < stored and pinned != stored_pinned
        ):
            # From the oldest stored row up: no row is below it, and a range open below
            # would walk every dead row PostgreSQL has not vacuumed yet.
            start = stored_pinned if 0 <= stored_pinned < stored else stored
            if 0 <= pinned < end:
                self._conn.execute(
                    "DELETE FROM view_messages WHERE session_id = ? AND seq >= ? AND seq < ?"
                    " AND seq <> ?",
                    (self.session_id, start, end, pinned),
                )
            else:
                self._conn.execute(
                    "DELETE FROM view_messages WHERE session_id = ? AND seq >= ? AND seq < ?",
                    (self.session_id, start, end),
                )
        if self._retracted:  # (a retracted pinned row went with the pruned ones above)
            self._conn.execute(
                "DELETE FROM view_messages WHERE session_id = ? AND seq >= ?",
                (self.session_id, state.next_seq),
            )
        kept = [row for row in self._new if row[0] >= watermark or row[0] == pinned]
        for start in range(0, len(kept), _ROWS_PER_INSERT):
            # Multi-row statements: cheaper than executemany for the usual 2 rows, and
            # chunked to stay under SQLite's limit on bound variables.
            chunk = kept[start : start + _ROWS_PER_INSERT]
            self._conn.execute(
                _INSERT_ROWS + ", ".join(["(?, ?, ?, ?, ?, NULL)"] * len(chunk)),
                [value for row in chunk for value in (self.session_id, *row)],
            )
        row = state.row()
        self._conn.execute(_UPSERT_HEAD, row)
        self._conn.remember_head(row)
        if self._retracted:
            self._conn.counts_changed(self.session_id)  # seqs are reused: forget them all
        else:
            self._conn.counts_changed(self.session_id, watermark, [r[:2] for r in kept])


def write_transaction(conn: Connection, body: Callable[[], T]) -> T:
    """Run ``body`` in one write transaction."""
    conn.begin_write()
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result
