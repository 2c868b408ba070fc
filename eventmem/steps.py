"""Agent intermediate steps: normalising actions and formatting them as messages. Pure.

An intermediate step is ``(action, observation)``. The action may be a LangChain
``AgentAction``, ``AgentActionMessageLog`` or ``ToolAgentAction`` (duck-typed, LangChain is
never imported), an ``AgentStep``'s action, or a plain dict with the same fields.
Formatting follows LangChain's ``format_to_openai_function_messages`` and
``format_to_tool_messages``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from eventmem.errors import InvalidInputError, NotSerializableError
from eventmem.messages import Message, check_json_value, from_langchain, plain_text, stored_tuple

__all__ = ["Action", "ActionKind", "check_action", "format_step", "observation_text", "to_action"]

ActionKind = Literal["action", "message_log", "tool"]


class Action(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):  # see messages.py
    """A tool invocation requested by the agent.

    ``kind`` says which LangChain action it mirrors: ``action`` (``AgentAction``: only a
    log), ``message_log`` (``AgentActionMessageLog``: the model messages that requested
    it) or ``tool`` (``ToolAgentAction``: a tool call with an id).
    """

    tool: str
    tool_input: Any = ""
    log: str = ""
    message_log: tuple[Message, ...] = ()
    tool_call_id: str | None = None
    kind: ActionKind = "action"


def _field(source: Any, name: str, default: Any = None) -> Any:
    if isinstance(source, Mapping):
        return source.get(name, default)
    return getattr(source, name, default)


def _has(source: Any, name: str) -> bool:
    return name in source if isinstance(source, Mapping) else hasattr(source, name)


def to_action(source: Any) -> Action:
    """Normalise a LangChain action, an ``Action`` or a dict into an
    [`Action`][eventmem.Action]."""
    if isinstance(source, Action):
        return check_action(source)
    tool = _field(source, "tool")
    if not isinstance(tool, str) or not tool:
        raise InvalidInputError(
            f"an agent action needs a tool name (a non-empty str); got {type(source).__name__} "
            f"with tool={tool!r}"
        )
    tool = plain_text(tool, "action tool")
    log = plain_text(_field(source, "log", ""), "action log")
    tool_input = _field(source, "tool_input", "")
    try:
        check_json_value(tool_input, "tool_input")
    except NotSerializableError:
        # recorded for audit only; formatting never uses it
        tool_input = plain_text(_str(tool_input, "tool_input"), "tool_input")
    raw_log = _field(source, "message_log", None)
    has_log = _has(source, "message_log")
    if has_log and (raw_log is None or isinstance(raw_log, (str, bytes, Mapping))):
        raise InvalidInputError("action message_log must be a list of messages")
    message_log = stored_tuple(from_langchain(m) for m in raw_log or ())
    tool_call_id = _field(source, "tool_call_id", None)
    is_tool = _has(source, "tool_call_id")
    if is_tool and not isinstance(tool_call_id, str):
        raise InvalidInputError(
            f"a tool action needs a tool_call_id (a str), got {type(tool_call_id).__name__}"
        )
    kind: ActionKind = "tool" if is_tool else "message_log" if has_log else "action"
    return Action(
        tool=tool,
        tool_input=tool_input,
        log=log,
        message_log=message_log,
        tool_call_id=tool_call_id,
        kind=kind,
    )


_ACTION_KINDS = ("action", "message_log", "tool")


def check_action(action: Action) -> Action:
    """``action`` if every field can be stored (an [`Action`][eventmem.Action] built by
    hand, or read from an export file), else raise `InvalidInputError`."""
    if not isinstance(action.tool, str) or not action.tool:
        raise InvalidInputError(f"an action's tool must be a non-empty str, got {action.tool!r}")
    tool = plain_text(action.tool, "action tool")
    log = plain_text(action.log, "action log")
    check_json_value(action.tool_input, "action tool_input")
    call_id = action.tool_call_id
    if call_id is not None:
        call_id = plain_text(call_id, "action tool_call_id")
    if action.kind not in _ACTION_KINDS:
        raise InvalidInputError(f"an action's kind must be one of {_ACTION_KINDS}")
    if not isinstance(action.message_log, tuple) or not all(
        isinstance(m, Message) for m in action.message_log
    ):
        raise InvalidInputError("an action's message_log must be a tuple of Message")
    given = (action.tool, action.log, action.tool_call_id)
    if any(type(v) is not str for v in given if v is not None):  # str subclasses
        action = msgspec.structs.replace(action, tool=tool, log=log, tool_call_id=call_id)
    if (message_log := stored_tuple(action.message_log)) is not action.message_log:
        action = msgspec.structs.replace(action, message_log=message_log)
    return action


def observation_text(observation: Any) -> str:
    """LangChain's rendering of an observation: str as is, else JSON, else ``str()``."""
    return plain_text(_render(observation), "observation")


def _render(observation: Any) -> str:
    if isinstance(observation, str):
        return observation
    try:
        return json.dumps(observation, ensure_ascii=False)
    except RecursionError:
        raise InvalidInputError("the observation is nested too deeply to render") from None
    except Exception:
        pass
    return _str(observation, "the observation")


def _str(value: Any, what: str) -> str:
    """``str(value)``, or a clear error when that fails."""
    try:
        text = str(value)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply to render") from None
    except Exception as e:
        raise InvalidInputError(
            f"{what} ({type(value).__name__}) is not JSON and str() of it failed: {e!r}"
        ) from e
    if not isinstance(text, str):
        raise InvalidInputError(f"str() of {what} returned {type(text).__name__}")
    return text


def split_step(step: Any) -> tuple[Any, Any]:
    """``(action, observation)`` of one intermediate step, or a clear error."""
    if isinstance(step, (str, bytes, Mapping)) or not isinstance(step, Sequence):
        raise InvalidInputError(
            f"an intermediate step must be an (action, observation) pair, got {type(step).__name__}"
        )
    if len(step) != 2:
        raise InvalidInputError(
            f"an intermediate step must be an (action, observation) pair, got {len(step)} items"
        )
    return step[0], step[1]


def format_step(action: Action, observation: str, as_tools: bool) -> tuple[Message, ...]:
    """The messages LangChain's scratchpad formatters produce for one step.

    Functions format: the message log then ``Function(name=tool)``; tools format: the
    message log then ``Tool(tool_call_id)``. An action without the matching shape
    becomes ``AI(content=log)`` and its observation is not shown, as in LangChain.
    """
    if as_tools:
        if action.kind != "tool":
            return (Message(role="ai", content=action.log),)
        result = Message(
            role="tool", content=observation, tool_call_id=action.tool_call_id, name=action.tool
        )
    else:
        if action.kind == "action":
            return (Message(role="ai", content=action.log),)
        result = Message(role="function", content=observation, name=action.tool)
    return (*action.message_log, result)
