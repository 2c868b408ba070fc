"""A corpus of hostile inputs, run against each backend. Each is refused with a clear
EventmemError and writes nothing, or, where it is legitimate data, is stored and returned
intact."""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import eventmem
from tests.backends import raw_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]


@dataclass(frozen=True)
class Case:
    """``run(store)`` either raises ``error`` (nothing written) or stores data that must
    read back as ``expect`` (the buffer's contents)."""

    name: str
    run: Callable[[eventmem.Store], Awaitable[object]]
    error: type[eventmem.EventmemError] | None = None
    expect: list[str] | None = None
    slow: bool = False  # big enough to take seconds: the full run only (a smaller one is quick)


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def chat_save(
    inputs: Any, outputs: Any, **options: Any
) -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        mem = store.token_buffer("s", **{"max_token_limit": 10**9, **options})
        await mem.asave_context(inputs, outputs)
        return None

    return run


def agent_save(steps: Any, **options: Any) -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        mem = store.agent_token_buffer("s", max_token_limit=10**9, **options)
        await mem.asave_context({"input": "go"}, {"output": "done", "intermediate_steps": steps})
        return None

    return run


def option(
    name: str, value: Any, *, agent: bool = False
) -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        if agent:
            return store.agent_token_buffer("s", **{name: value})
        return store.token_buffer("s", **{name: value})

    return run


def session(value: Any) -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        return store.token_buffer(value)

    return run


def counted_save(counter: Any, **options: Any) -> Callable[[eventmem.Store], Awaitable[object]]:
    """A save counted by ``counter`` (a callable or a TokenCounter object)."""
    options.setdefault("max_token_limit", 10**18)
    return chat_save({"input": "x"}, {"output": "y"}, token_counter=counter, **options)


def live_step(observation: Any) -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        mem = store.agent_token_buffer("s", max_token_limit=10**9)
        return await mem.arecord_step(action(), observation)

    return run


def subclass_session() -> Callable[[eventmem.Store], Awaitable[object]]:
    async def run(store: eventmem.Store) -> object:
        mem = store.token_buffer(Str("s"), return_messages=True)
        await mem.asave_context({"input": "x"}, {"output": "y"})
        assert type(mem.session_id) is str
        return None

    return run


class Str(str):
    """A str subclass, as frameworks hand out (LangChain's TextAccessor, enums...)."""


@dataclass
class Counter:
    """A TokenCounter object (not a callable) whose every answer is chosen by the test."""

    count: Any = 1
    name: Any = "test-counter"
    overhead: Any = 0

    def count_message(self, message: eventmem.Message) -> Any:
        return self.count


def action(**fields: Any) -> dict[str, Any]:
    return {"tool": "search", "tool_input": {}, "log": "", "message_log": [], **fields}


BIG = "lorem ipsum dolor sit amet " * 2_000_000  # 54 MB
NINE_MB = BIG[:9_000_000]
NULS = "\x00" * 3_000_000  # 3 MB of text, 18 MB as JSON (each one escaped as \u0000)
NUL = "before\x00after"
ODD = (
    "e\u0301 \u202eRTL\u202c 🧑‍🚀 \U0001d518\U0001d52b\U0001d526 \ufeff \u200b"
    " <|endoftext|> <|im_start|>"
)
INVALID = eventmem.InvalidInputError
UNSERIALISABLE = eventmem.NotSerializableError
TOO_LARGE = eventmem.InputTooLargeError

