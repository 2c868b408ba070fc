"""Token counting: the OpenAI chat formula on tiktoken, offline, plus custom counters.

Counts equal ``ChatOpenAI(model=...).get_num_tokens_from_messages`` from langchain-openai.
That formula is a sum over messages plus a constant reply primer, so eventmem stores
each message's count once, at save time, and never re-counts a buffer.

The BPE files ship inside the package (``eventmem/encodings``) and are checked against
the SHA-256 tiktoken itself expects, so counting never touches the network.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Protocol, runtime_checkable

import tiktoken

from eventmem._parts import count_parts
from eventmem.errors import EventmemError, InvalidInputError, UnknownModelError
from eventmem.messages import OPENAI_ROLE, Message, check_text, from_langchain
from eventmem.rules import MAX_COUNT, check_count, check_counter_name

__all__ = [
    "CallableCounter",
    "OpenAIChatCounter",
    "TokenCounter",
    "count_each",
    "count_tokens",
    "get_encoding",
    "resolve_counter",
]

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Split patterns and special tokens of the public encodings (the same values tiktoken
# registers; tests compare them with tiktoken's own Encoding objects).
_ENCODINGS: dict[str, tuple[str, dict[str, int]]] = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        {
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": (
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

# Model prefixes langchain-openai knows how to count; anything else needs token_counter=.
_CHAT_MODEL_PREFIXES = ("gpt-3.5-turbo", "gpt-4", "gpt-5", "gpt-6", "o1", "o3", "o4")
_O200K_FALLBACK_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "gpt-6")

_load_lock = threading.Lock()


def _expected_sha256(name: str) -> str:
    sums = (resources.files("eventmem") / "encodings" / "SHA256SUMS").read_text()
    for line in sums.splitlines():
        digest, _, filename = line.partition("  ")
        if filename.strip() == f"{name}.tiktoken":
            return digest
    raise EventmemError(f"no checksum recorded for the bundled encoding {name!r}")


@functools.cache
def _cached_encoding(name: str) -> tiktoken.Encoding:
    pattern, special_tokens = _ENCODINGS[name]
    data = (resources.files("eventmem") / "encodings" / f"{name}.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != _expected_sha256(name):
        raise EventmemError(
            f"the bundled encoding file {name}.tiktoken does not match its SHA-256; "
            "reinstall eventmem"
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_tokens
    )


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` ``name`` (``cl100k_base`` or ``o200k_base``), loaded offline."""
    if name not in _ENCODINGS:
        raise UnknownModelError(
            f"encoding {name!r} is not bundled; available: {sorted(_ENCODINGS)}"
        )
    with _load_lock:  # parse each file once even when several threads ask at once
        return _cached_encoding(name)


def encoding_name_for_model(model: str) -> str:
    """The encoding langchain-openai picks for ``model``."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "o200k_base" if model.lower().startswith(_O200K_FALLBACK_PREFIXES) else "cl100k_base"
    if name not in _ENCODINGS:
        raise UnknownModelError(
            f"model {model!r} uses the encoding {name!r}, which eventmem does not bundle; "
            "pass token_counter= to count its tokens"
        )
    return name


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a message list as ``overhead + sum(count_message(m))``.

    ``name`` identifies the counting scheme; it is stored with every count so replay
    knows which scheme produced it, and a change of scheme triggers one re-count of the
    visible buffer.
    """

    @property
    def name(self) -> str:
        """Identity of the counting scheme, e.g. ``openai-chat:o200k_base``."""
        ...

    @property
    def overhead(self) -> int:
        """Tokens of an empty message list (OpenAI: the 3-token reply primer)."""
        ...

    def count_message(self, message: Message) -> int:
        """Tokens one message adds to a list."""
        ...


