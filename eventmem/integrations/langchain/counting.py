"""Token counting for a LangChain model: eventmem's exact OpenAI counter, or the model's own.

With a ``ChatOpenAI`` (any ``BaseChatOpenAI`` that keeps langchain-openai's counting),
eventmem counts with its bundled tokenizers, exactly as
``llm.get_num_tokens_from_messages`` does and without re-counting the buffer. Any
other model counts through its own ``get_num_tokens_from_messages``, one message at a
time (slower, same result for every per-message formula).
"""

from __future__ import annotations

import sys
from typing import Any

from eventmem.integrations.langchain.convert import to_langchain
from eventmem.messages import Message
from eventmem.tokens import CallableCounter, TokenCounter

__all__ = ["counting_for", "openai_model_of"]


def openai_model_of(llm: Any) -> str | None:
    """The model name langchain-openai counts ``llm``'s tokens for, or None.

    None unless ``llm`` is a langchain-openai chat model whose class keeps the library's
    own ``get_num_tokens_from_messages``. Looked up in ``sys.modules``: if
    langchain-openai was never imported, ``llm`` cannot be one of its models.
    """
    module = sys.modules.get("langchain_openai.chat_models.base")
    base = getattr(module, "BaseChatOpenAI", None)
    if base is None or not isinstance(llm, base):
        return None
    cls = type(llm)
    for method in ("get_num_tokens_from_messages", "_get_encoding_model"):
        if getattr(cls, method, None) is not getattr(base, method, None):
            return None  # a subclass counts its own way: ask it
    name = getattr(llm, "tiktoken_model_name", None) or getattr(llm, "model_name", None)
    return name if isinstance(name, str) and name else None


def _model_label(llm: Any) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(llm, attribute, None)
        if isinstance(value, str) and value:
            return value
    return ""


def counting_for(llm: Any, model: str) -> tuple[str, TokenCounter | None]:
    """``(model, token_counter)`` to give an eventmem memory that counts like ``llm``.

    ``llm=None`` counts as ``ChatOpenAI(model=model)``. A langchain-openai chat model
    counts with eventmem's OpenAI counter for its model (its ``tiktoken_model_name`` if
    set). Any other model counts with its ``get_num_tokens_from_messages``, under the
    counter name ``langchain:<ClassName>:<model>``.
    """
    if llm is None:
        return model, None
    openai_model = openai_model_of(llm)
    if openai_model is not None:
        return openai_model, None
    label = _model_label(llm)
    name = f"langchain:{type(llm).__name__}" + (f":{label}" if label else "")

    def count(messages: list[Message]) -> int:
        value: int = llm.get_num_tokens_from_messages([to_langchain(m) for m in messages])
        return value

    return model, CallableCounter(count, name=name)
