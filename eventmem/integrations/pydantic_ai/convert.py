"""Conversion between pydantic-ai's ``ModelMessage`` list and eventmem messages.

A ``ModelRequest`` becomes one eventmem message per conversational part, so token
counting and pair-safe pruning see what a chat API is sent:

* ``SystemPromptPart`` → ``system``
* ``UserPromptPart`` → ``human`` (text, or a tuple of content parts for a list)
* ``ToolReturnPart`` (any outcome, typed subclasses included) → ``tool`` with its
  ``tool_call_id``; a deprecated ``RetryPromptPart`` is first upgraded by pydantic-ai
  itself (a retry answering a call is such a ``ToolReturnPart``)
* ``RetryFeedbackPart`` → ``human``

Parts the model is not sent as messages (instruction and tool-availability deltas,
compactions, ...) ride along with the message of the part before them (or after, at the
start of a request); a request with no conversational part at all is one empty
``human`` message. A ``ModelResponse`` is one ``ai`` message: its text parts joined, its
``ToolCallPart`` s as ``tool_calls`` (arguments that are not a JSON object as
``invalid_tool_calls``).

Each eventmem message keeps, in ``metadata["pydantic_ai"]``, pydantic-ai's own JSON form
(``ModelMessagesTypeAdapter.dump_python(..., mode="json")``) of the parts it stands for
and of its ``ModelMessage`` (all fields but ``parts``), and a ``group`` key shared by the
messages of one ``ModelMessage``. So any message that survives pruning rebuilds its
parts exactly, and a whole history rebuilds to what pydantic-ai's own JSON round trip
gives: [`from_eventmem`][eventmem.integrations.pydantic_ai.from_eventmem] of
[`to_eventmem`][eventmem.integrations.pydantic_ai.to_eventmem] of ``messages`` equals
``ModelMessagesTypeAdapter.validate_python(ModelMessagesTypeAdapter.dump_python(messages,
mode="json"))``, which for the messages of a run is ``messages`` itself.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
import pydantic_core
from pydantic_ai.exceptions import PydanticAIDeprecationWarning
from pydantic_ai.messages import (
    BinaryContent,
    ImageUrl,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryFeedbackPart,
    SystemPromptPart,
    TextContent,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from eventmem.errors import InvalidInputError, NotSerializableError
from eventmem.messages import InvalidToolCall, Message, ToolCall

__all__ = [
    "METADATA_KEY",
    "Entry",
    "check_model_messages",
    "dump",
    "entries",
    "from_eventmem",
    "to_eventmem",
]

METADATA_KEY = "pydantic_ai"
"""The key of ``Message.metadata`` this adapter keeps pydantic-ai's JSON under."""


@dataclass(frozen=True)
class Entry:
    """One eventmem message of a ``ModelMessage``: which message (its index in the list
    converted) and which of its parts (indices into ``parts``) it stands for."""

    index: int
    parts: tuple[int, ...]
    message: Message


def check_model_messages(messages: object, what: str = "messages") -> list[ModelMessage]:
    """``messages`` as a list if it is a sequence of ``ModelRequest`` / ``ModelResponse``,
    else [`InvalidInputError`][eventmem.InvalidInputError]."""
    if isinstance(messages, (str, bytes, bytearray)) or not isinstance(messages, Sequence):
        raise InvalidInputError(
            f"{what} must be a list of pydantic-ai ModelRequest / ModelResponse, "
            f"got {type(messages).__name__}"
        )
    for position, message in enumerate(messages):
        if not isinstance(message, (ModelRequest, ModelResponse)):
            raise InvalidInputError(
                f"{what}[{position}] must be a pydantic-ai ModelRequest or ModelResponse, "
                f"got {type(message).__name__}"
            )
    return list(messages)


