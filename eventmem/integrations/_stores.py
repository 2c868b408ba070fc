"""Either eventmem store, reached from blocking and from async code (every adapter).

[`SyncStore`][eventmem.SyncStore] (``eventmem.connect``) runs its event loop in a private
thread; the async [`Store`][eventmem.Store] (``eventmem.open``) lives on the
application's loop. A blocking call on an async Store is submitted to that loop from
another thread and waited for; from the loop's own thread it raises
[`SyncInAsyncContextError`][eventmem.SyncInAsyncContextError] (waiting there would
deadlock).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from eventmem import _tracing
from eventmem.api import Store
from eventmem.errors import EventmemError, InvalidInputError, SyncInAsyncContextError
from eventmem.sync import SyncStore

__all__ = ["AnyStore", "call_blocking", "check_store", "note_loop"]

AnyStore = SyncStore | Store

# The event loop each async Store was last seen used on, so that a memory created in a
# worker thread can still reach its store's loop. (A Store does not expose its loop.)
_store_loops: weakref.WeakKeyDictionary[Store, asyncio.AbstractEventLoop] = (
    weakref.WeakKeyDictionary()
)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def note_loop(store: Store) -> None:
    """Remember the running loop (if any) as ``store``'s, for blocking calls from other
    threads."""
    loop = _running_loop()
    if loop is not None:
        _store_loops[store] = loop


def call_blocking(store: Store, op: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run the coroutine function ``fn(*args)`` of the async ``store`` from blocking code:
    on the store's loop, waited for from this thread (see the module's rules)."""
    if _running_loop() is not None:
        raise SyncInAsyncContextError(
            f"a blocking call ({op}) was made from inside a running event loop; use the "
            "async methods (aload_memory_variables, asave_context, aclear, "
            "aget_messages, aadd_messages, ainvoke)"
        )
    loop = _store_loops.get(store)
    if loop is None or loop.is_closed() or not loop.is_running():
        raise EventmemError(
            f"{op} blocks, and this memory's store is an async eventmem.Store with no "
            "running event loop known to serve it (it was never used from its loop, "
            "or the loop has stopped); in blocking code use a store from "
            "eventmem.connect(path)"
        )
    if _tracing.ON:
        fn = _tracing.carry(fn)  # the spans on the store's loop nest under the caller's
    return asyncio.run_coroutine_threadsafe(fn(*args), loop).result()


def check_store(store: object) -> AnyStore:
    """``store`` if it is an eventmem store, else a clear
    [`InvalidInputError`][eventmem.InvalidInputError]."""
    if isinstance(store, (SyncStore, Store)):
        return store
    raise InvalidInputError(
        "store must be an eventmem.SyncStore (from eventmem.connect(path)) or an "
        f"eventmem.Store (from await eventmem.open(path)), got {type(store).__name__}"
    )
