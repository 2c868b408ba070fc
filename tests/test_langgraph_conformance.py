"""LangGraph's own checkpointer conformance suite (``langgraph-checkpoint-conformance``,
the version the lock pins), run against `EventmemSaver` on both backends: every base
capability and every extended one, each reported as its own test."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

import eventmem

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from eventmem.integrations.langgraph import EventmemSaver

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]


def _report_failures(failures: list[str]) -> str:
    return "; ".join(failures)


@pytest.mark.parametrize("capability", [c.value for c in Capability])
@pytest.mark.reuses_schema
async def test_conformance(target: str, capability: str) -> None:
    async with eventmem.open(target) as store:

        @checkpointer_test(name="EventmemSaver")
        async def saver() -> AsyncGenerator[EventmemSaver, None]:
            yield EventmemSaver(store)

        messages: list[str] = []

        def on_result(cap: str, test: str, passed: bool, error: str | None) -> None:
            if not passed:
                messages.append(f"{test}: {error}")

        report = await validate(
            saver,
            capabilities={capability},
            progress=ProgressCallbacks(on_test_result=on_result),
        )
        result = report.results[capability]
        assert result.detected, f"{capability} is not implemented"
        assert result.passed, _report_failures(messages or list(result.failures))
        assert result.tests_passed > 0
        assert result.tests_failed == 0
        assert (await store.verify()).ok


@pytest.mark.slow
def test_conformance_through_the_blocking_store(tmp_path: object) -> None:
    """The same suite on a saver over ``eventmem.connect`` (its async methods run the
    blocking ones in a worker thread)."""
    import anyio

    with eventmem.connect(str(tmp_path) + "/sync.db") as store:

        @checkpointer_test(name="EventmemSaver over SyncStore")
        async def saver() -> AsyncGenerator[EventmemSaver, None]:
            yield EventmemSaver(store)

        report = anyio.run(validate, saver)
        assert report.passed_all(), report.to_dict()
        assert store.verify().ok
