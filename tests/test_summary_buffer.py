"""The summary buffer beyond parity: its events, durability, failures and concurrency.

Every test runs on both backends. Parity with LangChain's class is
tests/test_parity_summary_buffer.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import eventmem
from eventmem._export_format import ExportLine, export_line
from eventmem.events import GENESIS_HASH, decode_event, encode_event
from tests.backends import fresh_target, raw_database, rehash
from tests.summarizers import answer_for, fake_chat_openai

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]

EXCHANGES = [
    ({"input": f"question {n}: " + "words " * n}, {"output": f"answer {n} " + "more " * n})
    for n in range(10)
]


class Counting:
    """A plain summariser function that counts its calls (and may refuse to answer)."""

    def __init__(self, fail: BaseException | None = None, answer: Any = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.answer = answer

    def __call__(self, prompt: str) -> Any:
        self.calls.append(prompt)
        if self.fail is not None:
            raise self.fail
        return answer_for(prompt) if self.answer is None else self.answer


async def _fill(memory: eventmem.SummaryBufferMemory, count: int = len(EXCHANGES)) -> None:
    for inputs, outputs in EXCHANGES[:count]:
        await memory.asave_context(inputs, outputs)


async def test_each_summary_is_an_event_naming_what_it_covers(target: str) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=fake_chat_openai("gpt-4o"), max_token_limit=60)
        await _fill(memory)
        events = [e async for e in store.events("s")]
        by_position = {e.position: e for e in events}
        summaries = [e for e in events if isinstance(e.data, eventmem.SummaryRecorded)]
        assert len(summaries) >= 4
        previous = 0
        for stored in summaries:
            event = stored.data
            assert isinstance(event, eventmem.SummaryRecorded)
            turn = by_position[stored.position - 1]
            assert isinstance(turn.data, eventmem.TurnSaved)  # right after its turn
            assert event.previous == previous
            previous = stored.position
            assert event.model == "FakeChatOpenAI:gpt-4o"
            assert len(event.prompt_sha256) == 64
            # the hash range names the events holding the first and last pruned message
            assert by_position[event.first_position].hash == event.first_hash
            assert by_position[event.last_position].hash == event.last_hash
            assert event.first_position <= event.last_position <= stored.position - 1
            assert event.end_seq > event.first_seq
        # The summarised messages stay in the log: every turn still holds its texts.
        turns = [e.data for e in events if isinstance(e.data, eventmem.TurnSaved)]
        assert [(t.messages[0].content, t.messages[1].content) for t in turns] == [
            (i["input"], o["output"]) for i, o in EXCHANGES
        ]
        # Consecutive summaries cover consecutive seqs from 0: nothing skipped or twice.
        ranges = [(e.data.first_seq, e.data.end_seq) for e in summaries]  # type: ignore[union-attr]
        assert ranges[0][0] == 0
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert (await store.verify()).ok


async def test_reopening_gives_the_same_buffer_and_summary_without_the_model(target: str) -> None:
    llm = Counting()
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=llm, max_token_limit=50, return_messages=True)
        await _fill(memory)
        before = await memory.aload_memory_variables({})
        summary = await memory.amoving_summary_buffer()
        calls = len(llm.calls)
    assert summary
    assert calls >= 3
    never = Counting(fail=AssertionError("the model was asked on a load"))
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=never, max_token_limit=50, return_messages=True)
        assert await memory.aload_memory_variables({}) == before
        assert await memory.amoving_summary_buffer() == summary
        assert (await memory.amessages())[0] == eventmem.Message(role="system", content=summary)
        assert await store.rebuild() == 1  # the fold gives the same projection
        assert await memory.aload_memory_variables({}) == before
        assert (await store.verify()).ok
    assert never.calls == []


async def test_a_summary_survives_export_and_import(
    backend: str, target: str, tmp_path: Any
) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory)
        lines = [line async for line in store.export()]
        expected = await memory.aload_memory_variables({})
    with fresh_target(backend, tmp_path) as copy:
        async with eventmem.open(copy) as store:
            assert await store.import_events(lines) == (1, len(lines) - 2)
            memory = store.summary_buffer("s", llm=Counting(fail=AssertionError()))
            memory.max_token_limit = 50
            assert await memory.aload_memory_variables({}) == expected


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize(
    "failure",
    [RuntimeError("rate limited"), TimeoutError(), ValueError("bad request")],
    ids=["runtime", "timeout", "value"],
)
async def test_a_model_that_raises_writes_nothing(target: str, failure: Exception) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        version = await store.version("s")
        loaded = await memory.aload_memory_variables({})
        summary = await memory.amoving_summary_buffer()
        failing = store.summary_buffer("s", llm=Counting(fail=failure), max_token_limit=50)
        with pytest.raises(eventmem.SummarizerError) as raised:
            await failing.asave_context(*EXCHANGES[5])
        assert raised.value.__cause__ is failure
        assert await store.version("s") == version
        assert await memory.aload_memory_variables({}) == loaded
        assert await memory.amoving_summary_buffer() == summary
        assert (await store.verify()).ok


@pytest.mark.postgres_sample(2)
@pytest.mark.parametrize("answer", [None, 42, b"bytes", {"text": "x"}], ids=repr)
async def test_a_model_that_answers_no_text_writes_nothing(target: str, answer: Any) -> None:
    class Answers:
        content = answer

    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=lambda prompt: Answers(), max_token_limit=20)
        await memory.asave_context({"input": "hi"}, {"output": "hello"})  # fits: no summary
        assert await store.version("s") == 1
        with pytest.raises(eventmem.SummarizerError, match="not text"):
            await memory.asave_context(*EXCHANGES[6])
        assert await store.version("s") == 1


async def test_a_save_that_prunes_nothing_never_asks_the_model(target: str) -> None:
    async with eventmem.open(target) as store:
        llm = Counting(fail=AssertionError("asked"))
        memory = store.summary_buffer("s", llm=llm, max_token_limit=10_000)
        await _fill(memory)
        assert llm.calls == []
        assert await memory.amoving_summary_buffer() == ""
        assert [e.kind async for e in store.events("s")] == ["turn"] * len(EXCHANGES)


async def test_every_kind_of_model_is_called(target: str) -> None:
    """A LangChain model (ainvoke), an async function, a blocking function (run in a
    worker thread) and an object whose ``__call__`` is async: the same summaries."""

    async def async_function(prompt: str) -> str:
        return answer_for(prompt)

    class AsyncCallable:
        async def __call__(self, prompt: str) -> str:
            return answer_for(prompt)

    def blocking(prompt: str) -> str:
        return answer_for(prompt)

    results = []
    for n, llm in enumerate(
        [fake_chat_openai("gpt-4o"), async_function, AsyncCallable(), blocking]
    ):
        async with eventmem.open(target) as store:
            memory = store.summary_buffer(f"s{n}", llm=llm, max_token_limit=40)
            await _fill(memory, 6)
            results.append(await memory.amoving_summary_buffer())
            events = [e.data async for e in store.events(f"s{n}")]
            names = {e.model for e in events if isinstance(e, eventmem.SummaryRecorded)}
            assert len(names) == 1
    assert results[0]
    assert len(set(results)) == 1
    assert names == {"test_every_kind_of_model_is_called.<locals>.blocking"}


async def test_the_model_is_called_outside_any_transaction(target: str) -> None:
    """While the model summarises, another connection writes the same session (its
    locks are free); the save then sees it was overtaken, plans again, asks again, and
    both saves are in the log in order."""
    async with eventmem.open(target) as store, eventmem.open(target, busy_timeout=1) as other:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        rival = other.summary_buffer("s", llm=Counting(), max_token_limit=50)
        prompts: list[str] = []

        async def summarise(prompt: str) -> str:
            prompts.append(prompt)
            if len(prompts) == 1:  # the first time: another save gets in first
                await rival.asave_context({"input": "rival"}, {"output": "got in first"})
            return answer_for(prompt)

        memory.llm = summarise
        await memory.asave_context(*EXCHANGES[4])
        assert len(prompts) == 2
        assert prompts[0] != prompts[1]
        turns = [e.data async for e in store.events("s") if isinstance(e.data, eventmem.TurnSaved)]
        assert [t.messages[0].content for t in turns[-2:]] == ["rival", EXCHANGES[4][0]["input"]]
        assert (await store.verify()).ok


async def test_expected_version_refuses_before_asking_the_model(target: str) -> None:
    async with eventmem.open(target) as store:
        llm = Counting()
        memory = store.summary_buffer("s", llm=llm, max_token_limit=50)
        await _fill(memory, 4)
        calls, version = len(llm.calls), await store.version("s")
        with pytest.raises(eventmem.ConcurrencyError):
            await memory.asave_context(*EXCHANGES[4], expected_version=version - 1)
        assert len(llm.calls) == calls
        assert await store.version("s") == version
        await memory.asave_context(*EXCHANGES[4], expected_version=version)
        assert await store.version("s") > version


async def test_a_summary_overtaken_with_expected_version_is_refused(target: str) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        version = await store.version("s")
        writer = store.token_buffer("s", max_token_limit=50)

        async def summarise(prompt: str) -> str:
            await writer.asave_context({"input": "meanwhile"}, {"output": "another save"})
            return answer_for(prompt)

        memory.llm = summarise
        with pytest.raises(eventmem.ConcurrencyError):
            await memory.asave_context(*EXCHANGES[4], expected_version=version)
        assert await store.version("s") == version + 1  # only the other save


async def test_clear_forgets_the_summary_and_keeps_the_log(target: str) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 6)
        assert await memory.amoving_summary_buffer()
        count = await store.count_events()
        await memory.aclear()
        assert await memory.amoving_summary_buffer() == ""
        assert await memory.aload_memory_variables({}) == {"history": ""}
        assert await store.count_events() == count + 1
        await _fill(memory, 6)  # a new summary starts from nothing
        events = [e async for e in store.events("s")]
        first_after = next(
            e.data for e in events[count + 1 :] if isinstance(e.data, eventmem.SummaryRecorded)
        )
        assert first_after.previous == 0


async def test_bad_options_are_refused_before_anything_is_written(target: str) -> None:
    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.InvalidInputError, match="llm"):
            store.summary_buffer("s")
        with pytest.raises(eventmem.InvalidInputError, match="llm"):
            store.summary_buffer("s", llm="gpt-4o")
        with pytest.raises(ValueError, match="unexpected prompt input variables"):
            store.summary_buffer("s", llm=Counting(), prompt="Summarise {lines}")
        with pytest.raises(eventmem.InvalidInputError, match="prompt"):
            store.summary_buffer("s", llm=Counting(), prompt=42)
        with pytest.raises(eventmem.InvalidInputError, match="summary_role"):
            store.summary_buffer("s", llm=Counting(), summary_role="tool")
        with pytest.raises(eventmem.InvalidInputError, match="llm_name"):
            store.summary_buffer("s", llm=Counting(), llm_name="")
        assert await store.count_events() == 0


# --- forged logs: a summary that does not cover what its turn pruned ------------------


def _rechained(lines: list[bytes], change: Callable[[Any], Any]) -> list[bytes]:
    """The export with ``change`` applied to each summary event and the chain recomputed,
    so only the summary's content can be wrong."""
    header, *events, end = lines
    out, previous = [header], dict[str, bytes]()
    for raw in events:
        entry = msgspec.json.decode(raw, type=ExportLine)
        event = decode_event(bytes(entry.data))
        if isinstance(event, eventmem.SummaryRecorded):
            event = change(event)
        data = encode_event(event)
        digest, content = rehash(
            previous.get(entry.session_id, GENESIS_HASH),
            entry.session_id,
            entry.position,
            entry.recorded_at,
            data,
            entry.sha256 is not None,
        )
        out.append(
            export_line(
                entry.session_id,
                entry.position,
                entry.recorded_at,
                entry.kind,
                data,
                digest,
                content,
            )
            + b"\n"
        )
        previous[entry.session_id] = digest
    return [*out, end]


