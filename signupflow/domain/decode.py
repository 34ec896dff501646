"""Decode raw topic bytes into event records, or say precisely why they are unusable.

Agents consume raw bytes and call these functions, so a malformed event becomes an
:class:`InvalidEvent` with a reason (and goes to the dead-letter topic) instead of an exception
inside Faust's deserializer. Unknown extra fields are tolerated so that producers can add
optional fields without breaking older consumers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from signupflow.domain.fields import (
    FieldError,
    check_choice,
    check_int,
    check_str,
    check_styles,
    check_timestamp,
    check_uuid,
    get,
)
from signupflow.models.events import ROLES, Event, PartnerCreated, ProfileInsert

E = TypeVar("E", bound=Event)


class InvalidEvent(ValueError):
    """The event cannot be processed; ``str(exc)`` is the reason recorded in the dead letter."""


def _json_object(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    if value is None:
        raise InvalidEvent("value is empty (null / tombstone)")
    if len(value) > max_bytes:
        raise InvalidEvent(f"value is {len(value)} bytes, over the {max_bytes}-byte limit")
    if not value.strip():
        raise InvalidEvent("value is empty")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"value is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"value must be a JSON object, got {type(data).__name__}")
    return data


def _key(key: bytes | None) -> str:
    if key is None:
        raise InvalidEvent("key is missing (events are keyed by member uuid)")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("key is not valid UTF-8") from None


def _fields(data: Mapping[str, Any], checks: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, check in checks.items():
        try:
            values[name] = check(get(data, name))
        except FieldError as exc:
            errors.append(f"{name} {exc}")
    if errors:
        raise InvalidEvent("; ".join(errors))
    return values


def _decode(
    record: type[E], id_field: str, checks: Mapping[str, Callable[[Any], Any]],
    key: bytes | None, value: bytes | None, max_bytes: int,
) -> E:
    fields = _fields(_json_object(value, max_bytes), checks)
    key_text = _key(key)
    if key_text != fields[id_field]:
        raise InvalidEvent(f"key {key_text[:40]!r} does not match {id_field} {fields[id_field]!r}")
    return record(**fields)


PROFILE_INSERT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "uuid": check_uuid,
    "role": lambda v: check_choice(v, ROLES),
    "nickname": lambda v: check_str(v, 2, 30),
    "favorite_styles": check_styles,
    "occurred_at": check_timestamp,
}

PARTNER_CREATED_CHECKS: dict[str, Callable[[Any], Any]] = {
    "partner_id": check_uuid,
    "nickname": lambda v: check_str(v, 2, 30),
    "style_count": lambda v: check_int(v, 0, 100),
    "occurred_at": check_timestamp,
}


def decode_profile_insert(key: bytes | None, value: bytes | None, max_bytes: int) -> ProfileInsert:
    return _decode(ProfileInsert, "uuid", PROFILE_INSERT_CHECKS, key, value, max_bytes)


def decode_partner_created(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> PartnerCreated:
    return _decode(PartnerCreated, "partner_id", PARTNER_CREATED_CHECKS, key, value, max_bytes)
