"""WAL checkpoints on a thread of their own, out of the callers' saves.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000
WAL pages by default), so about one save in a hundred paid for copying the WAL back into
the database file: the slow tail of the save times. A writing store turns it off
(``PRAGMA wal_autocheckpoint = 0``) and asks this thread instead, every
``WRITES_PER_CHECKPOINT`` committed writes, to checkpoint on a connection of its own: a
passive checkpoint copies the WAL while writers go on (``sqlite3`` lets go of the GIL
meanwhile); once it has caught up, the next write starts the WAL over. Writes that never
pause leave it no such moment: past ``RESTART_FRAMES`` pages a restarting checkpoint
copies the rest, holding new writes off for that only, so the WAL stays bounded. The
thread and its connection start with the first checkpoint a store asks for, so a
short-lived store costs nothing, and stop before the store's connection closes (the
last connection to close checkpoints the WAL one final time and removes it, as before).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import suppress

__all__ = ["RESTART_FRAMES", "WRITES_PER_CHECKPOINT", "WalCheckpointer"]

# A save writes about 10 WAL pages: this asks for a checkpoint about as often as SQLite's
# own threshold would have run one.
WRITES_PER_CHECKPOINT = 100
# A WAL this many pages long is copied back and started over even if writers must wait
# (about 40 MiB at SQLite's default 4 KiB pages).
RESTART_FRAMES = 10_000
_WAIT_FOR_WRITER_MS = 50


class WalCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own thread when asked."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # how many ran (for tests and figures)
        self.restarts = 0  # how many of them had to hold writers off

    def request(self) -> None:
        """Ask for a checkpoint soon (requests made while one runs are merged)."""
        if self._stopping:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="eventmem-wal-checkpoint", daemon=True
            )
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None)
            # RESTART waits this long for a writer to finish, then gives up until next time
            conn.execute(f"PRAGMA busy_timeout = {_WAIT_FOR_WRITER_MS}")
        except sqlite3.Error:
            return  # the store's own connection still checkpoints when it closes
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                # A checkpoint that cannot run now is tried again at the next request.
                with suppress(sqlite3.Error):
                    self._checkpoint(conn)
                    self.checkpoints += 1
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        # Beside the writers: when it catches up before the next write (an agent's saves
        # come seconds apart), that write starts the WAL over from its beginning.
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if row is not None and row[1] > RESTART_FRAMES:
            # Writes that never pause leave it no such moment, and the WAL would only
            # grow: copy the pages added meanwhile, holding new writes off for that only,
            # so the next write starts it over.
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            self.restarts += 1

    def stop(self) -> None:
        """End the thread (after the checkpoint it is running) and close its connection."""
        self._stopping = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()
