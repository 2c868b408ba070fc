"""The token rule for content parts (a message whose content is a list). Pure, no I/O.

Text parts count as langchain-openai counts them: the tokens of their text. Images follow
OpenAI's published vision formula: 85 tokens at ``detail: low``; otherwise the image is
scaled to fit 2048x2048, then its short side to 768, and costs 85 + 170 per 512-pixel
tile. The size is read from the header of a ``data:`` URL (PNG, GIF, JPEG, WebP); an
image whose size cannot be read without fetching it counts as 1024x1024 (765 tokens),
never as 0. Blocks langchain-openai leaves out of a chat-completions request
(``tool_use``, ``thinking``, ``reasoning_content``) count 0. Any other part (audio,
file, refusal, ...) counts as the tokens of its JSON text, each string value longer
than 1,000 characters (base64 data, mostly) counted as one token per 4 characters.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["UNKNOWN_IMAGE_TOKENS", "count_parts", "image_size", "image_tokens"]

LOW_DETAIL_TOKENS = 85
UNKNOWN_IMAGE_TOKENS = 765  # a 1024x1024 image at high detail
_NOT_SENT = frozenset({"tool_use", "thinking", "reasoning_content"})
_LONG = 1000
_HEADER_BYTES = 64 * 1024  # how much of an image is decoded to find its size


def count_parts(parts: Iterable[Any], length: Callable[[str], int]) -> int:
    """Tokens of a content list; ``length`` counts the tokens of a text."""
    tokens = 0
    for part in parts:
        if isinstance(part, str):
            tokens += length(part)
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            tokens += length(part["text"])
        elif kind in ("image_url", "image"):
            tokens += image_tokens(part)
        elif kind not in _NOT_SENT:
            tokens += _json_tokens(part, length)
    return tokens


def image_tokens(part: dict[str, Any]) -> int:
    """An image part's tokens (see the module's rule)."""
    detail, url = _image_source(part)
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = image_size(url) if url is not None else None
    if size is None:
        return UNKNOWN_IMAGE_TOKENS
    width, height = _scaled(*size)
    return LOW_DETAIL_TOKENS + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def _image_source(part: dict[str, Any]) -> tuple[Any, str | None]:
    """The detail asked for and the URL (maybe a data URL) of an image part, in the
    OpenAI, LangChain standard or Anthropic shape."""
    inner = part.get("image_url")
    if isinstance(inner, dict):
        return inner.get("detail"), _str_or_none(inner.get("url"))
    if isinstance(inner, str):
        return part.get("detail"), inner
    source = part.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return None, f"data:{source.get('media_type')};base64,{source.get('data')}"
    if isinstance(part.get("base64"), str):
        return part.get("detail"), f"data:{part.get('mime_type')};base64,{part['base64']}"
    return part.get("detail"), _str_or_none(part.get("url"))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _scaled(width: int, height: int) -> tuple[int, int]:
    """The size OpenAI bills: within 2048x2048, then the short side within 768."""
    if width > 2048 or height > 2048:
        if width > height:
            width, height = 2048, height * 2048 // width
        else:
            width, height = width * 2048 // height, 2048
    if width > 768 and height > 768:
        if width > height:
            width, height = width * 768 // height, 768
        else:
            width, height = 768, height * 768 // width
    return width, height


def image_size(url: str) -> tuple[int, int] | None:
    """Width and height from the header of a base64 ``data:`` URL, or None."""
    head, comma, data = url.partition(",")
    if not comma or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    chunk = data[: _HEADER_BYTES * 4 // 3 // 4 * 4]
    try:
        raw = base64.b64decode(chunk, validate=False)
    except (binascii.Error, ValueError):
        return None
    for reader in (_png, _gif, _webp, _jpeg):
        size = reader(raw)
        if size is not None:
            return size if size[0] > 0 and size[1] > 0 else None
    return None


def _png(raw: bytes) -> tuple[int, int] | None:
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    return None


def _gif(raw: bytes) -> tuple[int, int] | None:
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        width, height = struct.unpack("<HH", raw[6:10])
        return int(width), int(height)
    return None


def _webp(raw: bytes) -> tuple[int, int] | None:
    if raw[:4] != b"RIFF" or raw[8:12] != b"WEBP" or len(raw) < 30:
        return None
    chunk = raw[12:16]
    if chunk == b"VP8 " and raw[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and raw[20:21] == b"\x2f":
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(raw[27:30], "little") + 1
    return None


def _jpeg(raw: bytes) -> tuple[int, int] | None:
    if raw[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 9 <= len(raw):
        if raw[index] != 0xFF:
            return None
        marker = raw[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length follows
            index += 2
            continue
        length = int.from_bytes(raw[index + 2 : index + 4], "big")
        # Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", raw[index + 5 : index + 9])
            return int(width), int(height)
        if length < 2:
            return None
        index += 2 + length
    return None


def _json_tokens(part: dict[str, Any], length: Callable[[str], int]) -> int:
    """The tokens of a part's JSON text, long strings at one token per 4 characters."""
    long_tokens = 0

    def shorten(value: Any) -> Any:
        nonlocal long_tokens
        if isinstance(value, str) and len(value) > _LONG:
            long_tokens += math.ceil(len(value) / 4)
            return ""
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shorten(item) for item in value]
        return value

    text = json.dumps(shorten(part), ensure_ascii=False, separators=(",", ":"))
    return length(text) + long_tokens
