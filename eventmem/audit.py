"""Audit over event logs: chain verification and the fold it checks, replay under other
settings.

Pure functions over rows and events; the backend feeds them. Replay and time travel use
`eventmem.projection.fold`, the same fold the live path applies. The export file format
is `eventmem._export_format` (its names are importable from here too).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, get_args

import msgspec

from eventmem._export_format import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ExportEnd,
    ExportHeader,
    ExportLine,
    ExportReader,
    export_line,
    max_line_bytes,
)
from eventmem.checkpoint_index import CheckpointIndex
from eventmem.errors import (
    CorruptDatabaseError,
    DataKeyMissingError,
    EventmemError,
    InputTooLargeError,
    InvalidInputError,
    KeysRequiredError,
)
from eventmem.events import (
    ERASED_DATA,
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWritesSaved,
    ContentErased,
    Event,
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    SessionErased,
    SessionForked,
    SessionSealed,
    StepRecorded,
    SummaryRecorded,
    TurnSaved,
    ViewRewound,
    chain_hash,
    check_event,
    content_digest,
    decode_event,
    encode_event,
    event_hash,
)
from eventmem.messages import InvalidToolCall, Message, ToolCall, build_trusted, decode_trusted
from eventmem.projection import Archive, BufferEntry, HeadState, MemoryBuffer, apply
from eventmem.store.view_rows import ViewRow
from eventmem.tokens import TokenCounter

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ChainChecker",
    "ExportEnd",
    "ExportHeader",
    "ExportLine",
    "ExportReader",
    "FoldOutcome",
    "Problem",
    "SessionFold",
    "VerifyReport",
    "export_line",
    "max_line_bytes",
    "rewrite_for_replay",
]

# (session, position, stored data) -> the event JSON (see eventmem.store.content).
Opener = Callable[[str, int, bytes], bytes]

ProblemKind = Literal[
    "missing_event",
    "hash_mismatch",
    "undecodable",
    "kind_mismatch",
    "fork_mismatch",
    "truncated",
    "projection_mismatch",
    "orphan_projection",
    "trigger_mismatch",
    "anchor_signature",
    "anchor_session_missing",
    "anchor_truncated",
    "anchor_rewritten",
    "provider_rejects",
]


class Problem(msgspec.Struct, frozen=True):
    """One finding of [`Store.verify`][eventmem.Store.verify]: the first bad position of a
    session.

    A finding about the whole store (``trigger_mismatch``: the log's immutability
    triggers are missing, disabled or changed; ``anchor_signature``: an anchor that the
    key did not sign, or that was altered) has an empty ``session_id`` and position 0.
    The ``anchor_*`` kinds compare the store with an anchor (``eventmem.anchors``): a
    session it holds is gone (``anchor_session_missing``), ends before the anchored
    position (``anchor_truncated``), or has another event there (``anchor_rewritten``).
    ``provider_rejects`` (asked for with ``provider=``): from this position on, a view
    that the provider's API would have refused.
    """

    session_id: str
    position: int
    kind: ProblemKind
    detail: str


class VerifyReport(msgspec.Struct):
    """What [`Store.verify`][eventmem.Store.verify] found. ``ok`` is true when ``problems``
    is empty."""

    sessions: int = 0
    events: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every chain, head and projection checked out."""
        return not self.problems


class _StoredTurn(TurnSaved, tag="turn", frozen=True, omit_defaults=True):
    """A stored turn whose messages stay their JSON text: what rebuild folds."""

    messages: tuple[msgspec.Raw, ...]  # type: ignore[assignment]


class _StoredStep(StepRecorded, tag="step", frozen=True, omit_defaults=True):
    """A stored step whose messages stay their JSON text: what rebuild folds."""

    messages: tuple[msgspec.Raw, ...]  # type: ignore[assignment]


# The event union with the messages left undecoded. Pruning reads only the counts, and a
# message's JSON is decoded only if it stays in the buffer (or the pair-safe rule reads it).
# A general append is decoded whole: its fold reads its messages' roles.
_decode_stored = msgspec.json.Decoder(
    _StoredTurn
    | _StoredStep
    | MessagesAppended
    | MemoryCleared
    | MessagesRetracted
    | SummaryRecorded
    | SessionForked
    | ViewRewound
    | SessionErased
    | SessionSealed
    | ContentErased
    | CheckpointSaved
    | CheckpointWritesSaved
    | CheckpointsDeleted
).decode
_decode_message = msgspec.json.Decoder(Message).decode
_encode_message = msgspec.json.Encoder().encode


