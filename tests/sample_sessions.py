"""Sample sessions the command and timeline tests read: a pruned chat, a cleared chat and
an agent session with live, abandoned and pending steps."""

from __future__ import annotations

from typing import Any

import eventmem

__all__ = ["SAMPLE_SESSIONS", "save_samples"]

SAMPLE_SESSIONS = ("chat", "restart", "agent")


def _question(i: int) -> dict[str, str]:
    return {"input": f"Question number {i}: what is the capital of country {i}?"}


def _answer(i: int) -> dict[str, str]:
    return {"output": f"The capital of country {i} is City {i}."}


def _action(tool: str, i: int) -> dict[str, Any]:
    return {"tool": tool, "tool_input": {"q": i}, "log": f"calling {tool}", "message_log": []}


async def save_samples(store: eventmem.Store) -> None:
    """Save the sample sessions into ``store``."""
    # Three turns under a small limit: the first pruned, the second half pruned.
    chat = store.token_buffer("chat", max_token_limit=60)
    for i in range(3):
        await chat.asave_context(_question(i), _answer(i))
    restart = store.token_buffer("restart", max_token_limit=200)
    await restart.asave_context(_question(7), _answer(7))
    await restart.aclear()
    await restart.asave_context({"input": "Start over, please."}, {"output": "Sure."})
    # An agent: a live step then its turn (with a second step), a step a dead run
    # left behind (abandoned by the next turn), and a live step still pending.
    agent = store.agent_token_buffer("agent", max_token_limit=300)
    found = {"hits": 3, "top": "Lisbon is the capital of Portugal"}
    await agent.arecord_step(_action("search", 1), found)
    steps = [(_action("search", 1), found), (_action("calculator", 2), "42")]
    await agent.asave_context(
        {"input": "Capital of Portugal?"}, {"output": "Lisbon.", "intermediate_steps": steps}
    )
    dead = store.agent_token_buffer("agent", max_token_limit=300)
    await dead.arecord_step(_action("search", 3), "left behind")
    agent = store.agent_token_buffer("agent", max_token_limit=300)
    await agent.asave_context({"input": "And Spain?"}, {"output": "Madrid."})
    await agent.arecord_step(_action("search", 4), "still running")
