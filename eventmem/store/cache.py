"""A bounded cache of decoded buffers, validated against the stored session version.

Loads are the hot path of every agent turn. A cached buffer is served only when the
session's stored version (read in the same round trip) still equals the cached one, so
writes by other connections or processes are never missed; a save by this connection
updates the entry with its own delta instead of invalidating it. Used only from the
backend's connection thread, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from eventmem.messages import Message

__all__ = ["ViewCache"]


class _Entry:
    __slots__ = ("messages", "version", "watermark")

    def __init__(self, version: int, watermark: int, messages: Iterable[Message]) -> None:
        self.version = version
        self.watermark = watermark
        self.messages = deque(messages)


class ViewCache:
    """Up to ``max_sessions`` buffers, least recently used evicted first."""

    def __init__(self, max_sessions: int = 1024) -> None:
        self.max_sessions = max_sessions
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, session_id: str, version: int) -> list[Message] | None:
        """The cached buffer if it is the one at ``version``."""
        entry = self._entries.get(session_id)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(session_id)
        return list(entry.messages)

    def put(self, session_id: str, version: int, watermark: int, messages: list[Message]) -> None:
        """Remember the buffer read at ``version``."""
        if self.max_sessions <= 0:
            return
        self._entries[session_id] = _Entry(version, watermark, messages)
        self._entries.move_to_end(session_id)
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)

    def advance(
        self,
        session_id: str,
        from_version: int,
        to_version: int,
        watermark: int,
        appended: list[tuple[int, Message]],
    ) -> None:
        """Apply a committed write: messages before ``watermark`` left, ``appended`` came."""
        entry = self._entries.get(session_id)
        if entry is None:
            return
        if entry.version != from_version:
            del self._entries[session_id]  # another writer got in between: unknown delta
            return
        while entry.watermark < watermark and entry.messages:
            entry.messages.popleft()
            entry.watermark += 1
        entry.messages.extend(m for seq, m in appended if seq >= watermark)
        entry.watermark = max(entry.watermark, watermark)
        entry.version = to_version

    def clear(self) -> None:
        """Forget everything (after a rebuild or an import)."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
