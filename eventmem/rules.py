"""The rules every stored value obeys, whoever supplies it: a save or an imported file.

The live path and import check the same functions, so a value a save would refuse can
never enter a store by another door. Each raises `InvalidInputError` (or
`InputTooLargeError`) and writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from eventmem.errors import CorruptDatabaseError, InputTooLargeError, InvalidInputError

__all__ = [
    "DEFAULT_MAX_SAVE_BYTES",
    "LATEST_TIME_US",
    "MAX_COUNT",
    "MAX_LIMIT",
    "MAX_SESSION_ID_LENGTH",
    "check_count",
    "check_counter_name",
    "check_limit",
    "check_max_save_bytes",
    "check_save_bytes",
    "check_save_chars",
    "check_time",
    "event_time",
    "stored_time",
    "validate_session_id",
]

MAX_SESSION_ID_LENGTH = 1024
# A token count, or a counter's overhead: the largest integer every JSON reader holds
# exactly (2**53 - 1), far above any real count.
MAX_COUNT = 2**53 - 1
# max_token_limit: any 64-bit integer (sys.maxsize included). A buffer's stored count
# never exceeds the limit in force, so it always fits the database's integers.
MAX_LIMIT = 2**63 - 1
DEFAULT_MAX_SAVE_BYTES = 16 * 2**20
# recorded_at, in microseconds since the epoch: from 1970 to the end of year 9999, the
# range a datetime can show.
LATEST_TIME_US = 253_402_300_799_999_999
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def validate_session_id(session_id: object) -> str:
    """``session_id`` as a plain ``str`` if it is a usable session id, else raise
    `InvalidInputError`."""
    if not isinstance(session_id, str):
        raise InvalidInputError(f"session id must be a str, got {type(session_id).__name__}")
    if type(session_id) is not str:  # a subclass: store its plain text
        session_id = str.__str__(session_id)
    if not session_id:
        raise InvalidInputError("session id must not be empty")
    if "\x00" in session_id:
        # PostgreSQL's text cannot hold it; refused everywhere so both backends agree.
        raise InvalidInputError("session id must not contain NUL characters")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidInputError(
            f"session id is {len(session_id)} characters; the limit is {MAX_SESSION_ID_LENGTH}"
        )
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("session id is not valid Unicode (lone surrogate)") from None
    return session_id


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_limit(value: object) -> int:
    """Return ``value`` if it is a usable ``max_token_limit`` (an int from 0 to 2**63 - 1)."""
    if not _is_int(value):
        raise InvalidInputError(f"max_token_limit must be an int, got {type(value).__name__}")
    assert isinstance(value, int)
    if value < 0:
        raise InvalidInputError(f"max_token_limit must be >= 0, got {value}")
    if value > MAX_LIMIT:
        raise InvalidInputError(f"max_token_limit must be at most 2**63 - 1, got {value}")
    return int(value)


def check_count(value: object, what: str = "a token count") -> int:
    """Return ``value`` if it is a storable token count (an int from 0 to 2**53 - 1)."""
    if not _is_int(value):
        raise InvalidInputError(f"{what} must be an int, got {type(value).__name__}")
    assert isinstance(value, int)
    if not 0 <= value <= MAX_COUNT:
        raise InvalidInputError(f"{what} must be between 0 and 2**53 - 1, got {value}")
    return int(value)


def check_counter_name(name: object) -> str:
    """Return ``name`` if it can name a counting scheme (1-200 characters, no NUL)."""
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidInputError(
            f"a token counter's name must be a str of 1-200 characters, got {name!r}"
        )
    if "\x00" in name:
        raise InvalidInputError("a token counter's name must not contain NUL characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("a token counter's name is not valid Unicode") from None
    return name if type(name) is str else str.__str__(name)


def check_time(micros: object) -> int:
    """Return ``micros`` if it is a storable ``recorded_at`` (1970 to the end of 9999)."""
    if not _is_int(micros):
        raise InvalidInputError(f"recorded_at must be an int, got {type(micros).__name__}")
    assert isinstance(micros, int)
    if not 0 <= micros <= LATEST_TIME_US:
        raise InvalidInputError(
            f"recorded_at {micros} is outside 1970-01-01 to 9999-12-31 "
            "(microseconds since the Unix epoch)"
        )
    return micros


def stored_time(micros: object) -> datetime | int:
    """A stored ``recorded_at`` as a UTC datetime, or, if it is outside what a datetime
    can show (a value planted by hand), the raw number of microseconds."""
    if isinstance(micros, float) and micros.is_integer():
        micros = int(micros)  # an integer SQLite kept as REAL
    if not _is_int(micros):
        raise CorruptDatabaseError(f"a stored time is not an integer: {micros!r}")
    assert isinstance(micros, int)
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return micros


_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def event_time(micros: object) -> tuple[datetime, int]:
    """A stored ``recorded_at`` as (UTC datetime, microseconds); a value beyond what a
    datetime can show reads as the earliest or latest datetime."""
    moment = stored_time(micros)
    if isinstance(moment, int):
        return (_LATEST if moment > 0 else _EARLIEST), moment
    return moment, (moment - _EPOCH) // timedelta(microseconds=1)


def check_max_save_bytes(value: object) -> int:
    """Return ``value`` if it is a usable ``max_save_bytes`` (an int >= 1024)."""
    if not _is_int(value):
        raise InvalidInputError(f"max_save_bytes must be an int, got {type(value).__name__}")
    assert isinstance(value, int)
    if not 1024 <= value <= MAX_LIMIT:
        raise InvalidInputError(f"max_save_bytes must be an int >= 1024, got {value}")
    return value


def check_save_chars(chars: int, limit: int, what: str = "the save") -> None:
    """Refuse a save whose texts hold more characters than ``limit`` bytes: each character
    takes at least one byte, so this is known before anything is encoded or copied."""
    if chars > limit:
        raise InputTooLargeError(
            f"{what} holds {chars} characters of text; a save stores at most {limit} bytes "
            "(max_save_bytes)"
        )


def check_save_bytes(size: int, limit: int) -> None:
    """Refuse a save whose events encode to more than ``limit`` bytes."""
    if size > limit:
        raise InputTooLargeError(
            f"the save encodes to {size} bytes; a save stores at most {limit} bytes "
            "(max_save_bytes)"
        )
