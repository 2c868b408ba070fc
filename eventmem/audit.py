"""Audit over event logs: chain verification, replay under other settings, export lines.

Pure functions over rows and events; the backend feeds them. Replay and time travel use
`eventmem.projection.fold`, the same fold the live path applies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import msgspec

from eventmem.errors import EventmemError, ImportRefusedError, InvalidInputError
from eventmem.events import (
    GENESIS_HASH,
    Event,
    MemoryCleared,
    StepRecorded,
    TurnSaved,
    chain_hash,
    check_event,
    decode_event,
    encode_event,
)
from eventmem.messages import Message, decode_trusted
from eventmem.projection import BufferEntry, MemoryBuffer, apply
from eventmem.rules import check_time, validate_session_id
from eventmem.tokens import TokenCounter

__all__ = [
    "EXPORT_FORMAT",
    "ChainChecker",
    "ExportEnd",
    "ExportHeader",
    "ExportLine",
    "ExportReader",
    "Problem",
    "SessionFold",
    "VerifyReport",
    "export_line",
    "max_line_bytes",
    "rewrite_for_replay",
]

ProblemKind = Literal[
    "missing_event",
    "hash_mismatch",
    "undecodable",
    "kind_mismatch",
    "truncated",
    "projection_mismatch",
    "orphan_projection",
    "trigger_mismatch",
]


class Problem(msgspec.Struct, frozen=True):
    """One finding of [`Store.verify`][eventmem.Store.verify]: the first bad position of a
    session.

    A finding about the whole store (``trigger_mismatch``: the log's immutability
    triggers are missing, disabled or changed) has an empty ``session_id`` and position 0.
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
_decode_stored = msgspec.json.Decoder(_StoredTurn | _StoredStep | MemoryCleared).decode
_decode_message = msgspec.json.Decoder(Message).decode
_encode_message = msgspec.json.Encoder().encode


def _decode_stored_event(data: bytes, *, trusted: bool) -> Event:
    decoded: Event = _decode_stored(data)
    return decoded


def _as_message(message: Message | msgspec.Raw) -> Message:
    if isinstance(message, msgspec.Raw):
        decoded: Message = decode_trusted(_decode_message, message)
        return decoded
    return message


class _FoldBuffer(MemoryBuffer):
    """The buffer of a `SessionFold`: its messages may still be stored JSON
    (``msgspec.Raw``), decoded where the fold reads them."""

    __slots__ = ()

    def visible(self) -> list[Message]:
        """The visible messages, decoded (the pair-safe rule reads them)."""
        self.entries = deque(
            BufferEntry(e.seq, _as_message(e.message), e.tokens) for e in self.entries
        )
        return super().visible()


