"""A corpus of hostile export files, run against each backend.

The hash chain is unkeyed: anyone can write a file whose chain verifies. So an import
checks every line, and every event in it, against the rules a save obeys. Each file here
is refused with ``ImportRefusedError`` (a wrong argument type with ``InvalidInputError``)
naming what is wrong, and leaves the target store exactly as it was; the few harmless
variations of a real export (a byte order mark, CRLF, blank lines...) import intact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

import eventmem
from eventmem.events import (
    GENESIS_HASH,
    MemoryCleared,
    StepRecorded,
    TurnSaved,
    chain_hash,
    encode_event,
)
from eventmem.messages import Message
from eventmem.steps import Action
from tests.backends import raw_database

pytestmark = pytest.mark.anyio

COUNTER = "openai-chat:o200k_base"
T0 = 1_700_000_000_000_000  # a recorded_at in 2023
HEADER = b'{"format":"eventmem-export","version":1}'
_json = msgspec.json.encode


def _turn(**changes: Any) -> TurnSaved:
    base = TurnSaved(
        messages=(Message(role="human", content="hi"), Message(role="ai", content="hello")),
        tokens=(8, 9),
        counter=COUNTER,
        overhead=3,
        max_token_limit=2000,
        model="gpt-4o",
    )
    return msgspec.structs.replace(base, **changes)


def _step(**changes: Any) -> StepRecorded:
    base = StepRecorded(
        action=Action(tool="search", tool_input={"q": "weather"}, kind="message_log"),
        observation="sunny",
        messages=(Message(role="function", content="sunny", name="search"),),
        tokens=(6,),
        counter=COUNTER,
    )
    return msgspec.structs.replace(base, **changes)


TURN = encode_event(_turn())
CLEAR = encode_event(MemoryCleared())
STEP = encode_event(_step())
TURN_WITH_STEP = encode_event(_turn(steps=(1,)))


def end(count: int | bytes) -> bytes:
    value = count if isinstance(count, bytes) else str(count).encode()
    return b'{"end":"eventmem-export","events":%s}' % value


def line(
    session: Any,
    position: Any,
    data: bytes,
    *,
    recorded_at: Any = T0,
    kind: Any = None,
    previous: bytes = GENESIS_HASH,
    digest: str | None = None,
) -> bytes:
    """One event line, its hash chained correctly to ``previous`` (unless ``digest`` is
    given), so that only the check under test can refuse it. Fields are any JSON value."""
    if kind is None:
        found = re.search(rb'"kind":"(\w+)"', data)
        kind = found[1].decode() if found else "turn"
    if digest is None:
        try:
            digest = chain_hash(previous, session, position, recorded_at, data).hex()
        except (TypeError, UnicodeEncodeError, OverflowError):
            digest = "00" * 32
    fields = [
        b'"session_id":' + _json(session),
        b'"position":' + _json(position),
        b'"recorded_at":' + _json(recorded_at),
        b'"kind":' + _json(kind),
        b'"hash":' + _json(digest),
        b'"data":' + data,
    ]
    return b"{" + b",".join(fields) + b"}"


def session_lines(datas: Iterable[bytes], session: str = "forged", start: int = 1) -> list[bytes]:
    """The event lines of one session, chained from its first event."""
    lines, previous = [], GENESIS_HASH
    for position, data in enumerate(datas, start=start):
        recorded_at = T0 + position
        lines.append(line(session, position, data, recorded_at=recorded_at, previous=previous))
        previous = chain_hash(previous, session, position, recorded_at, data)
    return lines


def export(*events: bytes) -> list[bytes]:
    """A whole file: header, the event lines, an end line that counts them."""
    return [HEADER, *events, end(len(events))]


def forged(*datas: bytes, session: str = "forged") -> list[bytes]:
    """A whole file of one session whose chain verifies: only its content can be wrong."""
    return export(*session_lines(datas, session))


def with_envelope(**fields: Any) -> list[bytes]:
    """A file of one turn whose line has the given envelope fields (hash made to match)."""
    session = fields.pop("session", "forged")
    position = fields.pop("position", 1)
    return export(line(session, position, TURN, **fields))


def interleaved(first: list[bytes], second: list[bytes]) -> list[bytes]:
    return [line for pair in zip(first, second, strict=True) for line in pair]


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, (old, data)
    return data.replace(old, new, 1)


@dataclass(frozen=True)
class ImportCase:
    """``lines`` imported into a store that already holds a session: refused with
    ``error`` matching ``match`` (nothing written), or, with ``error=None``, imported
    whole (``sessions`` new sessions) and verified."""

    name: str
    lines: Any
    match: str = ""
    error: type[eventmem.EventmemError] | None = eventmem.ImportRefusedError
    sessions: int = 1
    options: dict[str, Any] = field(default_factory=dict)


# A LangGraph thread: a checkpoint holding a list of one item, a task's write, a checkpoint
# adding one item to that list, and a prune tombstone.
CHECKPOINT = (
    b'{"kind":"checkpoint","ns":"","checkpoint_id":"c1","checkpoint":["json","e30="],'
    b'"metadata":["json","e30="],"versions":{"messages":1},'
    b'"values":[["messages",1,null,[["json","QQ=="]],null]]}'
)
WRITES = (
    b'{"kind":"writes","ns":"","checkpoint_id":"c1","task_id":"t",'
    b'"writes":[[0,"messages",["json","W10="]]]}'
)
DELTA = (
    b'{"kind":"checkpoint","ns":"","checkpoint_id":"c2","checkpoint":["json","e30="],'
    b'"metadata":["json","e30="],"versions":{"messages":2},'
    b'"values":[["messages",2,null,[["json","Qg=="]],1]],"parent_id":"c1"}'
)
PRUNED = b'{"kind":"checkpoints_deleted","reason":"prune","checkpoints":[["","c1"]]}'
GOOD = forged(TURN, CLEAR, TURN)
R = eventmem.ImportRefusedError
INVALID = eventmem.InvalidInputError

CASES = [
    # -- the file as a whole -------------------------------------------------------------
    ImportCase("empty file", [], "empty"),
    ImportCase("only blank lines", [b"\n", b"  \r\n", b"\t\n"], "empty"),
    ImportCase("header only", [HEADER], "no end line"),
    ImportCase("header and end, nothing between", [HEADER, end(0)], error=None, sessions=0),
    ImportCase("cut short: no end line", GOOD[:-1], "no end line"),
    ImportCase("cut mid-line", [*GOOD[:-2], GOOD[-2][:40]], "no end line"),
    ImportCase("cut mid end line", [*GOOD[:-1], GOOD[-1][:20]], "no end line"),
    ImportCase("no header", GOOD[1:], "not an eventmem export header"),
    ImportCase("duplicate header", [HEADER, *GOOD], "second header"),
    ImportCase("two exports joined", [*GOOD, *forged(TURN, session="other")], "end line"),
    ImportCase("end line in the middle", [*GOOD[:2], end(1), *GOOD[2:]], "end line"),
    ImportCase("end count too high", [*GOOD[:-1], end(4)], "announces 4"),
    ImportCase("end count too low", [*GOOD[:-1], end(2)], "announces 2"),
    ImportCase("end count negative", [*GOOD[:-1], end(-3)], "announces -3"),
    ImportCase("end count a string", [*GOOD[:-1], end(b'"3"')], "no end line"),
    ImportCase("end count huge", [*GOOD[:-1], end(10**40)], "announces"),
    ImportCase(
        "end names another format", [*GOOD[:-1], b'{"end":"other","events":3}'], "no end line"
    ),
    ImportCase(
        "header from a newer version",
        [b'{"format":"eventmem-export","version":3}', *GOOD[1:]],
        "newer eventmem",
    ),
    ImportCase(
        "header version 0", [b'{"format":"eventmem-export","version":0}', *GOOD[1:]], "version 0"
    ),
    ImportCase(
        "header version a string",
        [b'{"format":"eventmem-export","version":"1"}', *GOOD[1:]],
        "header",
    ),
    ImportCase(
        "header version huge",
        [b'{"format":"eventmem-export","version":%d}' % 10**30, *GOOD[1:]],
        "newer eventmem",
    ),
    ImportCase(
        "header of another format", [b'{"format":"other","version":1}', *GOOD[1:]], "unsupported"
    ),
    ImportCase("header is an array", [b'["eventmem-export",1]', *GOOD[1:]], "header"),
    ImportCase("header is null", [b"null", *GOOD[1:]], "header"),
    ImportCase("header with NaN", [b'{"format":"eventmem-export","version":NaN}'], "header"),
    ImportCase("header nested 200,000 deep", [deep(200_000), *GOOD[1:]], "header"),
    # -- encodings and line endings ------------------------------------------------------
    ImportCase("byte order mark", [b"\xef\xbb\xbf" + GOOD[0], *GOOD[1:]], error=None),
    ImportCase("byte order mark on a later line", [GOOD[0], b"\xef\xbb\xbf" + GOOD[1]], "line 2"),
    ImportCase("CRLF line ends", [g + b"\r\n" for g in GOOD], error=None),
    ImportCase(
        "blank lines between", [b"\n", GOOD[0], b"\n", *GOOD[1:3], b" \n", *GOOD[3:]], error=None
    ),
    ImportCase("lines as str", [g.decode() for g in GOOD], error=None),
    ImportCase("lines as bytearray", [bytearray(g) for g in GOOD], error=None),
    ImportCase(
        "unknown envelope field is ignored",
        export(
            *(g.replace(b'{"session_id"', b'{"note":"from v1.1","session_id"') for g in GOOD[1:-1])
        ),
        error=None,
    ),
    ImportCase(
        "invalid UTF-8 in the session id",
        [HEADER, replaced(GOOD[1], b'"forged"', b'"forg\xffed"'), end(1)],
        "not an export line",
    ),
    ImportCase(
        "invalid UTF-8 in data",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"h\xffi"')),
        "does not decode",
    ),
    ImportCase(
        "overlong UTF-8 in data",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"h\xc0\xafi"')),
        "does not decode",
    ),
    ImportCase(
        "lone surrogate escape in data",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"h\\ud800i"')),
        "not an export line",
    ),
    ImportCase(
        "str line with a lone surrogate", [GOOD[0].decode(), "{\ud800}", *GOOD[2:]], "Unicode"
    ),
    ImportCase("NUL bytes line", [GOOD[0], b"\x00" * 64, *GOOD[2:]], "not an export line"),
    ImportCase("binary garbage line", [GOOD[0], bytes(range(256)), *GOOD[2:]], "not an export"),
    ImportCase("line not JSON", [GOOD[0], b"{not json", *GOOD[2:]], "not an export line"),
    ImportCase("line is null", [GOOD[0], b"null", *GOOD[2:]], "not an export line"),
    ImportCase("line is an array", [GOOD[0], b"[1, 2]", *GOOD[2:]], "not an export line"),
    ImportCase("trailing garbage", [GOOD[0], GOOD[1] + b" x", *GOOD[2:]], "not an export line"),
    ImportCase("line nested 200,000 deep", [GOOD[0], deep(200_000), *GOOD[2:]], "not an export"),
    ImportCase(
        "unknown field nested 200,000 deep",
        export(replaced(GOOD[1], b'{"session_id"', b'{"note":' + deep(200_000) + b',"session_id"')),
        "too deeply",
    ),
    ImportCase(
        "data nested 200,000 deep",
        export(line("forged", 1, deep(200_000), kind="turn")),
        "too deeply",
    ),
    ImportCase(
        "line longer than the limit",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"' + b"x" * 70_000 + b'"')),
        "longer than 68333 bytes",  # 2048 encrypted (2,797) + the line envelope
        options={"max_save_bytes": 2048},
    ),
    ImportCase(
        "str line longer than the limit",
        [g.decode() for g in forged(replaced(TURN, b"hi", "\u00e9".encode() * 70_000))],
        "longer than 68333 bytes",  # 2048 encrypted (2,797) + the line envelope
        options={"max_save_bytes": 2048},
    ),
    ImportCase(
        "a fork event in an encrypted box",
        export(line("forged", 1, b'{"kind":"encrypted","box":"' + b"A" * 60 + b'"}', kind="fork")),
        "a fork event is never encrypted",
    ),
    ImportCase(
        "an event larger than a save may store",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"' + b"x" * 5_000 + b'"')),
        "more than a save may store",
        options={"max_save_bytes": 2048},
    ),
    # -- JSON values where numbers belong ------------------------------------------------
    ImportCase("NaN in data", forged(replaced(TURN, b"[8,9]", b"[NaN,9]")), "not an export"),
    ImportCase(
        "Infinity in data", forged(replaced(TURN, b"[8,9]", b"[Infinity,9]")), "not an export"
    ),
    ImportCase(
        "-Infinity recorded_at",
        [HEADER, GOOD[1].replace(b"%d" % (T0 + 1), b"-Infinity"), end(1)],
        "not an export",
    ),
    ImportCase("huge position", with_envelope(position=10**30), "missing_event"),
    ImportCase("position 0", with_envelope(position=0), "missing_event"),
    ImportCase("position negative", with_envelope(position=-1), "missing_event"),
    ImportCase("position a string", with_envelope(position="1"), "not an export line"),
    ImportCase("position 1.0", with_envelope(position=1.0), "not an export line"),
    ImportCase("position true", with_envelope(position=True), "not an export line"),
    ImportCase("recorded_at 10**18", with_envelope(recorded_at=10**18), "outside 1970"),
    ImportCase("recorded_at -10**17", with_envelope(recorded_at=-(10**17)), "outside 1970"),
    ImportCase("recorded_at 2**63", with_envelope(recorded_at=2**63), "outside 1970"),
    ImportCase("recorded_at 10**30", with_envelope(recorded_at=10**30), "outside 1970"),
    ImportCase("recorded_at -1", with_envelope(recorded_at=-1), "outside 1970"),
    ImportCase("recorded_at a float", with_envelope(recorded_at=1.7e15), "not an export line"),
    ImportCase("recorded_at a string", with_envelope(recorded_at="2023"), "not an export line"),
    ImportCase("recorded_at null", with_envelope(recorded_at=None), "not an export line"),
    ImportCase(
        "recorded_at in year 9999", with_envelope(recorded_at=253_402_300_799_999_999), error=None
    ),
    # -- positions -----------------------------------------------------------------------
    ImportCase(
        "a gap in positions",
        export(*session_lines([TURN]), *session_lines([TURN], start=3)),
        "missing_event",
    ),
    ImportCase(
        "events out of order",
        export(*reversed(session_lines([TURN, TURN]))),
        "missing_event",
    ),
    ImportCase(
        "a position twice", export(*session_lines([TURN]), *session_lines([TURN])), "missing_event"
    ),
    ImportCase(
        "first event at position 2", export(*session_lines([TURN], start=2)), "missing_event"
    ),
    ImportCase(
        "sessions interleaved",
        export(*interleaved(session_lines([TURN, TURN], "a"), session_lines([TURN, TURN], "b"))),
        error=None,
        sessions=2,
    ),
    ImportCase("session already in the store", forged(TURN, session="existing"), "already exists"),
    ImportCase(
        "second session already in the store",
        export(*session_lines([TURN], "new"), *session_lines([TURN], "existing")),
        "already exists",
    ),
    # -- session ids ---------------------------------------------------------------------
    ImportCase("session id empty", with_envelope(session=""), "must not be empty"),
    ImportCase("session id with NUL", with_envelope(session="a\x00b"), "NUL"),
    ImportCase("session id 1025 chars", with_envelope(session="s" * 1025), "limit is 1024"),
    ImportCase("session id 1024 chars", with_envelope(session="s" * 1024), error=None),
    ImportCase("session id an int", with_envelope(session=5), "not an export line"),
    ImportCase("session id null", with_envelope(session=None), "not an export line"),
    ImportCase("session id a list", with_envelope(session=["s"]), "not an export line"),
    # -- kind and hash -------------------------------------------------------------------
    ImportCase("unknown kind", with_envelope(kind="merge"), "unknown event kind 'merge'"),
    ImportCase("kind differs from data", with_envelope(kind="clear"), "kind_mismatch"),
    ImportCase(
        "kind missing",
        [HEADER, replaced(GOOD[1], b'"kind":"turn",', b""), end(1)],
        "not an export line",
    ),
    ImportCase(
        "hash uppercase",
        [
            HEADER,
            re.sub(rb'"hash":"([0-9a-f]+)"', lambda m: b'"hash":"' + m[1].upper() + b'"', GOOD[1]),
            end(1),
        ],
        "lowercase hexadecimal",
    ),
    ImportCase("hash too short", with_envelope(digest="ab" * 31), "64 lowercase"),
    ImportCase("hash not hex", with_envelope(digest="zz" * 32), "64 lowercase"),
    ImportCase("hash with spaces", with_envelope(digest="ab " * 21 + "a"), "64 lowercase"),
    ImportCase("hash of another event", with_envelope(digest="ab" * 32), "hash_mismatch"),
    ImportCase(
        "content edited", [HEADER, replaced(GOOD[1], b'"hi"', b'"ho"'), *GOOD[2:]], "hash_mismatch"
    ),
    # -- data that is not an event -------------------------------------------------------
    ImportCase(
        "data missing",
        [HEADER, GOOD[1][: GOOD[1].index(b',"data"')] + b"}", end(1)],
        "not an export line",
    ),
    ImportCase(
        "data a string", export(line("forged", 1, b'"turn"', kind="turn")), "does not decode"
    ),
    ImportCase("data an array", export(line("forged", 1, b"[]", kind="turn")), "does not decode"),
    ImportCase("data null", export(line("forged", 1, b"null", kind="turn")), "does not decode"),
    ImportCase("data of an unknown kind", forged(b'{"kind":"merge","n":1}'), "unknown event kind"),
    # -- general messages ----------------------------------------------------------------
    ImportCase(
        "an append of no messages",
        forged(b'{"kind":"messages","messages":[],"tokens":[],"counter":"c","overhead":3}'),
        "at least one message",
    ),
    ImportCase(
        "an append with a count short",
        forged(
            b'{"kind":"messages","messages":[{"role":"human","content":"x"}],"tokens":[],'
            b'"counter":"c","overhead":3}'
        ),
        "0 counts for 1 messages",
    ),
    ImportCase(
        "an append with a negative bound",
        forged(
            b'{"kind":"messages","messages":[{"role":"human","content":"x"}],"tokens":[4],'
            b'"counter":"c","overhead":3,"max_tokens":-1}'
        ),
        "max_token_limit must be >= 0",
    ),
    ImportCase(
        "a content part of a wrong type",
        forged(
            b'{"kind":"messages","messages":[{"role":"human","content":[7]}],"tokens":[4],'
            b'"counter":"c","overhead":3}'
        ),
        "does not decode",
    ),
    ImportCase(
        "metadata that is not an object",
        forged(
            b'{"kind":"messages","messages":[{"role":"human","content":"x","metadata":[1]}],'
            b'"tokens":[4],"counter":"c","overhead":3}'
        ),
        "does not decode",
    ),
    ImportCase("a pop of nothing", forged(b'{"kind":"retract","count":0}'), "at least one"),
    ImportCase(
        "a pop of more than the view holds",
        forged(CLEAR, b'{"kind":"retract","count":1}'),
        "does not fold",
    ),
    # LangGraph checkpoint events (eventmem.integrations.langgraph)
    ImportCase(
        "a thread of checkpoints, writes, a delta and a tombstone",
        forged(CHECKPOINT, WRITES, DELTA, PRUNED),
        error=None,
    ),
    ImportCase(
        "a checkpoint value at a version it does not hold",
        forged(replaced(CHECKPOINT, b'"versions":{"messages":1}', b'"versions":{"messages":2}')),
        "does not hold",
    ),
    ImportCase(
        "a checkpoint value both whole and items",
        forged(replaced(CHECKPOINT, b'["messages",1,null,', b'["messages",1,["json","e30="],')),
        "not both",
    ),
    ImportCase(
        "a delta on a version the thread does not hold",
        forged(replaced(CHECKPOINT, b'"QQ=="]],null]]', b'"QQ=="]],0]]')),
        "does not fold",
    ),
    ImportCase("a delta before its base", forged(DELTA, CHECKPOINT), "does not fold"),
    ImportCase(
        "a checkpoint value stored twice",
        forged(replaced(CHECKPOINT, b'"values":[', b'"values":[["messages",1],')),
        "once",
    ),
    ImportCase(
        "a checkpoint id that is empty",
        forged(replaced(CHECKPOINT, b'"checkpoint_id":"c1"', b'"checkpoint_id":""')),
        "must not be empty",
    ),
    ImportCase(
        "a namespace with a NUL",
        forged(replaced(CHECKPOINT, b'"ns":""', b'"ns":"a\\u0000b"')),
        "NUL",
    ),
    ImportCase(
        "a tombstone naming the thread and checkpoints",
        forged(
            CHECKPOINT, replaced(PRUNED, b'"reason":"prune"', b'"reason":"prune","everything":true')
        ),
        "names checkpoints or",
    ),
    ImportCase(
        "a tombstone with an unknown reason",
        forged(CHECKPOINT, replaced(PRUNED, b'"prune"', b'"vacuum"')),
        "does not decode",
    ),
    ImportCase(
        "a write that is not a triple",
        forged(CHECKPOINT, replaced(WRITES, b'[0,"messages",["json","W10="]]', b'[0,"messages"]')),
        "does not decode",
    ),
    ImportCase(
        "data with an unknown field",
        forged(replaced(TURN, b'"model":"gpt-4o"', b'"model":"gpt-4o","priority":"high"')),
        "not the JSON eventmem writes",
    ),
    ImportCase(
        "data with spaces",
        forged(replaced(TURN, b'"tokens":[8,9]', b'"tokens": [8, 9]')),
        "not the JSON eventmem writes",
    ),
    ImportCase(
        "data with a default written out",
        forged(replaced(TURN, b'"model":"gpt-4o"', b'"model":"gpt-4o","prune":"langchain"')),
        "not the JSON eventmem writes",
    ),
    ImportCase(
        "data with escaped ASCII",
        forged(replaced(TURN, b'"content":"hi"', b'"content":"\\u0068i"')),
        "not the JSON eventmem writes",
    ),
    # -- a valid chain, content a save would refuse -----------------------------------
    ImportCase("negative token count", forged(encode_event(_turn(tokens=(-1, 9)))), "between 0"),
    ImportCase("token count 2**62", forged(encode_event(_turn(tokens=(2**62, 9)))), "between 0"),
    ImportCase("token count 10**30", forged(encode_event(_turn(tokens=(10**30, 9)))), "between 0"),
    ImportCase(
        "token count a float", forged(replaced(TURN, b"[8,9]", b"[8.0,9]")), "does not decode"
    ),
    ImportCase(
        "token count true", forged(replaced(TURN, b"[8,9]", b"[true,9]")), "does not decode"
    ),
    ImportCase(
        "fewer counts than messages", forged(encode_event(_turn(tokens=(8,)))), "1 counts for 2"
    ),
    ImportCase("overhead negative", forged(encode_event(_turn(overhead=-3))), "overhead"),
    ImportCase("overhead 2**53", forged(encode_event(_turn(overhead=2**53))), "overhead"),
    ImportCase(
        "limit negative", forged(encode_event(_turn(max_token_limit=-1))), "max_token_limit"
    ),
    ImportCase(
        "limit 2**64", forged(encode_event(_turn(max_token_limit=2**64))), "max_token_limit"
    ),
    ImportCase(
        "limit 2**63 - 1", forged(encode_event(_turn(max_token_limit=2**63 - 1))), error=None
    ),
    ImportCase("counter empty", forged(encode_event(_turn(counter=""))), "counter's name"),
    ImportCase("counter with NUL", forged(encode_event(_turn(counter="c\x00"))), "NUL"),
    ImportCase("counter 201 chars", forged(encode_event(_turn(counter="c" * 201))), "1-200"),
    ImportCase("model empty", forged(encode_event(_turn(model=""))), "model"),
    ImportCase("negative recount", forged(TURN, encode_event(_turn(recount=(-5, 1)))), "recount"),
    ImportCase(
        "recount of the wrong length",
        forged(TURN, encode_event(_turn(counter="c", recount=(1,)))),
        "recount has 1 counts",
    ),
    ImportCase(
        "three messages in a turn",
        forged(
            encode_event(
                _turn(
                    messages=(*_turn().messages, Message(role="ai", content="x")), tokens=(1, 2, 3)
                )
            )
        ),
        "human then an ai",
    ),
    ImportCase(
        "roles swapped",
        forged(encode_event(_turn(messages=tuple(reversed(_turn().messages))))),
        "human then an ai",
    ),
    ImportCase(
        "empty role", forged(replaced(TURN, b'"role":"human"', b'"role":""')), "does not decode"
    ),
    ImportCase(
        "unknown role",
        forged(replaced(TURN, b'"role":"human"', b'"role":"user"')),
        "does not decode",
    ),
    ImportCase(
        "content an int",
        forged(replaced(TURN, b'"content":"hi"', b'"content":5')),
        "does not decode",
    ),
    ImportCase(
        "tool calls on a human message",
        forged(
            replaced(
                TURN, b'"content":"hi"', b'"content":"hi","tool_calls":[{"name":"f","args":{}}]'
            )
        ),
        "does not decode",
    ),
    ImportCase(
        "tool call args 300 deep",
        forged(
            replaced(
                TURN,
                b'"content":"hello"',
                b'"content":"hello","tool_calls":[{"name":"f","args":{"a":' + deep(300) + b"}}]",
            )
        ),
        "does not decode",
    ),
    ImportCase(
        "tool message with no call id",
        forged(
            replaced(
                STEP,
                b'"role":"function","content":"sunny","name":"search"',
                b'"role":"tool","content":"sunny"',
            ),
            TURN_WITH_STEP,
        ),
        "does not decode",
    ),
    ImportCase(
        "function message with no name",
        forged(replaced(STEP, b',"name":"search"', b""), TURN_WITH_STEP),
        "does not decode",
    ),
    ImportCase("a step and its turn", forged(STEP, TURN_WITH_STEP), error=None),
    ImportCase(
        "step with an empty tool",
        forged(encode_event(_step(action=Action(tool="", kind="message_log"))), TURN_WITH_STEP),
        "tool must be a non-empty",
    ),
    ImportCase(
        "step tool_input 300 deep",
        forged(
            replaced(STEP, b'"tool_input":{"q":"weather"}', b'"tool_input":' + deep(300)),
            TURN_WITH_STEP,
        ),
        "deeper than 200",
    ),
    ImportCase(
        "step action of an unknown kind",
        forged(replaced(STEP, b'"kind":"message_log"', b'"kind":"magic"'), TURN_WITH_STEP),
        "does not decode",
    ),
    ImportCase(
        "step live a string",
        forged(replaced(STEP, b'"counter"', b'"live":"yes","counter"'), TURN_WITH_STEP),
        "does not decode",
    ),
    ImportCase(
        "step counts mismatch",
        forged(encode_event(_step(tokens=(1, 2))), TURN_WITH_STEP),
        "2 counts for 1",
    ),
    ImportCase("turn names a step that is not there", forged(TURN_WITH_STEP), "steps"),
    ImportCase(
        "turn steps not increasing",
        forged(STEP, STEP, encode_event(_turn(steps=(2, 1)))),
        "increasing",
    ),
    ImportCase("turn steps at position 0", forged(encode_event(_turn(steps=(0,)))), "increasing"),
    ImportCase(
        "turn abandons twice", forged(STEP, encode_event(_turn(abandoned=(1, 1)))), "increasing"
    ),
    ImportCase(
        "prune mode unknown",
        forged(replaced(TURN, b'"model":"gpt-4o"', b'"model":"gpt-4o","prune":"sometimes"')),
        "does not decode",
    ),
    # -- what is handed to import_events -------------------------------------------------
    ImportCase("None", None, "not a NoneType", error=INVALID),
    ImportCase("an int", 5, "not a int", error=INVALID),
    ImportCase("the whole file as bytes", b"\n".join(GOOD), "not a bytes", error=INVALID),
    ImportCase("the whole file as str", b"\n".join(GOOD).decode(), "not a str", error=INVALID),
    ImportCase("a line that is an int", [GOOD[0], 5, *GOOD[2:]], "line 2 is a int", error=INVALID),
    ImportCase(
        "a line that is None", [GOOD[0], None, *GOOD[2:]], "line 2 is a NoneType", error=INVALID
    ),
]


def _state(target: str) -> list[list[tuple[Any, ...]]]:
    """Every row of the store's tables."""
    with raw_database(target) as db:
        return [
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("events", "sessions", "view_messages")
        ]


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.postgres_sample(5)
@pytest.mark.reuses_schema
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_import(target: str, case: ImportCase) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("existing").asave_context({"input": "x"}, {"output": "y"})
    before = _state(target)
    async with eventmem.open(target, **case.options) as store:
        if case.error is not None:
            with pytest.raises(case.error, match=case.match) as caught:
                await store.import_events(case.lines)
            assert str(caught.value).strip()
            assert _state(target) == before
            assert (await store.verify()).ok
            return
        imported = await store.import_events(case.lines)
        assert imported[0] == case.sessions
        assert (await store.verify()).ok
        assert await store.count_events() == 1 + imported[1]
