"""A store for the viewer's tests and screenshots: the CLI's sample sessions, a general
history with tool calls, a pin and a pop, and hostile text."""

from __future__ import annotations

import json

import eventmem
from tests.sample_sessions import save_samples

HOSTILE = "<script>alert('owned')</script> & \"quotes\""
"""Text in a message of the ``hostile`` session: shown as text, never run."""


async def fill_viewer_store(store: eventmem.Store) -> None:
    """Save the sample sessions, ``tools`` (a history whose calls and results get
    pruned, then a pop) and ``hostile`` into ``store``."""
    await save_samples(store)
    tools = store.history("tools", max_tokens=220)
    await tools.append([{"role": "system", "content": "You are a travel assistant."}])
    for i in range(6):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "weather", "arguments": json.dumps({"city": f"City {i}"})},
        }
        await tools.append(
            [
                {"role": "user", "content": f"What is the weather in City {i}?"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": f"call_{i}", "content": f"sunny, {20 + i} C"},
                {"role": "assistant", "content": f"It is sunny in City {i}, {20 + i} C."},
            ]
        )
    await tools.pop(1)
    hostile = store.token_buffer("hostile <b>id</b>", max_token_limit=500)
    await hostile.asave_context({"input": HOSTILE}, {"output": "I show it as text."})
