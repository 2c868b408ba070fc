"""Every Python sample in the README and the docs runs, in order, file by file.

A sample preceded by the line ``<!-- not-run: reason -->`` is skipped (say why).

The samples run twice: in the development environment (fast), and, marked slow, each page
in a fresh environment holding only what the page tells its reader to install (the
committed, hash-checked lock of the core or of one extra, plus any package the page names
for one sample), with no network, no API key and no tiktoken cache.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

# Imported here, not first by a sample inside a test: importing it puts a filter of its
# own ahead of pytest's that shows LangChain's deprecation warnings.
import langchain_classic  # noqa: F401
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.samples_runner import run_samples

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(<!-- not-run: [^>]+ -->\n)?```python\n(.*?)```", re.S)

_RUNNER = Path(__file__).with_name("samples_runner.py")


def samples(document: Path) -> list[str]:
    """The document's Python samples that are meant to run."""
    return [code for skip, code in _BLOCK.findall(document.read_text()) if not skip]


WITH_SAMPLES = [d for d in DOCUMENTS if samples(d)]


@pytest.mark.parametrize("document", WITH_SAMPLES, ids=[d.name for d in WITH_SAMPLES])
def test_samples_run(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, in a directory of their own (the slow test below runs them in a
    fresh interpreter and environment)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-samples-never-call-the-network")
    run_samples(samples(document))
    gc.collect()  # a store a sample left open warns now, failing this test


def test_the_export_checker_script_accepts_exports_and_catches_forgeries(
    tmp_path: Path,
) -> None:
    document = (ROOT / "docs" / "export-format.md").read_text()
    script = re.search(
        r"### Checking a file without eventmem\n\n<!--[^>]*-->\n```python\n(.*?)```", document, re.S
    )
    assert script is not None
    (tmp_path / "check.py").write_text(script.group(1))
    cli = [sys.executable, "-m", "eventmem"]
    subprocess.run([*cli, "demo", "--db", "d.db"], cwd=tmp_path, check=True, capture_output=True)
    export = subprocess.run(
        [*cli, "export", "d.db"], cwd=tmp_path, check=True, capture_output=True
    ).stdout
    (tmp_path / "good.jsonl").write_bytes(export)
    (tmp_path / "bad.jsonl").write_bytes(export.replace(b"Lisbon", b"Porto", 1))
    good = subprocess.run(
        [sys.executable, "check.py", "good.jsonl"], cwd=tmp_path, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: 1 sessions")
    bad = subprocess.run(
        [sys.executable, "check.py", "bad.jsonl"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert "hash mismatch" in bad.stderr


def test_the_docs_have_samples() -> None:
    assert sum(len(samples(d)) for d in DOCUMENTS) >= 10


# -- each page in a fresh environment, offline ---------------------------------------------

_PIP_INSTALL = re.compile(r"pip install ([^`\n]*)")
_EVENTMEM = re.compile(r"eventmem(?:\[([a-z,-]+)\])?")  # extras may hold a "-"
_SHELL_OPERATORS = {"&&", "||", ";", "|"}
_PROXIES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


class Needs(NamedTuple):
    """What a page tells its reader to install."""

    extra: str  # "core" (eventmem alone) or the one extra, e.g. "langchain"
    packages: tuple[str, ...]  # third-party packages a sample needs beyond it: "name[extras]"


def needs(document: Path) -> Needs:
    """Read from the page's own ``pip install`` lines, so it cannot drift from them.

    The first ``pip install 'eventmem[extra]'`` before the page's first sample names the
    extra (none: the core). Any other package a ``pip install`` on the page names is one
    that a sample needs beyond it. Installs from a clone (``pip install -e '.[test]'``,
    ``pip install /path/to/eventmem``) set up development, not a reader's environment,
    and ``eventmem[...]`` after the first sample points at another page.
    """
    text = document.read_text()
    first_sample = text.find("```python")
    extra: str | None = None
    packages: list[str] = []
    for match in _PIP_INSTALL.finditer(text):
        for word in shlex.split(match.group(1), comments=True):
            if word in _SHELL_OPERATORS:
                break
            if word.startswith(("-", ".", "/")):
                continue
            named = _EVENTMEM.fullmatch(word)
            if named is None:
                requirement = Requirement(word)
                extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
                packages.append(f"{canonicalize_name(requirement.name)}{extras}")
            elif extra is None and match.start() < first_sample:
                extra = named.group(1) or "core"
    return Needs(extra or "core", tuple(sorted(set(packages))))


def _lock_blocks(lock: Path) -> dict[str, list[str]]:
    """A uv lock's requirements (pin, marker and hashes; comments dropped), by package."""
    blocks: dict[str, list[str]] = {}
    block: list[str] = []
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            block = [line]
            name = canonicalize_name(Requirement(line.rstrip(" \\").split(" ;")[0]).name)
            blocks.setdefault(str(name), []).append("")
        elif line.strip().startswith("--hash"):
            block.append(line)
        else:
            continue
        blocks[str(name)][-1] = "\n".join(block)
    return blocks


def _dependencies(packages: tuple[str, ...]) -> set[str]:
    """``packages`` and everything they depend on, as installed here (from locks/dev.txt)."""
    found: set[str] = set()
    todo = [
        (str(canonicalize_name(r.name)), extra)
        for r in map(Requirement, packages)
        for extra in ("", *sorted(r.extras))
    ]
    seen: set[tuple[str, str]] = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        found.add(name)
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                dependency = str(canonicalize_name(requirement.name))
                todo += [(dependency, e) for e in ("", *sorted(requirement.extras))]
    return found


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout}{result.stderr}"[-4000:]


@pytest.fixture(scope="session")
def offline() -> Iterator[dict[str, str]]:
    """An environment with no network: every proxy is a local port that refuses."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        kept = {
            key: value
            for key, value in os.environ.items()
            if not re.match(r"(?i)(python|pip_|tiktoken|data_gym|openai|langchain|langsmith)", key)
            and "proxy" not in key.lower()
        }
        yield {
            **kept,
            **dict.fromkeys(_PROXIES, proxy),
            **dict.fromkeys((key.lower() for key in _PROXIES), proxy),
        }


@pytest.fixture(scope="session")
def reader_environment(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Needs], Path]:
    """The Python of a fresh venv holding what a page's reader installs (one per Needs)."""
    wheels = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("eventmem-*.whl")
    made: dict[Needs, Path] = {}

    def make(need: Needs) -> Path:
        if need in made:
            return made[need]
        lock = ROOT / "locks" / f"{need.extra}.txt"
        assert lock.is_file(), f"no lock for eventmem[{need.extra}]: add it to scripts/lock"
        venv = tmp_path_factory.mktemp(f"reader-{need.extra}")
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        python = venv / "bin" / "python"
        into = [*pip, "--python", str(python)]
        requirements = ["-r", str(lock)]
        if need.packages:
            # The locked versions (locks/dev.txt) of the packages and of what they need,
            # beyond what the extra's lock already holds.
            # A package the lock holds only under other markers (greenlet, say, that
            # SQLAlchemy needs everywhere for its asyncio module but langchain-classic
            # only on some Pythons) comes in with its dev.txt markers.
            locked = _lock_blocks(ROOT / "locks" / "dev.txt")
            have = _lock_blocks(lock)
            names = sorted(_dependencies(need.packages))
            assert set(names) <= set(locked), set(names) - set(locked)
            more = [b for n in names for b in locked[n] if b not in have.get(n, [])]
            beyond = venv / "beyond.txt"
            beyond.write_text("".join(f"{block}\n" for block in more))
            requirements += ["-r", str(beyond)]
        _run([*into, "install", "-q", "--require-hashes", *requirements])
        _run([*into, "install", "-q", "--no-deps", str(wheel)])
        _run([*into, "check"])
        made[need] = python
        return python

    return make


@pytest.mark.slow
@pytest.mark.parametrize("document", WITH_SAMPLES, ids=[d.name for d in WITH_SAMPLES])
def test_samples_run_with_only_what_the_page_installs_offline(
    document: Path,
    tmp_path: Path,
    reader_environment: Callable[[Needs], Path],
    offline: dict[str, str],
) -> None:
    python = reader_environment(needs(document))
    scratch = tmp_path / "tmp"  # tiktoken's default cache lives under TMPDIR: start empty
    scratch.mkdir()
    env = {**offline, "TMPDIR": str(scratch), "HOME": str(tmp_path)}
    probe = subprocess.run(
        [
            python,
            "-I",
            "-c",
            "import urllib.request; urllib.request.urlopen('https://pypi.org', timeout=20)",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert probe.returncode != 0, "the samples' environment reached the network"
    result = subprocess.run(
        [python, "-I", "-W", "error::ResourceWarning", str(_RUNNER)],
        input=json.dumps(samples(document)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(scratch.iterdir()) == []  # nothing was downloaded into a cache


def test_each_page_says_what_its_samples_need() -> None:
    declared = {d.name: needs(d) for d in WITH_SAMPLES}
    assert declared["README.md"] == Needs("core", ())
    assert declared["getting-started.md"] == Needs("core", ())
    assert declared["postgres.md"] == Needs("postgres", ())
    assert declared["langchain.md"] == Needs(
        "langchain", ("langchain-community", "sqlalchemy[asyncio]")
    )
    assert declared["openai-agents.md"] == Needs("openai-agents", ())
    assert declared["pydantic-ai.md"] == Needs("pydantic-ai", ())
    assert declared["langgraph.md"] == Needs("langgraph", ())
    assert declared["tracing.md"] == Needs("otel", ("opentelemetry-sdk",))
    locked = _lock_blocks(ROOT / "locks" / "dev.txt")
    for need in declared.values():
        assert (ROOT / "locks" / f"{need.extra}.txt").is_file(), need
        assert _dependencies(need.packages) <= set(locked), need


def test_the_guarantees_table_names_tests_that_exist() -> None:
    """docs/operations.md backs each guarantee with tests: every one it names exists."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("## What eventmem guarantees") :]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert len(named) >= 20
    for path, test in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {test}\(", source, re.M), f"{path}::{test}"