FORGERIES: dict[str, Callable[[Any], Any]] = {
    "range-short": lambda e: msgspec.structs.replace(e, end_seq=e.end_seq - 1),
    "range-shifted": lambda e: msgspec.structs.replace(
        e, first_seq=e.first_seq + 1, end_seq=e.end_seq + 1
    ),
    "first-position": lambda e: msgspec.structs.replace(e, first_position=e.first_position + 1),
    "last-hash": lambda e: msgspec.structs.replace(e, last_hash="0" * 64),
    "previous": lambda e: msgspec.structs.replace(e, previous=e.previous + 1),
}


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_forged_summary_is_refused_on_import(
    backend: str, target: str, tmp_path: Any, forgery: Callable[[Any], Any]
) -> None:
    async with eventmem.open(target) as store:
        await _fill(store.summary_buffer("s", llm=Counting(), max_token_limit=50))
        lines = [line async for line in store.export()]
    with fresh_target(backend, tmp_path) as copy:
        async with eventmem.open(copy) as store:
            assert await store.import_events(_rechained(lines, lambda e: e)) != (0, 0)
    with fresh_target(backend, tmp_path) as copy:
        async with eventmem.open(copy) as store:
            with pytest.raises(eventmem.ImportRefusedError, match="summary"):
                await store.import_events(_rechained(lines, forgery))
            assert await store.count_events() == 0


