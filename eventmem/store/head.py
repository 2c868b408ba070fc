"""The live path's view of one session: its projection row as a ``Buffer``.

``SessionHead`` reads the session's row once per write, fetches only the buffer
rows it prunes, and writes its changes back on ``SessionHead.flush``; the pure
``eventmem.projection.apply`` drives it exactly as it drives an in-memory buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import msgspec

from eventmem.errors import ConcurrencyError
from eventmem.events import (
    GENESIS_HASH,
    Event,
    StepRecorded,
    chain_hash,
    decode_event,
    encode_event,
)
from eventmem.messages import Message, decode_trusted
from eventmem.store.cache import ViewCache
from eventmem.store.sql import HEAD_COLUMNS, Connection

__all__ = [
    "HEAD_COLUMNS",
    "SessionHead",
    "check_expected",
    "decode_message",
    "encode_message",
    "now_us",
    "write_transaction",
]

T = TypeVar("T")
_ROWS_PER_INSERT = 100

encode_message = msgspec.json.Encoder().encode
_message_decoder = msgspec.json.Decoder(Message)


def decode_message(data: bytes | str) -> Message:
    """A buffer row's message (written, so validated, by eventmem itself)."""
    return decode_trusted(_message_decoder.decode, data)


def now_us() -> int:
    """Now, in microseconds since the Unix epoch (the events' ``recorded_at``)."""
    return time.time_ns() // 1000


