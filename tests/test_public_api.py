"""The public surface: what `import eventmem` offers is deliberate and documented."""

from __future__ import annotations

import inspect

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
        "memory",
        "messages",
        "projection",
        "rules",
        "store",
        "steps",
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
