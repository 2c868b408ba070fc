"""The blocking facade: LangChain's sync API over the async core, on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import eventmem
from tests.backends import drop_target, new_target
from tests.probes import target_exists

pytestmark = pytest.mark.postgres_sample(2, across="module")


def test_blocking_round_trip(target: str) -> None:
    with eventmem.connect(target) as store:
        mem = store.token_buffer("s", max_token_limit=2000)
        assert mem.memory_variables == ["history"]
        mem.save_context({"input": "hi"}, {"output": "hello"})
        assert mem.load_memory_variables({}) == {"history": "Human: hi\nAI: hello"}
        mem.clear()
        assert mem.load_memory_variables({}) == {"history": ""}
        assert [e.kind for e in store.events("s")] == ["turn", "clear"]
        assert store.sessions() == ["s"]
    with eventmem.connect(target) as store:
        assert [e.position for e in store.events("s")] == [1, 2]


def test_blocking_errors_are_the_same_types(target: str) -> None:
    with eventmem.connect(target) as store:
        mem = store.token_buffer("s")
        with pytest.raises(eventmem.InputKeyError):
            mem.save_context({"a": "1", "b": "2"}, {"output": "x"})
        assert store.events("s") == []


def test_close_is_idempotent_and_later_calls_fail(target: str) -> None:
    store = eventmem.connect(target)
    mem = store.token_buffer("s")
    store.close()
    store.close()
    with pytest.raises(eventmem.ClosedError):
        mem.save_context({"input": "x"}, {"output": "y"})


@pytest.mark.parametrize("where", ["sqlite junk file", "unreachable postgresql server"])
def test_a_failed_connect_raises_and_leaves_no_thread(tmp_path: Path, where: str) -> None:
    import threading
    import time

    path = tmp_path / "junk.db"
    path.write_bytes(b"junk" * 1000)
    target, error = (
        (str(path), eventmem.NotAnEventmemDatabaseError)
        if where.startswith("sqlite")
        else ("postgresql://postgres@127.0.0.1:1/test?schema=nowhere", eventmem.StorageError)
    )
    before = set(threading.enumerate())
    with pytest.raises(error):
        eventmem.connect(target)
    deadline = time.monotonic() + 5
    while (leaked := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leaked == set()


@pytest.mark.anyio
async def test_blocking_calls_inside_an_event_loop_raise_instead_of_deadlocking(
    target: str,
) -> None:
    with pytest.raises(eventmem.SyncInAsyncContextError, match="async"):
        eventmem.connect(target)
    assert not target_exists(target)


def test_a_sync_memory_used_from_a_coroutine_raises(target: str) -> None:
    import anyio

    with eventmem.connect(target) as store:
        mem = store.token_buffer("s")

        async def misuse() -> None:
            mem.save_context({"input": "x"}, {"output": "y"})

        with pytest.raises(eventmem.SyncInAsyncContextError):
            anyio.run(misuse)
        assert store.events("s") == []


def test_the_audit_methods_block_too(backend: str, target: str, tmp_path: Path) -> None:
    import io

    with eventmem.connect(target) as store:
        mem = store.token_buffer("s", max_token_limit=30)
        for i in range(6):
            mem.save_context({"input": f"question {i}"}, {"output": f"answer {i}"})
        assert store.version("s") == 6 == store.count_events()
        assert store.messages("s", as_of=1)[0].content == "question 0"
        assert len(store.replay("s", max_token_limit=10_000)) == 12
        assert store.verify().ok
        assert store.rebuild() == 1
        (summary,) = store.session_summaries()
        assert (summary.session_id, summary.events) == ("s", 6)
        stats = store.stats()
        assert (stats.sessions, sum(stats.events_by_kind.values())) == (1, 6)
        sink = io.BytesIO()
        assert store.export(sink) == 6
        original = store.messages("s")
    (tmp_path / "copy").mkdir()
    copy_target = new_target(backend, tmp_path / "copy")
    try:
        with eventmem.connect(copy_target) as copy:
            assert copy.import_events(sink.getvalue().splitlines(keepends=True)) == (1, 6)
            assert copy.verify().ok
            assert copy.messages("s") == original
    finally:
        drop_target(copy_target)


# -- the blocking facade mirrors the async API -------------------------------------------
# Where the two differ on purpose: the async iterators become lists (events), and the
# export's lines, an async generator, are written to a file the caller passes (sink).
_ITERATED = {"AsyncIterator[StoredEvent]": "list[StoredEvent]"}
_SINK = ("export", "sink")


def _returns(annotation: object) -> object:
    """A sync return annotation as its async twin spells it."""
    if isinstance(annotation, str) and annotation.startswith("Sync"):
        return annotation.removeprefix("Sync")
    return annotation


def _assert_mirrors(async_fn: object, sync_fn: object, where: str) -> None:
    import inspect

    expected = inspect.signature(async_fn)  # type: ignore[arg-type]
    actual = inspect.signature(sync_fn)  # type: ignore[arg-type]
    params = [p for p in actual.parameters.values() if (where, p.name) != _SINK]
    assert params == list(expected.parameters.values()), where
    returned = _ITERATED.get(str(expected.return_annotation), expected.return_annotation)
    if where not in ("export", "connect"):  # the number of events written; a SyncStore
        assert _returns(actual.return_annotation) == returned, where


def _attribute_type(attribute: object) -> object:
    """The type of a property, or of an attribute mirroring a wrapped object's."""
    import inspect
    import typing

    if isinstance(attribute, property):
        return inspect.signature(attribute.fget).return_annotation  # type: ignore[arg-type]
    (arg,) = typing.get_args(attribute.__orig_class__)  # type: ignore[attr-defined]
    if isinstance(arg, typing.ForwardRef):
        return arg.__forward_arg__
    return arg.__name__ if isinstance(arg, type) else str(arg)