def dump(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    """pydantic-ai's JSON form of ``messages`` (checked to be a ``ModelMessage`` list)."""
    checked = check_model_messages(messages)
    try:
        with warnings.catch_warnings():
            # pydantic only warns about a field holding the wrong type; that is bad input
            warnings.simplefilter("error")
            dumped: list[dict[str, Any]] = ModelMessagesTypeAdapter.dump_python(
                checked, mode="json", warnings="error"
            )
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError, Warning) as e:
        raise NotSerializableError(f"pydantic-ai cannot serialise the messages: {e}") from e
    return dumped


def _load(dumped: list[dict[str, Any]], what: str) -> list[ModelMessage]:
    try:
        with warnings.catch_warnings():
            # a history from an older pydantic-ai may hold deprecated parts: upgraded here
            warnings.simplefilter("ignore", PydanticAIDeprecationWarning)
            return ModelMessagesTypeAdapter.validate_python(dumped)
    except pydantic.ValidationError as e:
        raise InvalidInputError(f"{what} do not validate as pydantic-ai messages: {e}") from e


def to_eventmem(messages: Sequence[ModelMessage]) -> list[Message]:
    """The eventmem messages for ``messages``, each carrying pydantic-ai's JSON of its
    parts in ``metadata["pydantic_ai"]`` (see the module's description).

    Raises [`InvalidInputError`][eventmem.InvalidInputError] (or its subclass
    [`NotSerializableError`][eventmem.NotSerializableError]) for anything that is not a
    list of ``ModelMessage`` that pydantic-ai can serialise and read back.
    """
    dumped = dump(messages)
    # What pydantic-ai reads back from its own JSON: the form that is stored, so the
    # counted text is the text a later load returns.
    canonical = _load(dumped, "the messages")
    if any(len(m.parts) != len(d["parts"]) for m, d in zip(canonical, dumped, strict=True)):
        dumped = dump(canonical)  # reading changed the parts: store what was read
    result: list[Message] = []
    for message, data in zip(canonical, dumped, strict=True):
        envelope = {key: value for key, value in data.items() if key != "parts"}
        group = secrets.token_hex(8)
        for entry in _entries(message, 0):
            extra = {
                "group": group,
                "message": envelope,
                "parts": [data["parts"][i] for i in entry.parts],
            }
            result.append(_with_metadata(entry.message, {METADATA_KEY: extra}))
    return result


def _with_metadata(message: Message, metadata: dict[str, Any]) -> Message:
    return Message(
        role=message.role,
        content=message.content,
        tool_calls=message.tool_calls,
        tool_call_id=message.tool_call_id,
        invalid_tool_calls=message.invalid_tool_calls,
        metadata=metadata,
    )


def from_eventmem(messages: Sequence[Message]) -> list[ModelMessage]:
    """The ``ModelMessage`` list that eventmem messages written by
    [`to_eventmem`][eventmem.integrations.pydantic_ai.to_eventmem] stand for.

    Consecutive messages of one ``ModelMessage`` join again; a ``ModelMessage`` only some
    of whose messages are given (the rest pruned) comes back with those parts only.
    A message without this adapter's metadata raises
    [`InvalidInputError`][eventmem.InvalidInputError].
    """
    rebuilt: list[dict[str, Any]] = []
    group: object = None
    for position, message in enumerate(messages):
        extra = _adapter_metadata(message, position)
        if extra["group"] == group:
            rebuilt[-1]["parts"].extend(extra["parts"])
        else:
            rebuilt.append({**extra["message"], "parts": list(extra["parts"])})
            group = extra["group"]
    return _load(rebuilt, "the stored messages")


def _adapter_metadata(message: Message, position: int) -> dict[str, Any]:
    metadata = message.metadata if isinstance(message, Message) else None
    extra = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if (
        not isinstance(extra, dict)
        or not isinstance(extra.get("group"), str)
        or not isinstance(extra.get("message"), dict)
        or not isinstance(extra.get("parts"), list)
    ):
        raise InvalidInputError(
            f"message {position} of the session was not written by "
            "eventmem.integrations.pydantic_ai (no pydantic_ai metadata)"
        )
    return extra


