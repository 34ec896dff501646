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

from signupflow.domain.fields import Choice, FieldError, get
from signupflow.models.events import (
    Event,
    MemberDeleted,
    MemberEvent,
    PartnerChanged,
    PartnerCreated,
    PartnerDeleted,
    PartnerEvent,
    ProfileChanged,
    ProfileInsert,
)
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
    event: E = _of_kind({record.__name__: (record, fields)}, id_field, key, value, max_bytes)
    return event


#: The kinds of a topic: the ``kind`` field's value -> (Record, its plan).
Kinds = Mapping[str, tuple[type[Any], Plan]]


def _of_kind(kinds: Kinds, id_field: str, key: bytes | None, value: bytes | None,
             max_bytes: int) -> Any:
    """The event of one of ``kinds``, chosen by its ``kind`` field; an event without one is
    of the first kind (``created``: version 1 of the topic had no other)."""
    data = _json_object(value, max_bytes)
    kind = data.get("kind")
    if len(kinds) == 1 or kind is None:
        record, fields = next(iter(kinds.values()))
    elif isinstance(kind, str) and kind in kinds:
        record, fields = kinds[kind]
    else:
        raise InvalidEvent(f"kind must be one of {', '.join(kinds)}, got {str(kind)[:40]!r}")
    values = _fields(data, fields)
    key_text = _key(key)
    if key_text != values[id_field]:
        raise InvalidEvent(f"key {key_text[:40]!r} does not match {id_field} {values[id_field]!r}")
    return record(**values)


def kind_of(record: type[Event]) -> str:
    """The value of a Record's ``kind`` field (its only choice)."""
    rule = shape_of(record).field("kind").rule
    assert isinstance(rule, Choice) and len(rule.choices) == 1, record
    return rule.choices[0]


def _kinds(*records: type[Event]) -> Kinds:
    return {kind_of(r): (r, plan(shape_of(r).fields)) for r in records}


#: Each field with the rule its Record declares (``models/events.py``): the one source of the
#: decoder's checks and of the topics' JSON Schemas.
MEMBER_KINDS = _kinds(ProfileInsert, ProfileChanged, MemberDeleted)
PARTNER_KINDS = _kinds(PartnerCreated, PartnerChanged, PartnerDeleted)
PROFILE_INSERT_FIELDS = MEMBER_KINDS["created"][1]
PARTNER_CREATED_FIELDS = PARTNER_KINDS["created"][1]


def decode_member_event(key: bytes | None, value: bytes | None, max_bytes: int) -> MemberEvent:
    """An event of ``profile-insert``: created (with or without ``kind``), changed, deleted."""
    event: MemberEvent = _of_kind(MEMBER_KINDS, "uuid", key, value, max_bytes)
    return event


def decode_partner_event(key: bytes | None, value: bytes | None, max_bytes: int) -> PartnerEvent:
    """An event of ``partner-created``: created (with or without ``kind``), changed, deleted."""
    event: PartnerEvent = _of_kind(PARTNER_KINDS, "partner_id", key, value, max_bytes)
    return event


def decode_profile_insert(key: bytes | None, value: bytes | None, max_bytes: int) -> ProfileInsert:
    """A created event only (tools that read signups)."""
    return _decode(ProfileInsert, "uuid", PROFILE_INSERT_FIELDS, key, value, max_bytes)


def decode_partner_created(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> PartnerCreated:
    return _decode(PartnerCreated, "partner_id", PARTNER_CREATED_FIELDS, key, value, max_bytes)
