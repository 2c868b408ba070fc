"""The buffer's rows: where each visible message's text is, without a copy of it.

A row of ``view_messages`` names a visible message by its ``seq`` and count, and points
at the event that holds it: ``messages[idx]`` of the session's event at ``position``.
The text is stored once, in the log; a load reads the rows and the events they point
at in one statement. Rows written before schema 5 hold the message itself (``message``,
with no ``position``); they read the same way and go as the watermark passes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from eventmem.errors import CorruptDatabaseError
from eventmem.messages import Message, decode_trusted

__all__ = [
    "INSERT_ROW",
    "ROW_COLUMNS",
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


def resolve(rows: Iterable[Sequence[Any]]) -> list[tuple[int, Message]]:
    """The messages of rows ``(seq, position, idx, message, data)``: ``message`` when the
    row holds one, else ``messages[idx]`` of the event JSON ``data`` (the event at
    ``position``), each event decoded once."""
    held: dict[int, tuple[msgspec.Raw, ...]] = {}  # position -> its event's messages
    found: list[tuple[int, Message]] = []
    for seq, position, idx, message, data in rows:
        if message is not None:
            found.append((seq, decode_message(message)))
            continue
        if data is None:
            raise _missing(seq)
        messages = held.get(position)
        if messages is None:
            messages = held[position] = _held_decoder.decode(data).messages
        if not 0 <= idx < len(messages):
            raise _missing(seq)
        found.append((seq, decode_message(messages[idx])))
    return found


def _missing(seq: int) -> CorruptDatabaseError:
    return CorruptDatabaseError(
        f"the buffer row {seq} points at a message its event does not hold; run verify"
    )
