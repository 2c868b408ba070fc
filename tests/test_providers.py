"""``verify(provider=...)`` replays every past view and names where a provider's API would
have refused one; the rules themselves (``eventmem.providers``) case by case."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import eventmem
from eventmem.messages import Message, ToolCall
from eventmem.providers import rejection
from tests.test_cli import assert_clean_error, run

pytestmark = pytest.mark.anyio


def human(text: str = "hi") -> Message:
    return Message(role="human", content=text)


def ai(text: str = "ok", *calls: str) -> Message:
    return Message(
        role="ai", content=text, tool_calls=tuple(ToolCall("lookup", {}, c) for c in calls)
    )


def tool(call: str, text: str = "found") -> Message:
    return Message(role="tool", content=text, tool_call_id=call)


SYSTEM = Message(role="system", content="be brief")
FUNCTION = Message(role="function", content="42", name="lookup")

# (view, what openai says, what anthropic says): None accepts, a text is in the reason.
VIEWS = [
    ([human(), ai()], None, None),
    ([SYSTEM, human(), ai("", "c1"), tool("c1"), ai()], None, None),
    ([human(), ai("", "c1", "c2"), tool("c2"), tool("c1"), ai()], None, None),
    ([tool("c1"), ai()], "message 1 is a tool result", "message 1 is a tool result"),
    ([tool("c1"), human()], "message 1 is a tool result", "message 1 is a tool result"),
    ([human(), ai("", "c1")], "no result right after", "no result right after"),
    ([human(), ai("", "c1", "c2"), tool("c1"), ai()], "'c2'", "'c2'"),
    ([human(), ai("", "c1"), human(), tool("c1")], "no result right after", "no result"),
    ([human(), ai("", "c1"), tool("c9")], "'c1' with no result", "'c1' with no result"),
    ([ai(), human()], None, "not the user's"),
    ([SYSTEM, ai(), human()], None, "message 2) is not the user's"),
    ([human(), SYSTEM, ai()], None, "system message after the conversation started"),
    ([human(), ai(""), human()], None, "message 2 is empty"),
    ([human(), ai(), FUNCTION], None, "function message"),
    ([], None, None),
]


@pytest.mark.parametrize(("view", "openai", "anthropic"), VIEWS)
def test_the_rules(view: list[Message], openai: str | None, anthropic: str | None) -> None:
    for provider, expected in (("openai", openai), ("anthropic", anthropic)):
        found = rejection(view, provider)  # type: ignore[arg-type]
        if expected is None:
            assert found is None, (provider, found)
        else:
            assert found is not None, provider
            assert expected in found, (provider, found)


async def _agent_session(store: eventmem.Store, prune: str) -> None:
    history = store.history("agent", max_tokens=170, prune=prune)  # type: ignore[arg-type]
    await history.append([human("what is the weather in Lisbon today, and tomorrow?")])
    for i in range(4):
        # a long result after a short call: pruning oldest first can drop the call alone
        result = tool(f"c{i}", " ".join(f"reading-{i}-{k}" for k in range(12)))
        await history.append([ai("", f"c{i}"), result, ai(f"sunny {i}")])
        await history.append([human(f"and then {i}?")])


async def test_langchain_pruning_that_orphans_results_is_found(store: eventmem.Store) -> None:
    await _agent_session(store, "langchain")
    report = await store.verify(provider="openai")
    found = [(p.session_id, p.kind) for p in report.problems]
    assert found
    assert set(found) == {("agent", "provider_rejects")}
    first = report.problems[0]
    # exactly the first position whose view the rule refuses, replayed independently
    for position in range(1, first.position):
        assert rejection(await store.messages("agent", as_of=position), "openai") is None
    assert rejection(await store.messages("agent", as_of=first.position), "openai") is not None
    assert "openai would refuse the view after this event" in first.detail


async def test_pair_safe_views_are_always_accepted(store: eventmem.Store) -> None:
    await _agent_session(store, "pair_safe")
    assert (await store.verify(provider="openai")).ok
    assert (await store.verify()).ok


async def test_anthropic_refuses_a_view_that_starts_with_the_assistant(
    store: eventmem.Store,
) -> None:
    memory = store.token_buffer("chat", max_token_limit=40)
    for i in range(6):
        await memory.asave_context(
            {"input": f"question {i} with a few words"}, {"output": f"answer {i} is long"}
        )
    openai, anthropic = (
        await store.verify(provider="openai"),
        await store.verify(provider="anthropic"),
    )
    assert openai.ok
    kinds = {(p.session_id, p.kind) for p in anthropic.problems}
    assert kinds == {("chat", "provider_rejects")}
    assert all("not the user's" in p.detail for p in anthropic.problems)


async def test_a_run_of_bad_views_is_one_finding(store: eventmem.Store) -> None:
    history = store.history("h")
    await history.append([human(), ai("", "c1")])  # a call whose result is not there yet
    await history.append([human("more")])
    await history.append([human("even more")])
    report = await store.verify(provider="openai")
    assert [(p.position, p.kind) for p in report.problems] == [(1, "provider_rejects")]
    assert "(and the 2 view(s) after it)" in report.problems[0].detail


async def test_an_unknown_provider_is_refused(store: eventmem.Store) -> None:
    with pytest.raises(eventmem.InvalidInputError, match="provider must be one of"):
        await store.verify(provider="gemini")  # type: ignore[arg-type]


def test_the_verify_command_checks_a_provider(db_path: Path, tmp_path: Path) -> None:
    async def populate() -> None:
        async with eventmem.open(db_path) as store:
            await _agent_session(store, "langchain")

    anyio.run(populate)
    assert run("verify", str(db_path), cwd=tmp_path).returncode == 0
    found = run("verify", str(db_path), "--provider", "openai", cwd=tmp_path)
    assert_clean_error(found, 1)
    assert ": provider_rejects: openai would refuse the view after this event" in found.stdout
    bad = run("verify", str(db_path), "--provider", "gemini", cwd=tmp_path)
    assert_clean_error(bad, 2)
