"""Hypothesis strategies for agent runs, drawn as plain data and built into LangChain actions.

A run is a configuration and a few turns; a turn is its input, its output and its
intermediate steps, described by :class:`Plain` (``AgentAction``), :class:`FunctionCall`
(``AgentActionMessageLog`` with a ``function_call`` message) and :class:`ToolBatch`
(``ToolAgentAction``s sharing one ``AIMessage`` that carries several ``tool_calls``: parallel
tool calls). :func:`build_steps` turns a turn into the ``(action, observation)`` pairs an
``AgentExecutor`` would pass, so eventmem and the LangChain reference get the very same
objects, and hypothesis shrinks readable values.

Texts are full Unicode (emoji sequences, CJK, RTL, combining marks, controls) and never
contain ``"<|"``: LangChain's tiktoken call raises on text that looks like a special token.
They hold no lone surrogates (eventmem refuses to store them; tiktoken cannot encode them).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from langchain_core.agents import AgentAction, AgentActionMessageLog
from langchain_core.messages import AIMessage

with warnings.catch_warnings():
    # langchain_classic.agents imports langchain_community when it is installed, and that
    # warns on import; pytest would turn the warning into a collection error.
    warnings.filterwarnings("ignore", "`langchain-community` is being sunset", DeprecationWarning)
    from langchain_classic.agents.output_parsers.tools import ToolAgentAction

__all__ = [
    "MAX_STEPS",
    "AgentConfig",
    "Call",
    "FunctionCall",
    "Opaque",
    "Plain",
    "Step",
    "ToolBatch",
    "Turn",
    "build_steps",
    "configs",
    "observations",
    "texts",
    "turns",
    "weather_steps",
]

MAX_STEPS = 4  # intermediate steps per turn

_SPICE = (
    "👩‍👩‍👧‍👦🇯🇵👍🏽1️⃣🤖"
    "日本語中文文本한국어"
    "e\u0301n\u0303\u0324"
    "مرحبا\u200f\u202e\u200d\ufeff"
    " \t\r\n\x00\x1b\u2028"
    "\U0001d518\U0010fffd"
    "'sdmtllvre0123456789<|>{}[]\":,\\"
)
_characters = st.one_of(st.characters(codec="utf-8"), st.sampled_from(_SPICE))


def _no_special_token(text: str) -> str:
    # A space after "<" breaks every "<|" and cannot create a new one.
    return text.replace("<|", "< |")


_short = st.text(_characters, max_size=24).map(_no_special_token)

#: A message text: empty, short, or a few hundred characters.
texts: st.SearchStrategy[str] = st.one_of(
    st.just(""),
    _short,
    _short,
    st.text(_characters, min_size=100, max_size=400).map(_no_special_token),
)

_names = st.one_of(
    st.sampled_from(["search", "get_weather", "calculator", "天気", "🔧"]),
    st.text(_characters, min_size=1, max_size=16).map(_no_special_token),
)

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    _short,
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(_short, children, max_size=3)
    ),
    max_leaves=8,
)
_arguments = st.dictionaries(_short, _json_values, max_size=3)


class Opaque:
    """An observation JSON cannot encode: LangChain renders it with ``str()``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Opaque({self.text!r})"


#: What a tool may return: text, JSON-shaped values, and values only ``str()`` renders.
observations: st.SearchStrategy[Any] = st.one_of(
    texts,
    texts,
    _json_values,
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),  # NaN and infinities: json.dumps writes NaN / Infinity
    st.dictionaries(st.integers(-5, 5), _short, max_size=3),  # keys become strings
    st.tuples(_short, st.integers()),  # JSON array
    st.frozensets(st.integers(-100, 100), max_size=4),  # str() fallback
    st.sets(_short, max_size=3),
    st.builds(Opaque, texts),
    st.lists(st.builds(Opaque, _short), min_size=1, max_size=2),  # str() of the list
    st.binary(max_size=8),
)


@dataclass(frozen=True)
class Plain:
    """An ``AgentAction``: only a log (formatted as ``AI(content=log)``)."""

    tool: str
    tool_input: Any
    log: str


