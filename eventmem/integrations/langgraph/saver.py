"""``EventmemSaver``: LangGraph's checkpointer interface over an eventmem store.

Each LangGraph thread is an eventmem session (its id is the thread id). A ``put`` appends
a ``checkpoint`` event, a ``put_writes`` a ``writes`` event, and the deletions a
``checkpoints_deleted`` tombstone; ``get_tuple`` and ``list`` read the events through
their lookup projection (``eventmem.store.checkpoints``). The serializer is LangGraph's
(``self.serde``); eventmem stores what it writes as opaque bytes.

A list-valued channel (the message list) is stored as the items new since the version
this saver last wrote or read (a delta), or whole when it does not extend that version,
and whole again once its deltas hold more items than its last whole copy (so rebuilding
a list reads at most about twice its size) unless that copy would take more than a
quarter of what one event may hold (``max_save_bytes``): a long list then goes on by
deltas alone.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from eventmem.api import Store
from eventmem.errors import InvalidInputError, NotSerializableError
from eventmem.events import (
    Blob,
    ChannelValue,
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWrite,
    CheckpointWritesSaved,
    Event,
    check_event,
)
from eventmem.integrations._stores import AnyStore, call_blocking, check_store, note_loop
from eventmem.messages import check_text
from eventmem.rules import validate_session_id
from eventmem.store import checkpoints as stored
from eventmem.store.batched import BatchedBackend
from eventmem.store.head import SessionHead
from eventmem.store.sql import Connection
from eventmem.sync import SyncStore

__all__ = ["EventmemSaver"]

T = TypeVar("T")

_PAGE = 64  # checkpoints read per round trip by list()
_MIN_CHAIN = 32  # a list may gather this many items in deltas whatever its size
_TRACKED = 4096  # (thread, ns, channel) lists remembered for deltas, most recent first


class _ListState:
    """What this saver last wrote or read of one list channel: the version, its items
    (the objects themselves, to see that the next value extends them), and how many of
    them are stored in deltas since the last whole copy."""

    __slots__ = ("delta_items", "items", "version")

    def __init__(self, version: Any, items: list[Any], delta_items: int) -> None:
        self.version = version
        self.items = items
        self.delta_items = delta_items


def _extends(value: list[Any], base: list[Any]) -> bool:
    """Whether ``value`` starts with the items of ``base``."""
    if len(value) < len(base):
        return False
    for new, old in zip(value, base, strict=False):  # value may be longer
        if new is old:
            continue
        try:
            if not bool(new == old):
                return False
        except Exception:  # an item whose == does not answer (an array, ...)
            return False
    return True


def _thread(config: RunnableConfig, what: str = "config") -> str:
    configurable = config.get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if isinstance(thread_id, int) and not isinstance(thread_id, bool):
        thread_id = str(thread_id)
    if thread_id is None:
        raise InvalidInputError(f"{what} has no configurable thread_id")
    return validate_session_id(thread_id)


def _text(value: object, what: str) -> str:
    """``value`` if it is a str the store can hold (valid Unicode, no NUL)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}")
    check_text(value, what)
    if "\x00" in value:  # PostgreSQL's text cannot hold it: refused on both backends
        raise InvalidInputError(f"{what} must not contain NUL characters")
    return value


def _checkpoint_id(config: RunnableConfig | None) -> str | None:
    found = get_checkpoint_id(config) if config is not None else None
    return None if found is None else _text(found, "checkpoint_id")


def _ns(config: RunnableConfig) -> str:
    return _text((config.get("configurable") or {}).get("checkpoint_ns", ""), "checkpoint_ns")


def _check_version(channel: object, version: object) -> None:
    _text(channel, "a channel name")
    if isinstance(version, bool) or not isinstance(version, (int, float, str)):
        raise InvalidInputError(
            f"channel {channel!r} has version {version!r}: a version is an int, float or str"
        )
    if isinstance(version, float) and not math.isfinite(version):
        raise InvalidInputError(f"channel {channel!r} has version {version!r}: not a number")
    if isinstance(version, int) and not -(2**63) <= version < 2**63:
        raise InvalidInputError(f"channel {channel!r} has version {version}: beyond 64 bits")
    if isinstance(version, str):
        _text(version, "a channel version")


