"""What the parity tests share: LangChain's reference token counter, hypothesis settings."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import HealthCheck, settings
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

# Examples that each open a fresh store (a SQLite file under tmp_path, or a schema).
STORE_EXAMPLES = settings(
    deadline=None,
    database=None,  # keep the source tree clean; failures print their example anyway
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # tmp_path: every example uses a fresh store
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@functools.cache
def chat_openai(model: str) -> Any:
    """The LangChain model whose ``get_num_tokens_from_messages`` is the reference count
    (offline: tests/conftest.py points tiktoken at the bundled encodings)."""
    return ChatOpenAI(model=model, api_key=SecretStr("test"))


# A property test that takes the ``depth`` fixture (tests/conftest.py) runs twice: "quick"
# draws this share of its examples (at least QUICK_MINIMUM) and is part of the fast loop;
# "full" draws them all and is marked slow.
QUICK_SHARE = 20
QUICK_MINIMUM = 3


def _at_depth(depth: str, count: int) -> int:
    return max(QUICK_MINIMUM, count // QUICK_SHARE) if depth == "quick" else count


def examples_for(backend: str, depth: str, *, sqlite: int, postgresql: int) -> settings:
    """:data:`STORE_EXAMPLES` with a count per backend and depth. The logic under test is
    the same on both backends; a PostgreSQL example costs several times more (a schema
    created and dropped, network round trips), so its property runs draw fewer examples."""
    count = sqlite if backend == "sqlite" else postgresql
    return settings(STORE_EXAMPLES, max_examples=_at_depth(depth, count))


def examples(depth: str, count: int) -> settings:
    """For a property test with no store: ``count`` examples at the full depth."""
    return settings(deadline=None, max_examples=_at_depth(depth, count))