# Each event type's tag (the stored structs share their base's), looked up per event.
_TAGS: dict[type, str] = {
    kind: str(kind.__struct_config__.tag) for kind in (*get_args(Event), _StoredTurn, _StoredStep)
}
_CHECKPOINT_EVENTS = frozenset({CheckpointSaved, CheckpointWritesSaved, CheckpointsDeleted})
_FORK_OR_REWIND = frozenset({SessionForked, ViewRewound, SessionErased, SessionSealed})
_decode_fork = msgspec.json.Decoder(SessionForked).decode


def _decode_stored_event(data: bytes, *, trusted: bool) -> Event:
    decoded: Event = _decode_stored(data)
    return decoded


def _as_message(message: Message | msgspec.Raw) -> Message:
    if isinstance(message, msgspec.Raw):
        decoded: Message = decode_trusted(_decode_message, message)
        return decoded
    return message


class _PruneNoting(MemoryBuffer):
    """A `SessionFold`'s buffer: it notes the position of the event holding each message
    it prunes (``dropped``, newest last; `SessionFold` empties it now and then), for the
    summaries' checks."""

    def __init__(self, session_id: str = "") -> None:
        super().__init__(session_id)
        self.dropped: list[int] = []

    def drop_oldest(self) -> None:
        """`MemoryBuffer.drop_oldest` (inline: once a message), noting the position."""
        state, entries = self.state, self.entries
        if 0 <= state.pinned < state.watermark:
            entry = entries[1]
            del entries[1]
        else:
            entry = entries.popleft()
        state.total_tokens -= entry.tokens
        state.watermark += 1
        self.dropped.append(entry.position)


class _FoldBuffer(_PruneNoting):
    """The buffer of a `SessionFold`: its messages may still be stored JSON
    (``msgspec.Raw``), decoded where the fold reads them."""

    def visible(self) -> list[Message]:
        """The visible messages, decoded (the pair-safe rule reads them)."""
        self.entries = deque(
            BufferEntry(e.seq, _as_message(e.message), e.tokens, e.position, e.index)
            for e in self.entries
        )
        return super().visible()


IndexRows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


class _SkeletonBuffer(_PruneNoting):
    """A fold's buffer that keeps of each message only what the fold itself reads (its
    role and the ids that pair tool calls with results), not its text: an import folds
    every session of a file at once, so its memory is the sessions' count times their
    views' length, never their text. The projection rows point at the events anyway."""

    __slots__ = ()

    def append(self, message: Message, tokens: int, position: int = 0, index: int = 0) -> None:
        """Add the message's skeleton."""
        super().append(_skeleton(message), tokens, position, index)


_PLAIN_SKELETONS: dict[str, Message] = {}


def _skeleton(message: Message) -> Message:
    """``message`` without its text, metadata and tool arguments (built unchecked: it
    comes from a checked message, and a rule may want what it leaves out)."""
    if (
        not message.tool_calls
        and not message.invalid_tool_calls
        and message.tool_call_id is None
        and message.function_call is None
        and message.name is None
    ):
        plain = _PLAIN_SKELETONS.get(message.role)
        if plain is None:
            plain = _PLAIN_SKELETONS[message.role] = build_trusted(
                lambda: Message(message.role, "")
            )
        return plain
    return build_trusted(
        lambda: Message(
            message.role,
            "",
            name=message.name,
            tool_calls=tuple(ToolCall(c.name, {}, c.id) for c in message.tool_calls),
            tool_call_id=message.tool_call_id,
            function_call=None if message.function_call is None else {},
            invalid_tool_calls=tuple(InvalidToolCall(id=c.id) for c in message.invalid_tool_calls),
        )
    )


