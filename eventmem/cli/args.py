"""The arguments the commands share, and the types that check them."""

from __future__ import annotations

import argparse

import eventmem
from eventmem.errors import EventmemError
from eventmem.rules import check_max_save_bytes

__all__ = [
    "add_db",
    "add_flag",
    "add_json",
    "add_json_or_csv",
    "add_processes",
    "add_session",
    "model_name",
    "non_negative_int",
    "save_bytes",
]


def non_negative_int(text: str) -> int:
    """An argument that is a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_processes(parser: argparse.ArgumentParser) -> None:
    """``--processes N``: how many processes fold the log (verify, rebuild)."""
    parser.add_argument(
        "--processes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="fold the log in N processes, split by session (default: 2 for a SQLite "
        "file of 200,000 events or more on a machine with 2 CPUs or more, else 1)",
    )


def save_bytes(text: str) -> int:
    """An argument that is a store's ``max_save_bytes``."""
    try:
        return check_max_save_bytes(non_negative_int(text))
    except EventmemError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def model_name(text: str) -> str:
    """An argument that names a model whose tokenizer eventmem knows."""
    try:
        eventmem.OpenAIChatCounter(text)
    except EventmemError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_db(parser: argparse.ArgumentParser, *, creates: bool = False) -> None:
    """Add the ``DB`` argument: a store the command creates if missing, or must find."""
    parser.add_argument(
        "db",
        metavar="DB",
        help=(
            "eventmem database: a SQLite file or a postgresql:// URL (created if missing)"
            if creates
            else "eventmem database: a SQLite file or a postgresql:// URL (must exist; never "
            "created)"
        ),
    )


def add_session(parser: argparse.ArgumentParser) -> None:
    """Add the ``SESSION`` argument."""
    parser.add_argument("session", metavar="SESSION", help="session id (see 'eventmem sessions')")


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json``, which prints ``what`` instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} instead of text")


def add_json_or_csv(parser: argparse.ArgumentParser, json_what: str, csv_what: str) -> None:
    """Add ``--json`` (printing ``json_what``) and ``--csv`` (printing ``csv_what``), of
    which at most one may be given."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help=f"print {json_what} instead of text")
    output.add_argument(
        "--csv",
        action="store_true",
        help=f"print {csv_what} (RFC 4180), after a header row, instead of text",
    )


def add_flag(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    """Add the on/off option ``flag``, described by ``text``."""
    parser.add_argument(flag, action="store_true", help=text)
