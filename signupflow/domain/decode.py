"""Decode raw topic bytes into event records, or say precisely why they are unusable.

Agents consume raw bytes and call these functions, so a malformed event becomes an
:class:`InvalidEvent` with a reason (and goes to the dead-letter topic) instead of an exception
inside Faust's deserializer. Unknown extra fields are tolerated so that producers can add
optional fields without breaking older consumers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from signupflow.domain.fields import FieldError, get
from signupflow.models.events import Event, PartnerCreated, ProfileInsert
from signupflow.models.shape import Field, shape_of

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


#: What the decoder does per field: (name, its rule's check, required, default).
Plan = tuple[tuple[str, Callable[[Any], Any], bool, Any], ...]


def plan(fields: Sequence[Field]) -> Plan:
    return tuple((f.name, f.rule.check, f.required, f.default) for f in fields)


def _fields(data: Mapping[str, Any], fields: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, check, required, default in fields:
        try:
            if required:
                values[name] = check(get(data, name))
            elif (value := data.get(name)) is None:
                values[name] = default
            else:
                values[name] = check(value)
        except FieldError as exc:
            errors.append(f"{name} {exc}")
    if errors:
        raise InvalidEvent("; ".join(errors))
    return values


def _decode(
    record: type[E], id_field: str, fields: Plan,
    key: bytes | None, value: bytes | None, max_bytes: int,
) -> E:
    values = _fields(_json_object(value, max_bytes), fields)
    key_text = _key(key)
    if key_text != values[id_field]:
        raise InvalidEvent(f"key {key_text[:40]!r} does not match {id_field} {values[id_field]!r}")
    return record(**values)


#: Each field with the rule its Record declares (``models/events.py``): the one source of the
#: decoder's checks and of the topics' JSON Schemas.
PROFILE_INSERT_FIELDS = plan(shape_of(ProfileInsert).fields)
PARTNER_CREATED_FIELDS = plan(shape_of(PartnerCreated).fields)


def decode_profile_insert(key: bytes | None, value: bytes | None, max_bytes: int) -> ProfileInsert:
    return _decode(ProfileInsert, "uuid", PROFILE_INSERT_FIELDS, key, value, max_bytes)


def decode_partner_created(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> PartnerCreated:
    return _decode(PartnerCreated, "partner_id", PARTNER_CREATED_FIELDS, key, value, max_bytes)
