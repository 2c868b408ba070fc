"""OpenTelemetry spans for saves, loads and verify (the optional extra ``eventmem[otel]``).

Whether ``opentelemetry`` can be imported is looked up once, when this module is imported
(``importlib.util.find_spec``: nothing is imported then). Without it, the decorators hand
back the functions they decorate untouched and ``ON`` is False: a call site costs one
attribute check. With it, ``opentelemetry.trace`` is imported on the first traced call,
once, and each operation runs in a span of the ``eventmem`` tracer (until the application
sets a tracer provider no span is made at all). Position, hash and view attributes are
looked up only when the span is recording. The spans and attributes: ``docs/tracing.md``.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from eventmem.store.base import Backend

__all__ = ["ON", "carry", "load", "save", "verify", "viewed", "wrote"]

P = ParamSpec("P")
T = TypeVar("T")

ON: bool = importlib.util.find_spec("opentelemetry") is not None
"""Whether opentelemetry is installed (looked up once; call sites test it)."""

_trace: Any = None  # the opentelemetry.trace module, imported by the first span
_the_tracer: Any = None  # its tracer "eventmem" (a proxy until a provider is set)


def _tracer() -> Any:
    global _trace, _the_tracer
    if _the_tracer is None:
        from opentelemetry import trace

        from eventmem import __version__

        _trace = trace
        _the_tracer = trace.get_tracer("eventmem", __version__)
    return _the_tracer


def _untraced() -> bool:
    """Whether no tracer provider is set: every span would be a no-op, so none is made
    (a no-op span still costs ~15 µs a save here). Looked up per call, so a provider
    set later takes effect at once."""
    _tracer()
    provider = _trace.get_tracer_provider()
    return isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider))


def _backend_name(backend: Backend) -> str:
    return "postgresql" if "postgres" in type(backend).__module__ else "sqlite"


def _span(
    name: str, operation: str | None
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """The decorator of an async method of an object with ``_backend`` (or ``_store``)
    and, unless it is store-wide, ``session_id``: the method runs in span ``name``."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        if not ON:
            return fn

        @functools.wraps(fn)
        async def traced(*args: P.args, **kwargs: P.kwargs) -> T:
            if _untraced():
                return await fn(*args, **kwargs)
            owner = args[0]
            backend = getattr(owner, "_backend", None) or owner._store._backend  # type: ignore[attr-defined]
            attributes: dict[str, str] = {"eventmem.store.backend": _backend_name(backend)}
            if operation is not None:
                attributes["gen_ai.operation.name"] = operation
            session_id = getattr(owner, "session_id", None)
            if session_id is None and len(args) > 1 and isinstance(args[1], str):
                session_id = args[1]  # Store.messages(session_id) and the like
            if session_id is not None:
                attributes["gen_ai.conversation.id"] = session_id
            with _tracer().start_as_current_span(name, attributes=attributes) as span:
                try:
                    return await fn(*args, **kwargs)
                except BaseException as error:
                    span.set_attribute("error.type", type(error).__qualname__)
                    raise

        return traced

    return decorate


def save(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """A write (``gen_ai.operation.name = update_memory``); the method calls ``wrote``."""
    return _span(f"eventmem.{name}", "update_memory")


def load(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A load of the view (``search_memory``); the method calls ``viewed``."""
    return _span("eventmem.load", "search_memory")(fn)


def verify(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A verification (no GenAI operation of its own)."""
    return _span("eventmem.verify", None)(fn)


async def _event_hash(backend: Backend, session_id: str, position: int) -> str | None:
    if position < 1:
        return None
    events = await backend.read_events(session_id, position - 1, 1)
    return events[0].hash if events and events[0].position == position else None


async def wrote(backend: Backend, session_id: str, position: int) -> None:
    """Note on the current span the position (and, read back, the hash) of the event the
    operation wrote (or, when it wrote nothing, of the session's head)."""
    span = _trace.get_current_span()
    if span.is_recording():
        span.set_attribute("eventmem.event.position", position)
        digest = await _event_hash(backend, session_id, position)
        if digest is not None:
            span.set_attribute("eventmem.event.hash", digest)


async def viewed(
    backend: Backend, session_id: str, messages: Sequence[object], as_of: int | None = None
) -> None:
    """Note on the current span the view returned: its message count, and the position and
    hash of the event it is the view after (``as_of``: the version read with the view, or
    the position asked for; else the head read right after)."""
    span = _trace.get_current_span()
    if span.is_recording():
        span.set_attribute("eventmem.view.messages", len(messages))
        position = await backend.version(session_id) if as_of is None else as_of
        span.set_attribute("eventmem.event.position", position)
        digest = await _event_hash(backend, session_id, position)
        if digest is not None:
            span.set_attribute("eventmem.event.hash", digest)


def carry(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``fn`` run in the caller's trace context, wherever (on which loop, in which thread)
    it is awaited: the blocking facades' spans nest under their caller's."""
    from opentelemetry import context

    current = context.get_current()

    async def in_context(*args: Any) -> T:
        token = context.attach(current)
        try:
            return await fn(*args)
        finally:
            context.detach(token)

    return in_context