@dataclass(frozen=True)
class FunctionCall:
    """An ``AgentActionMessageLog`` whose message log is one function-call ``AIMessage``."""

    tool: str
    args: dict[str, Any]
    content: str
    log: str
    ascii_arguments: bool
    with_message: bool = True


@dataclass(frozen=True)
class Call:
    """One tool call of a :class:`ToolBatch`."""

    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolBatch:
    """Parallel ``ToolAgentAction``s: one ``AIMessage`` carrying all their ``tool_calls``."""

    calls: tuple[Call, ...]
    content: str
    name: str | None
    message_id: str | None
    invalid: bool  # the message also carries an unparseable tool call (no result)
    with_message: bool = True


Step = Plain | FunctionCall | ToolBatch


@dataclass(frozen=True)
class Turn:
    """One agent run ended by ``save_context``.

    ``live`` steps are recorded with ``arecord_step`` before the save; ``omit_key`` (only
    when every step was live) leaves ``intermediate_steps`` out of eventmem's outputs;
    ``reopen`` closes and reopens the store before the turn.
    """

    input: str
    output: str
    steps: tuple[Step, ...]
    observations: tuple[Any, ...]
    live: int
    omit_key: bool
    reopen: bool


@dataclass(frozen=True)
class AgentConfig:
    """How both memories are configured for a run."""

    model: str
    max_token_limit: int
    format_as_tools: bool
    return_messages: bool


def _size(step: Step) -> int:
    return len(step.calls) if isinstance(step, ToolBatch) else 1


def _steps(well_formed: bool) -> st.SearchStrategy[Step]:
    with_message = st.just(True) if well_formed else st.sampled_from([True, True, True, False])
    return st.one_of(
        st.builds(Plain, _names, st.one_of(_short, _arguments), texts),
        st.builds(
            FunctionCall,
            _names,
            _arguments,
            texts,
            texts,
            st.booleans(),
            with_message,
        ),
        st.builds(
            ToolBatch,
            st.lists(st.builds(Call, _names, _arguments), min_size=1, max_size=3).map(tuple),
            st.one_of(st.just(""), _short),
            st.one_of(st.none(), _names),
            st.one_of(st.none(), st.just("run-"), _short).map(
                lambda p: None if p is None else f"{p}id"
            ),
            st.booleans(),
            with_message,
        ),
    )


@st.composite
def turns(draw: st.DrawFn, *, well_formed: bool = False) -> Turn:
    """A turn with 0..MAX_STEPS intermediate steps.

    ``well_formed`` turns give every function/tool result its call in the message log
    (what the OpenAI agents produce); otherwise a message log is sometimes empty.
    """
    drawn = draw(st.lists(_steps(well_formed), max_size=3))
    steps: list[Step] = []
    count = 0
    for step in drawn:
        room = MAX_STEPS - count
        if room <= 0:
            break
        if isinstance(step, ToolBatch) and len(step.calls) > room:
            step = ToolBatch(
                step.calls[:room],
                step.content,
                step.name,
                step.message_id,
                step.invalid,
                step.with_message,
            )
        steps.append(step)
        count += _size(step)
    live = draw(st.integers(0, count))
    return Turn(
        input=draw(texts),
        output=draw(texts),
        steps=tuple(steps),
        observations=tuple(draw(st.lists(observations, min_size=count, max_size=count))),
        live=live,
        omit_key=live == count and draw(st.booleans()),
        reopen=draw(st.sampled_from([False, False, False, True])),
    )


def configs(limits: st.SearchStrategy[int]) -> st.SearchStrategy[AgentConfig]:
    """Models gpt-4o (o200k) and gpt-4 (cl100k), both formats, both return types."""
    return st.builds(
        AgentConfig,
        st.sampled_from(["gpt-4o", "gpt-4"]),
        limits,
        st.booleans(),
        st.booleans(),
    )