class FoldOutcome(msgspec.Struct, frozen=True):
    """Where a `SessionFold` ended, without the fold: what verify compares with the
    stored projection and rebuild writes. A fold run in another process
    (``eventmem.store.sqlite.fold_worker``) sends these back.

    ``messages`` holds the visible messages' JSON when the fold was asked for it (a
    session whose stored buffer still has rows from before schema 5, which hold their
    message instead of pointing at it); without it such rows cannot be compared here.
    ``deferred``: the session is a fork or holds a rewind, so only its chain was checked
    (see `SessionFold.deferred`).
    """

    session_id: str
    broken: bool
    head: tuple[Any, ...]
    view: list[ViewRow]
    index: IndexRows
    messages: list[str] | None = None
    deferred: bool = False

    @property
    def state(self) -> HeadState:
        """The session's head after its events."""
        return HeadState.from_row(self.head)

    def index_rows(self) -> IndexRows:
        """The checkpoint index rows the fold says the tables hold."""
        return self.index

    def view_differs(self, stored: list[Sequence[Any]]) -> bool | None:
        """`SessionFold.view_differs`; None when a row from before schema 5 would need
        the messages, which this outcome does not hold."""
        if len(stored) != len(self.view):
            return True
        for index, (row, mine) in enumerate(zip(stored, self.view, strict=True)):
            if tuple(row[:3]) != mine[:3]:
                return True
            if row[3] is None:
                if self.messages is None:
                    return None
                if row[4] is not None or row[5] != self.messages[index]:
                    return True
            elif tuple(row[3:]) != mine[3:]:
                return True
        return False


