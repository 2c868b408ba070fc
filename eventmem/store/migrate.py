"""Schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order on open.

Pending files run in one transaction together with their rows in ``eventmem_migrations``,
so a database is always at exactly one schema version. A database whose history names a
version this eventmem does not know (written by a newer release) is refused, as is one
with a gap. Both dialects share the version numbers: version N is the same schema in
SQLite and PostgreSQL. This module holds what both runners share (the bundled files, the
history checks); each database's package applies its own (``sqlite.migrations``,
``postgres.schema``).
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # importlib.abc's copy is deprecated from 3.12 and gone in 3.14
    from importlib.abc import Traversable

from eventmem.errors import MigrationError, ReadOnlyStoreError, SchemaVersionError

__all__ = [
    "Dialect",
    "Migration",
    "MigrationFailure",
    "check_history",
    "known_migrations",
    "refuse_to_migrate",
]

Dialect = Literal["sqlite", "postgresql"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationFailure(Exception):
    """A statement of a migration failed; the driver's error is its ``__cause__``.

    Raised by the runners and turned into an eventmem error by the backend's translator
    (the one place driver errors are mapped), which names the migration.
    """

    def __init__(self, migration: Migration) -> None:
        super().__init__(f"{migration.version:04d}_{migration.name}")
        self.label = f"{migration.version:04d}_{migration.name}"


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


def _migrations_dir(dialect: Dialect) -> Traversable:
    # Installed wheels carry the files inside the package; a source checkout (or an
    # editable install) has them at the repository's top level.
    packaged = resources.files("eventmem") / "migrations"
    if packaged.is_dir():
        return packaged / dialect
    return Path(__file__).resolve().parents[2] / "migrations" / dialect


def known_migrations(dialect: Dialect = "sqlite") -> list[Migration]:
    """Every migration shipped with this eventmem for ``dialect``, in order."""
    return list(_shipped(dialect))


# Read once per process: the files ship with the package and do not change under it, and
# a process that later loses access to its installation (a service that drops its
# privileges after start-up) still opens stores.
@functools.cache
def _shipped(dialect: Dialect) -> tuple[Migration, ...]:
    found = []
    for entry in _migrations_dir(dialect).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"the bundled migrations are not numbered 1..n: {[m.version for m in found]}"
        )
    return tuple(found)


def refuse_to_migrate(applied: list[int], newest: int) -> ReadOnlyStoreError:
    """The error for a store opened read-only that would need migrations first."""
    return ReadOnlyStoreError(
        f"the store has schema version {len(applied)}, older than this eventmem's {newest}, "
        "and was opened read-only, so it was not migrated (nothing was written); open it "
        "once for writing to bring it up to date (eventmem.open without read_only=True, "
        "or a command that writes, such as 'eventmem rebuild')"
    )


def check_history(applied: list[int], newest: int) -> None:
    """Refuse a schema history from a newer eventmem, or one with a gap."""
    if applied and max(applied) > newest:
        raise SchemaVersionError(
            f"the database has schema version {max(applied)}, written by a newer eventmem; "
            f"this eventmem knows versions up to {newest}. Upgrade eventmem to open it."
        )
    if applied != list(range(1, len(applied) + 1)):
        missing = sorted(set(range(1, max(applied) + 1)) - set(applied))
        raise SchemaVersionError(
            f"the database's schema history is missing migration(s) {missing}; "
            "it was modified outside eventmem"
        )
