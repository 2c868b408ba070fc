"""The import's reading thread: the lines are checked and folded on one thread while
the connection's thread writes the batches read before. It must report the same error
as reading and writing in turn would (the earliest line at fault), stop reading soon
after a fault found on either side, write nothing then, and hold no message text for
the sessions it folds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import eventmem
from eventmem.audit import SessionFold
from eventmem.store import importing
from tests.test_hostile_import import CLEAR, HEADER, TURN, end, session_lines

pytestmark = pytest.mark.anyio


def _sessions(count: int, turns: int) -> list[bytes]:
    return [
        line for s in range(count) for line in session_lines([TURN] * turns, session=f"s{s:05d}")
    ]


class _Counted:
    """An iterable of lines that counts how many were taken."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            self.taken += 1
            yield line


async def test_many_batches_import_whole(store: eventmem.Store) -> None:
    events = _sessions(300, 12)  # 3,600 events: several batches
    sessions, imported = await store.import_events([HEADER, *events, end(len(events))])
    assert (sessions, imported) == (300, len(events))
    assert (await store.verify()).ok
    assert len(await store.messages("s00299")) == 24


async def test_an_existing_session_is_reported_before_a_later_fault(
    store: eventmem.Store,
) -> None:
    """The writer refuses a session the store has (line 2); the reader meanwhile finds a
    broken chain further on, in the same batch. Reading and writing in turn, line 2's
    error comes first: so it must here."""
    await store.token_buffer("s00000").asave_context({"input": "hi"}, {"output": "yo"})
    events = _sessions(3, 4)
    events[9] = events[9].replace(b'"position":2', b'"position":3')  # line 11: a gap
    before = await store.count_events()
    with pytest.raises(eventmem.ImportRefusedError, match="line 2: session 's00000' already"):
        await store.import_events([HEADER, *events, end(len(events))])
    assert await store.count_events() == before


async def test_a_fault_on_the_writer_side_stops_the_reading_soon(
    store: eventmem.Store,
) -> None:
    await store.token_buffer("s00000").asave_context({"input": "hi"}, {"output": "yo"})
    events = _sessions(400, 50)  # 20,000 events after the refused first one
    lines = _Counted([HEADER, *events, end(len(events))])
    with pytest.raises(eventmem.ImportRefusedError, match="already exists"):
        await store.import_events(lines)
    read_ahead = (importing._AHEAD + 2) * importing._BATCH_ROWS
    assert lines.taken <= read_ahead < len(lines.lines)
    assert await store.count_events() == 1


async def test_a_fault_on_the_reader_side_stops_the_reading_at_once(
    store: eventmem.Store,
) -> None:
    events = _sessions(100, 50)
    events[1234] = events[1234].replace(b'"position":35', b'"position":36')
    lines = _Counted([HEADER, *events, end(len(events))])
    with pytest.raises(eventmem.ImportRefusedError, match="line 1236"):
        await store.import_events(lines)
    assert lines.taken == 1237  # the reader looks one line ahead, for the end line
    assert await store.count_events() == 0


async def test_an_iterable_that_fails_writes_nothing(store: eventmem.Store) -> None:
    events = _sessions(20, 100)

    def failing() -> Iterator[bytes]:
        yield HEADER
        yield from events[:1500]
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="the disk went away"):
        await store.import_events(failing())
    assert await store.count_events() == 0
    assert await store.sessions() == []


async def test_the_folds_of_an_import_hold_no_text(store: eventmem.Store) -> None:
    """The import folds every session of the file at once; its buffers keep the roles
    and tool-call ids the fold reads, not the messages' text."""
    fold = SessionFold("s", skeleton=True)
    for position, line in enumerate(session_lines([TURN, TURN, CLEAR, TURN], "s"), 1):
        data = line[line.index(b'"data":') + 7 : -1]
        digest = bytes.fromhex(line.split(b'"hash":"')[1][:64].decode())
        recorded_at = int(line.split(b'"recorded_at":')[1].split(b",")[0])
        assert fold.add(position, recorded_at, data, digest) is None
    assert [e.message.content for e in fold.buffer.entries] == ["", ""]
    assert [e.message.role for e in fold.buffer.entries] == ["human", "ai"]
    assert [(e.position, e.index) for e in fold.buffer.entries] == [(4, 0), (4, 1)]


@pytest.mark.parametrize("hot", [1, 3])
async def test_folds_beyond_the_hot_ones_wait_on_disk_and_come_back(
    store: eventmem.Store, hot: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More sessions than the import keeps folds of in memory, interleaved so each one
    leaves and comes back many times: the projections are those of a plain fold."""
    monkeypatch.setattr(importing, "_HOT_SESSIONS", hot)
    per_session = [session_lines([TURN, TURN, CLEAR, TURN, TURN], f"s{s}") for s in range(7)]
    events = [line for turn in zip(*per_session, strict=True) for line in turn]
    assert await store.import_events([HEADER, *events, end(len(events))]) == (7, 35)
    report = await store.verify()
    assert report.ok, report.problems
    assert report.sessions == 7
    for s in range(7):
        assert len(await store.messages(f"s{s}")) == 4


def test_a_pickled_fold_folds_on_as_the_original() -> None:
    """What an import keeps on disk: a fold of every kind of buffer, pickled mid-way,
    goes on to the same state as one never pickled."""
    import pickle

    from tests.test_hostile_import import STEP, TURN_WITH_STEP

    datas = [STEP, TURN_WITH_STEP, TURN, CLEAR, TURN, STEP]  # a step held at the end
    lines = session_lines(datas, "p")

    def parts(line: bytes) -> tuple[int, bytes, bytes]:
        data = line[line.index(b'"data":') + 7 : -1]
        digest = bytes.fromhex(line.split(b'"hash":"')[1][:64].decode())
        return int(line.split(b'"recorded_at":')[1].split(b",")[0]), data, digest

    for skeleton in (True, False):
        for cut in range(len(lines) + 1):
            plain, stored = SessionFold("p", skeleton=skeleton), SessionFold("p", skeleton=skeleton)
            for position, line in enumerate(lines, 1):
                if position == cut + 1:
                    stored = pickle.loads(pickle.dumps(stored))
                for fold in (plain, stored):
                    assert fold.add(position, *parts(line)) is None
            assert stored.outcome() == plain.outcome()
            assert vars(stored.buffer) == vars(plain.buffer)  # entries, pending, notes
            fields = [n for n in SessionFold.__slots__ if n not in ("buffer", "checkpoints")]
            assert [getattr(stored, n) for n in fields] == [getattr(plain, n) for n in fields]
            assert stored.index_rows() == plain.index_rows()
