"""The buffer's rows: where each visible message's text is, without a copy of it.

A row of ``view_messages`` names a visible message by its ``seq`` and count, and points
at the event that holds it: ``messages[idx]`` of the session's event at ``position``.
The text is stored once, in the log; a load reads the rows and the events they point
at in one statement. Rows written before schema 5 hold the message itself (``message``,
with no ``position``); they read the same way and go as the watermark passes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from eventmem.errors import CorruptDatabaseError
from eventmem.messages import Message, decode_trusted

__all__ = [
    "INSERT_ROW",
    "ROW_COLUMNS",
    "Inherited",
    "ViewRow",
    "decode_message",
    "encode_message",
    "resolve",
]

ROW_COLUMNS = "session_id, seq, tokens, position, idx, message"
INSERT_ROW = f"INSERT INTO view_messages ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
# (session_id, seq, tokens, position, idx, message): position and idx, or message.
ViewRow = tuple[str, int, int, int | None, int | None, str | None]

encode_message = msgspec.json.Encoder().encode
_message_decoder = msgspec.json.Decoder(Message)


def decode_message(data: bytes | str) -> Message:
    """A message eventmem itself wrote (so already validated)."""
    return decode_trusted(_message_decoder.decode, data)


class _Messages(msgspec.Struct, gc=False):
    """An event's ``messages``, each left undecoded until it is asked for (an append of
    many messages may have few of them visible)."""

    messages: tuple[msgspec.Raw, ...] = ()


_held_decoder = msgspec.json.Decoder(_Messages)


def resolve(
    rows: Iterable[Sequence[Any]],
    inherited: Inherited | None = None,
    opened: Callable[[int, Any], Any] | None = None,
) -> list[tuple[int, Message]]:
    """The messages of rows ``(seq, position, idx, message, data)``: ``message`` when the
    row holds one, else ``messages[idx]`` of the event JSON ``data`` (the event at
    ``position``), each event decoded once. A row without ``data`` points at an event a
    fork's parent holds: ``inherited`` reads those (see `eventmem.store.lineage`, which
    opens them). ``opened(position, data)`` is the session's stored ``data`` as event
    JSON (see `eventmem.store.content`)."""
    held: dict[int, tuple[msgspec.Raw, ...]] = {}  # position -> its event's messages
    found: list[tuple[int, Message]] = []
    elsewhere: list[tuple[int, int, int, int]] = []  # (slot in found, seq, position, idx)
    for seq, position, idx, message, data in rows:
        if message is not None:
            found.append((seq, decode_message(message)))
            continue
        if data is None:
            if inherited is None or position is None:
                raise _missing(seq)
            elsewhere.append((len(found), seq, position, idx))
            found.append((seq, _PLACEHOLDER))
            continue
        if opened is not None and position not in held:
            data = opened(position, data)
        found.append((seq, _held(held, position, data, idx, seq)))
    if elsewhere:
        assert inherited is not None
        datas = inherited({position for _, _, position, _ in elsewhere})
        for slot, seq, position, idx in elsewhere:
            data = datas.get(position)
            if data is None:
                raise _missing(seq)
            found[slot] = (seq, _held(held, position, data, idx, seq))
    return found


# Reads the JSON of the events at some positions of the session's history that another
# session holds, by position.
Inherited = Callable[[set[int]], Mapping[int, Any]]
_PLACEHOLDER = Message("ai", "")


def _held(
    held: dict[int, tuple[msgspec.Raw, ...]], position: int, data: Any, idx: int, seq: int
) -> Message:
    messages = held.get(position)
    if messages is None:
        messages = held[position] = _held_decoder.decode(data).messages
    if not 0 <= idx < len(messages):
        raise _missing(seq)
    return decode_message(messages[idx])


def _missing(seq: int) -> CorruptDatabaseError:
    return CorruptDatabaseError(
        f"the buffer row {seq} points at a message its event does not hold; run verify"
    )