class SessionFold:
    """A session's state while its events are read in order: chain and buffer."""

    __slots__ = (
        "archive",
        "broken",
        "buffer",
        "checkpoints",
        "deferred",
        "digests",
        "erased_run",
        "first_own",
        "keep_digests",
        "last_kind",
        "sealed_to",
        "session_id",
        "slack",
        "start_at",
        "trusted",
    )

    def __init__(
        self,
        session_id: str,
        *,
        trusted: bool = False,
        skeleton: bool = False,
        archive: Archive | None = None,
    ) -> None:
        """``trusted``: the events come from this store (their messages were validated
        when written), so decoding skips re-validating them once the hash matches.
        ``skeleton``: the buffer keeps no message text (see `_SkeletonBuffer`; for a
        fold whose buffer only becomes projection rows, like an import's).
        ``archive``: fold the whole history of a fork or of a session with rewinds
        (see `fold_history`); without one, such a session is ``deferred``: its events
        are checked against the chain, and its buffer is left to `fold_history`, which
        reads the history a stream of one session's events does not hold."""
        self.session_id = session_id
        self.archive = archive
        self.deferred = False
        self.erased_run = 0  # erased events so far, since the first of the session's own
        self.first_own = 0  # the position before the session's own first event to erase
        # A fold of a whole sealed history: the events before ``sealed_to`` are sealed,
        # and the fold starts over at the last seal, at ``start_at`` (see fold_history).
        self.sealed_to = 0
        self.start_at = 0
        self.trusted = trusted
        self.last_kind = ""
        self.buffer: _PruneNoting = (
            _SkeletonBuffer(session_id) if skeleton else _FoldBuffer(session_id)
        )
        if archive is not None:
            self.buffer.archive = archive
        self.checkpoints = CheckpointIndex(session_id)
        self.broken = False
        # The chain hashes of the events holding visible messages (and a few more, up to
        # keep_digests): what a summary is checked by, with the buffer's ``dropped``.
        self.digests: dict[int, bytes] = {}
        # How many more may pile up before they are trimmed: few in an import, which
        # holds every session's fold at once; more where trimming would cost CPU.
        self.slack = 8 if skeleton else 64
        self.keep_digests = self.slack

    @property
    def state(self) -> HeadState:
        """The session's head after the events folded so far."""
        return self.buffer.state

    def __reduce__(self) -> tuple[Callable[..., SessionFold], tuple[Any, ...]]:
        """Pickled as plain values (an import keeps folds it holds no memory for this
        way): the buffer's entries with a skeleton message as its role, its head as a
        row, and every other attribute of the fold and of its buffer as it is."""
        buffer, index = self.buffer, self.checkpoints
        entries = [
            (e.seq, _skeleton_role(e.message), e.tokens, e.position, e.index)
            for e in buffer.entries
        ]
        own = {name: getattr(self, name) for name in _FOLD_FIELDS}
        kept = {k: v for k, v in vars(buffer).items() if k not in ("entries", "state")}
        return _restored_fold, (
            own,
            isinstance(buffer, _SkeletonBuffer),
            buffer.state.row(),
            entries,
            kept,
            (index.checkpoints, index.blobs, index.writes),
        )

    def add(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        kind: str | None = None,
        content: bytes | None = None,
        opened: Opener | None = None,
    ) -> Problem | None:
        """Check one stored event against the chain (and its ``kind`` column, if given,
        against its type) and fold it; a problem stops the session. ``content`` is its
        content digest (None: an event of the first chain, from before schema 7).
        ``opened(session, position, data)``: the event JSON of stored ``data`` (an
        encrypted store's; see `eventmem.store.content`)."""
        return self._add(position, recorded_at, data, digest, kind, decode_event, content, opened)

    def add_stored(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        kind: str,
        content: bytes | None = None,
        opened: Opener | None = None,
    ) -> Problem | None:
        """`add` for rebuild: the same checks, but the messages stay their stored
        JSON and `view_rows` decodes the few that stay in the buffer. The same
        `apply` runs on them."""
        return self._add(
            position, recorded_at, data, digest, kind, _decode_stored_event, content, opened
        )

    def _add(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        kind: str | None,
        decode: Callable[..., Event],
        content: bytes | None = None,
        opened: Opener | None = None,
    ) -> Problem | None:
        if self.broken:
            return None
        state = self.buffer.state
        previous = state.head_hash
        if position != state.version + 1:
            start = self._fork_start(position, data, kind) if state.version == 0 else None
            if start is None:
                expected = state.version + 1
                return self._fail(
                    expected,
                    "missing_event",
                    f"expected position {expected}, found {position}: an event was deleted "
                    "or moved",
                )
            previous = start  # checked against the parent's by fold_history
        erased = data == ERASED_DATA
        if content is None:  # the first chain: the hash covers the content itself
            # (an event of that chain whose content was erased cannot be checked)
            chained = erased or chain_hash(previous, self.session_id, position, recorded_at, data)
            sound = chained is True or chained == digest
        else:
            if not erased and content_digest(data) != content:
                return self._fail(
                    position,
                    "hash_mismatch",
                    "the event's content does not match its stored digest: it was edited",
                )
            sound = event_hash(previous, self.session_id, position, recorded_at, content) == digest
        if not sound:
            return self._fail(
                position,
                "hash_mismatch",
                "the stored hash does not match the event's content and predecessor: "
                "the event was edited, moved or inserted",
            )
        if erased:
            return self._erased(position, recorded_at, digest)
        if opened is not None:
            try:
                data = opened(self.session_id, position, data)
            except (
                CorruptDatabaseError,
                DataKeyMissingError,
                KeysRequiredError,
                InputTooLargeError,
            ) as e:
                return self._fail(position, "undecodable", str(e))
        try:
            event = decode(data, trusted=self.trusted)
        except (msgspec.DecodeError, msgspec.ValidationError, EventmemError, RecursionError) as e:
            return self._fail(position, "undecodable", f"the event does not decode: {e}")
        if not self.trusted:
            try:
                _check_foreign(event, data)
            except EventmemError as e:
                return self._fail(position, "undecodable", f"the event breaks a rule: {e}")
        self.last_kind = _TAGS[type(event)]
        if kind is not None and kind != self.last_kind:
            # The column is outside the hash; exports copy it and imports check it.
            return self._fail(
                position,
                "kind_mismatch",
                f"the kind column says {kind!r} but the event is a {self.last_kind!r}",
            )
        try:
            self.fold(position, recorded_at, event, digest)
        except EventmemError as e:
            return self._fail(position, "undecodable", f"the event does not fold: {e}")
        return None

    def _erased(self, position: int, recorded_at: int, digest: bytes) -> Problem | None:
        """An event whose content was erased: chained, not folded. A stream of events
        leaves the session to `fold_history`; a fold of the whole history checks that
        erased events run from the session's first to its tombstone."""
        state = self.buffer.state
        self.last_kind = "erased"
        if self.archive is None:
            self.deferred = True
        elif self.erased_run == 0 and state.version > self.first_own:
            return self._fail(
                position,
                "undecodable",
                "an event's content was erased, but not the events before it: erased "
                "outside an erasure",
            )
        self.erased_run += 1
        state.chain(position, recorded_at, digest)
        return None

    def _fork_start(self, position: int, data: bytes, kind: str | None) -> bytes | None:
        """The parent hash a fork's first event (at ``position``, past 1) names, or None
        if the event is not one."""
        if kind not in (None, "fork"):
            return None
        try:
            event = _decode_fork(data)
            parent_hash = bytes.fromhex(event.parent_hash)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            return None
        return parent_hash if event.at == position - 1 and len(parent_hash) == 32 else None

    def inherit(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        opened: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """Fold an event of a fork's parent (its chain is the parent's to check);
        ``opened``: its event JSON, if ``data`` may be encrypted."""
        if opened is not None:
            data = opened(data)
        event = _decode_stored_event(data, trusted=True)
        self.fold(position, recorded_at, event, digest, own=False)

    def fold(
        self, position: int, recorded_at: int, event: Event, digest: bytes, *, own: bool = True
    ) -> None:
        """Apply an already checked event (``own``: of this session, not inherited)."""
        buffer = self.buffer
        kind = type(event)
        if self.deferred or (self.archive is None and kind in _FORK_OR_REWIND):
            self.deferred = True  # fold_history folds the buffer
            buffer.state.chain(position, recorded_at, digest)
            return
        if kind is SessionForked:
            if event.parent_hash != buffer.state.head_hash.hex():  # type: ignore[union-attr]
                raise CorruptDatabaseError(
                    "the fork names a parent hash that is not the hash of its parent's "
                    f"event at {position - 1}"
                )
            self.first_own = position  # an erasure keeps the fork event itself
        elif kind is SessionErased:
            self._check_tombstone(event)  # type: ignore[arg-type]
        elif self.erased_run and self.first_own + self.erased_run + 1 != self.sealed_to:
            raise CorruptDatabaseError(
                f"events up to {position - 1} were erased, but no tombstone or seal covers them"
            )
        if position < self.start_at:  # before the last seal: the fold starts over there
            buffer.state.chain(position, recorded_at, digest)
            self.digests[position] = digest
            if self.archive is not None:
                self.archive.keep(buffer, event, position)
            return
        if kind is SummaryRecorded:
            apply(buffer, event, position)  # checks the seqs it covers
            self._check_summary(event)  # type: ignore[arg-type]  # (the type is checked)
        else:
            digests = self.digests
            if len(digests) > self.keep_digests:
                self._forget_digests()  # before the event: what it prunes stays known
                digests = self.digests
            apply(buffer, event, position)
            if kind in _CHECKPOINT_EVENTS:
                if own:  # a fork's index holds its own checkpoints only
                    self.checkpoints.apply(event, position)
            else:
                digests[position] = digest
        buffer.state.chain(position, recorded_at, digest)
        if self.archive is not None:
            self.archive.keep(buffer, event, position)

    def _check_tombstone(self, event: SessionErased) -> None:
        """The tombstone names the erased events: how many, and the last one's hash; and
        they are every event of the session before it (a fork's own, after its fork
        event), as an erasure leaves them."""
        state = self.buffer.state
        if self.erased_run != state.version - self.first_own:
            raise CorruptDatabaseError(
                f"the tombstone follows {state.version - self.first_own} events of the "
                f"session, but only {self.erased_run} of them were erased"
            )
        if event.events != self.erased_run or event.last_hash != state.head_hash.hex():
            raise CorruptDatabaseError(
                f"the tombstone says {event.events} events were erased, ending with hash "
                f"{event.last_hash[:12]}..., but {self.erased_run} were, ending with "
                f"{state.head_hash.hex()[:12]}..."
            )

    def _check_summary(self, event: SummaryRecorded) -> None:
        """Raise unless the summary names the events, and their hashes, that hold the
        first and last message its turn pruned (the last ``end_seq - first_seq`` the
        buffer pruned: the fold checked that the turn right before pruned those seqs)."""
        count, dropped = event.end_seq - event.first_seq, self.buffer.dropped
        pruned = (dropped[-count], dropped[-1]) if 0 < count <= len(dropped) else None
        if pruned != (event.first_position, event.last_position):
            raise CorruptDatabaseError(
                f"the summary names positions {event.first_position} to "
                f"{event.last_position}, but the messages pruned are held at {pruned}"
            )
        for what, position, recorded in (
            ("first", event.first_position, event.first_hash),
            ("last", event.last_position, event.last_hash),
        ):
            held = self.digests.get(position)
            if held is None or held.hex() != recorded:
                raise CorruptDatabaseError(
                    f"the summary's {what}_hash is not the hash of the event at {position}"
                )

    def _forget_digests(self) -> None:
        """Keep only the hashes of the events whose messages are visible or held, and
        forget what was pruned before (a message that leaves the view never comes back
        but by a rewind, which a fold with an archive applies: it keeps them all; this
        runs before an event that is not a summary, so no summary will ask)."""
        buffer = self.buffer
        if self.archive is not None:
            buffer.dropped.clear()
            self.keep_digests = 2 * len(self.digests) + self.slack
            return
        keep = {e.position for e in buffer.entries} | {p for p, _ in buffer.pending}
        self.digests = {p: d for p, d in self.digests.items() if p in keep}
        self.keep_digests = 2 * len(self.digests) + self.slack
        buffer.dropped.clear()

    def view_rows(self) -> list[ViewRow]:
        """The buffer as ``view_messages`` rows, as the live path writes them: (session,
        seq, tokens, position, idx, None), each pointing at the event holding its text."""
        session_id = self.session_id
        return [
            (session_id, e.seq, e.tokens, e.position, e.index, None) for e in self.buffer.entries
        ]

    def index_rows(self) -> IndexRows:
        """The checkpoint index rows the fold says the tables hold, in key order."""
        index = self.checkpoints
        return index.checkpoint_rows(), index.blob_rows(), index.write_rows()

    def outcome(self, *, messages: bool = False) -> FoldOutcome:
        """Where the fold ended (with ``messages``: also the visible messages' JSON)."""
        return FoldOutcome(
            self.session_id,
            self.broken,
            self.state.row(),
            self.view_rows(),
            self.index_rows(),
            [_message_json(e.message) for e in self.buffer.entries] if messages else None,
            self.deferred,
        )

    def check_view(self) -> Problem | None:
        """The problem, if a visible message does not decode (see
        `ChainChecker.check_views`)."""
        for entry in self.buffer.entries:
            try:
                _as_message(entry.message)
            except (msgspec.DecodeError, msgspec.ValidationError, EventmemError) as e:
                return self._fail(
                    entry.position, "undecodable", f"a message in the buffer does not decode: {e}"
                )
        return None

    def view_differs(self, stored: list[Sequence[Any]]) -> bool:
        """Whether stored ``view_messages`` rows (``ROW_COLUMNS``, in seq order) are not
        this buffer's. A row from before schema 5 holds its message instead of pointing
        at it: it matches when the message is the one the fold has there."""
        entries = self.buffer.entries
        if len(stored) != len(entries):
            return True
        for row, entry in zip(stored, entries, strict=True):
            session_id, seq, tokens, position, idx, message = row
            if (session_id, seq, tokens) != (self.session_id, entry.seq, entry.tokens):
                return True
            if position is None:
                if idx is not None or message != _message_json(entry.message):
                    return True
            elif (position, idx, message) != (entry.position, entry.index, None):
                return True
        return False

    def _fail(self, position: int, kind: ProblemKind, detail: str) -> Problem:
        self.broken = True
        return Problem(self.session_id, position, kind, detail)


# What SessionFold.__reduce__ keeps of the fold itself (the buffer and the checkpoint
# index it keeps apart).
_FOLD_FIELDS = tuple(n for n in SessionFold.__slots__ if n not in ("buffer", "checkpoints"))


def _skeleton_role(message: Message | msgspec.Raw) -> Message | msgspec.Raw | str:
    """A plain skeleton's role (it is restored from it), else the message."""
    if isinstance(message, Message) and _PLAIN_SKELETONS.get(message.role) is message:
        return message.role
    return message


def _restored_fold(
    own: dict[str, Any],
    skeleton: bool,
    head: tuple[Any, ...],
    entries: list[tuple[int, Any, int, int, int]],
    kept: dict[str, Any],
    index: tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]],
) -> SessionFold:
    """The `SessionFold` that `SessionFold.__reduce__` pickled."""
    fold = SessionFold(own["session_id"], trusted=own["trusted"], skeleton=skeleton)
    for name, value in own.items():
        setattr(fold, name, value)
    buffer = fold.buffer
    buffer.state = HeadState.from_row(head)
    buffer.entries = deque(
        BufferEntry(seq, _PLAIN_SKELETONS[m] if isinstance(m, str) else m, tokens, pos, idx)
        for seq, m, tokens, pos, idx in entries
    )
    for name, value in kept.items():
        setattr(buffer, name, value)
    fold.checkpoints.checkpoints, fold.checkpoints.blobs, fold.checkpoints.writes = index
    return fold