class SessionFold:
    """A session's state while its events are read in order: chain and buffer."""

    __slots__ = (
        "broken",
        "buffer",
        "created_at",
        "first_problem",
        "head_hash",
        "last_kind",
        "session_id",
        "trusted",
        "turn_position",
        "version",
    )

    def __init__(self, session_id: str, *, trusted: bool = False) -> None:
        """``trusted``: the events come from this store (their messages were validated
        when written), so decoding skips re-validating them once the hash matches."""
        self.session_id = session_id
        self.trusted = trusted
        self.last_kind = ""
        self.version = 0
        self.head_hash = GENESIS_HASH
        self.created_at: int | None = None
        self.turn_position = 0
        self.buffer: MemoryBuffer = _FoldBuffer()
        self.broken = False

    def add(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        kind: str | None = None,
    ) -> Problem | None:
        """Check one stored event against the chain (and its ``kind`` column, if given,
        against its type) and fold it; a problem stops the session."""
        return self._add(position, recorded_at, data, digest, kind, decode_event)

    def add_stored(
        self, position: int, recorded_at: int, data: bytes, digest: bytes, kind: str
    ) -> Problem | None:
        """`add` for rebuild: the same checks, but the messages stay their stored
        JSON and `view_rows` decodes the few that stay in the buffer. The same
        `apply` runs on them."""
        return self._add(position, recorded_at, data, digest, kind, _decode_stored_event)

    def _add(
        self,
        position: int,
        recorded_at: int,
        data: bytes,
        digest: bytes,
        kind: str | None,
        decode: Callable[..., Event],
    ) -> Problem | None:
        if self.broken:
            return None
        if position != self.version + 1:
            expected = self.version + 1
            return self._fail(
                expected,
                "missing_event",
                f"expected position {expected}, found {position}: an event was deleted or moved",
            )
        if chain_hash(self.head_hash, self.session_id, position, recorded_at, data) != digest:
            return self._fail(
                position,
                "hash_mismatch",
                "the stored hash does not match the event's content and predecessor: "
                "the event was edited, moved or inserted",
            )
        try:
            event = decode(data, trusted=self.trusted)
        except (msgspec.DecodeError, msgspec.ValidationError, EventmemError, RecursionError) as e:
            return self._fail(position, "undecodable", f"the event does not decode: {e}")
        if not self.trusted:
            try:
                _check_foreign(event, data)
            except EventmemError as e:
                return self._fail(position, "undecodable", f"the event breaks a rule: {e}")
        self.last_kind = event.__struct_config__.tag  # type: ignore[assignment]
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

    def fold(self, position: int, recorded_at: int, event: Event, digest: bytes) -> None:
        """Apply an already checked event."""
        apply(self.buffer, event, position)
        self.version = position
        self.head_hash = digest
        if self.created_at is None:
            self.created_at = recorded_at
        if isinstance(event, TurnSaved):
            self.turn_position = position

    def view_rows(self) -> list[tuple[str, int, int, str]]:
        """The buffer as ``view_messages`` rows: (session, seq, tokens, message JSON), the
        JSON being the canonical encoding of the decoded message, as the live path writes."""
        session_id = self.session_id
        return [
            (session_id, e.seq, e.tokens, _encode_message(_as_message(e.message)).decode())
            for e in self.buffer.entries
        ]

    def _fail(self, position: int, kind: ProblemKind, detail: str) -> Problem:
        self.broken = True
        return Problem(self.session_id, position, kind, detail)


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
    """Feeds ``(session_id, position, recorded_at, data, hash, kind)`` rows, in the
    store's global order, into one `SessionFold` per session."""

    def __init__(self, *, trusted: bool = False, stored: bool = False) -> None:
        """``stored``: fold as rebuild does (`SessionFold.add_stored`)."""
        self.report = VerifyReport()
        self.folds: dict[str, SessionFold] = {}
        self.trusted = trusted
        self.stored = stored

    def feed(self, rows: Iterable[tuple[str, int, int, bytes, bytes, str]]) -> None:
        """Check and fold every row."""
        folds, problems = self.folds, self.report.problems
        events = 0
        for session_id, position, recorded_at, data, digest, kind in rows:
            fold = folds.get(session_id)
            if fold is None:
                fold = folds[session_id] = SessionFold(session_id, trusted=self.trusted)
            events += 1
            add = fold.add_stored if self.stored else fold.add
            problem = add(position, recorded_at, data, digest, kind)
            if problem is not None:
                problems.append(problem)
        self.report.events += events
        self.report.sessions = len(folds)


def rewrite_for_replay(
    events: Iterable[Event], max_token_limit: int | None, counter: TokenCounter | None
) -> Iterator[Event]:
    """The events as if saved with another limit and/or counting scheme (what-if replay)."""
    for event in events:
        if isinstance(event, TurnSaved):
            changes: dict[str, object] = {}
            if max_token_limit is not None:
                changes["max_token_limit"] = max_token_limit
            if counter is not None:
                changes.update(
                    tokens=tuple(counter.count_message(m) for m in event.messages),
                    counter=counter.name,
                    overhead=counter.overhead,
                    recount=None,
                    step_recount=None,
                )
            yield msgspec.structs.replace(event, **changes) if changes else event
        elif isinstance(event, StepRecorded) and counter is not None:
            yield msgspec.structs.replace(
                event,
                tokens=tuple(counter.count_message(m) for m in event.messages),
                counter=counter.name,
            )
        else:
            assert isinstance(event, (StepRecorded, MemoryCleared, TurnSaved))
            yield event


