"""PURE: the lookup projection of a session's LangGraph checkpoint events. No I/O.

Which event holds each visible checkpoint, each channel value and each pending write, so
a read finds them without scanning the log. The live path keeps the same rows in the
``lg_checkpoints``, ``lg_values`` and ``lg_writes`` tables with statements
that mirror `CheckpointIndex.apply` (``eventmem.store.checkpoints``); verify and rebuild
fold the events with this class and compare or write its rows.
"""

from __future__ import annotations

import msgspec

from eventmem.errors import InvalidInputError
from eventmem.events import (
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWritesSaved,
    Event,
    Version,
)

__all__ = ["BlobRow", "CheckpointIndex", "CheckpointRow", "WriteRow", "version_key"]

_encode = msgspec.json.Encoder().encode

# (session, ns, checkpoint id, position, parent id, run id)
CheckpointRow = tuple[str, str, str, int, str | None, str | None]
# (session, ns, channel, version key, position)
BlobRow = tuple[str, str, str, str, int]
# (session, ns, checkpoint id, task id, idx, position, slot)
WriteRow = tuple[str, str, str, str, int, int, int]


def version_key(version: Version) -> str:
    """A channel version as the text the index keys it by (its JSON: ``1``, ``1.5`` and
    ``"1"`` stay three versions)."""
    return _encode(version).decode()


class CheckpointIndex:
    """The fold of one session's checkpoint events (other events leave it unchanged)."""

    __slots__ = ("blobs", "checkpoints", "session_id", "writes")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.checkpoints: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}
        self.blobs: dict[tuple[str, str, str], int] = {}
        self.writes: dict[tuple[str, str, str, int], tuple[int, int]] = {}

    def apply(self, event: Event, position: int) -> None:
        """Fold the event at ``position``; a delta on a version the thread does not hold
        is refused (`InvalidInputError`), as the live path refuses to write one."""
        if isinstance(event, CheckpointSaved):
            self.checkpoints[(event.ns, event.checkpoint_id)] = (
                position,
                event.parent_id,
                event.run_id,
            )
            for value in event.values:
                if value.extends is not None and (
                    (event.ns, value.channel, version_key(value.extends)) not in self.blobs
                ):
                    # what the live path refuses before writing (StaleBaseError)
                    raise InvalidInputError(
                        f"channel {value.channel!r} extends version {value.extends!r}, "
                        "which the thread does not hold"
                    )
            for value in event.values:
                self.blobs[(event.ns, value.channel, version_key(value.version))] = position
        elif isinstance(event, CheckpointWritesSaved):
            for slot, write in enumerate(event.writes):
                key = (event.ns, event.checkpoint_id, event.task_id, write.idx)
                if write.idx < 0 or key not in self.writes:
                    self.writes[key] = (position, slot)
        elif isinstance(event, CheckpointsDeleted):
            if event.everything:
                self.checkpoints.clear()
                self.blobs.clear()
                self.writes.clear()
                return
            gone = set(event.checkpoints)
            for pair in gone:
                self.checkpoints.pop(pair, None)
            for key in [k for k in self.writes if (k[0], k[1]) in gone]:
                del self.writes[key]

    def checkpoint_rows(self) -> list[CheckpointRow]:
        """The ``lg_checkpoints`` rows, in key order."""
        sid = self.session_id
        return sorted((sid, ns, cid, *rest) for (ns, cid), rest in self.checkpoints.items())

    def blob_rows(self) -> list[BlobRow]:
        """The ``lg_values`` rows, in key order."""
        sid = self.session_id
        return sorted((sid, *key, position) for key, position in self.blobs.items())

    def write_rows(self) -> list[WriteRow]:
        """The ``lg_writes`` rows, in key order."""
        sid = self.session_id
        return sorted((sid, *key, *where) for key, where in self.writes.items())