def build_steps(turn: Turn, turn_index: int) -> list[tuple[Any, Any]]:
    """The ``(action, observation)`` pairs of ``turn``, as LangChain's agents make them.

    Tool call ids are unique within a run. Logs are made unique within a turn: LangChain's
    tools formatter never de-duplicates an ``AI(content=log)`` message, while eventmem does
    (a known difference, tested on its own in ``test_agent_memory.py``).
    """
    actions: list[Any] = []
    logs: set[str] = set()

    def unique(log: str) -> str:
        while log in logs:
            log += f" ({len(logs)})"
        logs.add(log)
        return log

    for index, step in enumerate(turn.steps):
        if isinstance(step, Plain):
            actions.append(
                AgentAction(tool=step.tool, tool_input=step.tool_input, log=unique(step.log))
            )
        elif isinstance(step, FunctionCall):
            arguments = json.dumps(step.args, ensure_ascii=step.ascii_arguments)
            message = AIMessage(
                content=step.content,
                additional_kwargs={"function_call": {"name": step.tool, "arguments": arguments}},
            )
            actions.append(
                AgentActionMessageLog(
                    tool=step.tool,
                    tool_input=step.args,
                    log=unique(step.log),
                    message_log=[message] if step.with_message else [],
                )
            )
        else:
            ids = [f"call_{turn_index}_{index}_{k}" for k in range(len(step.calls))]
            invalid = (
                [
                    {
                        "name": "broken",
                        "args": '{"x": 1',
                        "id": f"call_{turn_index}_{index}_bad",
                        "error": "Function broken arguments are not valid JSON.",
                        "type": "invalid_tool_call",
                    }
                ]
                if step.invalid
                else []
            )
            shared = AIMessage(
                content=step.content,
                name=step.name,
                id=step.message_id,
                tool_calls=[
                    {"name": c.tool, "args": c.args, "id": i, "type": "tool_call"}
                    for c, i in zip(step.calls, ids, strict=True)
                ],
                invalid_tool_calls=invalid,
            )
            actions.extend(
                ToolAgentAction(
                    tool=c.tool,
                    tool_input=c.args,
                    log=f"\nInvoking: `{c.tool}` with `{c.args}`\n\n\n",
                    message_log=[shared] if step.with_message else [],
                    tool_call_id=i,
                )
                for c, i in zip(step.calls, ids, strict=True)
            )
    return list(zip(actions, turn.observations, strict=True))


def weather_steps() -> list[tuple[Any, Any]]:
    """A fixed run: two parallel tool calls, then a function-call step (deterministic:
    the crash test hands its first two steps to a process that records them)."""
    shared = AIMessage(
        content="",
        id="run-weather-1",
        tool_calls=[
            {"name": "get_weather", "args": {"city": "東京"}, "id": "call_w1", "type": "tool_call"},
            {
                "name": "get_weather",
                "args": {"city": "Zürich"},
                "id": "call_w2",
                "type": "tool_call",
            },
        ],
    )
    tokyo = ToolAgentAction(
        tool="get_weather",
        tool_input={"city": "東京"},
        log="\nInvoking: `get_weather` with `{'city': '東京'}`\n\n\n",
        message_log=[shared],
        tool_call_id="call_w1",
    )
    zurich = ToolAgentAction(
        tool="get_weather",
        tool_input={"city": "Zürich"},
        log="\nInvoking: `get_weather` with `{'city': 'Zürich'}`\n\n\n",
        message_log=[shared],
        tool_call_id="call_w2",
    )
    convert = ToolAgentAction(
        tool="convert",
        tool_input={"celsius": 21.5},
        log="\nInvoking: `convert` with `{'celsius': 21.5}`\n\n\n",
        message_log=[
            AIMessage(
                content="Converting 🌡️",
                tool_calls=[
                    {
                        "name": "convert",
                        "args": {"celsius": 21.5},
                        "id": "call_c1",
                        "type": "tool_call",
                    }
                ],
            )
        ],
        tool_call_id="call_c1",
    )
    return [
        (tokyo, {"temp_c": 18, "sky": "晴れ ☀️"}),
        (zurich, ["rain", 12.5, None, True]),
        (convert, 70.7),
    ]