def _is_int64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class EventmemSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer whose checkpoints are events in an eventmem store.

    ``store`` is an async [`Store`][eventmem.Store] (``eventmem.open``: use the graph's
    async methods, ``ainvoke``/``astream``/``aget_state``) or a
    [`SyncStore`][eventmem.SyncStore] (``eventmem.connect``: the blocking ones; its async
    methods also work, run in a worker thread). ``serde`` is LangGraph's serializer
    (default: its ``JsonPlusSerializer``).

    Deleting (``delete_thread``, ``delete_for_runs``, ``prune``) appends a tombstone
    that hides the checkpoints from every read; their events stay in the log.
    """

    def __init__(self, store: Store | SyncStore, *, serde: SerializerProtocol | None = None):
        super().__init__(serde=serde)
        self.store: AnyStore = check_store(store)
        core = store._store if isinstance(store, SyncStore) else store
        backend = core._backend
        if not isinstance(backend, BatchedBackend):  # pragma: no cover - both backends are
            raise InvalidInputError("this store's backend cannot hold LangGraph checkpoints")
        self._backend = backend
        self._lists: OrderedDict[tuple[str, str, str], _ListState] = OrderedDict()

    # -- versions ----------------------------------------------------------------------
    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """The version after ``current``: a zero-padded counter (so versions sort as
        they were made) and a random part (so two branches forked from one checkpoint
        never make the same version of a channel)."""
        if current is None:
            number = 0
        elif isinstance(current, (int, float)):
            number = int(current)
        else:
            number = int(current.split(".", 1)[0])
        return f"{number + 1:032}.{secrets.token_hex(8)}"

    # -- the async operations (the core of every method) -------------------------------
    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _thread(config), _ns(config)
        parent_id = (config.get("configurable") or {}).get("checkpoint_id")
        rest: dict[str, Any] = dict(checkpoint)
        values = rest.pop("channel_values", {}) or {}
        versions = dict(rest.pop("channel_versions", {}) or {})
        checkpoint_id = _text(checkpoint.get("id"), "a checkpoint's id")
        if not checkpoint_id:
            raise InvalidInputError("a checkpoint's id must not be empty")
        parent_id = None if parent_id is None else _text(parent_id, "the parent checkpoint_id")
        for channel, version in versions.items():
            _check_version(channel, version)
        full_metadata = get_checkpoint_metadata(config, metadata)
        run_id = full_metadata.get("run_id")
        step = full_metadata.get("step")
        source = full_metadata.get("source")
        base = CheckpointSaved(
            ns=ns,
            checkpoint_id=checkpoint_id,
            checkpoint=_blob(self, rest),
            metadata=_blob(self, full_metadata),
            versions=versions,
            parent_id=parent_id,
            step=step if _is_int64(step) else None,  # (the metadata keeps any step)
            source=source if isinstance(source, str) else None,
            run_id=(
                _text(str(run_id), "metadata's run_id")
                if isinstance(run_id, (str, uuid.UUID))
                else None
            ),
        )
        changed = {
            channel: version for channel, version in new_versions.items() if channel in versions
        }
        for channel, version in new_versions.items():
            _check_version(channel, version)
        event, lists = self._with_values(thread_id, base, values, changed, deltas=True)
        try:
            await self._write(thread_id, _checked_put(thread_id, event))
        except stored.StaleBaseError:
            event, lists = self._with_values(thread_id, base, values, changed, deltas=False)
            await self._write(thread_id, _checked_put(thread_id, event))
        for key, state in lists.items():
            self._remember(key, state)
        return _config(thread_id, ns, checkpoint_id)

    def _with_values(
        self,
        thread_id: str,
        base: CheckpointSaved,
        values: dict[str, Any],
        changed: dict[str, Any],
        *,
        deltas: bool,
    ) -> tuple[CheckpointSaved, dict[tuple[str, str, str], _ListState]]:
        """``base`` with the values of the channels this checkpoint changed, and the list
        states to remember once it is written."""

        def dumps(value: Any) -> tuple[str, bytes]:
            blob = _blob(self, value)
            return blob.type, blob.data

        stored_values: list[ChannelValue] = []
        lists: dict[tuple[str, str, str], _ListState] = {}
        for channel, version in changed.items():
            if channel not in values:
                stored_values.append(ChannelValue(channel, version))
                continue
            value = values[channel]
            if type(value) is not list:
                stored_values.append(ChannelValue(channel, version, value=Blob(*dumps(value))))
                continue
            key = (thread_id, base.ns, channel)
            previous = self._lists.get(key) if deltas else None
            if (
                previous is not None
                and previous.version != version  # a version never extends itself
                and _extends(value, previous.items)
            ):
                added = len(value) - len(previous.items)
                whole = len(previous.items) - previous.delta_items
                new = tuple(Blob(*dumps(item)) for item in value[len(previous.items) :])
                if previous.delta_items + added <= max(whole, _MIN_CHAIN) or (
                    self._too_big_to_copy(new, len(value))
                ):
                    stored_values.append(
                        ChannelValue(channel, version, items=new, extends=previous.version)
                    )
                    lists[key] = _ListState(version, list(value), previous.delta_items + added)
                    continue
            items = tuple(Blob(*dumps(item)) for item in value)
            stored_values.append(ChannelValue(channel, version, items=items))
            lists[key] = _ListState(version, list(value), 0)
        event: CheckpointSaved = _replace(base, values=tuple(stored_values))
        return event, lists

    def _too_big_to_copy(self, sample: tuple[Blob, ...], length: int) -> bool:
        """Whether a whole copy of a list of ``length`` items like ``sample`` would take
        more than a quarter of what one event may hold (``max_save_bytes``): then the
        list goes on growing by deltas, and a read walks a longer chain, rather than a
        put being refused."""
        if not sample:
            return False
        # base64 (4/3) and the JSON around each item, over the sample's mean size
        per_item = sum(len(blob.data) for blob in sample) / len(sample) * 4 / 3 + 16
        return per_item * length > self._backend.max_save_bytes / 4

    def _remember(self, key: tuple[str, str, str], state: _ListState) -> None:
        self._lists[key] = state
        self._lists.move_to_end(key)
        while len(self._lists) > _TRACKED:
            self._lists.popitem(last=False)

    def _forget(self, thread_ids: Sequence[str]) -> None:
        gone = set(thread_ids)
        for key in [k for k in self._lists if k[0] in gone]:
            del self._lists[key]

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        thread_id, ns = _thread(config), _ns(config)
        checkpoint_id = _checkpoint_id(config)
        if not checkpoint_id:
            raise InvalidInputError("put_writes needs the config of a checkpoint (its id)")
        _text(task_id, "task_id")
        _text(task_path, "task_path")
        for channel, _ in writes:
            _text(channel, "a write's channel")
        if not writes:
            return
        event = CheckpointWritesSaved(
            ns=ns,
            checkpoint_id=checkpoint_id,
            task_id=task_id,
            task_path=task_path,
            writes=tuple(
                CheckpointWrite(WRITES_IDX_MAP.get(channel, idx), channel, _blob(self, value))
                for idx, (channel, value) in enumerate(writes)
            ),
        )
        await self._write(thread_id, lambda conn, head: [event])

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _thread(config), _ns(config)
        found = await self._backend.checkpoint_read(
            stored.read_checkpoints, thread_id, ns, _checkpoint_id(config)
        )
        if found is None:
            return None
        return self._tuple(found, remember=True)

    async def _list_pages(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> AsyncGenerator[list[CheckpointTuple], None]:
        thread_id = _thread(config) if config is not None else None
        configurable = (config or {}).get("configurable") or {}
        ns = configurable.get("checkpoint_ns")
        if ns is not None:
            _text(ns, "checkpoint_ns")
        checkpoint_id = _checkpoint_id(config)
        before_id = _checkpoint_id(before)
        left = limit
        after: tuple[str, str, str] | None = None
        while left is None or left > 0:
            page = await self._backend.checkpoint_read(
                stored.list_checkpoints,
                thread_id,
                ns,
                checkpoint_id,
                before_id,
                after,
                _PAGE,
            )
            tuples = []
            for found in page:
                item = self._tuple(found, remember=False)
                if filter and not all(item.metadata.get(k) == v for k, v in filter.items()):
                    continue
                tuples.append(item)
                if left is not None:
                    left -= 1
                    if left <= 0:
                        break
            if tuples:
                yield tuples
            if len(page) < _PAGE:
                return
            last = page[-1]
            after = (last.event.checkpoint_id, last.session_id, last.event.ns)

    async def _delete_thread(self, thread_id: str) -> None:
        thread_id = validate_session_id(thread_id)
        self._forget([thread_id])
        await self._write(thread_id, _tombstone_all("delete_thread"))

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = tuple(_text(str(r), "a run id") for r in run_ids)
        if not runs:
            return
        threads = await self._backend.checkpoint_read(_runs_sessions, runs)
        self._forget(threads)
        await self._write_each(threads, lambda _: _tombstone_runs(runs))

    async def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = validate_session_id(source_thread_id)
        target = validate_session_id(target_thread_id)
        if source == target:
            raise InvalidInputError("copy_thread needs two different threads")
        found = await self._backend.checkpoint_read(_thread_events, source)
        if not found:
            return
        events = stored.copied_events(found)
        self._forget([target])
        await self._write(target, lambda conn, head: list(events))

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError(
                f"prune's strategy is 'keep_latest' or 'delete', got {strategy!r}"
            )
        threads = [validate_session_id(t) for t in thread_ids]
        self._forget(threads)
        if strategy == "delete":
            await self._write_each(threads, lambda _: _tombstone_all("prune"))
        else:
            await self._write_each(threads, lambda _: _tombstone_older)

    # -- plumbing ----------------------------------------------------------------------
    async def _write(self, thread_id: str, decide: stored.Decide) -> None:
        def checked(conn: Connection, head: SessionHead) -> list[Event]:
            events = decide(conn, head)
            for event in events:  # the rules an import of it obeys: refused, not written
                check_event(event)
            return events

        await self._backend.checkpoint_write(thread_id, checked)

    async def _write_each(
        self, thread_ids: Sequence[str], decide_for: Callable[[str], stored.Decide]
    ) -> None:
        """One write per thread, submitted together (so they commit as one batch); the
        first error any of them raised is raised as it is (not in an exception group)."""
        errors: list[Exception] = []

        async def write(thread_id: str) -> None:
            try:
                await self._write(thread_id, decide_for(thread_id))
            except Exception as e:  # every write still runs to its end
                errors.append(e)

        async with anyio.create_task_group() as group:
            for thread_id in dict.fromkeys(thread_ids):
                group.start_soon(write, thread_id)
        if errors:
            raise errors[0]

    def _tuple(self, found: stored.StoredCheckpoint, *, remember: bool) -> CheckpointTuple:
        loads = self.serde.loads_typed
        event = found.event
        checkpoint: dict[str, Any] = loads((event.checkpoint.type, event.checkpoint.data))
        values: dict[str, Any] = {}
        for channel, data in found.values.items():
            if data.items is not None:
                items = [loads((blob.type, blob.data)) for blob in data.items]
                values[channel] = items
                if remember:
                    self._remember(
                        (found.session_id, event.ns, channel),
                        _ListState(event.versions[channel], list(items), data.delta_items),
                    )
            elif data.value is not None:
                values[channel] = loads((data.value.type, data.value.data))
        checkpoint["channel_values"] = values
        checkpoint["channel_versions"] = dict(event.versions)
        return CheckpointTuple(
            config=_config(found.session_id, event.ns, event.checkpoint_id),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=loads((event.metadata.type, event.metadata.data)),
            parent_config=(
                _config(found.session_id, event.ns, event.parent_id) if event.parent_id else None
            ),
            pending_writes=[
                (task_id, channel, loads((value.type, value.data)))
                for task_id, channel, value, _, _ in found.writes
            ],
        )

    def _blocking(self, op: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the coroutine function ``fn(*args)`` from blocking code."""
        if isinstance(self.store, SyncStore):
            return self.store._call(op, fn, *args)
        return call_blocking(self.store, op, fn, *args)

    async def _async(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the coroutine function ``fn(*args)`` from async code."""
        if isinstance(self.store, SyncStore):
            store = self.store
            # The blocking facade waits on its own loop's thread: wait in a worker thread.
            return await anyio.to_thread.run_sync(lambda: store._call("checkpointer", fn, *args))
        note_loop(self.store)
        return await fn(*args)

    # -- LangGraph's interface: async ----------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (its ``checkpoint_id``, else the thread's
        newest in its namespace), or None."""
        found: CheckpointTuple | None = await self._async(self._get_tuple, config)
        return found

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The checkpoints of a thread (every thread, for ``config`` None), newest first:
        those whose metadata holds ``filter``, older than ``before``, at most ``limit``."""
        if isinstance(self.store, SyncStore):
            for item in await anyio.to_thread.run_sync(
                lambda: list(self.list(config, filter=filter, before=before, limit=limit))
            ):
                yield item
            return
        note_loop(self.store)
        async for page in self._list_pages(config, filter, before, limit):
            for item in page:
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Append the checkpoint (and the values of ``new_versions``) as one event."""
        result: RunnableConfig = await self._async(
            self._put, config, checkpoint, metadata, new_versions
        )
        return result

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Append a task's pending writes against the checkpoint ``config`` names."""
        await self._async(self._put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Hide every checkpoint and write of the thread (a tombstone event)."""
        await self._async(self._delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Hide the checkpoints (and their writes) whose metadata names one of
        ``run_ids``, in every thread."""
        await self._async(self._delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Give ``target_thread_id`` the visible checkpoints and writes of the source."""
        await self._async(self._copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Hide all but the newest checkpoint of each namespace (``"keep_latest"``), or
        every checkpoint (``"delete"``), of each thread."""
        await self._async(self._prune, thread_ids, strategy)

    # -- LangGraph's interface: blocking ---------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking `aget_tuple`."""
        found: CheckpointTuple | None = self._blocking("get_tuple", self._get_tuple, config)
        return found

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking `alist` (read a page at a time)."""
        pages = self._list_pages(config, filter, before, limit)

        async def next_page() -> list[CheckpointTuple] | None:
            try:
                return await pages.__anext__()
            except StopAsyncIteration:
                return None

        try:
            while (page := self._blocking("list", next_page)) is not None:
                yield from page
        finally:
            self._blocking("list", pages.aclose)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking `aput`."""
        result: RunnableConfig = self._blocking(
            "put", self._put, config, checkpoint, metadata, new_versions
        )
        return result

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking `aput_writes`."""
        self._blocking("put_writes", self._put_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        """Blocking `adelete_thread`."""
        self._blocking("delete_thread", self._delete_thread, thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking `adelete_for_runs`."""
        self._blocking("delete_for_runs", self._delete_for_runs, run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking `acopy_thread`."""
        self._blocking("copy_thread", self._copy_thread, source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking `aprune`."""
        self._blocking("prune", self._prune, thread_ids, strategy)


# -- the decisions, run inside the write's transaction --------------------------------------
def _checked_put(thread_id: str, event: CheckpointSaved) -> stored.Decide:
    def decide(conn: Connection, head: SessionHead) -> list[Event]:
        stored.check_bases(conn, thread_id, event)
        return [event]

    return decide


def _tombstone_all(reason: str) -> stored.Decide:
    def decide(conn: Connection, head: SessionHead) -> list[Event]:
        if not stored.has_index(conn, head.session_id):
            return []  # nothing to hide (a thread never written is not created)
        return [CheckpointsDeleted(reason=reason, everything=True)]  # type: ignore[arg-type]

    return decide


def _tombstone_older(conn: Connection, head: SessionHead) -> list[Event]:
    pairs = stored.visible_pairs(conn, head.session_id)
    newest: dict[str, str] = {}
    for ns, checkpoint_id in pairs:
        if checkpoint_id > newest.get(ns, ""):
            newest[ns] = checkpoint_id
    older = tuple(pair for pair in pairs if newest[pair[0]] != pair[1])
    return [CheckpointsDeleted(reason="prune", checkpoints=older)] if older else []


def _tombstone_runs(run_ids: tuple[str, ...]) -> stored.Decide:
    def decide(conn: Connection, head: SessionHead) -> list[Event]:
        pairs = tuple(stored.run_pairs(conn, head.session_id, run_ids))
        if not pairs:
            return []
        return [CheckpointsDeleted(reason="delete_for_runs", checkpoints=pairs, run_ids=run_ids)]

    return decide


def _runs_sessions(conn: Connection, lists: stored.ListCache, run_ids: tuple[str, ...]) -> Any:
    return stored.runs_sessions(conn, run_ids)


def _thread_events(conn: Connection, lists: stored.ListCache, thread_id: str) -> Any:
    return stored.thread_events(conn, thread_id)


def _blob(saver: EventmemSaver, value: Any) -> Blob:
    try:
        kind, data = saver.serde.dumps_typed(value)
    except (TypeError, ValueError, OverflowError) as e:
        # the serializer's refusal, typed (nothing was written)
        raise NotSerializableError(f"LangGraph's serializer cannot write a value: {e}") from e
    return Blob(kind, data)


def _replace(event: CheckpointSaved, **changes: Any) -> CheckpointSaved:
    replaced: CheckpointSaved = msgspec.structs.replace(event, **changes)
    return replaced
