"""The worker both backends run their connection on: a thread of its own.

Each call is a plain function (a whole transaction) run on the connection's thread, one
at a time, in the order submitted. Its caller waits shielded from cancellation, so a
call always ends (COMMIT or ROLLBACK) before its caller hears of a cancellation, and no
transaction is left half-open on the shared connection.

A thread per connection rather than ``anyio.to_thread.run_sync``: a call handed to a
thread that waits on a queue, answered by resolving a future through the event loop,
costs ~50 µs on these machines; anyio's worker pool costs ~150 µs (an ``anyio.Event``
and a shielded scope on every call ~70 µs), and a load is one call. The loop is
asyncio's, as the store always needed (group commit and the tests run on asyncio).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Worker"]

T = TypeVar("T")


class _Call(Generic[T]):
    """One call: run on the worker's thread, its outcome read on the loop."""

    __slots__ = ("args", "error", "fn", "future", "loop", "ran", "result")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.loop = asyncio.get_running_loop()
        # Resolved through the loop once the call has run: the caller's one wake-up.
        self.future: asyncio.Future[None] = self.loop.create_future()
        self.ran = threading.Event()  # for a caller whose wait was cancelled meanwhile
        self.result: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # handed to the caller, whatever it is
            self.error = e
        self.ran.set()
        with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(_wake, self.future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled with its caller
        future.set_result(None)


def _serve(calls: queue.SimpleQueue[_Call[Any] | None]) -> None:
    while (call := calls.get()) is not None:
        call.run()
        del call  # drop its result before waiting for the next


class Worker:
    """A thread that runs one connection's calls, one at a time, in order."""

    def __init__(self, name: str = "eventmem-connection") -> None:
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        # A daemon: a store never closed must not keep the interpreter from exiting.
        thread = threading.Thread(target=_serve, args=(self._calls,), name=name, daemon=True)
        thread.start()
        # A worker dropped without stop() (a store never closed) still ends its thread.
        self._stop = weakref.finalize(self, self._calls.put, None)
        self._pending = 0  # calls submitted and not yet answered (counted on the loop)

    @property
    def busy(self) -> bool:
        """Whether a call is submitted and not yet answered (so the connection may be
        in use on the worker's thread)."""
        return self._pending > 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker's thread, after the calls submitted before it.
        Not cancellable while it runs: the caller hears of a cancellation after it."""
        call: _Call[T] = _Call(fn, args)
        self._pending += 1
        self._calls.put(call)
        try:
            await call.future
        except BaseException:
            # Cancelled: the call runs on regardless, and its caller hears of the
            # cancellation only after it ended (waited for on a pool thread: this is
            # the rare path).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(call.ran.wait)
            raise
        finally:
            self._pending -= 1
        if call.error is not None:
            error, call.error = call.error, None
            raise error
        return call.result  # type: ignore[return-value]

    def stop(self) -> None:
        """End the thread once the calls already submitted have run (idempotent)."""
        self._stop()
