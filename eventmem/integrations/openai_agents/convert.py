"""Translation between OpenAI Agents SDK items and eventmem [`Message`][eventmem.Message]s.

An item is a Responses-API input item: a plain JSON dict. Each item becomes one
message holding the item verbatim in ``metadata["openai_agents"]``, so what is read back
is exactly what was written; the message's other fields are what eventmem counts tokens
by and pairs tool calls with their results by (see
[`to_message`][eventmem.integrations.openai_agents.to_message]).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, cast

from eventmem.errors import InvalidInputError
from eventmem.messages import InvalidToolCall, Message, Role, ToolCall, check_json_value

__all__ = ["METADATA_KEY", "to_item", "to_message"]

METADATA_KEY = "openai_agents"
"""The key of ``Message.metadata`` that holds the item."""

_MESSAGE_ROLES: dict[str, Role] = {
    "user": "human",
    "assistant": "ai",
    "system": "system",
    "developer": "developer",
}
_ITEM_ROLES: dict[Role, str] = {role: sent for sent, role in _MESSAGE_ROLES.items()}

# Tool calls the client answers, by the key holding the id their result refers to. (The
# hosted tools' calls, web_search_call and the like, have no result item: the server ran
# them.)
_CALL_ID_KEYS: dict[str, str] = {
    "function_call": "call_id",
    "custom_tool_call": "call_id",
    "computer_call": "call_id",
    "shell_call": "call_id",
    "local_shell_call": "call_id",
    "apply_patch_call": "call_id",
    "tool_search_call": "call_id",
    "program": "call_id",
    "mcp_approval_request": "id",
}
# Their results, by the keys that may hold that id, in order of preference
# (local_shell_call_output names it "id" in the API's types, "call_id" in the SDK).
_OUTPUT_ID_KEYS: dict[str, tuple[str, ...]] = {
    "function_call_output": ("call_id",),
    "custom_tool_call_output": ("call_id",),
    "computer_call_output": ("call_id",),
    "shell_call_output": ("call_id",),
    "local_shell_call_output": ("call_id", "id"),
    "apply_patch_call_output": ("call_id",),
    "tool_search_output": ("call_id",),
    "program_output": ("call_id",),
    "mcp_approval_response": ("approval_request_id",),
}
# What an item carries besides its content: left out of the text an item is counted by.
_BOOKKEEPING = frozenset({"type", "id", "call_id", "status"})

_TEXT_PARTS = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal"}


def to_message(item: Mapping[str, Any]) -> Message:
    """The [`Message`][eventmem.Message] for one Agents SDK item, holding a copy of
    ``item`` in ``metadata["openai_agents"]``.

    * A message item keeps its role (``user`` → ``human``, ``assistant`` → ``ai``,
      ``system``, ``developer``) and its content: a string as it is, a list of parts as
      the chat-completions parts eventmem counts (``input_text``, ``output_text`` and
      ``refusal`` → ``text``, ``input_image`` → ``image_url``, ``input_file`` →
      ``file``, ``input_audio`` → ``input_audio``; any other part as it is).
    * A tool call the client answers (``function_call``, ``custom_tool_call``,
      ``computer_call``, ``shell_call``, ``local_shell_call``, ``apply_patch_call``,
      ``tool_search_call``, ``program``, ``mcp_approval_request``) is an ``ai`` message
      with one [`ToolCall`][eventmem.ToolCall] whose id is the item's ``call_id`` (an
      approval request's ``id``). A ``function_call``'s ``arguments`` are parsed when
      they are a JSON object; otherwise the call is an
      [`InvalidToolCall`][eventmem.InvalidToolCall] holding the text.
    * Its result (``function_call_output`` and the other ``*_output`` items,
      ``mcp_approval_response``) is a ``tool`` message whose ``tool_call_id`` is that
      id, so a token-bounded view never keeps a result without its call.
    * Anything else (``reasoning``: its summary and reasoning text; a hosted tool's
      call such as ``web_search_call``; an item type this module does not know) is an
      ``ai`` message holding the item's text, as compact JSON where it has no text of
      its own.

    Raises [`NotSerializableError`][eventmem.NotSerializableError] when the item is not
    plain JSON (dicts with str keys, lists, str, int, finite float, bool, None), and
    [`InvalidInputError`][eventmem.InvalidInputError] when it is not an item: not a
    dict, no ``type`` and no message ``role``, a message with another role or content
    that is neither a string nor a list, a ``function_call`` without a string
    ``name``, ``call_id`` and ``arguments``, a ``function_call_output`` whose
    ``call_id`` is not a string.
    """
    if not isinstance(item, dict):
        raise InvalidInputError(f"an OpenAI Agents item must be a dict, got {type(item).__name__}")
    check_json_value(item, "item")
    kept = copy.deepcopy(item)  # the caller may change its dict after the write
    fields = _fields(kept)
    return Message(**fields, metadata={METADATA_KEY: kept})


def to_item(message: Message) -> dict[str, Any]:
    """The item ``message`` was made from: a fresh copy of ``metadata["openai_agents"]``.

    A message that has no item (one written by another adapter, say) becomes the item
    that says the same when it is plain: a text message becomes an ``EasyInputMessage``
    (``{"role": ..., "content": text}``), a ``tool`` message with text a
    ``function_call_output``, an ``ai`` message with one tool call and no text a
    ``function_call``. Any other raises [`InvalidInputError`][eventmem.InvalidInputError].
    """
    metadata = message.metadata
    if metadata is not None and isinstance(metadata.get(METADATA_KEY), dict):
        return cast(dict[str, Any], copy.deepcopy(metadata[METADATA_KEY]))
    return _plain_item(message)


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    """The Message fields (but metadata) for a JSON-checked item."""
    kind = item.get("type")
    if kind is None or kind == "message":
        return _message_fields(item)
    if not isinstance(kind, str):
        raise InvalidInputError(f"an item's type must be a str, got {type(kind).__name__}")
    if kind == "function_call":
        return _function_call_fields(item)
    if kind in _CALL_ID_KEYS:
        call_id = item.get(_CALL_ID_KEYS[kind])
        if isinstance(call_id, str):
            name = item.get("name")
            return {
                "role": "ai",
                "content": "",
                "tool_calls": (
                    ToolCall(
                        name=name if isinstance(name, str) else kind,
                        args=_call_args(item),
                        id=call_id,
                    ),
                ),
            }
    if kind in _OUTPUT_ID_KEYS:
        call_id = next(
            (item[key] for key in _OUTPUT_ID_KEYS[kind] if isinstance(item.get(key), str)),
            None,
        )
        if kind == "function_call_output" and "call_id" in item and call_id is None:
            raise InvalidInputError(
                f"a function_call_output's call_id must be a str, got "
                f"{type(item['call_id']).__name__}"
            )
        content = _output_content(item)
        if call_id is not None:
            return {"role": "tool", "content": content, "tool_call_id": call_id}
        return {"role": "human", "content": content}  # a result with no call to follow
    if kind == "reasoning":
        return {"role": "ai", "content": _reasoning_text(item)}
    if kind == "image_generation_call" and isinstance(item.get("result"), str):
        image = f"data:image/{item.get('output_format') or 'png'};base64,{item['result']}"
        return {"role": "ai", "content": ({"type": "image_url", "image_url": {"url": image}},)}
    role = item.get("role")
    if isinstance(role, str) and role in _MESSAGE_ROLES:  # additional_tools and the like
        return {"role": _MESSAGE_ROLES[role], "content": _json_text(item)}
    return {"role": "ai", "content": _json_text(item)}


def _message_fields(item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    if role is None:
        raise InvalidInputError("an item needs a 'type', or a 'role' when it is a message")
    if not isinstance(role, str) or role not in _MESSAGE_ROLES:
        raise InvalidInputError(
            f"a message item's role must be one of {sorted(_MESSAGE_ROLES)}, got {role!r}"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": _MESSAGE_ROLES[role], "content": content}
    if not isinstance(content, list):
        raise InvalidInputError(
            f"a message item's content must be a str or a list of parts, got "
            f"{type(content).__name__}"
        )
    return {"role": _MESSAGE_ROLES[role], "content": tuple(_part(p) for p in content)}


def _function_call_fields(item: dict[str, Any]) -> dict[str, Any]:
    for key in ("name", "call_id", "arguments"):
        if not isinstance(item.get(key), str):
            raise InvalidInputError(
                f"a function_call's {key} must be a str, got {type(item.get(key)).__name__}"
            )
    name: str = item["name"]
    call_id: str = item["call_id"]
    arguments: str = item["arguments"]
    call: ToolCall | InvalidToolCall
    try:
        args = json.loads(arguments, parse_constant=_refuse_constant)
        if not isinstance(args, dict):
            raise ValueError("not a JSON object")
        call = ToolCall(name=name, args=args, id=call_id)
    except (ValueError, RecursionError) as e:  # InvalidInputError is a ValueError too
        # Not a JSON object eventmem can store: the call keeps its text (the model still
        # expects the result of exactly this call).
        call = InvalidToolCall(name=name, args=arguments, id=call_id, error=str(e))
    if isinstance(call, ToolCall):
        return {"role": "ai", "content": "", "tool_calls": (call,)}
    return {"role": "ai", "content": "", "invalid_tool_calls": (call,)}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _call_args(item: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments: what the item says beyond which call it is."""
    if isinstance(item.get("input"), str) and item.get("type") == "custom_tool_call":
        return {"input": item["input"]}
    return {k: v for k, v in item.items() if k not in _BOOKKEEPING and k != "name"}


