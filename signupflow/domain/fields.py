"""Small field checks shared by HTTP validation and event decoding, and the rules of event fields.

Each ``check_*`` returns the normalised value or raises :class:`FieldError` with a message that
names what was expected, so callers can report every bad field at once.

A :class:`FieldRule` is one source of truth for an event field's constraint: the decoder runs its
``check`` and the JSON Schema of the topic carries its ``schema()``. Records attach rules to their
fields with ``Annotated[type, rule]`` (``models/events.py``).
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar

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


def check_str(value: Any, min_len: int = 1, max_len: int = 100, strip: bool = True) -> str:
    text = check_text(value)
    text = text.strip() if strip else text
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


# --- rules of event fields ------------------------------------------------------------------

#: Text as :func:`check_str` leaves it: no NUL, no whitespace at either end (lengths apart).
TRIMMED_TEXT = r"^(?:[^\s\u0000](?:[^\u0000]*[^\s\u0000])?)?$"
NO_NUL = r"^[^\u0000]*$"
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: RFC 3339 with an offset, the ISO-8601 form :func:`check_timestamp` accepts and writes.
TIMESTAMP_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
                     r"(?:Z|[+-][0-9]{2}:[0-9]{2})$")


class FieldRule(Protocol):
    """A constraint on one field: what the decoder checks, and the same in JSON Schema words."""

    #: the JSON type of the values it constrains ("string", "integer", "array")
    json_type: ClassVar[str]

    def check(self, value: Any) -> Any:
        """The normalised value, or :class:`FieldError`."""

    def schema(self) -> dict[str, Any]:
        """JSON Schema keywords (draft-07) that add this rule to the field's type."""


@dataclass(frozen=True)
class Text:
    """Text of ``min_len`` to ``max_len`` characters without NUL; ``trimmed``: once trimmed
    (what :func:`check_str` checks, and producers write it trimmed)."""

    min_len: int = 1
    max_len: int = 100
    trimmed: bool = True
    json_type: ClassVar[str] = "string"

    def check(self, value: Any) -> str:
        return check_str(value, self.min_len, self.max_len, self.trimmed)

    def schema(self) -> dict[str, Any]:
        pattern = TRIMMED_TEXT if self.trimmed else NO_NUL
        return {"minLength": self.min_len, "maxLength": self.max_len, "pattern": pattern}


@dataclass(frozen=True)
class Uuid:
    """A canonical lower-case UUID."""

    json_type: ClassVar[str] = "string"

    #: the function itself: no extra call per event
    check = staticmethod(check_uuid)

    def schema(self) -> dict[str, Any]:
        return {"format": "uuid", "pattern": UUID_PATTERN}


@dataclass(frozen=True)
class Timestamp:
    """An ISO-8601 instant with a UTC offset (normalised to UTC by the decoder)."""

    json_type: ClassVar[str] = "string"

    #: the function itself: no extra call per event
    check = staticmethod(check_timestamp)

    def schema(self) -> dict[str, Any]:
        return {"format": "date-time", "pattern": TIMESTAMP_PATTERN}


@dataclass(frozen=True)
class IntRange:
    """An integer from ``minimum`` to ``maximum``, both included."""

    minimum: int = 0
    maximum: int = 2**31 - 1
    json_type: ClassVar[str] = "integer"

    def check(self, value: Any) -> int:
        return check_int(value, self.minimum, self.maximum)

    def schema(self) -> dict[str, Any]:
        return {"minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class StyleIds:
    """Up to :data:`MAX_FAVORITE_STYLES` distinct ids of the style catalogue."""

    json_type: ClassVar[str] = "array"

    #: the function itself: no extra call per event
    check = staticmethod(check_styles)

    def schema(self) -> dict[str, Any]:
        return {"items": {"enum": sorted(STYLES)}, "maxItems": MAX_FAVORITE_STYLES,
                "uniqueItems": True}


@dataclass(frozen=True)
class Choice:
    """One of a closed set of strings (what a ``Literal`` field allows)."""

    choices: tuple[str, ...]
    json_type: ClassVar[str] = "string"

    def check(self, value: Any) -> str:
        return check_choice(value, self.choices)

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices)}


@dataclass(frozen=True)
class Pattern:
    """Text matching a regular expression (headers: digits, W3C trace context)."""

    pattern: str
    json_type: ClassVar[str] = "string"

    def check(self, value: Any) -> str:
        text = check_text(value)
        if not re.search(self.pattern, text):
            raise FieldError(f"must match {self.pattern}, got {text[:40]!r}")
        return text

    def schema(self) -> dict[str, Any]:
        return {"pattern": self.pattern}