class SessionHead:
    """A session's projection row, used as the ``Buffer``
    of the live path: it reads only the rows it prunes and writes its changes on flush.
    """

    def __init__(self, conn: Connection, session_id: str) -> None:
        self._conn = conn
        self.session_id = session_id
        row = conn.read_head(session_id)
        self.exists = row is not None
        if row is None:
            row = (session_id, 0, GENESIS_HASH, 0, 0, 0, 0, None, None, 0, 0)
        self.version: int = row[1]
        self.head_hash: bytes = row[2]
        self.next_seq: int = row[3]
        self.watermark: int = row[4]
        self.total_tokens: int = row[5]
        self.overhead: int = row[6]
        self.counter: str | None = row[7]
        self.created_at: int | None = row[8]
        self.turn_position: int = row[9]  # position of the last turn
        self.pending_steps: int = row[10]  # step events after it, not yet in a turn
        self._stored_version = self.version
        self._stored_next_seq = self.next_seq  # rows below this are in view_messages
        self._stored_watermark = self.watermark
        self._new: list[tuple[int, int, str]] = []  # (seq, tokens, message json)
        self._new_messages: list[Message] = []

    # -- Buffer protocol -------------------------------------------------------------
    def append(self, message: Message, tokens: int) -> None:
        """Add a message to the buffer (written on flush)."""
        self._new.append((self.next_seq, tokens, encode_message(message).decode()))
        self._new_messages.append(message)
        self.next_seq += 1
        self.total_tokens += tokens

    def drop_oldest(self) -> None:
        """Prune the oldest visible message, reading its count if it is stored."""
        seq = self.watermark
        if seq >= self._stored_next_seq:
            tokens = self._new[seq - self._stored_next_seq][1]
        else:
            tokens = self._conn.stored_count(self.session_id, seq)
        self.total_tokens -= tokens
        self.watermark += 1

    def drop_all(self) -> None:
        """Prune every visible message."""
        self.watermark = self.next_seq
        self.total_tokens = 0

    def visible(self) -> list[Message]:
        """The visible messages: the stored rows, then the ones this write added."""
        # The table holds the rows from before this write; new ones are not flushed yet.
        first_new = max(self.watermark - self._stored_next_seq, 0)
        return self.visible_messages() + self._new_messages[first_new:]

    def add_pending(self, position: int, step: StepRecorded) -> None:
        """Hold a step (its event row is what is held)."""
        self.pending_steps += 1  # the event row itself is what is held

    def take_pending(self) -> list[tuple[int, StepRecorded]]:
        """The steps recorded since the last turn, read from their events."""
        taken: list[tuple[int, StepRecorded]] = []
        if self.pending_steps:
            for position, data in self._conn.execute(
                "SELECT position, data FROM events WHERE session_id = ? AND position > ?"
                " AND kind = 'step' ORDER BY position",
                (self.session_id, self.turn_position),
            ):
                step = decode_event(data, trusted=True)
                assert isinstance(step, StepRecorded)
                taken.append((position, step))
        self.pending_steps = 0
        self.turn_position = self.version
        return taken

    def pending(self) -> list[tuple[int, StepRecorded]]:
        """The steps held for the next turn, without releasing them."""
        saved = (self.pending_steps, self.turn_position)
        taken = self.take_pending()
        self.pending_steps, self.turn_position = saved
        return taken

    def set_counts(self, tokens: tuple[int, ...]) -> None:
        """Replace the stored counts of the visible messages."""
        self._conn.executemany(
            "UPDATE view_messages SET tokens = ? WHERE session_id = ? AND seq = ?",
            [(t, self.session_id, self.watermark + i) for i, t in enumerate(tokens)],
        )
        self.total_tokens = sum(tokens)
        self._conn.counts_changed(self.session_id)

    # -- persistence -----------------------------------------------------------------
    def visible_messages(self) -> list[Message]:
        """The visible messages as stored (before this write's additions)."""
        return [
            decode_message(row[0])
            for row in self._conn.execute(
                "SELECT message FROM view_messages WHERE session_id = ? AND seq >= ? ORDER BY seq",
                (self.session_id, self.watermark),
            )
        ]

    def append_event(self, event: Event, now_us: int, data: bytes | None = None) -> int:
        """Insert the next event of the session, chained to the previous one; ``data`` is
        its encoding, if the caller already has it."""
        if data is None:
            data = encode_event(event)
        position = self.version + 1
        digest = chain_hash(self.head_hash, self.session_id, position, now_us, data)
        self._conn.execute(
            "INSERT INTO events (session_id, position, kind, recorded_at, data, hash)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.session_id,
                position,
                event.__struct_config__.tag,
                now_us,
                data.decode(),
                digest,
            ),
        )
        self.version, self.head_hash = position, digest
        if self.created_at is None:
            self.created_at = now_us
        return position

    def update_cache(self, cache: ViewCache) -> None:
        """Tell the cache what this (committed) write changed."""
        first_new = self._stored_next_seq
        cache.advance(
            self.session_id,
            self._stored_version,
            self.version,
            self.watermark,
            [(first_new + i, m) for i, m in enumerate(self._new_messages)],
        )

    def flush(self) -> None:
        """Write the buffer's changes and the session's head row."""
        if self.watermark > self._stored_watermark and self._stored_next_seq > (
            self._stored_watermark
        ):
            self._conn.execute(
                "DELETE FROM view_messages WHERE session_id = ? AND seq < ?",
                (self.session_id, min(self.watermark, self._stored_next_seq)),
            )
        kept = [row for row in self._new if row[0] >= self.watermark]
        for start in range(0, len(kept), _ROWS_PER_INSERT):
            # Multi-row statements: cheaper than executemany for the usual 2 rows, and
            # chunked to stay under SQLite's limit on bound variables.
            chunk = kept[start : start + _ROWS_PER_INSERT]
            self._conn.execute(
                "INSERT INTO view_messages (session_id, seq, tokens, message) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
                [value for row in chunk for value in (self.session_id, *row)],
            )
        row = (
            self.session_id,
            self.version,
            self.head_hash,
            self.next_seq,
            self.watermark,
            self.total_tokens,
            self.overhead,
            self.counter,
            self.created_at,
            self.turn_position,
            self.pending_steps,
        )
        self._conn.execute(
            f"INSERT INTO sessions ({HEAD_COLUMNS}) VALUES ({', '.join('?' * 11)})"
            " ON CONFLICT (session_id) DO UPDATE SET version = excluded.version,"
            " head_hash = excluded.head_hash, next_seq = excluded.next_seq,"
            " watermark = excluded.watermark, total_tokens = excluded.total_tokens,"
            " overhead = excluded.overhead, counter = excluded.counter,"
            " turn_position = excluded.turn_position, pending_steps = excluded.pending_steps",
            row,
        )
        self._conn.remember_head(row)
        self._conn.counts_changed(self.session_id, self.watermark, [r[:2] for r in kept])


def check_expected(head: SessionHead, expected_version: int | None) -> None:
    """Raise [`ConcurrencyError`][eventmem.ConcurrencyError] unless the session is at
    ``expected_version``."""
    if expected_version is not None and expected_version != head.version:
        raise ConcurrencyError(
            f"session {head.session_id!r} is at version {head.version}, "
            f"not the expected {expected_version}"
        )


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
