"""Chat messages: the stored shape, the OpenAI shape and LangChain's buffer string.

A [`Message`][eventmem.Message] is what eventmem stores and returns. It converts losslessly from
LangChain message objects (duck-typed: LangChain is never imported here) and renders to
exactly the dict langchain-openai sends to the chat-completions API, which is also what
token counting measures.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args

import msgspec

from eventmem.errors import InvalidInputError, NotSerializableError

__all__ = [
    "MAX_DEPTH",
    "OPENAI_ROLE",
    "BufferLines",
    "Content",
    "ContentPart",
    "InvalidToolCall",
    "Message",
    "Role",
    "ToolCall",
    "buffer_string",
    "build_trusted",
    "check_json_value",
    "check_text",
    "decode_trusted",
    "from_langchain",
    "from_openai",
    "plain_text",
    "stored_tuple",
]

Role = Literal["human", "ai", "system", "developer", "function", "tool"]
# A content part: a string, or a JSON object such as {"type": "text", "text": ...} or
# {"type": "image_url", "image_url": {...}}, kept exactly as given.
ContentPart = str | dict[str, Any]
Content = str | tuple[ContentPart, ...]
ROLES: frozenset[str] = frozenset(get_args(Role))

OPENAI_ROLE: dict[Role, str] = {  # eventmem role -> chat-completions role
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "developer": "developer",
    "function": "function",
    "tool": "tool",
}
MAX_DEPTH = 200  # JSON nesting accepted in stored values
_JSON_TYPES = (str, float, dict, list)

_CHUNK_TYPES = {
    "HumanMessageChunk": "human",
    "AIMessageChunk": "ai",
    "SystemMessageChunk": "system",
    "FunctionMessageChunk": "function",
    "ToolMessageChunk": "tool",
}
_LANGCHAIN_TYPES = {"human", "ai", "system", "function", "tool"}


class _Trust(threading.local):
    active = False


_trusted = _Trust()
T = TypeVar("T")


def stored_tuple(items: Iterable[T]) -> tuple[T, ...]:
    """``tuple(items)`` for a struct field whose default is ``()``. msgspec leaves a
    default out of the JSON only when the value *is* the default object, and on Python
    3.10 ``tuple()`` of an empty iterator is a new empty tuple, written as ``[]``: the
    bytes would then differ from those a decoded event encodes to (verify, import)."""
    return tuple(items) or ()


def decode_trusted(decode: Callable[[bytes | str], T], data: bytes | str) -> T:
    """``decode(data)`` without re-validating messages: for data eventmem validated when
    it wrote it (loads, verify after the hash matched, rebuild). Never for foreign input."""
    _trusted.active = True
    try:
        return decode(data)
    finally:
        _trusted.active = False


def build_trusted(build: Callable[[], T]) -> T:
    """``build()`` with messages constructed unchecked: only for values made from
    messages already checked (a fold's skeleton of one, for instance)."""
    _trusted.active = True
    try:
        return build()
    finally:
        _trusted.active = False


# The stored structs are not tracked by the garbage collector (gc=False): they hold only
# JSON-like values, so they cannot form reference cycles, and a verify or rebuild decodes
# hundreds of thousands of them, which otherwise costs more in collections than decoding.
class ToolCall(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One tool call requested by an assistant message (LangChain's ``ToolCall``)."""

    name: str
    args: dict[str, Any]
    id: str | None = None

    def __post_init__(self) -> None:
        if _trusted.active:
            return
        if not isinstance(self.name, str):
            raise InvalidInputError(f"tool call name must be a str, got {_type(self.name)}")
        if not isinstance(self.args, dict):
            raise InvalidInputError(f"tool call args must be a dict, got {_type(self.args)}")
        if self.id is not None and not isinstance(self.id, str):
            raise InvalidInputError(f"tool call id must be a str or None, got {_type(self.id)}")
        check_json_value(self.args, "tool call args")

    def to_langchain_dict(self) -> dict[str, Any]:
        """The dict LangChain keeps in ``AIMessage.tool_calls`` (key order included)."""
        return {"name": self.name, "args": self.args, "id": self.id, "type": "tool_call"}


class InvalidToolCall(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """A tool call the model produced with unparseable arguments (LangChain's
    ``InvalidToolCall``); kept verbatim, since the API still expects its result."""

    name: str | None = None
    args: str | None = None
    id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        for field in ("name", "args", "id", "error"):
            value = getattr(self, field)
            if value is not None:
                check_text(value, f"invalid tool call {field}")


# The default of Message's call fields: the only empty tuple the plain-text fast path
# lets through (see stored_tuple).
_NO_CALLS: tuple[()] = ()


class Message(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One chat message as eventmem stores it.

    ``role`` is one of ``human``, ``ai``, ``system``, ``developer``, ``function``,
    ``tool``; ``developer`` is OpenAI's developer role (LangChain: a ``SystemMessage``
    with ``additional_kwargs["__openai_role__"] = "developer"``). ``name``
    is the function name of a function message (or a participant name). ``tool_calls``
    and ``function_call`` belong to ``ai`` messages; ``tool_call_id`` to ``tool``
    messages. ``id`` is the message id LangChain may carry.

    ``content`` is a string or a tuple of content parts: strings and JSON objects
    (``{"type": "text", "text": ...}``, ``{"type": "image_url", ...}``, ...) kept exactly
    as given (a list is taken as a tuple); [`text`][eventmem.Message.text] is its text.
    ``metadata`` is a JSON object stored and returned verbatim and never sent or counted:
    what an adapter needs to give a framework back its own message exactly.
    """

    role: Role
    content: Content
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    id: str | None = None
    invalid_tool_calls: tuple[InvalidToolCall, ...] = ()
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Runs for every message constructed or decoded, so the common case, a plain text
        # message, takes the short path; data eventmem wrote itself skips it entirely.
        if _trusted.active:
            return
        if self.role not in ROLES:
            raise InvalidInputError(
                f"message role must be one of {sorted(ROLES)}, got {self.role!r}"
            )
        if (
            type(self.content) is str
            and self.name is None
            and self.tool_call_id is None
            and self.id is None
            and self.function_call is None
            and self.tool_calls is _NO_CALLS
            and self.invalid_tool_calls is _NO_CALLS
            and self.metadata is None
            and self.role in ("human", "ai", "system", "developer")
        ):  # a plain text message: only its text needs checking
            if not self.content.isascii():
                check_text(self.content, "message content")
            return
        if type(self.content) is not str and not isinstance(self.content, str):
            self._check_parts()
        for field in ("content", "name", "tool_call_id", "id"):
            value = getattr(self, field)
            if value is None or (field == "content" and type(value) is tuple):
                continue
            check_text(value, f"message {field}")
            if type(value) is not str:  # a str subclass (LangChain's TextAccessor, ...)
                msgspec.structs.force_setattr(self, field, str.__str__(value))
        if self.tool_calls or self.invalid_tool_calls:
            self._check_calls()
        elif self.tool_calls is not _NO_CALLS or self.invalid_tool_calls is not _NO_CALLS:
            self._check_calls()  # an empty list, or another empty tuple: normalise it
        if self.function_call is not None:
            if self.role != "ai":
                raise InvalidInputError(f"only ai messages carry function_call, not {self.role}")
            if not isinstance(self.function_call, dict):
                raise InvalidInputError(
                    f"function_call must be a dict, got {_type(self.function_call)}"
                )
            check_json_value(self.function_call, "function_call")
        if self.metadata is not None:
            if type(self.metadata) is not dict:
                raise InvalidInputError(f"metadata must be a dict, got {_type(self.metadata)}")
            check_json_value(self.metadata, "metadata")
        if self.role == "tool" and self.tool_call_id is None:
            raise InvalidInputError("a tool message needs a tool_call_id")
        if self.role == "function" and not self.name:
            raise InvalidInputError("a function message needs a name")

    def _check_parts(self) -> None:
        parts = self.content
        if isinstance(parts, list):
            parts = tuple(parts)
            msgspec.structs.force_setattr(self, "content", parts)
        if not isinstance(parts, tuple):
            raise InvalidInputError(
                f"message content must be a str or a list of parts, got {_type(parts)}"
            )
        for index, part in enumerate(parts):
            what = f"content part {index}"
            if isinstance(part, str):
                check_text(part, what)
                if type(part) is not str:
                    raise InvalidInputError(f"{what} is a {_type(part)}; give a plain str")
            elif isinstance(part, dict):
                check_json_value(part, what)
            else:
                raise InvalidInputError(f"{what} must be a str or a dict, got {_type(part)}")

    @property
    def text(self) -> str:
        """The message's text: its content when that is a string, else its string parts
        and the ``text`` of its ``{"type": "text"}`` parts, joined (LangChain's
        ``BaseMessage.text``)."""
        content = self.content
        if type(content) is str:
            return content
        return "".join(
            part
            if isinstance(part, str)
            else part["text"]
            if part.get("type") == "text" and isinstance(part.get("text"), str)
            else ""
            for part in content
        )

    def _check_calls(self) -> None:
        if isinstance(self.tool_calls, (list, tuple)):
            msgspec.structs.force_setattr(self, "tool_calls", stored_tuple(self.tool_calls))
        if not isinstance(self.tool_calls, tuple) or not all(
            isinstance(call, ToolCall) for call in self.tool_calls
        ):
            raise InvalidInputError("message tool_calls must be a sequence of ToolCall")
        if isinstance(self.invalid_tool_calls, (list, tuple)):
            msgspec.structs.force_setattr(
                self, "invalid_tool_calls", stored_tuple(self.invalid_tool_calls)
            )
        if not isinstance(self.invalid_tool_calls, tuple) or not all(
            isinstance(call, InvalidToolCall) for call in self.invalid_tool_calls
        ):
            raise InvalidInputError(
                "message invalid_tool_calls must be a sequence of InvalidToolCall"
            )
        if (self.tool_calls or self.invalid_tool_calls) and self.role != "ai":
            raise InvalidInputError(f"only ai messages carry tool_calls, not {self.role}")

    def to_openai(self) -> dict[str, Any]:
        """The chat-completions dict langchain-openai sends for this message."""
        content = self.content if type(self.content) is str else list(self.content)
        result: dict[str, Any] = {"content": content}
        if self.name is not None:
            result["name"] = self.name
        result["role"] = OPENAI_ROLE[self.role]
        if self.role == "ai":
            if self.tool_calls or self.invalid_tool_calls:
                result["tool_calls"] = [
                    _openai_tool_call(call.id, call.name, json.dumps(call.args, ensure_ascii=False))
                    for call in self.tool_calls
                ] + [
                    _openai_tool_call(call.id, call.name, call.args)
                    for call in self.invalid_tool_calls
                ]
            elif self.function_call is not None:
                result["function_call"] = self.function_call
            if "tool_calls" in result or "function_call" in result:
                result["content"] = content or None
        elif self.role == "tool":
            # langchain-openai sends only these three keys for a tool message.
            return {"content": content, "role": "tool", "tool_call_id": self.tool_call_id}
        return result

    def buffer_line(self, human_prefix: str = "Human", ai_prefix: str = "AI") -> str:
        """This message as one entry of LangChain's ``get_buffer_string``."""
        line = f"{_prefix(self.role, human_prefix, ai_prefix)}: {self.text}"
        if self.role == "ai":
            if self.tool_calls:
                line += str([call.to_langchain_dict() for call in self.tool_calls])
            elif self.function_call is not None:
                line += str(self.function_call)
        return line


def _openai_tool_call(call_id: str | None, name: str | None, arguments: str | None) -> Any:
    return {"type": "function", "id": call_id, "function": {"name": name, "arguments": arguments}}


def _prefix(role: str, human_prefix: str, ai_prefix: str) -> str:
    if role == "human":
        return human_prefix
    if role == "ai":
        return ai_prefix
    if role == "developer":
        return "System"  # a SystemMessage to LangChain
    return role.capitalize()  # System, Function, Tool


def buffer_string(
    messages: Iterable[Message], human_prefix: str = "Human", ai_prefix: str = "AI"
) -> str:
    """LangChain's ``get_buffer_string``: one ``"{prefix}: {text}"`` line per message."""
    return "\n".join(m.buffer_line(human_prefix, ai_prefix) for m in messages)


class BufferLines:
    """`buffer_string` for a view that changes a little at a time: each message's line is
    made once and reused while the same message object stays in the view."""

    def __init__(self, human_prefix: str = "Human", ai_prefix: str = "AI") -> None:
        self.prefixes = (human_prefix, ai_prefix)
        self._lines: dict[int, tuple[Message, str]] = {}  # id -> (the message, its line)

    def render(self, messages: Sequence[Message]) -> str:
        """The buffer string of ``messages``."""
        lines, out = self._lines, []
        human, ai = self.prefixes
        for message in messages:
            known = lines.get(id(message))
            if known is not None and known[0] is message:
                out.append(known[1])
            else:
                line = message.buffer_line(human, ai)
                lines[id(message)] = (message, line)
                out.append(line)
        if len(lines) > 2 * len(messages) + 64:  # forget the lines of messages gone
            self._lines = {id(m): lines[id(m)] for m in messages}
        return "\n".join(out)


def from_langchain(message: Any) -> Message:
    """Convert a LangChain message (or a ``Message``) into a [`Message`][eventmem.Message].

    Duck-typed on LangChain's attributes (``type``, ``content``, ``name``,
    ``additional_kwargs``, ``tool_calls``, ``tool_call_id``, ``id``), so LangChain does
    not have to be installed. A streamed chunk (``AIMessageChunk`` and friends) converts
    like the message it stands for; list content is kept as its parts. What LangChain
    keeps beyond a Message's fields (``additional_kwargs``, ``response_metadata``,
    ``usage_metadata``, a chunk's class and ``tool_call_chunks``, a tool message's
    ``artifact`` and ``status``) goes to ``metadata["langchain"]``, from which
    ``to_langchain`` gives it back. What eventmem cannot store (a ``ChatMessage`` with a
    custom role, content or metadata that is not JSON) raises `InvalidInputError`.
    """
    if isinstance(message, Message):
        return message
    kind: Any = getattr(message, "type", None)
    if isinstance(kind, str):  # streamed chunks (AIMessageChunk, ...) are messages too
        kind = _CHUNK_TYPES.get(kind, kind)
    if kind not in _LANGCHAIN_TYPES:
        raise InvalidInputError(
            f"cannot convert {_type(message)} to a Message: expected a LangChain message "
            f"of type human/ai/system/function/tool, got type {kind!r}"
        )
    content = _content(getattr(message, "content", None), kind)
    extra = getattr(message, "additional_kwargs", None) or {}
    if not isinstance(extra, Mapping):
        raise InvalidInputError("additional_kwargs must be a dict")
    name = getattr(message, "name", None) or extra.get("name")
    tool_calls: tuple[ToolCall, ...] = ()
    invalid: tuple[InvalidToolCall, ...] = ()
    function_call = None
    if kind == "ai":
        try:
            tool_calls = tuple(
                ToolCall(name=call["name"], args=_plain(call["args"]), id=call.get("id"))
                for call in getattr(message, "tool_calls", None) or ()
            )
            if not tool_calls and extra.get("function_call") is not None:
                function_call = _plain(extra["function_call"])
        except RecursionError:
            raise NotSerializableError(
                f"tool call arguments are nested deeper than {MAX_DEPTH} levels"
            ) from None
        invalid = tuple(
            InvalidToolCall(
                name=call.get("name"),
                args=call.get("args"),
                id=call.get("id"),
                error=call.get("error"),
            )
            for call in getattr(message, "invalid_tool_calls", None) or ()
        )
    if kind == "system" and extra.get("__openai_role__") == "developer":
        kind = "developer"  # what langchain-openai sends for it
    try:
        kept = _langchain_extras(message, extra, kind, function_call is not None)
    except RecursionError:
        raise NotSerializableError(
            f"the message's metadata is nested deeper than {MAX_DEPTH} levels"
        ) from None
    return Message(
        role=kind,
        content=content,
        name=name,
        tool_calls=tool_calls,
        tool_call_id=getattr(message, "tool_call_id", None) if kind == "tool" else None,
        function_call=function_call,
        id=getattr(message, "id", None),
        invalid_tool_calls=invalid,
        metadata={"langchain": kept} if kept else None,
    )


def _regenerated(key: str, value: Any, kind: str, took_function_call: bool) -> bool:
    """Whether ``to_langchain`` puts this ``additional_kwargs`` entry back from the
    Message's own fields (so it is not kept twice)."""
    return (
        (key == "__openai_role__" and value == "developer" and kind == "developer")
        or (key == "function_call" and took_function_call)
        or (key == "name" and kind == "tool" and value is not None)
    )


def _langchain_extras(
    message: Any, extra: Mapping[str, Any], kind: str, took_function_call: bool
) -> dict[str, Any]:
    """What a LangChain message carries beyond the fields of a Message, for
    ``to_langchain`` to give back: ``metadata["langchain"]`` (empty: nothing)."""
    kept: dict[str, Any] = {}
    if type(message).__name__.endswith("Chunk"):
        kept["chunk"] = True
    extra = {
        key: value
        for key, value in extra.items()
        if not _regenerated(key, value, kind, took_function_call)
    }
    if extra:
        kept["additional_kwargs"] = _plain(extra)
    if getattr(message, "name", None) is None and extra.get("name") is not None:
        kept["name"] = None  # the name was in additional_kwargs only
    elif kind == "tool" and getattr(message, "name", None) is not None:
        kept["name_field"] = True  # a tool's name in its field (LangChain 1.x tools)
    for field in ("response_metadata", "usage_metadata", "tool_call_chunks"):
        value = getattr(message, field, None)
        if value:
            kept[field] = _plain(value)
    for field, default in (("artifact", None), ("status", "success"), ("example", False)):
        value = getattr(message, field, default)
        if value is not None and value != default and kind in ("tool", "human", "ai"):
            kept[field] = _plain(value)
    position = getattr(message, "chunk_position", None)
    if position is not None:
        kept["chunk_position"] = _plain(position)
    return kept


_FROM_OPENAI_ROLE: dict[str, Role] = {sent: role for role, sent in OPENAI_ROLE.items()}
# The keys each chat-completions role carries that a Message keeps.
_OPENAI_KEYS: dict[str, frozenset[str]] = {
    "user": frozenset({"role", "content", "name"}),
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}


def from_openai(message: Mapping[str, Any]) -> Message:
    """The [`Message`][eventmem.Message] for a chat-completions message dict.

    The inverse of [`Message.to_openai`][eventmem.Message.to_openai]: roles ``user``,
    ``assistant``, ``system``, ``developer``, ``tool`` and ``function``; an assistant's
    ``tool_calls`` become [`ToolCall`][eventmem.ToolCall]s when their ``arguments`` are
    a JSON object written as ``json.dumps`` writes it, else
    [`InvalidToolCall`][eventmem.InvalidToolCall]s that keep the text as given. A key
    set to ``None`` counts as absent (API replies carry ``"refusal": None``); list
    content is kept as its parts. Keys a Message does not hold (``refusal`` or ``audio``
    with a value, ...) raise [`InvalidInputError`][eventmem.InvalidInputError] rather
    than being dropped.
    """
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"an OpenAI message must be a dict, got {_type(message)}")
    given = {key: value for key, value in message.items() if value is not None}
    role = given.get("role")
    if role not in _OPENAI_KEYS:
        raise InvalidInputError(
            f"OpenAI message role must be one of {sorted(_OPENAI_KEYS)}, got {role!r}"
        )
    unknown = sorted(str(key) for key in given if key not in _OPENAI_KEYS[role])
    if unknown:
        raise InvalidInputError(f"a {role} message with {unknown} cannot be stored")
    content = _content(given.get("content", ""), role)
    tool_calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    calls = given.get("tool_calls", ())
    if not isinstance(calls, (list, tuple)):
        raise InvalidInputError(f"tool_calls must be a list, got {_type(calls)}")
    for call in calls:
        parsed = _openai_call(call)
        if isinstance(parsed, ToolCall):
            tool_calls.append(parsed)
        else:
            invalid.append(parsed)
    function_call = given.get("function_call")
    if function_call is not None:
        function_call = _plain(function_call)
    return Message(
        role=_FROM_OPENAI_ROLE[role],
        content=content,
        name=given.get("name"),
        tool_calls=tuple(tool_calls),
        invalid_tool_calls=tuple(invalid),
        tool_call_id=given.get("tool_call_id"),
        function_call=function_call,
    )


def _content(content: Any, role: str) -> Content:
    """A message's content as stored: a str, or its list of parts as a tuple of plain
    JSON values (checked when the message is made)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        try:
            return tuple(_plain(part) for part in content)
        except RecursionError:
            raise NotSerializableError(
                f"content is nested deeper than {MAX_DEPTH} levels"
            ) from None
    raise InvalidInputError(
        f"a {role} message's content must be a str or a list of parts, not {_type(content)}"
    )


def _openai_call(call: Any) -> ToolCall | InvalidToolCall:
    """One entry of an assistant's ``tool_calls``."""
    if not isinstance(call, Mapping) or call.get("type", "function") != "function":
        raise InvalidInputError(f"a tool call must be a function call dict, got {call!r:.80}")
    function = call.get("function")
    if not isinstance(function, Mapping):
        raise InvalidInputError("a tool call needs a 'function' dict with name and arguments")
    name, arguments, call_id = function.get("name"), function.get("arguments"), call.get("id")
    if isinstance(arguments, str) and isinstance(name, str):
        try:
            args = json.loads(arguments)
        except (ValueError, RecursionError):
            args = None
        # Only when the text is what to_openai would write for it: else it is kept as given.
        if isinstance(args, dict) and json.dumps(args, ensure_ascii=False) == arguments:
            return ToolCall(name=name, args=args, id=call_id)
    return InvalidToolCall(name=name, args=arguments, id=call_id)


def _plain(value: Any) -> Any:
    """JSON-shaped copy: tuples become lists, mappings become dicts (order kept), and
    subclasses of str, int and float their plain types."""
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind) and type(value) is not kind:
            return kind(value) if kind is not str else str.__str__(value)
    return value


def check_json_value(value: Any, what: str) -> None:
    """Raise [`NotSerializableError`][eventmem.NotSerializableError] unless ``value``
    round-trips through JSON.

    Allowed: dict with str keys, list, str (valid Unicode), int, finite float, bool, None,
    nested at most ``MAX_DEPTH`` levels (deeper values cannot be encoded or rendered by
    the JSON libraries involved). Iterative, so checking never hits the recursion limit.
    """
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotSerializableError(f"{what} is nested deeper than {MAX_DEPTH} levels")
        if item is None or type(item) in (bool, int):
            continue
        if type(item) not in _JSON_TYPES:
            raise NotSerializableError(
                f"{path} contains a {_type(item)}; store plain JSON types (str, int, float, "
                "bool, None, list, dict), not subclasses of them"
            )
        if isinstance(item, str):
            check_text(item, path, error=NotSerializableError)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise NotSerializableError(f"{path} is {item!r}, which JSON cannot represent")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NotSerializableError(
                        f"{path} has a key of type {_type(key)}; JSON object keys are strings"
                    )
                check_text(key, f"{path} key", error=NotSerializableError)
                stack.append((child, f"{path}[{key!r}]", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            raise NotSerializableError(
                f"{path} contains a {_type(item)}, which cannot be stored as JSON"
            )


def plain_text(value: Any, what: str) -> str:
    """``value`` as an exact ``str`` (a str subclass is copied), checked by ``check_text``."""
    check_text(value, what)
    return value if type(value) is str else str.__str__(value)


def check_text(value: Any, what: str, error: type[InvalidInputError] = InvalidInputError) -> None:
    """Raise unless ``value`` is a str that can be stored (valid Unicode, no lone surrogate)."""
    if not isinstance(value, str):
        raise error(f"{what} must be a str, got {_type(value)}")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NotSerializableError(
            f"{what} is not valid Unicode (lone surrogate at index {e.start})"
        ) from None


def _type(value: Any) -> str:
    return type(value).__name__


def as_messages(messages: Sequence[Any]) -> list[Message]:
    """Convert each of ``messages`` with ``from_langchain``."""
    return [from_langchain(m) for m in messages]