class OpenAIChatCounter:
    """langchain-openai's ``get_num_tokens_from_messages`` for one model.

    Text that looks like a special token (``<|endoftext|>``) is counted as ordinary
    text; LangChain raises on it instead.
    """

    overhead = 3  # every reply is primed with <|start|>assistant<|message|>

    def __init__(self, model: str = "gpt-4o") -> None:
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a non-empty str, got {model!r}")
        check_text(model, "model")  # stored with every save: it must encode
        model = str.__str__(model)
        if model.startswith("gpt-3.5-turbo-0301"):
            self._per_message, self._per_name = 4, -1
        elif model.startswith(_CHAT_MODEL_PREFIXES):
            self._per_message, self._per_name = 3, 1
        else:
            raise UnknownModelError(
                f"no token-counting scheme is known for model {model!r} (langchain-openai "
                f"counts models starting with {', '.join(_CHAT_MODEL_PREFIXES)}); "
                "pass token_counter= to count another model's tokens"
            )
        self.model = model
        self.encoding_name = encoding_name_for_model(model)
        self._encoding = get_encoding(self.encoding_name)
        self._short: dict[str, int] = {}
        scheme = "openai-chat-0301" if self._per_message == 4 else "openai-chat"
        self.name = f"{scheme}:{self.encoding_name}"

    def _length(self, text: str) -> int:
        if len(text) <= 16:  # roles, names, ids: few distinct values, counted every save
            cached = self._short.get(text)
            if cached is None:
                cached = self._short[text] = len(self._encoding.encode_ordinary(text))
                if len(self._short) > 4096:
                    self._short.clear()
            return cached
        return len(self._encoding.encode_ordinary(text))

    def count_message(self, message: Message) -> int:
        """Tokens ``message`` adds, from the dict langchain-openai sends for it."""
        if (
            message.name is None
            and message.function_call is None
            and not message.tool_calls
            and not message.invalid_tool_calls
            and message.role != "tool"
            and type(message.content) is str
        ):
            # A plain message sends exactly {"content": ..., "role": ...}: no dict needed.
            content = message.content
            return (
                self._per_message
                + self._length(OPENAI_ROLE[message.role])
                + (self._length(content) if content else 0)
            )
        tokens = self._per_message
        for key, value in message.to_openai().items():
            if key == "tool_call_id":
                tokens += 3  # langchain-openai's flat estimate
            elif key == "tool_calls":
                for call in value:
                    function = call["function"]
                    # an invalid tool call may lack either; LangChain would raise there
                    tokens += self._length(function["arguments"] or "")
                    tokens += self._length(function["name"] or "")
            elif key == "content" and isinstance(value, list):
                tokens += count_parts(value, self._length)  # see eventmem._parts
            elif value:
                tokens += self._length(value if isinstance(value, str) else str(value))
                if key == "name":
                    tokens += self._per_name
        return tokens

    def __repr__(self) -> str:
        return f"OpenAIChatCounter(model={self.model!r})"


class CallableCounter:
    """Adapts ``fn(messages) -> int`` (e.g. another provider's counter) to a
    [`TokenCounter`][eventmem.TokenCounter].

    The count of a list is taken to be ``fn([]) + sum(fn([m]) - fn([]))``; that holds
    for every per-message formula (OpenAI's included). eventmem relies on it to count
    each message once instead of re-counting the buffer.
    """

    def __init__(self, fn: Callable[[list[Message]], int], name: str | None = None) -> None:
        if not callable(fn):
            raise InvalidInputError(f"token_counter must be callable, got {type(fn).__name__}")
        self._fn = fn
        label = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        self.name = f"custom:{getattr(fn, '__module__', '?')}.{label}" if name is None else name
        self.overhead = self._call([])

    def _call(self, messages: list[Message]) -> int:
        value = self._fn(messages)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(
                f"token_counter must return an int, returned {type(value).__name__}"
            )
        if value < 0:
            raise InvalidInputError(f"token_counter returned a negative count ({value})")
        if value > MAX_COUNT:
            raise InvalidInputError(f"token_counter returned {value}, above 2**53 - 1")
        return value

    def count_message(self, message: Message) -> int:
        """``fn([message]) - fn([])``."""
        tokens = self._call([message]) - self.overhead
        if tokens < 0:
            raise InvalidInputError(
                f"token_counter counts a message as {tokens} tokens (fewer than an empty list)"
            )
        return tokens

    def __repr__(self) -> str:
        return f"CallableCounter({self.name!r})"


@functools.lru_cache(maxsize=64)
def _openai_counter(model: str) -> OpenAIChatCounter:
    return OpenAIChatCounter(model)


def resolve_counter(
    model: str = "gpt-4o",
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
) -> TokenCounter:
    """The counter for ``model``, or ``token_counter`` when given."""
    if token_counter is None:
        if not isinstance(model, str):
            raise InvalidInputError(f"model must be a str, got {type(model).__name__}")
        return _openai_counter(model)
    if isinstance(token_counter, TokenCounter):
        return _checked(token_counter)
    return _checked(CallableCounter(token_counter))


def _checked(counter: TokenCounter) -> TokenCounter:
    """``counter``, if its name and overhead can be stored alike by every backend."""
    check_counter_name(counter.name)
    check_count(counter.overhead, "a token counter's overhead")
    return counter


def count_each(counter: TokenCounter, messages: Sequence[Message]) -> tuple[int, ...]:
    """Each message's count under ``counter``, checked to be storable (a custom counter
    may return anything)."""
    if isinstance(counter, OpenAIChatCounter):
        return tuple([counter.count_message(m) for m in messages])
    return tuple([check_count(counter.count_message(m)) for m in messages])


def count_tokens(
    messages: Sequence[object],
    model: str = "gpt-4o",
    *,
    token_counter: TokenCounter | Callable[[list[Message]], int] | None = None,
) -> int:
    """Tokens of ``messages`` as ``ChatOpenAI(model=model).get_num_tokens_from_messages``.

    ``messages`` may be [`Message`][eventmem.Message] objects or LangChain messages.
    """
    counter = resolve_counter(model, token_counter)
    return counter.overhead + sum(counter.count_message(from_langchain(m)) for m in messages)
