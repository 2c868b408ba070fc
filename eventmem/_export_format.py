"""The export file format: one header line, one line per event, one end line.

An event line carries the event's stored JSON byte for byte, so its hash verifies after
an import. ``export_line`` writes one; ``ExportReader`` reads a file back, checking each
line's envelope as it comes (the events themselves are the fold's to check).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import get_args

import msgspec

from eventmem.errors import ImportRefusedError, InvalidInputError
from eventmem.events import Event
from eventmem.rules import check_time, validate_session_id
from eventmem.store.content import PLAIN_KINDS, envelope_bytes, is_encrypted

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportEnd",
    "ExportHeader",
    "ExportLine",
    "ExportReader",
    "export_line",
    "max_line_bytes",
]

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


class ExportLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event of an export file. ``data`` is the stored JSON, byte for byte, and last
    in the line; ``sha256`` its content digest (none: an event of the first chain,
    written before schema 7, whose hash covers the data itself)."""

    session_id: str
    position: int
    recorded_at: int
    kind: str
    hash: str
    sha256: str | None = None
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode


def export_line(
    session_id: str,
    position: int,
    recorded_at: int,
    kind: str,
    data: bytes,
    digest: bytes,
    content: bytes | None = None,
) -> bytes:
    """One JSON line; the event's stored bytes are embedded verbatim so its hash
    verifies, with its content digest (``content``) when it has one."""
    return _encode(
        ExportLine(
            session_id=session_id,
            position=position,
            recorded_at=recorded_at,
            kind=kind,
            hash=digest.hex(),
            sha256=None if content is None else bytes(content).hex(),
            data=msgspec.Raw(data),
        )
    )


_decode_header = msgspec.json.Decoder(ExportHeader).decode
_decode_end = msgspec.json.Decoder(ExportEnd).decode
_decode_line = msgspec.json.Decoder(ExportLine).decode
# 2: event lines may hold the content digest (``sha256``) of the chain since schema 7.
EXPORT_VERSION = 2
_READS_VERSIONS = (1, 2)
# Every event kind: the tags of the event union.
_KINDS: tuple[str, ...] = tuple(str(kind.__struct_config__.tag) for kind in get_args(Event))
_HEX = frozenset(b"0123456789abcdef")
_BOM = b"\xef\xbb\xbf"
# An event line is its event's data plus the envelope: the session id (1024 characters,
# at most 6 bytes each once escaped), two integers, the kind and the hash.
_ENVELOPE_BYTES = 64 * 1024
_DecodeErrors = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def max_line_bytes(max_save_bytes: int) -> int:
    """The longest export line an import reads: one event of a save of at most
    ``max_save_bytes`` (encrypted, if the store encrypts: a third larger), with its
    envelope."""
    return envelope_bytes(max_save_bytes) + _ENVELOPE_BYTES


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

    @property
    def max_save_bytes(self) -> int:
        """The most a save may store in the importing store: no event is larger."""
        return self._max_save

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
        if header.version > EXPORT_VERSION:
            raise ImportRefusedError(
                f"unsupported export: format version {header.version} was written by a newer "
                f"eventmem; this one reads version {EXPORT_VERSION}: upgrade eventmem"
            )
        if header.version not in _READS_VERSIONS:
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
        for what, value in (("hash", item.hash), ("sha256", item.sha256)):
            if value is not None and (len(value) != 64 or not _HEX.issuperset(value.encode())):
                raise ImportRefusedError(
                    f"line {number}: {what} must be 64 lowercase hexadecimal digits"
                )
        data = bytes(item.data)
        if item.kind in PLAIN_KINDS and is_encrypted(data):
            raise ImportRefusedError(
                f"line {number}: a {item.kind} event is never encrypted (it holds no content, "
                "and the store reads it without keys)"
            )
        # An encrypted event's data is larger than the save it holds (which the import
        # checks against max_save_bytes once it is decrypted).
        limit = envelope_bytes(self._max_save) if is_encrypted(data) else self._max_save
        if len(data) > limit:
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