@pytest.mark.postgres_sample(3)
@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
async def test_verify_finds_a_summary_rewritten_in_the_database(
    target: str, forgery: Callable[[Any], Any]
) -> None:
    """A summary edited in place and the chain recomputed from it, as someone who knows
    the hash rule would: the chain checks out, the summary's range does not."""
    async with eventmem.open(target) as store:
        await _fill(store.summary_buffer("s", llm=Counting(), max_token_limit=50))
        events = [e async for e in store.events("s")]
    target_position = next(e.position for e in events if e.kind == "summary")
    with raw_database(target) as raw:
        raw.allow_tampering()
        previous = raw.rechain(
            "s",
            lambda position, data: (
                encode_event(forgery(decode_event(data))) if position == target_position else data
            ),
        )
        raw.execute("UPDATE sessions SET head_hash = ? WHERE session_id = 's'", (previous,))
        raw.restore_triggers()
    async with eventmem.open(target) as store:
        for processes in (1, 2):  # folded here, or by other processes (SQLite)
            report = await store.verify(processes=processes)
            assert [(p.session_id, p.position, p.kind) for p in report.problems] == [
                ("s", target_position, "undecodable")
            ]
            assert "summary" in report.problems[0].detail
        with pytest.raises(eventmem.RebuildRefusedError):
            await store.rebuild()


