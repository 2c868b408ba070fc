"""Hypothesis strategies shared by the parity tests.

Texts are full Unicode (emoji sequences, CJK, combining marks, controls, astral planes),
often empty, sometimes several thousand characters long. They hold no lone surrogates
(eventmem refuses to store text that is not valid UTF-8), and never contain ``"<|"``:
LangChain's tiktoken call raises on text that looks like a special token (eventmem
counts it as ordinary text), so such text has no LangChain reference to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

__all__ = [
    "MODELS",
    "Clear",
    "Config",
    "Reopen",
    "Save",
    "SetLimit",
    "configs",
    "limits",
    "models",
    "operations",
    "saves",
    "texts",
]

MODELS = ("gpt-4o", "gpt-4.1", "gpt-4", "gpt-3.5-turbo")

# Characters that tokenizers split in interesting ways, drawn often so that they meet.
_SPICE = (
    "👩‍👩‍👧‍👦🇯🇵👍🏽1️⃣🤖"  # ZWJ sequence, flag, skin tone, keycap
    "日本語中文文本한국어"  # CJK and Hangul
    "e\u0301n\u0303\u0324\u0353\u036e"  # combining marks
    "مرحبا\u200f\u202e\u202c\u200d\ufeff"  # RTL, bidi controls, ZWJ, BOM
    " \t\r\n\x00\x1b\u2028\u00a0"  # whitespace and controls
    "\U0001d518\U00013000\U0010fffd"  # astral planes
    "'sdmtllvre0123456789<|>"  # contractions, digit runs; "<|" is broken up below
)

_characters = st.one_of(st.characters(codec="utf-8"), st.sampled_from(_SPICE))


def _no_special_token(text: str) -> str:
    # Inserting a space after "<" breaks every "<|" and cannot create a new one.
    return text.replace("<|", "< |")


_short = st.text(_characters, max_size=40)
# Prose tokenizes to far fewer tokens per character than random code points, so these
# let buffers hold several turns at small limits.
_words = st.lists(
    st.sampled_from(
        ["the", "cat", "sat", "on", "mat", "hello", "world", "Tokyo", "東京", "café", "🙂", "42"]
    ),
    max_size=12,
).map(" ".join)
_long = st.one_of(
    st.text(_characters, min_size=300, max_size=2000),
    # Several thousand characters, cheaply: a drawn snippet repeated.
    st.builds(
        lambda snippet, times: snippet * times,
        st.text(_characters, min_size=1, max_size=30),
        st.integers(100, 300),
    ),
)

#: A message text: empty, short, or long; never containing ``"<|"``.
texts: st.SearchStrategy[str] = (
    st.integers(0, 11)
    .flatmap(lambda n: _long if n == 0 else st.one_of(st.just(""), _short, _words))
    .map(_no_special_token)
)

#: Token limits: mostly small so that most saves prune, sometimes a roomy 2000.
limits: st.SearchStrategy[int] = st.one_of(
    st.integers(3, 30),
    st.integers(20, 120),
    st.integers(50, 400),
    st.just(2000),
)

models: st.SearchStrategy[str] = st.sampled_from(MODELS)


@dataclass(frozen=True)
class Config:
    """How one memory is configured, identically for eventmem and LangChain."""

    model: str
    max_token_limit: int
    return_messages: bool
    human_prefix: str
    ai_prefix: str
    memory_key: str
    input_name: str  # the key the text goes under in ``inputs``
    output_name: str  # the single key of ``outputs``


_prefixes = st.one_of(
    st.sampled_from(["", "User", "Assistant", "Kunde 🧑", "用户", "Q"]),
    st.text(_characters, max_size=8),
)

configs: st.SearchStrategy[Config] = st.builds(
    Config,
    model=models,
    max_token_limit=limits,
    return_messages=st.booleans(),
    human_prefix=st.one_of(st.just("Human"), _prefixes),
    ai_prefix=st.one_of(st.just("AI"), _prefixes),
    memory_key=st.sampled_from(["history", "chat_history"]),
    input_name=st.sampled_from(["input", "question", "human_input"]),
    output_name=st.sampled_from(["output", "answer", "text"]),
)


@dataclass(frozen=True)
class Save:
    """``save_context`` of one exchange."""

    input: str
    output: str
    stop: bool  # add a "stop" key to inputs (must be ignored)
    memory_var: bool  # add the memory key itself to inputs (must be ignored)

    def inputs(self, config: Config) -> dict[str, object]:
        """The ``inputs`` dict for ``config``."""
        result: dict[str, object] = {}
        if self.memory_var:
            result[config.memory_key] = "ignored: the memory variable"
        result[config.input_name] = self.input
        if self.stop:
            result["stop"] = ["\nHuman:", "\n"]
        return result

    def outputs(self, config: Config) -> dict[str, object]:
        """The ``outputs`` dict for ``config``."""
        return {config.output_name: self.output}


@dataclass(frozen=True)
class Clear:
    """``clear()``."""


@dataclass(frozen=True)
class Reopen:
    """Close the store, open the same file again and recreate the memory."""


@dataclass(frozen=True)
class SetLimit:
    """Carry on the same session with another limit and model."""

    max_token_limit: int
    model: str


saves: st.SearchStrategy[Save] = st.builds(
    Save,
    input=texts,
    output=texts,
    stop=st.booleans(),
    memory_var=st.integers(0, 4).map(lambda n: n == 0),
)


def operations(
    *, max_size: int = 20, with_limit_changes: bool = False
) -> st.SearchStrategy[list[Save | Clear | Reopen | SetLimit]]:
    """A conversation: mostly saves, with clears, reopens and (optionally) limit changes."""
    kinds = ["save"] * 6 + ["clear", "reopen"] + (["limit"] * 2 if with_limit_changes else [])

    @st.composite
    def one(draw: st.DrawFn) -> Save | Clear | Reopen | SetLimit:
        kind = draw(st.sampled_from(kinds))
        if kind == "save":
            return draw(saves)
        if kind == "clear":
            return Clear()
        if kind == "reopen":
            return Reopen()
        return SetLimit(draw(limits), draw(models))

    return st.lists(one(), min_size=2, max_size=max_size)
