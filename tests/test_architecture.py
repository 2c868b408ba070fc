"""docs/architecture.md stays a true map: every name it gives in backticks exists, and
every module of the package is on it."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import eventmem

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
_NAME = re.compile(r"`(eventmem(?:\.\w+)*)`")


def _named() -> set[str]:
    return set(_NAME.findall(PAGE.read_text()))


def _resolves(dotted: str) -> bool:
    """A module, or an attribute of one (``eventmem.projection.apply``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def _modules() -> set[str]:
    found = {"eventmem"}
    for info in pkgutil.walk_packages(eventmem.__path__, "eventmem."):
        found.add(info.name)
    return found


def test_every_name_on_the_page_exists() -> None:
    missing = sorted(name for name in _named() if not _resolves(name))
    assert missing == []


def test_every_module_is_on_the_page() -> None:
    unmapped = sorted(_modules() - _named())
    assert unmapped == []


def test_the_check_would_catch_a_stale_name() -> None:
    assert not _resolves("eventmem.store.no_such_module")
    assert not _resolves("eventmem.projection.no_such_rule")


def test_the_core_imports_no_framework() -> None:
    """Adapters are optional extras: ``import eventmem`` (the CLI and the integrations
    package too) loads no agent framework, so a store costs no framework's import time and
    works where none is installed."""
    code = (
        "import sys, eventmem, eventmem.cli, eventmem.integrations\n"
        "frameworks = ('langchain', 'langgraph', 'agents', 'pydantic_ai', 'openai',\n"
        "              'starlette', 'uvicorn', 'opentelemetry')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0].startswith(frameworks))\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PAGE.parents[1])
