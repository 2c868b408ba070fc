"""Conversion between eventmem [`Message`][eventmem.Message] and LangChain message objects.

Lossless both ways: role, content (text or parts), name, tool calls, invalid tool calls,
``function_call``, ``tool_call_id`` and message id are a Message's fields; the rest of a
LangChain message (``additional_kwargs``, ``response_metadata``, ``usage_metadata``, its
chunk class, ...) travels in ``metadata["langchain"]``. A tool message's name travels in
``additional_kwargs["name"]``, where LangChain's ``format_to_tool_messages`` (and so
``AgentTokenBufferMemory``) puts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
    message_chunk_to_message,
)

from eventmem.messages import (
    Message,
    from_langchain,  # re-exported: one conversion, not two
)

__all__ = ["from_langchain", "normalize_step", "plain_values", "to_langchain"]


def to_langchain(message: Message) -> BaseMessage:
    """The LangChain message for ``message`` (a fresh object; mutating it is safe).

    ``human`` → ``HumanMessage``, ``ai`` → ``AIMessage`` (``tool_calls``,
    ``invalid_tool_calls``, and ``additional_kwargs["function_call"]``), ``system`` →
    ``SystemMessage`` (``developer``: with ``additional_kwargs["__openai_role__"]``),
    ``function`` → ``FunctionMessage``, ``tool`` → ``ToolMessage``
    (its name in ``additional_kwargs["name"]``). Ids and names are kept, and what
    ``from_langchain`` kept in ``metadata["langchain"]`` is given back: the message's
    ``additional_kwargs``, ``response_metadata``, ``usage_metadata``, chunk class
    (``AIMessageChunk``, ...), ``tool_call_chunks``, and a tool message's ``artifact``
    and ``status``.
    """
    role = message.role
    kept = _kept(message)
    fields: dict[str, Any] = {"content": _content(message), "id": message.id}
    extra: dict[str, Any] = {}
    if role == "tool":
        fields["tool_call_id"] = message.tool_call_id  # Message guarantees one
        if message.name is not None:
            if kept.get(_NAME_FIELD) is True:
                fields["name"] = message.name
            else:
                extra["name"] = message.name
    elif role == "function":
        fields["name"] = message.name or ""
    else:
        fields["name"] = message.name
    if role == "developer":
        extra["__openai_role__"] = "developer"
    if role == "ai":
        if message.function_call is not None:
            extra["function_call"] = _copy(message.function_call)
        fields["tool_calls"] = [
            {"name": c.name, "args": _copy(c.args), "id": c.id, "type": "tool_call"}
            for c in message.tool_calls
        ]
        fields["invalid_tool_calls"] = [
            {
                "name": c.name,
                "args": c.args,
                "id": c.id,
                "error": c.error,
                "type": "invalid_tool_call",
            }
            for c in message.invalid_tool_calls
        ]
    extra.update(_copy(kept.get("additional_kwargs", {})))
    fields["additional_kwargs"] = extra
    if "name" in kept and role not in ("tool", "function"):
        fields["name"] = None  # it was in additional_kwargs only
    for field in _KEPT_FIELDS[role]:
        if field in kept:
            fields[field] = _copy(kept[field])
    chunk = kept.get("chunk") is True
    if chunk and "tool_call_chunks" in fields:
        del fields["tool_calls"]  # the chunks are what the message held; LangChain parses them
    if not chunk:
        fields.pop("tool_call_chunks", None)
        fields.pop("chunk_position", None)
    plain, streamed = _CLASSES[role]
    made: BaseMessage = (streamed if chunk else plain)(**fields)
    return made


# The message classes by role, plain and streamed (chunk).
_CLASSES: dict[str, tuple[type[BaseMessage], type[BaseMessage]]] = {
    "human": (HumanMessage, HumanMessageChunk),
    "ai": (AIMessage, AIMessageChunk),
    "system": (SystemMessage, SystemMessageChunk),
    "developer": (SystemMessage, SystemMessageChunk),
    "function": (FunctionMessage, FunctionMessageChunk),
    "tool": (ToolMessage, ToolMessageChunk),
}
# The fields of metadata["langchain"] each class takes back (besides additional_kwargs).
_COMMON = ("response_metadata",)
_KEPT_FIELDS: dict[str, tuple[str, ...]] = {
    "human": (*_COMMON, "example"),
    "ai": (*_COMMON, "example", "usage_metadata", "tool_call_chunks", "chunk_position"),
    "system": _COMMON,
    "developer": _COMMON,
    "function": _COMMON,
    "tool": (*_COMMON, "artifact", "status"),
}


# In metadata["langchain"] of a tool message: its name was the message's ``name`` field
# (where LangGraph's ToolNode puts it), not ``additional_kwargs["name"]``.
_NAME_FIELD = "name_field"


def _kept(message: Message) -> dict[str, Any]:
    """``metadata["langchain"]``: what ``from_langchain`` kept (empty if nothing)."""
    metadata = message.metadata
    kept = metadata.get("langchain") if metadata is not None else None
    return kept if isinstance(kept, dict) else {}


def _content(message: Message) -> Any:
    """The content as LangChain holds it: a str, or a list of (copied) parts."""
    content = message.content
    return content if isinstance(content, str) else [_copy(part) for part in content]


def normalize_step(step: Any) -> Any:
    """An intermediate step as eventmem's core accepts it.

    Agents that stream (``AgentExecutor``'s default) put an ``AIMessageChunk`` in
    ``ToolAgentAction.message_log``: it becomes the message it stands for. An
    observation of a ``str`` subclass becomes a plain ``str``. Other steps are returned
    as they are (the core reports what is wrong with them).
    """
    if isinstance(step, (str, bytes, Mapping)) or not isinstance(step, Sequence) or len(step) != 2:
        return step
    action, observation = step
    if _is_str_subclass(observation):
        observation = str.__str__(observation)
        step = (action, observation)
    log = _field(action, "message_log")
    if not isinstance(log, Sequence) or not any(isinstance(m, BaseMessageChunk) for m in log):
        return step
    replaced: dict[str, Any] = {
        "tool": _field(action, "tool"),
        "tool_input": _field(action, "tool_input", ""),
        "log": _field(action, "log", ""),
        "message_log": [message_chunk_to_message(m) for m in log],
    }
    if (isinstance(action, Mapping) and "tool_call_id" in action) or (
        not isinstance(action, Mapping) and hasattr(action, "tool_call_id")
    ):
        replaced["tool_call_id"] = _field(action, "tool_call_id")
    return (replaced, observation)


def _field(source: Any, name: str, default: Any = None) -> Any:
    if isinstance(source, Mapping):
        return source.get(name, default)
    return getattr(source, name, default)


def plain_values(values: Any) -> Any:
    """``values`` with every ``str``-subclass value turned into a plain ``str``.

    LangChain 1.x's ``AIMessage.text`` is a ``TextAccessor`` (a ``str`` subclass), and
    chains pass it on as their output; eventmem stores plain strings only.
    """
    if not isinstance(values, Mapping) or not any(map(_is_str_subclass, values.values())):
        return values
    return {k: str.__str__(v) if _is_str_subclass(v) else v for k, v in values.items()}


def _is_str_subclass(value: Any) -> bool:
    return isinstance(value, str) and type(value) is not str


def _copy(value: Any) -> Any:
    """A copy of a JSON value, so callers never share dicts with eventmem's cache."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
