"""Shared fixtures: offline reference tokenizers for LangChain, stores on real files and
on the real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

import eventmem
import eventmem.tokens
from tests.backends import (
    BACKENDS,
    check_postgres,
    drop_pool,
    drop_target,
    new_target,
    release_target,
    reusable_target,
)

# Bytecode caches on, whatever PYTHONDONTWRITEBYTECODE says: pytest rewrites the asserts of
# every module of its plugins' packages (hypothesis, anyio, ...) and caches the result only
# as bytecode, and the suite starts dozens of Python processes (CLI runs, crash and
# multi-process tests, doc samples). Without caches each process compiles all of that
# again: about 6 s of CPU per process.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The test server need not flush its WAL to disk before each commit returns: every test's
# data is thrown away, and a killed client (the crash tests) loses nothing the server
# acknowledged either way. A store opened with durability="full" still turns it on.
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c synchronous_commit=off".strip()

_DOWNLOAD_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

# Time spent per test file (setup + call + teardown of its tests, added up over the
# processes that ran them), wall-clock and CPU (this process and the processes its tests
# started and waited for), printed at the end of every run so a slowdown shows up in
# review; on a shared machine the CPU column is the steadier one.
_SECONDS_PER_FILE: defaultdict[str, float] = defaultdict(float)
_CPU_PER_FILE: defaultdict[str, float] = defaultdict(float)
_TESTS_PER_FILE: defaultdict[str, int] = defaultdict(int)


def _cpu_seconds() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_CPU_START = pytest.StashKey[float]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    item.stash[_CPU_START] = _cpu_seconds()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # CPU since the previous phase's report: travels with the report to the controller
    now = _cpu_seconds()
    report.user_properties.append(("cpu", now - item.stash[_CPU_START]))
    item.stash[_CPU_START] = now
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_PER_FILE[path] += report.duration
    _CPU_PER_FILE[path] += sum(
        v for k, v in report.user_properties if k == "cpu" and isinstance(v, float)
    )
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _TESTS_PER_FILE[path] += 1


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.postgres_sample(n)``: of a test's PostgreSQL cases the fast loop runs
    one in ``n`` (the rest are marked slow, so the complete run still has every one). For
    wide case tables whose logic does not depend on the backend: every case still runs on
    SQLite in the fast loop, and PostgreSQL still sees a spread of them.

    ``pytestmark = pytest.mark.postgres_sample(n, across="module")``: the same over all
    the PostgreSQL cases of the module's tests, in order, so that of tests that each have
    one PostgreSQL case the fast loop runs one in ``n`` on PostgreSQL (every one on
    SQLite). For modules testing a layer above the store (an integration, the command
    line, input checks), where the backend's own behaviour is the store suite's subject.
    A test's own ``postgres_sample`` takes precedence; cases already slow count for none.

    ``@pytest.mark.postgres_slow``: the test's PostgreSQL case is marked slow, its SQLite
    case stays in the fast loop. For a test that starts processes or waits on the server,
    of a behaviour the backends share.

    ``@pytest.mark.fast_sample(n)``: of a test's cases (on each backend), the fast loop
    runs one in ``n``, the first among them; the rest are marked slow. For case tables
    whose cases take one code path with different inputs, each case costing a subprocess
    or a store of its own."""
    seen: defaultdict[tuple[str, str], int] = defaultdict(int)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        function = item.nodeid.split("[", 1)[0]
        on_postgres = "postgresql" in callspec.params.values()
        if on_postgres and item.get_closest_marker("postgres_slow"):
            item.add_marker(pytest.mark.slow)
        marker = item.get_closest_marker("postgres_sample")
        across = "function" if marker is None else marker.kwargs.get("across", "function")
        if across == "module" and item.get_closest_marker("slow"):
            pass  # already out of the fast loop: counts for no sample
        elif marker is not None and on_postgres:
            key = (item.nodeid.split("::", 1)[0] if across == "module" else function, across)
            if seen[key] % int(marker.args[0]):
                item.add_marker(pytest.mark.slow)
            seen[key] += 1
        marker = item.get_closest_marker("fast_sample")
        if marker is not None and not item.get_closest_marker("slow"):
            key = (function, f"fast_sample {on_postgres}")
            if seen[key] % int(marker.args[0]):
                item.add_marker(pytest.mark.slow)
            seen[key] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_pool()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SECONDS_PER_FILE:
        return
    terminalreporter.section("time per test file")
    terminalreporter.write_line("    wall      cpu  tests")
    for path, seconds in sorted(_SECONDS_PER_FILE.items(), key=lambda item: -item[1]):
        cpu, tests = _CPU_PER_FILE[path], _TESTS_PER_FILE[path]
        terminalreporter.write_line(f"{seconds:7.1f}s {cpu:7.1f}s {tests:5d}  {path}")
    total, cpu = sum(_SECONDS_PER_FILE.values()), sum(_CPU_PER_FILE.values())
    tests = sum(_TESTS_PER_FILE.values())
    terminalreporter.write_line(f"{total:7.1f}s {cpu:7.1f}s {tests:5d}  in all")


@pytest.fixture(scope="session", autouse=True)
def _offline_tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Let tiktoken (and so langchain-openai, the reference) load encodings with no network.

    tiktoken looks for a file named by the SHA-1 of the download address in
    TIKTOKEN_CACHE_DIR; the bundled files are copied there under those names.
    """
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    bundled = Path(eventmem.tokens.__file__).parent / "encodings"
    for name in ("cl100k_base", "o200k_base"):
        key = hashlib.sha1(_DOWNLOAD_URL.format(name).encode()).hexdigest()
        shutil.copyfile(bundled / f"{name}.tiktoken", cache / key)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["TIKTOKEN_CACHE_DIR"]
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = previous


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database file that does not exist yet, in the test's own directory."""
    return tmp_path / "eventmem.db"


@pytest.fixture(scope="session")
def _postgres_server() -> None:
    """The PostgreSQL server the suite runs against: unreachable fails, never skips."""
    check_postgres()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: a test using it (or ``target``/``store``) runs once per backend."""
    if request.param == "postgresql":
        request.getfixturevalue("_postgres_server")
    return str(request.param)


@pytest.fixture(params=["quick", pytest.param("full", marks=pytest.mark.slow)])
def depth(request: pytest.FixtureRequest) -> str:
    """How many examples a property test draws (tests.reference.examples_for): "quick" in
    the fast loop, "full" (marked slow) in the complete run."""
    return str(request.param)


@pytest.fixture
def target(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """Where a new store goes: a SQLite file path, or a PostgreSQL URL with its own schema.

    For a test that also takes ``store`` (which opens the store there at once), or is
    marked ``reuses_schema`` (it opens one there itself), a PostgreSQL schema may be one an
    earlier test left empty (tests.backends.reusable_target).
    """
    if "store" in request.fixturenames or request.node.get_closest_marker("reuses_schema"):
        location = reusable_target(backend, tmp_path)
        yield location
        release_target(location)
    else:
        location = new_target(backend, tmp_path)
        yield location
        drop_target(location)


@pytest.fixture
async def store(target: str) -> AsyncIterator[eventmem.Store]:
    """An open store on ``target`` (each backend in turn), closed after the test."""
    async with eventmem.open(target) as opened:
        yield opened


@pytest.fixture
def anyio_backend() -> str:
    # the store wakes its callers through asyncio (eventmem/store/worker.py)
    return "asyncio"