async def test_a_summary_buffer_on_a_general_history_session(target: str) -> None:
    """A history's pinned system message and pops, then summary-buffer saves on the same
    session: every save plans what it then writes, and verify agrees."""
    async with eventmem.open(target) as store:
        history = store.history("s", max_tokens=200)
        await history.append(
            [
                eventmem.Message(role="system", content="You are terse."),
                eventmem.Message(role="human", content="hello " * 10),
                eventmem.Message(role="ai", content="hi " * 10),
            ]
        )
        await history.pop()
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=40)
        await _fill(memory, 5)
        assert await memory.amoving_summary_buffer()
        assert (await store.verify()).ok
        assert await store.rebuild() == 1
        assert (await store.verify()).ok


async def test_a_save_overtaken_at_every_attempt_gives_up(target: str) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        writer = store.token_buffer("s", max_token_limit=50)
        prompts: list[str] = []

        async def summarise(prompt: str) -> str:
            prompts.append(prompt)
            await writer.asave_context({"input": "again"}, {"output": "first again"})
            return answer_for(prompt)

        memory.llm = summarise
        version = await store.version("s")
        with pytest.raises(eventmem.ConcurrencyError):
            await memory.asave_context(*EXCHANGES[4])
        assert len(prompts) == 5  # planned and asked five times, then refused
        assert await store.version("s") == version + 5  # the other saves only
        assert (await store.verify()).ok