# -- roles and counted text ------------------------------------------------------------


def entries(messages: Sequence[ModelMessage]) -> list[Entry]:
    """The eventmem messages (without metadata) ``messages`` map to, with the parts each
    stands for: what token counting and pruning look at."""
    result: list[Entry] = []
    for index, message in enumerate(messages):
        result.extend(_entries(message, index))
    return result


def _entries(message: ModelMessage, index: int) -> list[Entry]:
    if isinstance(message, ModelResponse):
        return [Entry(index, tuple(range(len(message.parts))), _response_message(message))]
    slices: list[tuple[Message, list[int]]] = []
    waiting: list[int] = []  # parts sent with no message of their own, before the first
    for number, part in enumerate(message.parts):
        converted = _request_part_message(part)
        if converted is None:
            (slices[-1][1] if slices else waiting).append(number)
        else:
            slices.append((converted, [*waiting, number]))
            waiting = []
    if not slices:
        return [Entry(index, tuple(waiting), Message(role="human", content=""))]
    return [Entry(index, tuple(numbers), converted) for converted, numbers in slices]


def _request_part_message(part: ModelRequestPart) -> Message | None:
    if isinstance(part, SystemPromptPart):
        return Message(role="system", content=part.content)
    if isinstance(part, UserPromptPart):
        if isinstance(part.content, str):
            return Message(role="human", content=part.content)
        return Message(role="human", content=tuple(_content_part(item) for item in part.content))
    if isinstance(part, ToolReturnPart):
        return Message(
            role="tool", content=part.model_response_str(), tool_call_id=part.tool_call_id
        )
    if isinstance(part, RetryFeedbackPart):
        return Message(role="human", content=part.model_response())
    return None


def _content_part(item: object) -> str | dict[str, Any]:
    """A user content item as a chat content part, for counting: text as text, an image
    address as OpenAI's ``image_url`` part, image bytes as an ``image`` part (counted as
    an image of unknown size; the bytes stay in the metadata only), anything else (other
    files, cache points) as a part naming its kind and media type."""
    if isinstance(item, str):
        return {"type": "text", "text": item}
    if isinstance(item, TextContent):
        return {"type": "text", "text": item.content}
    if isinstance(item, ImageUrl):
        return {"type": "image_url", "image_url": {"url": item.url}}
    if isinstance(item, BinaryContent) and item.is_image:
        return {"type": "image", "mime_type": item.media_type, "id": item.identifier}
    kind = getattr(item, "kind", None)
    part: dict[str, Any] = {"type": kind if isinstance(kind, str) else type(item).__name__}
    try:
        media_type = getattr(item, "media_type", None)
    except ValueError:  # a URL without a known extension: pydantic-ai cannot tell
        media_type = None
    if isinstance(media_type, str):
        part["mime_type"] = media_type
    return part


def _response_message(message: ModelResponse) -> Message:
    text = "\n\n".join(part.content for part in message.parts if isinstance(part, TextPart))
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for part in message.parts:
        if not isinstance(part, ToolCallPart):  # native (provider-run) calls are not paired
            continue
        # a string is the model's own text (pydantic-ai wraps invalid JSON when it
        # renders one); a dict or nothing is rendered by pydantic-ai
        raw = part.args
        arguments = raw if isinstance(raw, str) and raw.strip() else part.args_as_json_str()
        try:
            parsed = json.loads(arguments)
        except ValueError as e:
            invalid.append(
                InvalidToolCall(part.tool_name, arguments, part.tool_call_id, f"invalid JSON: {e}")
            )
            continue
        if isinstance(parsed, dict):
            calls.append(ToolCall(part.tool_name, parsed, part.tool_call_id))
        else:
            invalid.append(
                InvalidToolCall(
                    part.tool_name, arguments, part.tool_call_id, "arguments are not a JSON object"
                )
            )
    return Message(
        role="ai", content=text, tool_calls=tuple(calls), invalid_tool_calls=tuple(invalid)
    )