def _output_content(item: dict[str, Any]) -> str | tuple[str | dict[str, Any], ...]:
    """A tool result's content: its text, its parts, or its other fields as JSON."""
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and _is_part(output):  # a computer call's screenshot
        return (_part(output),)
    if isinstance(output, list) and output and all(_is_part(p) for p in output):
        return tuple(_part(p) for p in output)
    return _json_text({k: v for k, v in item.items() if k not in _BOOKKEEPING})


_KNOWN_PARTS = frozenset(
    {*_TEXT_PARTS, "input_image", "input_file", "input_audio", "computer_screenshot"}
)


def _is_part(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _KNOWN_PARTS


def _part(part: Any) -> str | dict[str, Any]:
    """One content part as the chat-completions part that is counted like it."""
    if not isinstance(part, dict):
        if isinstance(part, str):
            return part
        raise InvalidInputError(f"a content part must be a dict, got {type(part).__name__}")
    kind = part.get("type")
    if kind in _TEXT_PARTS and isinstance(part.get(_TEXT_PARTS[kind]), str):
        return {"type": "text", "text": part[_TEXT_PARTS[kind]]}
    if kind in ("input_image", "computer_screenshot"):
        image: dict[str, Any] = {"url": part.get("image_url") or part.get("file_id") or ""}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename", "file_url") if k in part}
        return {"type": "file", "file": file}
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        return {"type": "input_audio", "input_audio": part["input_audio"]}
    return part


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's summary and reasoning text (the encrypted content is opaque)."""
    texts = [
        entry["text"]
        for key in ("summary", "content")
        if isinstance(item.get(key), list)
        for entry in item[key]
        if isinstance(entry, dict) and isinstance(entry.get("text"), str)
    ]
    return "\n".join(texts)


def _json_text(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _plain_item(message: Message) -> dict[str, Any]:
    """The item for a message no item came with, when there is one that says the same."""
    content = message.content
    if message.role == "tool" and isinstance(content, str):
        return {"type": "function_call_output", "call_id": message.tool_call_id, "output": content}
    if message.role == "ai" and len(message.tool_calls) == 1 and not message.text:
        call = message.tool_calls[0]
        if call.id is not None:
            return {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": json.dumps(call.args, ensure_ascii=False),
            }
    plain = not (message.tool_calls or message.invalid_tool_calls or message.function_call)
    if message.role in _ITEM_ROLES and isinstance(content, str) and plain:
        return {"role": _ITEM_ROLES[message.role], "content": content}
    raise InvalidInputError(
        f"a {message.role} message written without its OpenAI Agents item cannot be "
        "read back as an item; only text messages, text tool results and single tool "
        "calls can"
    )
