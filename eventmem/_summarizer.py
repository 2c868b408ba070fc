"""The summariser of a summary buffer: LangChain's prompt, and calling the model.

``SUMMARY_TEMPLATE`` is the template of LangChain's ``SUMMARY_PROMPT``
(``langchain_classic.memory.prompt``), character for character; a test compares them.
A prompt is a template with exactly the variables ``{summary}`` and ``{new_lines}``, as
LangChain requires, formatted like its f-string ``PromptTemplate``. The model is a
LangChain model or runnable (anything with ``ainvoke``), or a function of the prompt
text returning the summary (sync or async); it is called outside any transaction.
"""

from __future__ import annotations

import hashlib
import inspect
import string
from typing import Any

import anyio.to_thread

from eventmem.errors import InvalidInputError, SummarizerError
from eventmem.messages import check_text

__all__ = [
    "NO_PROMPT_SHA256",
    "SUMMARY_TEMPLATE",
    "call_model",
    "call_summarize",
    "check_summarize",
    "model_name",
    "prompt_digest",
    "prompt_template",
]

SUMMARY_TEMPLATE = """Progressively summarize the lines of conversation provided, adding onto the previous summary returning a new summary.

EXAMPLE
Current summary:
The human asks what the AI thinks of artificial intelligence. The AI thinks artificial intelligence is a force for good.

New lines of conversation:
Human: Why do you think artificial intelligence is a force for good?
AI: Because artificial intelligence will help humans reach their full potential.

New summary:
The human asks what the AI thinks of artificial intelligence. The AI thinks artificial intelligence is a force for good because it will help humans reach their full potential.
END OF EXAMPLE

Current summary:
{summary}

New lines of conversation:
{new_lines}

New summary:"""  # noqa: E501

_VARIABLES = {"summary", "new_lines"}


def prompt_template(prompt: object) -> str:
    """The template text of ``prompt``: a str, or a LangChain f-string ``PromptTemplate``
    (its ``template``). Raises `InvalidInputError` unless its variables are exactly
    ``summary`` and ``new_lines``."""
    template = prompt
    if not isinstance(prompt, str):
        template = getattr(prompt, "template", None)
        if not isinstance(template, str) or getattr(prompt, "template_format", "f-string") != (
            "f-string"
        ):
            raise InvalidInputError(
                "prompt must be a template str (or an f-string PromptTemplate) with the "
                f"variables {{summary}} and {{new_lines}}, got {type(prompt).__name__}"
            )
    assert isinstance(template, str)
    check_text(template, "prompt")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise InvalidInputError(f"prompt is not a valid template: {e}") from None
    if names != _VARIABLES:
        raise InvalidInputError(
            f"Got unexpected prompt input variables. The prompt expects {sorted(names)}, "
            f"but it should have {sorted(_VARIABLES)}."
        )
    return str.__str__(template)


def prompt_digest(template: str) -> str:
    """The SHA-256 of the template's UTF-8 bytes, in hex (what a summary event records)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def model_name(llm: object) -> str:
    """How a summary event names the model: the class (or function) and the model name
    it reports (``model_name``, ``model`` or ``model_id``), e.g. ``ChatOpenAI:gpt-4o``."""
    if inspect.isfunction(llm) or inspect.ismethod(llm) or inspect.isbuiltin(llm):
        kind = getattr(llm, "__qualname__", None) or type(llm).__qualname__
    else:
        kind = type(llm).__qualname__
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(llm, attribute, None)
        if isinstance(value, str) and value:
            return f"{kind}:{value}"
    return str(kind)


def check_model(llm: object) -> None:
    """Raise `InvalidInputError` unless ``llm`` is something `call_model` can call."""
    if llm is None:
        raise InvalidInputError("a summary buffer needs llm= (the model that summarises)")
    if not callable(getattr(llm, "ainvoke", None)) and not callable(llm):
        raise InvalidInputError(
            "llm must be a LangChain model or runnable (with ainvoke), or a function of the "
            f"prompt returning the summary, got {type(llm).__name__}"
        )


async def call_model(llm: Any, prompt: str) -> str:
    """The model's answer to ``prompt``, as text. Whatever the model raises (but a
    cancellation) becomes `SummarizerError`, as does an answer that is not text."""
    try:
        ainvoke = getattr(llm, "ainvoke", None)
        if callable(ainvoke):
            answer = await ainvoke(prompt)
        elif inspect.iscoroutinefunction(llm) or inspect.iscoroutinefunction(
            getattr(llm, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        ):
            answer = await llm(prompt)
        else:  # a blocking function: never on the event loop
            answer = await anyio.to_thread.run_sync(llm, prompt)
            if inspect.isawaitable(answer):
                answer = await answer
    except Exception as e:
        raise SummarizerError(
            f"the summariser {model_name(llm)} raised {type(e).__name__}: {e}; nothing was written"
        ) from e
    return _checked_text(llm, answer)


# What a summary made by a summarising history's own function records as its prompt's
# digest: eventmem built no prompt (the SHA-256 of the empty text).
NO_PROMPT_SHA256 = hashlib.sha256(b"").hexdigest()


def check_summarize(summarize: object) -> None:
    """Raise `InvalidInputError` unless ``summarize`` can be called as
    ``summarize(summary, pruned)``."""
    if not callable(summarize):
        raise InvalidInputError(
            "summarize must be a function of (the summary so far, the pruned messages) "
            f"returning the new summary, got {type(summarize).__name__}"
        )


async def call_summarize(summarize: Any, summary: str, pruned: list[Any]) -> str:
    """``summarize(summary, pruned)``'s answer, as text (a blocking function runs off
    the event loop). What it raises (but a cancellation) becomes `SummarizerError`, as
    does an answer that is not text."""
    try:
        if inspect.iscoroutinefunction(summarize) or inspect.iscoroutinefunction(
            getattr(summarize, "__call__", None)  # noqa: B004 - an object whose __call__ is async
        ):
            answer = await summarize(summary, pruned)
        else:
            answer = await anyio.to_thread.run_sync(summarize, summary, pruned)
            if inspect.isawaitable(answer):
                answer = await answer
    except Exception as e:
        raise SummarizerError(
            f"the summariser {model_name(summarize)} raised {type(e).__name__}: {e}; "
            "nothing was written"
        ) from e
    return _checked_text(summarize, answer)


def _checked_text(summarizer: object, answer: object) -> str:
    text = _text_of(answer)
    if text is None:
        raise SummarizerError(
            f"the summariser {model_name(summarizer)} answered a {type(answer).__name__}, "
            "not text; nothing was written"
        )
    try:
        check_text(text, "the summary")
    except InvalidInputError as e:
        raise SummarizerError(f"{e}; nothing was written") from e
    return text


def _text_of(answer: object) -> str | None:
    """A str as it is; a LangChain message's content when it is a str, else its text."""
    if isinstance(answer, str):
        return str.__str__(answer)
    content = getattr(answer, "content", None)
    if isinstance(content, str):
        return str.__str__(content)
    text = getattr(answer, "text", None)
    if callable(text):  # langchain-core before 1.0: a method
        text = text()
    return str.__str__(text) if isinstance(text, str) else None