# -- export ---------------------------------------------------------------------------

EXPORT_FORMAT = "eventmem-export"


class ExportHeader(msgspec.Struct, frozen=True):
    """First line of an export file."""

    format: str
    version: int


class ExportEnd(msgspec.Struct, frozen=True):
    """Last line of an export file: how many event lines came before it. A file without
    it (or with another count) was cut short, and is refused on import."""

    end: str
    events: int


class ExportLine(msgspec.Struct, frozen=True):
    """One event of an export file. ``data`` is the stored JSON, byte for byte."""

    session_id: str
    position: int
    recorded_at: int
    kind: str
    hash: str
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode


def export_line(
    session_id: str, position: int, recorded_at: int, kind: str, data: bytes, digest: bytes
) -> bytes:
    """One JSON line; the event's stored bytes are embedded verbatim so its hash verifies."""
    return _encode(
        ExportLine(session_id, position, recorded_at, kind, digest.hex(), msgspec.Raw(data))
    )


_decode_header = msgspec.json.Decoder(ExportHeader).decode
_decode_end = msgspec.json.Decoder(ExportEnd).decode
_decode_line = msgspec.json.Decoder(ExportLine).decode
_EXPORT_VERSION = 1
_KINDS = ("turn", "step", "clear")
_HEX = frozenset(b"0123456789abcdef")
_BOM = b"\xef\xbb\xbf"
# An event line is its event's data plus the envelope: the session id (1024 characters,
# at most 6 bytes each once escaped), two integers, the kind and the hash.
_ENVELOPE_BYTES = 64 * 1024
_DecodeErrors = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def max_line_bytes(max_save_bytes: int) -> int:
    """The longest export line an import reads: one event of a save of at most
    ``max_save_bytes``, with its envelope."""
    return max_save_bytes + _ENVELOPE_BYTES


