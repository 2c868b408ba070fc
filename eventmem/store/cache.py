"""A bounded cache of decoded buffers, validated against the stored session version.

Loads are the hot path of every agent turn. A cached buffer is served only when the
session's stored version (read in the same round trip) still equals the cached one, so
writes by other connections or processes are never missed; a save by this connection
updates the entry with its own delta instead of invalidating it. The backend's
connection thread fills and advances it; a SQLite store also serves loads from it on the
caller's thread, so every method holds the cache's lock (uncontended: a fraction of a µs).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

from eventmem.messages import Message

__all__ = ["ViewCache"]


class _Entry:
    __slots__ = ("counts", "items", "version")

    def __init__(
        self, version: int, items: Iterable[tuple[int, Message]], counts: dict[int, int]
    ) -> None:
        self.version = version
        self.items = deque(items)  # (seq, message) of the visible messages, in order
        self.counts = counts  # seq -> token count, for the visible messages it knows


class ViewCache:
    """Up to ``max_sessions`` buffers, least recently used evicted first."""

    def __init__(self, max_sessions: int = 1024) -> None:
        self.max_sessions = max_sessions
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str, version: int) -> list[Message] | None:
        """The cached buffer if it is the one at ``version``."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(session_id)
            return [message for _, message in entry.items]

    def items(self, session_id: str, version: int) -> list[tuple[int, Message]] | None:
        """The cached ``(seq, message)`` pairs if they are the buffer at ``version``
        (for a write reading its session's view; the order of eviction is the loads')."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or entry.version != version:
                return None
            return list(entry.items)

    def count(self, session_id: str, version: int, seq: int) -> int | None:
        """The token count of the visible message ``seq`` if the buffer at ``version``
        is cached with it (a save's prune then reads no row)."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None or entry.version != version:
                return None
            return entry.counts.get(seq)

    def put(
        self,
        session_id: str,
        version: int,
        items: list[tuple[int, Message]],
        counts: dict[int, int] | None = None,
    ) -> None:
        """Remember the buffer read at ``version``: its ``(seq, message)`` pairs and,
        if known, their counts by seq."""
        with self._lock:
            if self.max_sessions <= 0:
                return
            self._entries[session_id] = _Entry(version, items, counts or {})
            self._entries.move_to_end(session_id)
            while len(self._entries) > self.max_sessions:
                self._entries.popitem(last=False)

    def advance(
        self,
        session_id: str,
        from_version: int,
        to_version: int,
        bounds: tuple[int, int, int],
        appended: list[tuple[int, Message]],
        appended_counts: list[int],
    ) -> None:
        """Apply a committed write: ``bounds`` is the view's ``(watermark, pinned,
        next_seq)`` after it, ``appended`` the messages it added with their seqs (and
        ``appended_counts`` their counts). The view is then the pinned message and those
        with ``watermark <= seq < next_seq``.
        """
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return
            if entry.version != from_version:
                del self._entries[session_id]  # another writer got in between: unknown delta
                return
            watermark, pinned, next_seq = bounds
            items, counts = entry.items, entry.counts
            while items and items[-1][0] >= next_seq:  # retracted
                counts.pop(items.pop()[0], None)
            kept: tuple[int, Message] | None = None
            while items and items[0][0] < watermark:  # pruned, unless pinned
                item = items.popleft()
                if item[0] == pinned:
                    kept = item
                else:
                    counts.pop(item[0], None)
            for item, tokens in zip(appended, appended_counts, strict=True):
                seq = item[0]
                if seq >= next_seq:
                    continue
                if seq >= watermark:
                    items.append(item)
                elif seq == pinned:
                    kept = item
                else:
                    continue
                counts[seq] = tokens
            if kept is not None:
                items.appendleft(kept)
            entry.version = to_version

    def forget(self, session_ids: Iterable[str]) -> None:
        """Drop these sessions' buffers (a write to them ended in a way that leaves the
        cached delta unsure)."""
        with self._lock:
            for session_id in session_ids:
                self._entries.pop(session_id, None)

    def holds(self, session_id: str) -> bool:
        """Whether some version of the session's buffer is cached."""
        with self._lock:
            return session_id in self._entries

    def clear(self) -> None:
        """Forget everything (after a rebuild or an import)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
