"""``eventmem stats``: figures about a whole store, as `eventmem.Store.stats` reads them,
with a SQLite file's sizes as the file system gives them."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from eventmem.cli.args import add_db, add_json_or_csv
from eventmem.cli.common import EXIT_OK, plural, print_csv_row, print_json, utc_seconds
from eventmem.cli.stores import open_existing, shown, wal_bytes
from eventmem.store.base import StoreStats, is_postgres_url

__all__ = ["configure_stats", "run_stats"]


def configure_stats(parser: argparse.ArgumentParser) -> None:
    """Add the ``stats`` arguments."""
    add_db(parser)
    add_json_or_csv(parser, "the figures as one JSON object", "the figures as one CSV row")


def _document(stats: StoreStats, path: str, files: tuple[int, int] | None) -> dict[str, object]:
    """What ``--json`` prints: ``path``, then the figures; the file figures (``files`` is
    the file's and its WAL's sizes) are a SQLite file's, ``schema_bytes`` a PostgreSQL
    schema's, ``encryption`` an encrypted store's, and the figures a store does not have
    are left out."""
    sizes = {
        "file_bytes": None if files is None else files[0],
        "page_size": stats.page_size,
        "page_count": stats.page_count,
        "freelist_pages": stats.freelist_pages,
        "wal_bytes": None if files is None else files[1],
        "schema_bytes": stats.storage_bytes if files is None else None,
    }
    encryption = {} if stats.encryption is None else {"encryption": stats.encryption}
    return {
        "path": shown(path),
        "schema_version": stats.schema_version,
        **{key: value for key, value in sizes.items() if value is not None},
        **encryption,
        "sessions": stats.sessions,
        "events": sum(stats.events_by_kind.values()),
        "events_by_kind": stats.events_by_kind,
        "messages_entered": stats.messages_entered,
        "visible_messages": stats.visible_messages,
        "first_event": stats.first_event,
        "last_event": stats.last_event,
    }


def _rows(stats: StoreStats, path: str, files: tuple[int, int] | None) -> list[tuple[str, str]]:
    rows = [("database", shown(path)), ("schema version", str(stats.schema_version))]
    if files is None:
        rows.append(("schema size", f"{stats.storage_bytes} bytes (tables, indexes and TOAST)"))
    else:
        rows += [
            (
                "file size",
                f"{files[0]} bytes ({plural(stats.page_count or 0, 'page')} of "
                f"{stats.page_size} bytes, {stats.freelist_pages} free)",
            ),
            ("WAL size", f"{files[1]} bytes"),
        ]
    if stats.encryption is not None:
        rows.append(("encryption", f"{stats.encryption}, a data key per session"))
    kinds = ", ".join(f"{kind} {count}" for kind, count in stats.events_by_kind.items())
    events = sum(stats.events_by_kind.values())
    pruned = stats.messages_entered - stats.visible_messages
    first, last = stats.first_event, stats.last_event
    return [
        *rows,
        ("sessions", str(stats.sessions)),
        ("events", f"{events} ({kinds})" if kinds else "0"),
        (
            "messages",
            f"{stats.messages_entered} entered buffers, {stats.visible_messages} visible, "
            f"{pruned} pruned",
        ),
        ("first event", "-" if first is None else utc_seconds(first)),
        ("last event", "-" if last is None else utc_seconds(last)),
    ]


async def _stats(path: str, files: tuple[int, int] | None, output: str) -> int:
    async with open_existing(path, read_only=True) as store:
        stats = await store.stats()
    if output == "json":
        print_json(_document(stats, path, files))
        return EXIT_OK
    if output == "csv":
        document = _document(stats, path, files)
        print_csv_row(list(document))
        print_csv_row(list(document.values()))
        return EXIT_OK
    for label, value in _rows(stats, path, files):
        print(f"{label:<15} {value}")
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    """Run ``stats``: the store's figures, with a SQLite file's sizes read first."""
    output = "json" if args.json else "csv" if args.csv else "text"
    if is_postgres_url(args.db):  # no file: the schema's size is read from the server
        return anyio.run(_stats, args.db, None, output, backend="asyncio")
    target = Path(args.db).expanduser()
    # Sizes first, as they were before the store was opened.
    files = (target.stat().st_size if target.is_file() else 0, wal_bytes(target))
    return anyio.run(_stats, args.db, files, output, backend="asyncio")
