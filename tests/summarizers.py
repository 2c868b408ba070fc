"""Deterministic summarising models for the summary-buffer tests, offline.

``FakeChatOpenAI`` is langchain-openai's ``ChatOpenAI`` with its network call replaced:
it counts tokens with the library's own ``get_num_tokens_from_messages`` (what
LangChain's ``ConversationSummaryBufferMemory`` prunes by) and answers each prompt with
a text that depends on the whole prompt, so two memories agree only if they sent the
same prompts in the same order. Its ``prompts`` list records what it was asked.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, SecretStr

# Pieces of the answers: some tokenize oddly, one is empty, one is long.
_WORDS = ("the human", "asks", "東京", "🙂", "", "about", "e\u0301", "the AI", "x" * 50, "\n")


def answer_for(prompt: str) -> str:
    """The summary a fake model gives for ``prompt``: its digest, then a few words the
    digest picks (sometimes none)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 1 + digest[0] % 6]]
    return " ".join([f"S{digest.hex()[:10]}", *words])


class FakeChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that answers `answer_for` of its prompt instead of calling OpenAI."""

    _prompts: list[str] = PrivateAttr(default_factory=list)

    @property
    def prompts(self) -> list[str]:
        """Every prompt it was asked, in order."""
        return self._prompts

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        (message,) = messages
        assert isinstance(message.content, str)
        self._prompts.append(message.content)
        reply = AIMessage(content=answer_for(message.content))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._answer(messages)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._answer(messages)


def fake_chat_openai(model: str) -> FakeChatOpenAI:
    """A fresh fake for ``model`` (counting like ``ChatOpenAI(model=model)``)."""
    return FakeChatOpenAI(model=model, api_key=SecretStr("test"))