CASES = [
    # -- values of a conversation turn ---------------------------------------------------
    Case("object as input", chat_save({"input": Opaque()}, {"output": "x"}), INVALID),
    Case("NaN as input", chat_save({"input": math.nan}, {"output": "x"}), INVALID),
    Case("inf as output", chat_save({"input": "x"}, {"output": math.inf}), INVALID),
    Case("bytes as input", chat_save({"input": b"raw"}, {"output": "x"}), INVALID),
    Case("bool as input", chat_save({"input": True}, {"output": "x"}), INVALID),
    Case("int as output", chat_save({"input": "x"}, {"output": 7}), INVALID),
    Case("None as output", chat_save({"input": "x"}, {"output": None}), INVALID),
    Case("list as input", chat_save({"input": ["a"]}, {"output": "x"}), INVALID),
    Case("high lone surrogate", chat_save({"input": "a\ud800"}, {"output": "x"}), UNSERIALISABLE),
    Case("low lone surrogate", chat_save({"input": "x"}, {"output": "\udfffz"}), UNSERIALISABLE),
    Case("NUL bytes", chat_save({"input": NUL}, {"output": "\x00"}), expect=[NUL, "\x00"]),
    Case("empty texts", chat_save({"input": ""}, {"output": ""}), expect=["", ""]),
    Case("whitespace", chat_save({"input": " \n\t"}, {"output": "\r\n"}), expect=[" \n\t", "\r\n"]),
    Case("odd unicode", chat_save({"input": ODD}, {"output": ODD}), expect=[ODD, ODD]),
    Case("54 MB text", chat_save({"input": BIG}, {"output": "ok"}), TOO_LARGE),
    Case(
        "1 MB without spaces",
        chat_save({"input": "a" * 2**20}, {"output": "b"}),
        expect=["a" * 2**20, "b"],
        slow=True,
    ),
    Case(
        "64 kB without spaces",
        chat_save({"input": "a" * 2**16}, {"output": "b"}),
        expect=["a" * 2**16, "b"],
    ),
    Case("inputs is a list", chat_save([("input", "x")], {"output": "x"}), INVALID),
    Case("outputs is a str", chat_save({"input": "x"}, "x"), INVALID),
    Case("inputs is None", chat_save(None, {"output": "x"}), INVALID),
    Case(
        "two input keys", chat_save({"a": "1", "b": "2"}, {"output": "x"}), eventmem.InputKeyError
    ),
    Case(
        "missing input_key",
        chat_save({"x": "1"}, {"o": "2"}, input_key="q"),
        eventmem.MissingKeyError,
    ),
    # -- agent steps -----------------------------------------------------------------------
    Case("step is a str", agent_save(["search then answer"]), INVALID),
    Case("step is a 3-tuple", agent_save([(action(), "obs", "extra")]), INVALID),
    Case("step is a dict", agent_save([{"action": action(), "observation": "x"}]), INVALID),
    Case("step is None", agent_save([None]), INVALID),
    Case("steps is a str", agent_save("steps"), INVALID),
    Case("steps is a dict", agent_save({"a": 1}), INVALID),
    Case("action without tool", agent_save([({"log": "x"}, "obs")]), INVALID),
    Case("action with empty tool", agent_save([(action(tool=""), "obs")]), INVALID),
    Case("action with int tool", agent_save([(action(tool=5), "obs")]), INVALID),
    Case("action log not str", agent_save([(action(log=5), "obs")]), INVALID),
    Case("message_log is a str", agent_save([(action(message_log="AI: hi"), "obs")]), INVALID),
    Case("message_log holds junk", agent_save([(action(message_log=[Opaque()]), "obs")]), INVALID),
    Case(
        "tool call id empty",
        agent_save([(action(tool_call_id=""), "o")], format_as_tools=True),
        INVALID,
    ),
    Case(
        "tool call id None",
        agent_save([(action(tool_call_id=None), "o")], format_as_tools=True),
        INVALID,
    ),
    Case("observation surrogate", agent_save([(action(), "\ud83d")]), UNSERIALISABLE),
    Case("observation nested 100k deep", agent_save([(action(), nested(100_000))]), INVALID),
    Case("observation str() raises", agent_save([(action(), BrokenStr())]), INVALID),
    Case("observation NaN", agent_save([(action(), math.nan)]), expect=["go", "NaN", "done"]),
    Case(
        "observation inf in dict",
        agent_save([(action(), {"v": -math.inf})]),
        expect=["go", '{"v": -Infinity}', "done"],
    ),
    Case("observation set", agent_save([(action(), {1})]), expect=["go", "{1}", "done"]),
    Case(
        "observation object", agent_save([(action(), Opaque())]), expect=["go", "<Opaque>", "done"]
    ),
    Case("observation bytes", agent_save([(action(), b"\xff")]), expect=["go", "b'\\xff'", "done"]),
    Case("observation NUL", agent_save([(action(), NUL)]), expect=["go", NUL, "done"]),
    Case(
        "tool_input NaN kept for audit",
        agent_save([(action(tool_input=math.nan), "o")]),
        expect=["go", "o", "done"],
    ),
    Case(
        "5,000 steps in one save",
        agent_save([(action(log=str(i)), i) for i in range(5000)]),
        expect=["go", *[str(i) for i in range(5000)], "done"],
        slow=True,
    ),
    Case(
        "300 steps in one save",
        agent_save([(action(log=str(i)), i) for i in range(300)]),
        expect=["go", *[str(i) for i in range(300)], "done"],
    ),
    # -- parameters ------------------------------------------------------------------------
    *[
        Case(
            f"max_token_limit={value!r}",
            option("max_token_limit", value),
            INVALID,
        )
        for value in (-1, 1.5, "10", None, True, False, math.inf)
    ],
    *[
        Case(
            f"model={value!r}",
            option("model", value),
            eventmem.InvalidInputError,
        )
        for value in (5, None, "", "llama-3-70b", b"gpt-4o")
    ],
    *[
        Case(
            f"{name}={value!r}",
            option(name, value),
            INVALID,
        )
        for name, value in [
            ("memory_key", None),
            ("memory_key", 5),
            ("return_messages", "yes"),
            ("return_messages", 1),
            ("human_prefix", None),
            ("ai_prefix", 3),
            ("input_key", 5),
            ("output_key", ["o"]),
            ("token_counter", 5),
        ]
    ],
    *[
        Case(
            f"agent {name}={value!r}",
            option(name, value, agent=True),
            INVALID,
        )
        for name, value in [
            ("output_key", None),
            ("intermediate_steps_key", 5),
            ("format_as_tools", "no"),
            ("prune", "sometimes"),
            ("prune", None),
        ]
    ],
    Case(
        "counter returns negative",
        chat_save({"input": "x"}, {"output": "y"}, token_counter=lambda ms: -len(ms)),
        INVALID,
    ),
    # -- sizes: max_save_bytes (16 MiB by default), checked before any copy or count -----
    Case("54 MB output", chat_save({"input": "x"}, {"output": BIG}), TOO_LARGE),
    Case("54 MB observation", agent_save([(action(), BIG)]), TOO_LARGE),
    Case("54 MB observation recorded live", live_step(BIG), TOO_LARGE),
    Case("two 9 MB observations", agent_save([(action(), NINE_MB)] * 2), TOO_LARGE),
    Case(
        "3 MB of NULs, 18 MB as JSON",
        chat_save({"input": NULS}, {"output": "x"}),
        TOO_LARGE,
        slow=True,
    ),
    Case("54 MB action log", agent_save([(action(log=BIG), "o")]), TOO_LARGE),
    # -- token counters whose answers cannot be stored ----------------------------------
    Case("counter returns 2**62 per message", counted_save(lambda ms: 2**62 * len(ms)), INVALID),
    Case("counter returns 2**53", counted_save(lambda ms: 2**53 * len(ms)), INVALID),
    Case("counter returns a float", counted_save(lambda ms: 1.5 * len(ms)), INVALID),
    Case("counter object returns negative", counted_save(Counter(count=-1)), INVALID),
    Case("counter object returns a bool", counted_save(Counter(count=True)), INVALID),
    Case("counter object returns 10**30", counted_save(Counter(count=10**30)), INVALID),
    Case("counter object returns a str", counted_save(Counter(count="3")), INVALID),
    Case("counter object named with NUL", counted_save(Counter(name="c\x00")), INVALID),
    Case("counter object named with a surrogate", counted_save(Counter(name="c\ud800")), INVALID),
    Case("counter object overhead 2**60", counted_save(Counter(overhead=2**60)), INVALID),
    Case(
        "counter object counts 2**53 - 1",
        counted_save(Counter(count=2**53 - 1), max_token_limit=2**63 - 1),
        expect=["x", "y"],
    ),
    *[
        Case(f"max_token_limit={label}", option("max_token_limit", value), INVALID)
        for label, value in [("2**63", 2**63), ("10**19", 10**19), ("10**100", 10**100)]
    ],
    Case(
        "max_token_limit=sys.maxsize",
        chat_save({"input": "x"}, {"output": "y"}, max_token_limit=sys.maxsize),
        expect=["x", "y"],
    ),
    # -- models and hand-built values --------------------------------------------------
    Case("model with a lone surrogate", option("model", "gpt-4o\ud800"), UNSERIALISABLE),
    Case(
        "model with NUL",
        chat_save({"input": "x"}, {"output": "y"}, model="gpt-4o\x00"),
        expect=["x", "y"],
    ),
    Case(
        "model as a str subclass",
        chat_save({"input": "x"}, {"output": "y"}, model=Str("gpt-4o")),
        expect=["x", "y"],
    ),
    Case("session id as a str subclass", subclass_session(), expect=["x", "y"]),
    Case(
        "tool_input nested 100k deep",
        agent_save([(action(tool_input=nested(100_000)), "o")]),
        INVALID,
    ),
    Case("tool_input str() raises", agent_save([(action(tool_input=BrokenStr()), "o")]), INVALID),
    Case("hand-built Action, empty tool", agent_save([(eventmem.Action(tool=""), "o")]), INVALID),
    Case(
        "hand-built Action, object tool_input",
        agent_save([(eventmem.Action(tool="t", tool_input=Opaque()), "o")]),
        UNSERIALISABLE,
    ),
    Case(
        "hand-built Action, NaN tool_input",
        agent_save([(eventmem.Action(tool="t", tool_input=math.nan), "o")]),
        UNSERIALISABLE,
    ),
    Case(
        "hand-built Action, str subclass tool",
        agent_save([(eventmem.Action(tool=Str("t"), log=Str("l")), "o")]),
        expect=["go", "l", "done"],
    ),
    # -- session ids -----------------------------------------------------------------------
    *[
        Case(f"session id {label}", session(value), INVALID)
        for label, value in [
            ("empty", ""),
            ("None", None),
            ("int", 5),
            ("bytes", b"s"),
            ("5000 chars", "x" * 5000),
            ("surrogate", "\udc80"),
            ("with NUL", "a\x00b"),
            ("list", ["s"]),
        ]
    ],
]


def _rows(target: str) -> int:
    with raw_database(target) as db:
        [(rows,)] = db.execute(
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM sessions)"
        )
    return int(rows)


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.postgres_sample(5)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=[pytest.mark.slow] if case.slow else [], id=case.name)
        for case in CASES
    ],
)
async def test_hostile_input(store: eventmem.Store, target: str, case: Case) -> None:
    if case.error is not None:
        with pytest.raises(case.error) as caught:
            await case.run(store)
        assert str(caught.value).strip()
        assert _rows(target) == 0
        return
    await case.run(store)
    assert [m.content for m in await store.messages("s")] == case.expect
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    "session",
    ["'; DROP TABLE events; --", "../../etc/passwd", "C:\\con\\aux", "%s%n", "?", "名前"],
)
async def test_odd_session_ids_are_just_names(store: eventmem.Store, session: str) -> None:
    await store.token_buffer(session).asave_context({"input": "x"}, {"output": "y"})
    assert await store.sessions() == [session]
    assert [e.position async for e in store.events(session)] == [1]
