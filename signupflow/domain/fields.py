"""Small field checks shared by HTTP validation and event decoding.

Each ``check_*`` returns the normalised value or raises :class:`FieldError` with a message that
names what was expected, so callers can report every bad field at once.
"""

from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from signupflow.domain.styles import MAX_FAVORITE_STYLES, STYLES


class FieldError(ValueError):
    """One field is missing or malformed."""


MISSING = object()


def get(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name, MISSING)
    if value is MISSING or value is None:
        raise FieldError("is required")
    return value


def check_text(value: Any) -> str:
    """A string every supported database can store: PostgreSQL refuses NUL in text."""
    if not isinstance(value, str):
        raise FieldError(f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise FieldError("must not contain NUL (\\u0000) characters")
    return value


def check_str(value: Any, min_len: int = 1, max_len: int = 100) -> str:
    text = check_text(value).strip()
    if not min_len <= len(text) <= max_len:
        raise FieldError(f"must be {min_len} to {max_len} characters long")
    return text


C = TypeVar("C", bound=str)


def check_choice(value: Any, choices: Collection[C]) -> C:
    """One of ``choices`` (a closed set, typed as a ``Literal``), returned as that type."""
    if not isinstance(value, str):
        raise FieldError(f"must be a string, got {type(value).__name__}")
    for choice in choices:
        if value == choice:
            return choice
    raise FieldError(f"must be one of {', '.join(sorted(choices))}; got {value!r}")


def check_uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"must be a UUID string, got {type(value).__name__}")
    try:
        canonical = str(uuid_mod.UUID(value))
    except ValueError:
        raise FieldError(f"must be a UUID, got {value[:40]!r}") from None
    if canonical != value:
        raise FieldError(f"must be a canonical lower-case UUID like {canonical!r}")
    return value


def check_int(value: Any, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise FieldError(f"must be between {minimum} and {maximum}, got {value}")
    return value


def canonical_timestamp(value: datetime) -> str:
    """The one text form of an instant that every stage stores and compares: UTC, ISO-8601."""
    return value.astimezone(UTC).isoformat()


def check_timestamp(value: Any) -> str:
    """An ISO-8601 timestamp with a UTC offset, returned in canonical UTC form.

    Normalising here means every store holds the same text for the same instant, and an
    instant that cannot be expressed in UTC (year 9999 at -12:00) is refused before it can
    reach a database.
    """
    if not isinstance(value, str):
        raise FieldError(f"must be an ISO-8601 timestamp string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"must be an ISO-8601 timestamp, got {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise FieldError("must carry a UTC offset (e.g. +00:00)")
    try:
        return canonical_timestamp(parsed)
    except OverflowError:
        raise FieldError(f"is out of range once converted to UTC, got {value[:40]!r}") from None


def check_styles(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise FieldError(f"must be a list of style ids, got {type(value).__name__}")
    if len(value) > MAX_FAVORITE_STYLES:
        raise FieldError(f"must hold at most {MAX_FAVORITE_STYLES} styles, got {len(value)}")
    styles: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise FieldError(f"must hold integer style ids, got {item!r}")
        if item not in STYLES:
            raise FieldError(f"unknown style id {item} (known: {min(STYLES)}..{max(STYLES)})")
        if item in styles:
            raise FieldError(f"style id {item} is listed twice")
        styles.append(item)
    return styles
