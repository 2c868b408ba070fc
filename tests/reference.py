"""What the parity tests share: LangChain's reference token counter, hypothesis settings."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import HealthCheck, settings
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

# Examples that each open a fresh SQLite file under tmp_path.
STORE_EXAMPLES = settings(
    deadline=None,
    database=None,  # keep the source tree clean; failures print their example anyway
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # tmp_path: every example uses a fresh file
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@functools.cache
def chat_openai(model: str) -> Any:
    """The LangChain model whose ``get_num_tokens_from_messages`` is the reference count
    (offline: tests/conftest.py points tiktoken at the bundled encodings)."""
    return ChatOpenAI(model=model, api_key=SecretStr("test"))