def _public(cls: type) -> dict[str, object]:
    return {
        name: value
        for klass in reversed(cls.__mro__)
        for name, value in vars(klass).items()
        if not name.startswith("_")
    }


def test_connect_takes_what_open_takes() -> None:
    import inspect

    _assert_mirrors(eventmem.open, eventmem.connect, "connect")
    assert inspect.signature(eventmem.connect).return_annotation == "SyncStore"


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [
        (eventmem.Store, eventmem.SyncStore),
        (eventmem.TokenBufferMemory, eventmem.SyncTokenBufferMemory),
        (eventmem.AgentTokenBufferMemory, eventmem.SyncAgentTokenBufferMemory),
    ],
)
def test_every_async_method_has_a_blocking_twin_with_its_signature(
    async_cls: type, sync_cls: type
) -> None:
    import inspect

    sync_members = _public(sync_cls)
    for name, value in _public(async_cls).items():
        if not callable(value) and hasattr(type(value), "__get__"):  # a property or mirror
            twin = sync_members.get(name)
            assert twin is not None, f"{sync_cls.__name__}.{name}"
            assert _attribute_type(twin) == _attribute_type(value), name
        elif inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
            # LangChain's a-prefixed names (asave_context) lose the prefix; others keep it
            sync_name = (
                "close"
                if name == "aclose"
                else name
                if name in sync_members
                else name.removeprefix("a")
            )
            assert sync_name in sync_members, f"{sync_cls.__name__}.{sync_name}"
            _assert_mirrors(value, sync_members[sync_name], sync_name)
        elif inspect.isfunction(value):  # the memory factories
            assert name in sync_members, f"{sync_cls.__name__}.{name}"
            _assert_mirrors(value, sync_members[name], name)


def test_a_sync_store_reports_what_the_async_one_does(target: str) -> None:
    with eventmem.connect(target, cache_sessions=0, max_save_bytes=4096) as store:
        assert (store.closed, store.max_save_bytes, store.read_only) == (False, 4096, False)
        mem = store.agent_token_buffer("s", max_token_limit=99)
        assert (mem.session_id, mem.options.max_token_limit) == ("s", 99)
        mem.save_context({"input": "hi"}, {"output": "hello"})
        assert mem.buffer_as_str() == "Human: hi\nAI: hello"
        calls: list[tuple[int, int]] = []
        assert store.verify(progress=lambda done, total: calls.append((done, total))).ok
        assert store.rebuild(progress=lambda done, total: calls.append((done, total))) == 1
        assert calls
    assert store.closed
