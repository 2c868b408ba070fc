"""The public surface: what `import eventmem` offers is deliberate and documented."""

from __future__ import annotations

import builtins
import inspect
from pathlib import Path

import pytest

import eventmem


def test_all_names_exist_and_nothing_public_is_unlisted() -> None:
    assert sorted(eventmem.__all__) == eventmem.__all__
    for name in eventmem.__all__:
        assert hasattr(eventmem, name), name
    public_modules = {
        "api",
        "audit",
        "errors",
        "events",
        "history",
        "memory",
        "messages",
        "anchors",
        "encryption",
        "providers",
        "checkpoint_index",
        "projection",
        "rules",
        "store",
        "steps",
        "summary",
        "sync",
        "timeline",
        "tokens",
    }
    unlisted = {
        name
        for name, value in vars(eventmem).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    } - set(eventmem.__all__)
    assert unlisted == set()
    # Private modules (eventmem._files, used by the command) are not part of the surface.
    modules = {n for n, v in vars(eventmem).items() if inspect.ismodule(v) and n[0] != "_"}
    assert modules <= public_modules | {
        "cli",
        "integrations",
        "ui",
    }


def test_every_public_name_has_a_docstring() -> None:
    for name in eventmem.__all__:
        value = getattr(eventmem, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name


def test_every_error_is_an_eventmem_error() -> None:
    errors = [getattr(eventmem, n) for n in eventmem.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    assert all(issubclass(e, eventmem.EventmemError) for e in errors)


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    assert (resources.files("eventmem") / "py.typed").is_file()


def _documented() -> set[str]:
    """The names docs/api.md documents at the top level of ``eventmem``."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    names = set(re.findall(r"^::: eventmem\.(\w+)$", text, re.M))
    names |= set(re.findall(r"^- `eventmem\.(\w+)`", text, re.M))  # the option types
    names.discard("errors")  # the module: each of its errors
    names.discard("timeline")  # a module of its own, not re-exported
    return names | set(eventmem.errors.__all__)


def test_all_is_exactly_the_documented_api() -> None:
    assert set(eventmem.__all__) - {"__version__"} == _documented()


# Names a public signature may use besides eventmem's own exports.
_STANDARD = {
    *dir(builtins),
    *("Any", "Callable", "Mapping", "Sequence", "Iterable", "Iterator", "AsyncIterator"),
    *("AsyncGenerator", "Generator", "Awaitable", "BinaryIO", "Unpack", "Literal", "None"),
    *("TracebackType", "os", "PathLike", "datetime", "timedelta", "T", "Self"),
}


def _signature_names(value: object) -> set[str]:
    import re

    try:
        signature = inspect.signature(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return set()
    annotations = [p.annotation for p in signature.parameters.values()]
    annotations.append(signature.return_annotation)
    text = " ".join(a for a in annotations if isinstance(a, str))
    return set(re.findall(r"[A-Za-z_]\w*", text))


def test_every_type_a_public_signature_names_is_exported() -> None:
    missing: dict[str, set[str]] = {}
    for name in eventmem.__all__:
        value = getattr(eventmem, name)
        members: list[tuple[str, object]] = [(name, value)]
        if inspect.isclass(value):
            members = [
                (f"{name}.{m}", getattr(v, "fget", v))
                for klass in value.__mro__
                if klass.__module__.startswith("eventmem")
                for m, v in vars(klass).items()
                if not m.startswith("_") and (callable(v) or isinstance(v, property))
            ]
        for where, member in members:
            unknown = _signature_names(member) - _STANDARD - set(eventmem.__all__)
            if unknown:
                missing[where] = unknown
    assert missing == {}


def test_open_returns_a_public_type() -> None:
    assert inspect.signature(eventmem.open).return_annotation == "Opening"
    assert eventmem.Opening.__module__.startswith("eventmem")


@pytest.mark.parametrize(
    ("options", "args"),
    [
        (eventmem.BufferOptions, eventmem.BufferArgs),
        (eventmem.AgentBufferOptions, eventmem.AgentBufferArgs),
        (eventmem.SummaryBufferOptions, eventmem.SummaryBufferArgs),
    ],
)
def test_the_keyword_types_name_exactly_the_options(options: type, args: type) -> None:
    import dataclasses
    import typing

    hints = typing.get_type_hints(options)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(options) if f.init}
    assert typing.get_type_hints(args) == fields
    # The factories take the same keywords as the struct, and no default of their own.
    for factory in (eventmem.Store.token_buffer, eventmem.SyncStore.agent_token_buffer):
        (_, _, kwargs) = inspect.signature(factory).parameters.values()
        assert kwargs.kind is inspect.Parameter.VAR_KEYWORD


def test_the_options_struct_holds_the_defaults_and_checks_once() -> None:
    import dataclasses

    conversation, agent = eventmem.BufferOptions(), eventmem.AgentBufferOptions()
    assert (conversation.max_token_limit, conversation.return_messages) == (2000, False)
    assert (conversation.output_key, agent.output_key) == (None, "output")
    assert (agent.max_token_limit, agent.return_messages, agent.prune) == (12000, True, "langchain")
    assert conversation.counter.name == "openai-chat:o200k_base"
    assert conversation.recorded_model == "gpt-4o"
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.max_token_limit = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        eventmem.BufferOptions(max_tokens=5)  # type: ignore[call-arg]
    with pytest.raises(eventmem.InvalidInputError, match="prune"):
        eventmem.AgentBufferOptions(prune="never")  # type: ignore[arg-type]
    with pytest.raises(eventmem.InvalidInputError, match="output_key"):
        eventmem.AgentBufferOptions(output_key=None)
    with pytest.raises(eventmem.InvalidInputError, match="max_token_limit"):
        eventmem.BufferOptions(max_token_limit=-1)


@pytest.mark.anyio
async def test_a_memory_keeps_its_options_and_checks_a_changed_one(tmp_path: Path) -> None:
    async with eventmem.open(tmp_path / "m.db") as store:
        memory = store.agent_token_buffer("s", max_token_limit=50, prune="pair_safe")
        assert memory.options == eventmem.AgentBufferOptions(max_token_limit=50, prune="pair_safe")
        assert (memory.max_token_limit, memory.prune, memory.model) == (50, "pair_safe", "gpt-4o")
        memory.max_token_limit = 10
        assert memory.options.max_token_limit == 10
        with pytest.raises(eventmem.InvalidInputError):
            memory.max_token_limit = -1
        assert memory.max_token_limit == 10
        with pytest.raises(TypeError):
            store.token_buffer("s", format_as_tools=True)  # type: ignore[call-arg]
        assert await store.count_events() == 0