async def test_a_save_cancelled_while_the_model_runs_writes_nothing(target: str) -> None:
    import anyio

    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        version = await store.version("s")

        async def never_answers(prompt: str) -> str:
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

        memory.llm = never_answers
        with anyio.move_on_after(0.2) as scope:
            await memory.asave_context(*EXCHANGES[4])
        assert scope.cancelled_caught
        assert await store.version("s") == version
        memory.llm = Counting()
        await memory.asave_context(*EXCHANGES[4])  # the store carries on
        assert await store.version("s") == version + 2
        assert (await store.verify()).ok


async def test_a_read_only_store_refuses_before_asking_the_model(target: str) -> None:
    async with eventmem.open(target) as store:
        memory = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        await _fill(memory, 4)
        expected = await memory.aload_memory_variables({})
    llm = Counting()
    async with eventmem.open(target, read_only=True) as store:
        memory = store.summary_buffer("s", llm=llm, max_token_limit=50)
        assert await memory.aload_memory_variables({}) == expected
        with pytest.raises(eventmem.ReadOnlyStoreError):
            await memory.asave_context(*EXCHANGES[4])
    assert llm.calls == []


async def test_two_memories_of_one_session_see_each_others_summaries(target: str) -> None:
    async with eventmem.open(target) as store, eventmem.open(target) as other:
        first = store.summary_buffer("s", llm=Counting(), max_token_limit=50)
        second = other.summary_buffer("s", llm=Counting(answer="the other one's"))
        second.max_token_limit = 50
        await _fill(first, 4)
        seen = await first.amoving_summary_buffer()
        await second.asave_context(*EXCHANGES[4])
        assert await first.amoving_summary_buffer() == "the other one's" != seen
        assert await first.aload_memory_variables({}) == await second.aload_memory_variables({})
        await second.aclear()
        assert await first.amoving_summary_buffer() == ""
        await first.asave_context(*EXCHANGES[5])
        assert await second.abuffer() == await first.abuffer()


@pytest.mark.parametrize("hot", [1, 2])
async def test_an_import_checks_summaries_across_folds_kept_on_disk(
    backend: str, target: str, tmp_path: Any, hot: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions interleaved line by line, with fewer folds in memory than sessions: a
    fold leaves for disk between a turn and its summary, and comes back to check it."""
    from eventmem.store import importing

    async with eventmem.open(target) as store:
        for name in ("a", "b", "c"):
            await _fill(store.summary_buffer(name, llm=Counting(), max_token_limit=50), 6)
        header, *events, _ = [line async for line in store.export()]
    end = msgspec.json.encode({"end": "eventmem-export", "events": len(events)}) + b"\n"
    monkeypatch.setattr(importing, "_HOT_SESSIONS", hot)
    for lines, refused in (
        (events, False),
        (_rechained([header, *events, end], _FORGERY)[1:-1], True),
    ):
        with fresh_target(backend, tmp_path) as copy:
            async with eventmem.open(copy) as store:
                file = [header, *_interleaved(lines), end]
                if refused:
                    with pytest.raises(eventmem.ImportRefusedError, match="summary names"):
                        await store.import_events(file)
                    assert await store.count_events() == 0
                    continue
                assert await store.import_events(file) == (3, len(events))
                report = await store.verify()
                assert report.ok, report.problems
                for name in ("a", "b", "c"):
                    memory = store.summary_buffer(name, llm=Counting(fail=AssertionError()))
                    assert await memory.amoving_summary_buffer()


def _interleaved(lines: list[bytes]) -> list[bytes]:
    """The sessions' lines taken one from each in turn (each session's in its order)."""
    by_session: dict[str, list[bytes]] = {}
    for raw in lines:
        session = msgspec.json.decode(raw, type=ExportLine).session_id
        by_session.setdefault(session, []).append(raw)
    return [
        line
        for group in itertools.zip_longest(*by_session.values())
        for line in group
        if line is not None
    ]


_FORGERY = FORGERIES["first-position"]  # one only the fold of the pruned positions finds
