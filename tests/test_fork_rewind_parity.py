"""Forks and rewinds against the pure projection, on both backends.

For random histories of token-buffer saves, general-history appends and pops, clears,
rewinds and forks, the fold of a session's events (``eventmem.projection.fold``) must be
what the store serves at every position, and what-if replay must work on forks and
rewound sessions: a rewind replayed under another limit or tokenizer restores the view
the replay had where it goes back to, so the replay equals that of the same history
with the rewound-over events cut out (a line without rewinds, whose replay needs none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from hypothesis import given
from hypothesis import strategies as st

import eventmem
from eventmem import Message, ToolCall
from eventmem.audit import rewrite_for_replay
from eventmem.events import Event, MessagesRetracted, ViewRewound
from eventmem.projection import fold
from eventmem.tokens import resolve_counter
from tests.backends import fresh_target
from tests.reference import examples_for

words = st.lists(st.sampled_from(["alpha", "beta", "gamma", "δέλτα", "📦"]), max_size=8).map(
    " ".join
)


@st.composite
def appended(draw: st.DrawFn) -> list[Message]:
    """One append: plain messages, a system message, or a tool call with its result."""
    kind = draw(st.sampled_from(["plain", "system", "call"]))
    if kind == "system":
        return [Message(role="system", content=draw(words))]
    if kind == "call":
        call_id = f"c{draw(st.integers(0, 99))}"
        return [
            Message(role="ai", content="", tool_calls=(ToolCall(name="t", args={}, id=call_id),)),
            Message(role="tool", content=draw(words), tool_call_id=call_id),
        ]
    roles = st.sampled_from(["human", "ai"])
    return draw(st.lists(st.builds(Message, role=roles, content=words), min_size=1, max_size=3))


picks = st.integers(0, 2**16)  # taken modulo the choices at hand: shrinks to 0
limits = st.sampled_from([0, 20, 60, 200])
bounds = st.sampled_from([None, 30, 80])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), words, words, limits),
        st.tuples(st.just("append"), appended(), bounds),
        st.tuples(st.just("pop"), st.integers(1, 3)),
        st.tuples(st.just("clear")),
        st.tuples(st.just("rewind"), picks),
        st.tuples(st.just("fork"), picks, st.booleans()),
        st.tuples(st.just("switch"), picks),
    ),
    max_size=14,
)


@dataclass
class Lines:
    """Each session's history as a line without rewinds or forks: after each position,
    the events whose fold is the view there (a rewind goes back to the line at its
    target; a fork starts from its parent's)."""

    after: dict[str, list[list[Event]]] = field(default_factory=lambda: {"s": [[]]})

    def version(self, session: str) -> int:
        return len(self.after.get(session, [[]])) - 1

    def wrote(self, session: str, events: list[Event]) -> None:
        line = self.after.setdefault(session, [[]])
        for event in events:
            if isinstance(event, ViewRewound):
                line.append(list(line[event.to]))
            else:
                line.append([*line[-1], event])

    def fork(self, parent: str, child: str, at: int) -> None:
        self.after[child] = [*self.after[parent][: at + 1], list(self.after[parent][at])]


async def play(target: str, run: list[tuple[Any, ...]]) -> None:
    async with eventmem.open(target) as store:
        lines, session = Lines(), "s"
        for op, *args in run:
            before = await store.version(session)
            if op == "save":
                human, ai, limit = args
                memory = store.token_buffer(session, max_token_limit=limit)
                await memory.asave_context({"input": human}, {"output": ai})
            elif op == "append":
                messages, bound = args
                await store.history(session, max_tokens=bound).append(messages)
            elif op == "pop":
                await store.history(session).pop(args[0])
            elif op == "clear":
                await store.history(session).clear()
            elif op == "rewind" and before:
                await store.rewind(session, to=args[0] % (before + 1))
            elif op == "fork" and before:
                child = f"f{len(lines.after)}"
                at = args[0] % (before + 1)
                assert await store.fork(session, child, at=at) == at + 1
                lines.fork(session, child, at)
                session = child if args[1] else session
                continue
            elif op == "switch":
                session = sorted(lines.after)[args[0] % len(lines.after)]
                continue
            lines.wrote(session, [e.data async for e in store.events(session, after=before)])
        for name in lines.after:
            await check_session(store, name, lines)
        report = await store.verify()
        assert report.ok, report.problems


async def check_session(store: eventmem.Store, session: str, lines: Lines) -> None:
    """The fold of the session's events is the store's view at every position, and
    replay, recorded or what-if, is that of its line without rewinds."""
    events = [e.data async for e in store.events(session)]
    assert len(events) == lines.version(session)
    for position in range(len(events) + 1):
        served = await store.messages(session, as_of=position)
        assert fold(events[:position]).messages == served, (session, position)
        assert fold(lines.after[session][position]).messages == served, (session, position)
    assert fold(events).messages == await store.messages(session)
    assert await store.replay(session) == await store.messages(session)
    line = lines.after[session][-1]
    what_ifs: list[tuple[int | None, str | None]] = [(10_000, None), (10_000, "gpt-4")]
    if not any(isinstance(event, MessagesRetracted) for event in events):
        # (a pop replayed where a smaller view holds fewer messages than it took fails)
        what_ifs += [(0, None), (25, None), (None, "gpt-4"), (40, "gpt-4")]
    for limit, model in what_ifs:
        counter = resolve_counter(model) if model is not None else None
        expected = fold(rewrite_for_replay(line, limit, counter)).messages
        assert await store.replay(session, max_token_limit=limit, model=model) == expected


def test_the_fold_of_the_events_is_the_served_view_at_every_position(
    backend: str, depth: str, tmp_path: Path
) -> None:
    @examples_for(backend, depth, sqlite=100, postgresql=40)
    @given(run=operations)
    def example(run: list[tuple[Any, ...]]) -> None:
        with fresh_target(backend, tmp_path) as target:
            anyio.run(play, target, run)

    example()


def test_a_what_if_replay_of_a_rewound_session_replays_the_view_it_goes_back_to(
    backend: str, tmp_path: Path
) -> None:
    """Replayed with another limit or tokenizer, a rewound session is the session that
    never had the events it rewound over (those limits give it another view at the
    rewind's target than the one the rewind recorded)."""

    async def run(target: str) -> None:
        async with eventmem.open(target) as store:
            turns = [(f"question {i} " * 3, "answer " * 3) for i in range(4)]
            for session, kept in (("rewound", turns), ("straight", turns[:2] + turns[3:])):
                memory = store.token_buffer(session, max_token_limit=60)
                for human, ai in kept:
                    if session == "rewound" and human == turns[3][0]:
                        await store.rewind(session, to=2)
                    await memory.asave_context({"input": human}, {"output": ai})
            assert await store.messages("rewound") == await store.messages("straight")
            for limit, model in ((30, None), (None, "gpt-4")):
                replayed = await store.replay("rewound", max_token_limit=limit, model=model)
                straight = await store.replay("straight", max_token_limit=limit, model=model)
                assert replayed == straight
            await store.fork("rewound", "fork", at=5)
            assert await store.replay("fork", max_token_limit=30) == await store.replay(
                "straight", max_token_limit=30
            )

    with fresh_target(backend, tmp_path) as target:
        anyio.run(run, target)
