"""Unit tests for event decoding (signupflow.domain.decode): every malformed shape is rejected."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from signupflow.domain.decode import (
    InvalidEvent,
    decode_member_event,
    decode_partner_created,
    decode_partner_event,
    decode_profile_insert,
)
from signupflow.models.events import (
    MemberDeleted,
    PartnerChanged,
    PartnerCreated,
    PartnerDeleted,
    ProfileChanged,
    ProfileInsert,
)

MAX_BYTES = 4096
#: what an event written before kinds existed (version 1 of the topic) is read as
VERSION_1 = {"kind": "created", "version": 1}
UUID = "5b0c7a52-3f4e-4d1a-9c2b-7e8f9a0b1c2d"
OTHER_UUID = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
KEY = UUID.encode()

OMIT = object()


def profile(**overrides: Any) -> dict[str, Any]:
    """A valid ProfileInsert payload as a dict; an override of ``OMIT`` removes the field."""
    data: dict[str, Any] = {
        "uuid": UUID,
        "role": "PARTNER",
        "nickname": "neon_fox",
        "favorite_styles": [2, 7, 11],
        "occurred_at": "2024-06-15T09:30:00.123456+00:00",
    }
    for name, value in overrides.items():
        if value is OMIT:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def partner(**overrides: Any) -> dict[str, Any]:
    """A valid PartnerCreated payload as a dict; an override of ``OMIT`` removes the field."""
    data: dict[str, Any] = {
        "partner_id": UUID,
        "nickname": "neon_fox",
        "style_count": 3,
        "occurred_at": "2024-06-15T00:30:00+00:00",
    }
    for name, value in overrides.items():
        if value is OMIT:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def dump(data: Any) -> bytes:
    return orjson.dumps(data)


# --- ProfileInsert -----------------------------------------------------------------------------


def test_valid_profile_insert_decodes_to_the_same_values() -> None:
    payload = profile()

    event = decode_profile_insert(KEY, dump(payload), MAX_BYTES)

    assert isinstance(event, ProfileInsert)
    assert event.uuid == UUID
    assert event.role == "PARTNER"
    assert event.nickname == "neon_fox"
    assert event.favorite_styles == [2, 7, 11]
    assert event.occurred_at == "2024-06-15T09:30:00.123456+00:00"
    assert event.asdict() == {**payload, **VERSION_1}


def test_profile_insert_round_trips_through_faust_dumps() -> None:
    original = ProfileInsert(
        uuid=UUID, role="USER", nickname="mono_tweed", favorite_styles=[],
        occurred_at="2024-01-01T00:00:00+00:00",
    )

    decoded = decode_profile_insert(KEY, original.dumps(), MAX_BYTES)

    assert decoded == original
    assert decoded.favorite_styles == []


def test_value_exactly_at_the_limit_is_accepted() -> None:
    value = dump(profile())

    event = decode_profile_insert(KEY, value, len(value))

    assert event.uuid == UUID


def test_nickname_is_stripped() -> None:
    event = decode_profile_insert(KEY, dump(profile(nickname="  ab  ")), MAX_BYTES)

    assert event.nickname == "ab"


def test_unknown_extra_fields_are_tolerated() -> None:
    value = dump(profile(source="web", schema_version=2, extra={"nested": [1, 2]}))

    event = decode_profile_insert(KEY, value, MAX_BYTES)

    assert event.asdict() == {**profile(), **VERSION_1}


def test_several_bad_fields_are_all_named_in_one_reason() -> None:
    value = dump(profile(role="ADMIN", nickname=7, favorite_styles="all", occurred_at=OMIT))

    with pytest.raises(InvalidEvent) as info:
        decode_profile_insert(KEY, value, MAX_BYTES)

    reason = str(info.value)
    assert "uuid" not in reason
    assert "role must be one of PARTNER, USER; got 'ADMIN'" in reason
    assert "nickname must be a string, got int" in reason
    assert "favorite_styles must be a list of style ids, got str" in reason
    assert "occurred_at is required" in reason
    assert reason == (
        "role must be one of PARTNER, USER; got 'ADMIN'; nickname must be a string, got int; "
        "favorite_styles must be a list of style ids, got str; occurred_at is required"
    )


VALID = dump(profile())

# (case id, key, value, distinctive word(s) of the reason)
MALFORMED_PROFILE: list[tuple[str, bytes | None, bytes | None, str]] = [
    # the JSON cases also check orjson's own explanation, which the reason carries along
    ("not-json", KEY, b"this is not json", "not valid UTF-8 JSON: invalid literal"),
    ("truncated-json", KEY, VALID[:-10], "not valid UTF-8 JSON: unexpected end of data"),
    ("invalid-utf8", KEY, b'{"uuid": "\xff\xfe"}', "str is not valid UTF-8"),
    ("json-array", KEY, dump([profile()]), "must be a JSON object, got list"),
    ("json-string", KEY, b'"hello"', "must be a JSON object, got str"),
    ("json-number", KEY, b"42", "must be a JSON object, got int"),
    ("json-null", KEY, b"null", "must be a JSON object, got NoneType"),
    ("empty-bytes", KEY, b"", "value is empty"),
    ("whitespace-only", KEY, b"  \n\t  ", "value is empty"),
    ("tombstone", KEY, None, "tombstone"),
    ("oversized", KEY, dump(profile(padding="x" * MAX_BYTES)), "over the 4096-byte limit"),
    ("missing-uuid", KEY, dump(profile(uuid=OMIT)), "uuid is required"),
    ("null-uuid", KEY, dump(profile(uuid=None)), "uuid is required"),
    ("uuid-not-uuid", KEY, dump(profile(uuid="not-a-uuid")), "uuid must be a UUID, got"),
    (
        "uuid-upper-case",
        KEY,
        dump(profile(uuid=UUID.upper())),
        f"canonical lower-case UUID like '{UUID}'",
    ),
    (
        "uuid-no-hyphens",
        KEY,
        dump(profile(uuid=UUID.replace("-", ""))),
        "canonical lower-case UUID",
    ),
    ("uuid-int", KEY, dump(profile(uuid=12345)), "uuid must be a UUID string, got int"),
    ("unknown-role", KEY, dump(profile(role="ADMIN")), "role must be one of PARTNER, USER"),
    ("role-lower-case", KEY, dump(profile(role="partner")), "got 'partner'"),
    ("role-wrong-type", KEY, dump(profile(role=["USER"])), "role must be a string, got list"),
    ("nickname-too-short", KEY, dump(profile(nickname="x")), "2 to 30 characters"),
    ("nickname-too-long", KEY, dump(profile(nickname="x" * 31)), "2 to 30 characters"),
    ("nickname-wrong-type", KEY, dump(profile(nickname=42)), "nickname must be a string"),
    (
        "styles-not-list",
        KEY,
        dump(profile(favorite_styles={"1": True})),
        "favorite_styles must be a list of style ids, got dict",
    ),
    ("styles-unknown-id", KEY, dump(profile(favorite_styles=[1, 13])), "unknown style id 13"),
    (
        "styles-string-element",
        KEY,
        dump(profile(favorite_styles=[1, "2"])),
        "must hold integer style ids, got '2'",
    ),
    ("styles-bool-element", KEY, dump(profile(favorite_styles=[True])), "got True"),
    ("styles-duplicates", KEY, dump(profile(favorite_styles=[4, 4])), "listed twice"),
    (
        "styles-too-many",
        KEY,
        dump(profile(favorite_styles=[1, 2, 3, 4, 5, 6])),
        "at most 5 styles",
    ),
    (
        "occurred-at-not-iso",
        KEY,
        dump(profile(occurred_at="15/06/2024 09:30")),
        "occurred_at must be an ISO-8601 timestamp, got",
    ),
    (
        "occurred-at-no-offset",
        KEY,
        dump(profile(occurred_at="2024-06-15T09:30:00")),
        "must carry a UTC offset",
    ),
    (
        "occurred-at-number",
        KEY,
        dump(profile(occurred_at=1718443800)),
        "ISO-8601 timestamp string, got int",
    ),
    ("key-missing", None, VALID, "key is missing"),
    ("key-not-utf8", b"\xff\xfe\xfd", VALID, "key is not valid UTF-8"),
    ("key-mismatch", OTHER_UUID.encode(), VALID, "does not match uuid"),
    ("key-upper-case", UUID.upper().encode(), VALID, "does not match uuid"),
]


def test_malformed_table_is_large_and_distinct() -> None:
    ids = [case[0] for case in MALFORMED_PROFILE]
    inputs = [(case[1], case[2]) for case in MALFORMED_PROFILE]

    assert len(ids) >= 16
    assert len(set(ids)) == len(ids)
    assert len(set(inputs)) == len(inputs)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED_PROFILE],
)
def test_malformed_profile_insert_is_rejected(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_profile_insert(key, value, MAX_BYTES)

    assert reason in str(info.value)


def test_oversized_reason_names_the_size() -> None:
    value = b" " * 10 + dump(profile())

    with pytest.raises(InvalidEvent) as info:
        decode_profile_insert(KEY, value, len(value) - 1)

    assert str(info.value) == (
        f"value is {len(value)} bytes, over the {len(value) - 1}-byte limit"
    )


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="over the 8-byte limit"):
        decode_profile_insert(KEY, b"not json at all", 8)


def test_key_mismatch_reason_shows_both_ids() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_profile_insert(OTHER_UUID.encode(), VALID, MAX_BYTES)

    assert str(info.value) == f"key '{OTHER_UUID}' does not match uuid '{UUID}'"


def test_invalid_event_is_a_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


# --- PartnerCreated ----------------------------------------------------------------------------


def test_valid_partner_created_decodes_to_the_same_values() -> None:
    payload = partner()

    event = decode_partner_created(KEY, dump(payload), MAX_BYTES)

    assert isinstance(event, PartnerCreated)
    assert event.partner_id == UUID
    assert event.nickname == "neon_fox"
    assert event.style_count == 3
    assert event.occurred_at == "2024-06-15T00:30:00+00:00"
    assert event.asdict() == {**payload, **VERSION_1}


@pytest.mark.parametrize(("given", "canonical"), [
    ("2024-06-15T09:30:00+09:00", "2024-06-15T00:30:00+00:00"),
    ("2024-05-01T19:00:00-05:30", "2024-05-02T00:30:00+00:00"),
    ("2024-06-15T00:30:00Z", "2024-06-15T00:30:00+00:00"),
    ("2024-06-15T00:30:00.5+00:00", "2024-06-15T00:30:00.500000+00:00"),
])
def test_timestamps_are_normalised_to_one_utc_form(given: str, canonical: str) -> None:
    """One instant, one text: every store holds the same string, and verify agrees."""
    event = decode_partner_created(KEY, dump(partner(occurred_at=given)), MAX_BYTES)
    assert event.occurred_at == canonical


@pytest.mark.parametrize("edge", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+01:00"])
def test_a_timestamp_outside_the_utc_range_is_refused(edge: str) -> None:
    """Finding: year 9999 at -12:00 decoded, then overflowed at the database bind and stalled
    the member service for good."""
    with pytest.raises(InvalidEvent, match="occurred_at is out of range once converted to UTC"):
        decode_partner_created(KEY, dump(partner(occurred_at=edge)), MAX_BYTES)


@pytest.mark.parametrize("field", ["nickname"])
def test_nul_characters_are_refused(field: str) -> None:
    """PostgreSQL cannot store NUL in text: what SQLite would take, PostgreSQL would not."""
    with pytest.raises(InvalidEvent, match="must not contain NUL"):
        decode_partner_created(KEY, dump(partner(**{field: "ab\x00cd"})), MAX_BYTES)


@pytest.mark.parametrize("count", [0, 100])
def test_partner_created_style_count_bounds_are_inclusive(count: int) -> None:
    event = decode_partner_created(KEY, dump(partner(style_count=count)), MAX_BYTES)

    assert event.style_count == count


def test_partner_created_tolerates_extra_fields() -> None:
    event = decode_partner_created(KEY, dump(partner(uuid=UUID, role="PARTNER")), MAX_BYTES)

    assert event.asdict() == {**partner(), **VERSION_1}


MALFORMED_PARTNER: list[tuple[str, bytes | None, bytes | None, str]] = [
    (
        "style-count-negative",
        KEY,
        dump(partner(style_count=-1)),
        "style_count must be between 0 and 100, got -1",
    ),
    (
        "style-count-too-big",
        KEY,
        dump(partner(style_count=101)),
        "style_count must be between 0 and 100, got 101",
    ),
    ("style-count-bool", KEY, dump(partner(style_count=True)), "must be an integer, got bool"),
    ("style-count-float", KEY, dump(partner(style_count=2.5)), "must be an integer, got float"),
    ("style-count-string", KEY, dump(partner(style_count="3")), "must be an integer, got str"),
    ("partner-id-mismatch", OTHER_UUID.encode(), dump(partner()), "does not match partner_id"),
    ("partner-id-missing", KEY, dump(partner(partner_id=OMIT)), "partner_id is required"),
    ("partner-id-not-uuid", KEY, dump(partner(partner_id="p-1")), "partner_id must be a UUID"),
    ("missing-nickname", KEY, dump(partner(nickname=OMIT)), "nickname is required"),
    ("occurred-at-no-offset", KEY, dump(partner(occurred_at="2024-06-15")), "UTC offset"),
    ("not-json", KEY, b"{partner}", "not valid UTF-8 JSON"),
    ("tombstone", KEY, None, "tombstone"),
    ("key-missing", None, dump(partner()), "key is missing"),
]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED_PARTNER],
)
def test_malformed_partner_created_is_rejected(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_partner_created(key, value, MAX_BYTES)

    assert reason in str(info.value)


def test_partner_created_reports_every_bad_field() -> None:
    value = dump(partner(nickname=OMIT, style_count=-5, occurred_at="soon"))

    with pytest.raises(InvalidEvent) as info:
        decode_partner_created(KEY, value, MAX_BYTES)

    reason = str(info.value)
    assert "nickname is required" in reason
    assert "style_count must be between 0 and 100, got -5" in reason
    assert "occurred_at must be an ISO-8601 timestamp, got 'soon'" in reason
    assert "partner_id" not in reason


def test_profile_insert_is_not_a_partner_created() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_partner_created(KEY, VALID, MAX_BYTES)

    assert "partner_id is required" in str(info.value)
    assert "style_count is required" in str(info.value)


# --- a member's whole life on one topic ----------------------------------------------------


def life_event(kind: object, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"kind": kind, "uuid": UUID, "version": 2, "role": "PARTNER",
                               "occurred_at": "2024-06-16T10:00:00Z"}
    return {**base, **fields}


def test_each_kind_of_the_member_topic_decodes_to_its_record() -> None:
    changed = decode_member_event(KEY, dump(life_event(
        "changed", nickname="new_fox", favorite_styles=[3])), MAX_BYTES)
    deleted = decode_member_event(KEY, dump(life_event("deleted", version=3)), MAX_BYTES)
    created = decode_member_event(KEY, dump(profile()), MAX_BYTES)
    assert isinstance(changed, ProfileChanged) and changed.nickname == "new_fox"
    assert (changed.version, changed.favorite_styles) == (2, [3])
    assert isinstance(deleted, MemberDeleted) and deleted.version == 3
    assert isinstance(created, ProfileInsert) and created.version == 1


@pytest.mark.parametrize(("event", "reason"), [
    (life_event("renamed"), "kind must be one of created, changed, deleted, got 'renamed'"),
    (life_event(["deleted"]), "kind must be one of created, changed, deleted"),
    (life_event("changed", favorite_styles=[3]), "nickname is required"),
    (life_event("deleted", version=0), "version "),
    (life_event("deleted", version="3"), "version "),
    (life_event("deleted", role="ADMIN"), "role "),
])
def test_a_bad_life_event_is_refused_with_its_reason(event: dict[str, object],
                                                     reason: str) -> None:
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        decode_member_event(KEY, dump(event), MAX_BYTES)


def test_each_kind_of_the_partner_topic_decodes_to_its_record() -> None:
    base = {"partner_id": UUID, "version": 2, "occurred_at": "2024-06-16T10:00:00Z"}
    changed = decode_partner_event(KEY, dump({**base, "kind": "changed", "nickname": "fox",
                                              "style_count": 2}), MAX_BYTES)
    deleted = decode_partner_event(KEY, dump({**base, "kind": "deleted"}), MAX_BYTES)
    assert isinstance(changed, PartnerChanged) and changed.style_count == 2
    assert isinstance(deleted, PartnerDeleted) and deleted.version == 2
    assert isinstance(decode_partner_event(KEY, dump(partner()), MAX_BYTES), PartnerCreated)
