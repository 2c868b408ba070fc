"""eventmem: durable, auditable, token-bounded conversation memory for LLM agents.

Every ``save_context`` is an immutable event in SQLite (or PostgreSQL); the buffer the
model sees is a projection of the log, pruned oldest-first to ``max_token_limit`` tokens.

>>> import eventmem
>>> async def main() -> None:
...     async with eventmem.open("agent.db") as store:
...         memory = store.token_buffer("session-42", max_token_limit=2000)
...         await memory.asave_context({"input": "hi"}, {"output": "hello"})
"""

from eventmem._opening import Opening, open
from eventmem._options import (
    AgentBufferArgs,
    AgentBufferOptions,
    BufferArgs,
    BufferOptions,
    SummaryBufferArgs,
    SummaryBufferOptions,
)
from eventmem.anchors import Anchor, AnchoredHead, AnchorKey
from eventmem.api import Store
from eventmem.audit import Problem, VerifyReport
from eventmem.errors import (
    ClosedError,
    ConcurrencyError,
    CorruptDatabaseError,
    DatabaseLockedError,
    DiskFullError,
    EventmemError,
    ImportRefusedError,
    InputKeyError,
    InputTooLargeError,
    InvalidInputError,
    MigrationError,
    MissingDependencyError,
    MissingKeyError,
    NotAnEventmemDatabaseError,
    NotSerializableError,
    ReadOnlyDatabaseError,
    ReadOnlyStoreError,
    RebuildRefusedError,
    SchemaVersionError,
    SessionExistsError,
    StorageError,
    SummarizerError,
    SyncInAsyncContextError,
    UnknownModelError,
    UnknownSessionError,
    UnprotectedLogError,
)
from eventmem.events import (
    Blob,
    ChannelValue,
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWrite,
    CheckpointWritesSaved,
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    PruneMode,
    SessionForked,
    StepRecorded,
    StoredEvent,
    SummaryRecorded,
    TurnSaved,
    ViewRef,
    ViewRewound,
)
from eventmem.history import History, HistoryArgs, HistoryOptions
from eventmem.memory import AgentTokenBufferMemory, TokenBufferMemory
from eventmem.messages import (
    Content,
    ContentPart,
    InvalidToolCall,
    Message,
    ToolCall,
    buffer_string,
    from_langchain,
    from_openai,
)
from eventmem.providers import Provider
from eventmem.steps import Action
from eventmem.store.base import Durability, Progress, SessionSummary, StoreStats, TriggerMode
from eventmem.summary import SummaryBufferMemory
from eventmem.sync import (
    SyncAgentTokenBufferMemory,
    SyncHistory,
    SyncStore,
    SyncSummaryBufferMemory,
    SyncTokenBufferMemory,
    connect,
)
from eventmem.tokens import CallableCounter, OpenAIChatCounter, TokenCounter, count_tokens

__version__ = "0.1.0.dev0"

__all__ = [
    "Action",
    "AgentBufferArgs",
    "AgentBufferOptions",
    "AgentTokenBufferMemory",
    "Anchor",
    "AnchorKey",
    "AnchoredHead",
    "Blob",
    "BufferArgs",
    "BufferOptions",
    "CallableCounter",
    "ChannelValue",
    "CheckpointSaved",
    "CheckpointWrite",
    "CheckpointWritesSaved",
    "CheckpointsDeleted",
    "ClosedError",
    "ConcurrencyError",
    "Content",
    "ContentPart",
    "CorruptDatabaseError",
    "DatabaseLockedError",
    "DiskFullError",
    "Durability",
    "EventmemError",
    "History",
    "HistoryArgs",
    "HistoryOptions",
    "ImportRefusedError",
    "InputKeyError",
    "InputTooLargeError",
    "InvalidInputError",
    "InvalidToolCall",
    "MemoryCleared",
    "Message",
    "MessagesAppended",
    "MessagesRetracted",
    "MigrationError",
    "MissingDependencyError",
    "MissingKeyError",
    "NotAnEventmemDatabaseError",
    "NotSerializableError",
    "OpenAIChatCounter",
    "Opening",
    "Problem",
    "Progress",
    "Provider",
    "PruneMode",
    "ReadOnlyDatabaseError",
    "ReadOnlyStoreError",
    "RebuildRefusedError",
    "SchemaVersionError",
    "SessionExistsError",
    "SessionForked",
    "SessionSummary",
    "StepRecorded",
    "StorageError",
    "Store",
    "StoreStats",
    "StoredEvent",
    "SummarizerError",
    "SummaryBufferArgs",
    "SummaryBufferMemory",
    "SummaryBufferOptions",
    "SummaryRecorded",
    "SyncAgentTokenBufferMemory",
    "SyncHistory",
    "SyncInAsyncContextError",
    "SyncStore",
    "SyncSummaryBufferMemory",
    "SyncTokenBufferMemory",
    "TokenBufferMemory",
    "TokenCounter",
    "ToolCall",
    "TriggerMode",
    "TurnSaved",
    "UnknownModelError",
    "UnknownSessionError",
    "UnprotectedLogError",
    "VerifyReport",
    "ViewRef",
    "ViewRewound",
    "__version__",
    "buffer_string",
    "connect",
    "count_tokens",
    "from_langchain",
    "from_openai",
    "open",
]