class ExportReader:
    """Reads an export file line by line, checking each line as it comes: the header,
    every event line's envelope (the event itself is the fold's to check), and the end
    line's count. Any fault raises `ImportRefusedError` naming the line.

    ``lines`` is any iterable of ``bytes`` or ``str`` lines (a file opened in binary mode
    is one). Only one line is held at a time, and none longer than
    `max_line_bytes` is copied or decoded; no event may be larger than a save
    may store (``max_save_bytes``). A reader reads its lines once.
    """

    def __init__(self, lines: Iterable[object], max_save_bytes: int) -> None:
        self._lines = lines
        self._max_save = max_save_bytes
        self._max = max_line_bytes(max_save_bytes)
        self.started = False

    def events(self) -> Iterator[tuple[int, ExportLine, bytes]]:
        """``(line number, line, data)`` for each event line, then, once the end line
        has confirmed the count, nothing more."""
        self.started = True
        numbered = enumerate(self._lines, start=1)
        for number, raw in numbered:
            line = self._line(number, raw)
            if line is not None:
                self._header(number, line)
                break
        else:
            raise ImportRefusedError("the file is empty; an export starts with a header line")
        pending: tuple[int, bytes] | None = None
        count = 0
        for number, raw in numbered:
            line = self._line(number, raw)
            if line is None:
                continue
            if pending is not None:
                yield self._event(*pending)
                count += 1
            pending = (number, line)
        if pending is None:
            raise ImportRefusedError(
                "the file has a header but no end line: it was cut short (or is not a whole export)"
            )
        number, line = pending
        try:
            end = _decode_end(line)
        except _DecodeErrors:
            raise ImportRefusedError(
                f"the file has no end line (line {number} is the last): it was cut short "
                "(or is not a whole export)"
            ) from None
        if end.end != EXPORT_FORMAT:
            raise ImportRefusedError(
                f"the file has no end line (line {number}, the last, is another format's)"
            )
        if end.events != count:
            raise ImportRefusedError(
                f"the end line (line {number}) announces {end.events!r} events but the file "
                f"holds {count}"
            )

    def _line(self, number: int, raw: object) -> bytes | None:
        """The line as bytes (None if blank), refused if too long or not text."""
        if isinstance(raw, str):
            if len(raw) > self._max:  # every character takes at least one byte
                raise self._too_long(number)
            try:
                raw = raw.encode()
            except UnicodeEncodeError:
                raise ImportRefusedError(
                    f"line {number} is not valid Unicode (a lone surrogate)"
                ) from None
        elif isinstance(raw, (bytearray, memoryview)):
            if len(raw) > self._max:
                raise self._too_long(number)
            raw = bytes(raw)
        elif not isinstance(raw, bytes):
            raise InvalidInputError(
                f"import_events reads lines of bytes or str; line {number} is a "
                f"{type(raw).__name__}"
            )
        assert isinstance(raw, bytes)
        if len(raw) > self._max:
            raise self._too_long(number)
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]  # a byte order mark some editors write
        if not raw or raw.isspace():
            return None
        return raw

    def _too_long(self, number: int) -> ImportRefusedError:
        return ImportRefusedError(
            f"line {number} is longer than {self._max} bytes, more than any event of a save "
            "within max_save_bytes; open the store with a larger max_save_bytes to import it"
        )

    def _header(self, number: int, line: bytes) -> None:
        try:
            header = _decode_header(line)
        except _DecodeErrors:
            raise ImportRefusedError(
                f"line {number} is not an eventmem export header (the file is not an export)"
            ) from None
        if header.format != EXPORT_FORMAT:
            raise ImportRefusedError(
                f"unsupported export: format {header.format!r} is not an eventmem export"
            )
        if header.version > _EXPORT_VERSION:
            raise ImportRefusedError(
                f"unsupported export: format version {header.version} was written by a newer "
                f"eventmem; this one reads version {_EXPORT_VERSION}: upgrade eventmem"
            )
        if header.version != _EXPORT_VERSION:
            raise ImportRefusedError(f"unsupported export: format version {header.version}")

    def _event(self, number: int, line: bytes) -> tuple[int, ExportLine, bytes]:
        try:
            item = _decode_line(line)
        except _DecodeErrors as e:
            raise ImportRefusedError(
                f"line {number} is not an export line: {_what(line, e)}"
            ) from None
        try:
            validate_session_id(item.session_id)
            check_time(item.recorded_at)
        except InvalidInputError as e:
            raise ImportRefusedError(f"line {number}: {e}") from None
        if item.kind not in _KINDS:
            raise ImportRefusedError(
                f"line {number}: unknown event kind {item.kind!r} (this eventmem knows "
                f"{', '.join(_KINDS)}; a newer one may know more)"
            )
        if len(item.hash) != 64 or not _HEX.issuperset(item.hash.encode()):
            raise ImportRefusedError(f"line {number}: hash must be 64 lowercase hexadecimal digits")
        data = bytes(item.data)
        if len(data) > self._max_save:
            raise ImportRefusedError(
                f"line {number}: the event is {len(data)} bytes, more than a save may store "
                f"in this store ({self._max_save} bytes); open the store with a larger "
                "max_save_bytes to import it"
            )
        return number, item, data


def _what(line: bytes, error: Exception) -> str:
    """Why a line is not an event line, naming the two lines that often land there."""
    for decode, what in ((_decode_header, "a second header"), (_decode_end, "an end line")):
        try:
            decode(line)
        except _DecodeErrors:
            continue
        return f"it is {what} (two exports joined into one file?)"
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    return str(error)
