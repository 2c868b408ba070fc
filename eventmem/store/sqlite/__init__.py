"""The SQLite backend: its connection and dialect, file checks, migrations runner and
error translator."""

from eventmem.store.base import Durability, Progress
from eventmem.store.sqlite.backend import SQLiteBackend

__all__ = ["Durability", "Progress", "SQLiteBackend"]