def _message_json(message: Message | msgspec.Raw) -> str:
    """A message's JSON as a row from before schema 5 holds it."""
    return _encode_message(_as_message(message)).decode()


def _check_foreign(event: Event, data: bytes) -> None:
    """Raise unless an event from outside this store (an import) is one eventmem could
    have written: the live path's rules, and ``data`` exactly as eventmem encodes it
    (so nothing this eventmem does not understand, or a later one would read otherwise,
    is stored)."""
    check_event(event)
    if encode_event(event) != data:
        raise InvalidInputError(
            "data is not the JSON eventmem writes for this event (a field this eventmem "
            "does not know, a default written out, or other spacing, order or escapes): "
            "it was written by a newer eventmem, or edited"
        )


class ChainChecker:
    """Feeds ``(session_id, position, recorded_at, data, hash, kind, digest)`` rows, in the
    store's global order, into one `SessionFold` per session."""

    def __init__(
        self, *, trusted: bool = False, stored: bool = False, opened: Opener | None = None
    ) -> None:
        """``stored``: fold as rebuild does (`SessionFold.add_stored`); ``opened``: see
        `SessionFold.add`."""
        self.report = VerifyReport()
        self.folds: dict[str, SessionFold] = {}
        self.trusted = trusted
        self.stored = stored
        self.opened = opened

    def feed(self, rows: Iterable[tuple[str, int, int, bytes, bytes, str, bytes | None]]) -> None:
        """Check and fold every row."""
        folds, problems = self.folds, self.report.problems
        trusted, opened = self.trusted, self.opened
        decode = _decode_stored_event if self.stored else decode_event  # see add_stored
        events = 0
        for session_id, position, recorded_at, data, digest, kind, content in rows:
            fold = folds.get(session_id)
            if fold is None:
                fold = folds[session_id] = SessionFold(session_id, trusted=trusted)
            events += 1
            if content is not None and type(content) is not bytes:
                content = bytes(content)  # (PostgreSQL's memoryview)
            problem = fold._add(position, recorded_at, data, digest, kind, decode, content, opened)
            if problem is not None:
                problems.append(problem)
        self.report.events += events
        self.report.sessions = len(folds)

    def check_views(self) -> None:
        """Decode the messages each fold's buffer ends with (a stored fold leaves them
        JSON): what a load of the session would decode, reported as ``undecodable``
        at the event holding the first that does not decode."""
        for fold in self.folds.values():
            if fold.deferred:
                continue  # fold_history checks it
            if not fold.broken and (problem := fold.check_view()) is not None:
                self.report.problems.append(problem)


def rewrite_for_replay(
    events: Iterable[Event], max_token_limit: int | None, counter: TokenCounter | None
) -> Iterator[Event]:
    """The events as if saved with another limit and/or counting scheme (what-if replay)."""
    for event in events:
        if isinstance(event, (TurnSaved, MessagesAppended)):
            turn = isinstance(event, TurnSaved)
            changes: dict[str, object] = {}
            if max_token_limit is not None:
                changes["max_token_limit" if turn else "max_tokens"] = max_token_limit
            if counter is not None:
                changes.update(_counted(event.messages, counter), overhead=counter.overhead)
                changes.update(recount=None, **({"step_recount": None} if turn else {}))
            yield msgspec.structs.replace(event, **changes) if changes else event
        elif isinstance(event, StepRecorded) and counter is not None:
            yield msgspec.structs.replace(event, **_counted(event.messages, counter))
        else:
            yield event  # a step, a clear, a retraction or a checkpoint event


def _counted(messages: Iterable[Message], counter: TokenCounter) -> dict[str, object]:
    """The fields of an event's counts, recounted by ``counter``."""
    return {"tokens": tuple(counter.count_message(m) for m in messages), "counter": counter.name}
