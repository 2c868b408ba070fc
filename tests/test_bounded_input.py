"""Bounded input and values no reader chokes on.

A save may store at most ``max_save_bytes`` (checked before its text is copied or
counted, and exactly once encoded); an import reads its file line by line with the same
bound; a slow custom token counter runs off the event loop; arguments are checked before
anything is created; and a time planted in the database by hand reads as a raw number
instead of crashing every listing of the store.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import eventmem
from eventmem.cli import main
from tests.backends import backend_of, fresh_target, raw_database
from tests.test_hostile_import import TURN, export, forged, session_lines

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_sample(2, across="module")]

SMALL = 4096  # a max_save_bytes that small texts can exceed
_STATE_TABLES = ("events", "sessions", "view_messages")


def _rows(target: str) -> int:
    with raw_database(target) as db:
        return sum(int(db.execute(f"SELECT count(*) FROM {t}")[0][0]) for t in _STATE_TABLES)


# -- max_save_bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("x" * (SMALL + 1), "more characters than bytes allowed"),
        ("😀" * 1100, "4 bytes each in UTF-8"),
        ("\x00" * 1000, "6 bytes each as JSON"),
        ('"' * 2100, "2 bytes each as JSON"),
    ],
    ids=["ascii", "emoji", "nul", "quotes"],
)
async def test_a_save_larger_than_max_save_bytes_is_refused_whole(
    target: str, text: str, why: str
) -> None:
    async with eventmem.open(target, max_save_bytes=SMALL) as store:
        memory = store.token_buffer("s")
        with pytest.raises(eventmem.InputTooLargeError, match="max_save_bytes"):
            await memory.asave_context({"input": text}, {"output": "y"})
        assert _rows(target) == 0
        await memory.asave_context({"input": "x" * 3000}, {"output": "y"})  # within it
        assert [m.content for m in await store.messages("s")] == ["x" * 3000, "y"]


async def test_a_save_whose_steps_together_are_too_large_writes_none_of_them(
    target: str,
) -> None:
    step = ({"tool": "t", "tool_input": {}, "log": "", "message_log": []}, "o" * 700)
    async with eventmem.open(target, max_save_bytes=SMALL) as store:
        agent = store.agent_token_buffer("s")
        with pytest.raises(eventmem.InputTooLargeError):
            await agent.asave_context(
                {"input": "go"}, {"output": "done", "intermediate_steps": [step] * 4}
            )
        assert _rows(target) == 0
        with pytest.raises(eventmem.InputTooLargeError, match="the observation"):
            await agent.arecord_step(step[0], "o" * (SMALL + 1))
        assert _rows(target) == 0
        await agent.asave_context({"input": "go"}, {"output": "done", "intermediate_steps": [step]})
        assert await store.count_events() == 2


async def test_a_save_too_large_is_refused_alone_in_its_batch(target: str) -> None:
    """Concurrent saves commit together; the one too large fails, the others commit."""
    outcomes: dict[str, BaseException | None] = {}
    async with eventmem.open(target, max_save_bytes=SMALL) as store:

        async def save(session: str, text: str) -> None:
            try:
                await store.token_buffer(session).asave_context({"input": text}, {"output": "y"})
                outcomes[session] = None
            except eventmem.EventmemError as e:
                outcomes[session] = e

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(save, "fine-1", "x")
            tasks.start_soon(save, "large", "😀" * 1100)  # passes the cheap check
            tasks.start_soon(save, "fine-2", "z")
        assert isinstance(outcomes.pop("large"), eventmem.InputTooLargeError)
        assert outcomes == {"fine-1": None, "fine-2": None}
        assert sorted(await store.sessions()) == ["fine-1", "fine-2"]
        assert (await store.verify()).ok


@pytest.mark.parametrize("value", [0, 1023, -1, 1.5, "16MiB", True, None, 2**63])
async def test_max_save_bytes_must_be_a_byte_count(target: str, value: Any) -> None:
    with pytest.raises(eventmem.InvalidInputError, match="max_save_bytes"):
        eventmem.open(target, max_save_bytes=value)


async def test_max_save_bytes_is_reported_and_defaults_to_16_mib(target: str) -> None:
    async with eventmem.open(target) as store:
        assert store.max_save_bytes == 16 * 2**20
    async with eventmem.open(target, max_save_bytes=2**30) as store:
        assert store.max_save_bytes == 2**30


def test_the_blocking_store_takes_max_save_bytes(db_path: Path) -> None:
    with eventmem.connect(db_path, max_save_bytes=SMALL) as store:
        memory = store.token_buffer("s")
        with pytest.raises(eventmem.InputTooLargeError):
            memory.save_context({"input": "x" * (SMALL + 1)}, {"output": "y"})
        assert store.sessions() == []


@pytest.mark.slow
async def test_the_default_limit_refuses_17_mb_and_a_raised_one_stores_it(target: str) -> None:
    text = "lorem ipsum " * 1_500_000  # 18 MB
    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.InputTooLargeError):
            await store.token_buffer("s").asave_context({"input": text}, {"output": "y"})
        assert _rows(target) == 0
    async with eventmem.open(target, max_save_bytes=32 * 2**20) as store:
        memory = store.token_buffer("s", max_token_limit=10**9)
        await memory.asave_context({"input": text}, {"output": "y"})
        assert [m.content for m in await store.messages("s")] == [text, "y"]
        lines = [line async for line in store.export()]
    with fresh_target(backend_of(target), Path(target).parent) as copy_target:
        async with eventmem.open(copy_target) as copy:
            with pytest.raises(eventmem.ImportRefusedError, match="max_save_bytes"):
                await copy.import_events(lines)
        async with eventmem.open(copy_target, max_save_bytes=32 * 2**20) as copy:
            assert await copy.import_events(lines) == (1, 1)


# -- slow custom counters run off the event loop -------------------------------------------


class _SlowCounter:
    """A TokenCounter object that takes its time, as a remote tokenizer would."""

    name = "slow"
    overhead = 0

    def count_message(self, message: eventmem.Message) -> int:
        time.sleep(0.2)
        return len(message.content)


def _slow_callable(messages: list[eventmem.Message]) -> int:
    if messages:
        time.sleep(0.2)
    return sum(len(m.content) for m in messages)


@pytest.mark.fast_sample(2)
@pytest.mark.parametrize("counter", [_SlowCounter(), _slow_callable], ids=["object", "callable"])
async def test_a_slow_custom_counter_does_not_stall_the_event_loop(
    db_path: Path, counter: Any
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with eventmem.open(db_path) as store:
        chat = store.token_buffer("chat", token_counter=counter)
        agent = store.agent_token_buffer("agent", token_counter=counter)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            await chat.asave_context({"input": "x"}, {"output": "y"})  # two counts
            during_save = ticks
            await agent.arecord_step({"tool": "t", "tool_input": {}, "log": "l"}, "obs")
            tasks.cancel_scope.cancel()
        # The loop kept turning while the counter slept (blocking it would give 0-1).
        assert during_save >= 5
        assert ticks > during_save
        assert [m.content for m in await store.messages("chat")] == ["x", "y"]


# -- arguments are checked before anything is created ------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("busy_timeout", math.nan),
        ("busy_timeout", math.inf),
        ("busy_timeout", -math.inf),
        ("busy_timeout", -1),
        ("busy_timeout", 10**10),
        ("busy_timeout", "30"),
        ("cache_sessions", math.nan),
        ("cache_sessions", -1),
        ("create", "no"),
        ("durability", "fast"),
    ],
)
def test_bad_open_arguments_are_refused_before_a_file_exists(
    tmp_path: Path, name: str, value: Any
) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(eventmem.InvalidInputError, match=name):
        eventmem.open(path, **{name: value})
    if name != "cache_sessions":  # the blocking store takes the others too
        with pytest.raises(eventmem.InvalidInputError, match=name):
            eventmem.connect(path, **{name: value})
    assert list(tmp_path.iterdir()) == []


async def test_the_longest_busy_timeout_is_accepted(target: str) -> None:
    async with eventmem.open(target, busy_timeout=2_147_483) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})


# -- an import reads line by line, each line bounded ----------------------------------------


async def test_import_reads_its_lines_one_at_a_time(target: str) -> None:
    """A refusal stops the reading: the lines after the bad one are never pulled."""
    pulled = 0
    lines = forged(TURN, TURN)

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for line in [lines[0], b"{not json", *lines[1:], *([lines[1]] * 10_000)]:
            pulled += 1
            yield line

    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.ImportRefusedError, match="line 2"):
            await store.import_events(source())
    assert pulled == 3  # the header, the bad line, the line that showed it was not the end


async def test_an_import_is_written_in_chunks_and_rolled_back_whole(target: str) -> None:
    """2,500 good events (inserted in several statements) then a bad one: nothing stays."""
    good = session_lines([TURN] * 2500)
    bad = session_lines([TURN], start=2502)  # a gap
    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.ImportRefusedError, match=r"line 2502.*missing_event"):
            await store.import_events(export(*good, *bad))
        assert _rows(target) == 0
        assert await store.import_events(export(*good)) == (1, 2500)
        assert (await store.verify()).ok


def _sqlite_bytes(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.parent.iterdir())
        if p.name.startswith(path.name)
    }


@pytest.mark.parametrize(
    "lines",
    [
        export(*session_lines([TURN] * 1500), b"{not json"),
        export(*session_lines([TURN] * 3), *session_lines([TURN], session="existing")),
        [b'{"format":"eventmem-export","version":2}'],
        forged(TURN)[:-1],
    ],
    ids=["bad line after 1500 events", "existing session", "newer version", "cut short"],
)
async def test_a_refused_import_leaves_the_sqlite_file_byte_for_byte(
    db_path: Path, lines: list[bytes]
) -> None:
    async with eventmem.open(db_path) as store:
        await store.token_buffer("existing").asave_context({"input": "x"}, {"output": "y"})
    before = _sqlite_bytes(db_path)
    async with eventmem.open(db_path) as store:
        with pytest.raises(eventmem.ImportRefusedError):
            await store.import_events(lines)
    assert _sqlite_bytes(db_path) == before


def test_cli_import_of_dev_zero_is_refused_without_reading_it_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "x.db"
    assert main(["import", str(db), "/dev/zero"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eventmem: error: line 1 is longer than")
    assert not db.exists()  # a refused import leaves no new file


def test_cli_import_takes_max_save_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.jsonl"
    text = b"x" * 5000
    big.write_bytes(b"\n".join(forged(TURN.replace(b'"content":"hi"', b'"content":"%s"' % text))))
    db = tmp_path / "x.db"
    assert main(["import", str(db), str(big), "--max-save-bytes", "2048"]) == 1
    assert "more than a save may store" in capsys.readouterr().err
    assert main(["import", str(db), str(big), "--max-save-bytes", "8192"]) == 0
    assert main(["import", str(tmp_path / "y.db"), str(big), "--max-save-bytes", "10"]) == 2
    assert "max_save_bytes must be an int >= 1024" in capsys.readouterr().err


@pytest.mark.slow
async def test_a_100_mb_line_is_refused_before_it_is_decoded(target: str) -> None:
    line = b'{"session_id":"' + b"x" * 100 * 2**20 + b'"}'
    async with eventmem.open(target) as store:
        with pytest.raises(eventmem.ImportRefusedError, match="line 2 is longer than"):
            await store.import_events([forged(TURN)[0], line])
        assert _rows(target) == 0


# -- a time planted by hand reads as a raw number ------------------------------------------


async def test_out_of_range_times_in_the_database_read_without_crashing(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with eventmem.open(target) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    with raw_database(target) as db:
        db.allow_tampering()
        db.execute("UPDATE events SET recorded_at = ?", (10**18,))
        db.execute("UPDATE sessions SET created_at = ?", (-(10**17),))
        db.restore_triggers()
    async with eventmem.open(target) as store:
        [summary] = await store.session_summaries()
        assert (summary.created_at, summary.last_activity) == (-(10**17), 10**18)
        stats = await store.stats()
        assert (stats.first_event, stats.last_event) == (10**18, 10**18)
        [event] = [e async for e in store.events("s")]
        assert event.recorded_at_us == 10**18
        assert event.recorded_at == datetime.max.replace(tzinfo=event.recorded_at.tzinfo)
        assert not (await store.verify()).ok  # the hash covers the time: the edit shows
    capsys.readouterr()

    async def cli(*args: str) -> str:
        assert await anyio.to_thread.run_sync(main, list(args)) == 0
        return capsys.readouterr().out

    assert str(10**18) in await cli("sessions", target)
    assert msgspec.json.decode(await cli("sessions", target, "--json"))["created_at"] == -(10**17)
    assert str(10**18) in await cli("log", target, "s")
    assert msgspec.json.decode(await cli("log", target, "s", "--json"))["recorded_at"] == 10**18
    assert str(10**18) in await cli("stats", target)
    assert msgspec.json.decode(await cli("stats", target, "--json"))["last_event"] == 10**18


async def test_a_time_sqlite_kept_as_real_reads_as_a_number(db_path: Path) -> None:
    async with eventmem.open(db_path) as store:
        await store.token_buffer("s").asave_context({"input": "x"}, {"output": "y"})
    with raw_database(db_path) as db:
        db.allow_tampering()
        db.execute("UPDATE events SET recorded_at = 1e19")  # beyond SQLite's integers
        db.restore_triggers()
    async with eventmem.open(db_path) as store:
        [summary] = await store.session_summaries()
        assert summary.last_activity == 10**19
        assert (await store.stats()).last_event == 10**19
