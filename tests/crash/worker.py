"""A writer that saves forever and acknowledges each save once it has returned.

Run by the crash harness, which kills it with SIGKILL at a random moment. Every line it
prints names a write that returned to its caller, so the store must contain it.
"""

from __future__ import annotations

import random
import sys

import anyio

import eventmem


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    async with eventmem.open(path) as store:
        chat = store.token_buffer(f"chat-{seed % 3}", max_token_limit=rng.choice([30, 80, 400]))
        agent = store.agent_token_buffer(
            f"agent-{seed % 2}", max_token_limit=rng.choice([60, 300]), prune="pair_safe"
        )
        turn = 0
        while True:
            turn += 1
            tag = f"{seed}-{turn}"
            if rng.random() < 0.5:
                await chat.asave_context({"input": f"q {tag}"}, {"output": f"a {tag}"})
                print(f"turn {chat.session_id} q {tag}", flush=True)
                continue
            steps = []
            for k in range(rng.randrange(4)):
                action = {
                    "tool": "lookup",
                    "tool_input": {"k": k},
                    "log": f"{tag}/{k}",
                    "message_log": [],
                }
                steps.append((action, {"k": k, "text": "x" * rng.randrange(200)}))
            live = rng.randrange(len(steps) + 1)
            for action, observation in steps[:live]:
                await agent.arecord_step(action, observation)
                print(f"step {agent.session_id} {action['log']}", flush=True)
            await agent.asave_context(
                {"input": f"q {tag}"}, {"output": f"a {tag}", "intermediate_steps": steps}
            )
            print(f"turn {agent.session_id} q {tag}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
