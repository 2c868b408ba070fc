"""Runs the samples of one document in one namespace, like a reader pasting them in turn
(into ``python -m asyncio`` where a sample uses top-level await).

Imported by the fast docs test; run as a script (the samples as a JSON list on stdin) by
the slow one, in an environment that has only what the page installs.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import sys


def run_samples(sources: list[str]) -> None:
    """Run each sample in turn; the first that raises names itself on stderr."""
    namespace = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for number, source in enumerate(sources, start=1):
            try:
                flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
                code = compile(source, f"<sample {number}>", "exec", flags)
                if code.co_flags & inspect.CO_COROUTINE:
                    loop.run_until_complete(eval(code, namespace))
                else:
                    exec(code, namespace)
            except BaseException as e:
                print(f"sample {number} failed: {type(e).__name__}: {e}", file=sys.stderr)
                raise
    finally:
        loop.close()


if __name__ == "__main__":
    run_samples(json.load(sys.stdin))
