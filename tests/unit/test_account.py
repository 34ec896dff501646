"""Unit tests of the account rules (signupflow.domain.account): the PATCH body, the profile a
change leaves, the events, and the credentials that open an account (one 401 for the rest)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from signupflow.domain.account import (
    UNAUTHORIZED,
    ChangeInvalid,
    Credentials,
    ProfileChange,
    ProfileUnknown,
    PublicProfile,
    basic_authorization,
    basic_credentials,
    changed_event,
    changed_profile,
    deleted_event,
    may_act,
    styles_json,
    validate_change,
)
from signupflow.domain.decode import decode_member_event
from signupflow.domain.fake import fake_life
from signupflow.domain.signup import SignupInvalid, validate_signup

UUID = "3f2b8c1e-9a4d-4b6e-8f1a-2c3d4e5f6a7b"
OTHER = "0c9d2e4f-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone(timedelta(hours=9)))


# --- the PATCH body ---------------------------------------------------------------------------

def test_a_change_gives_one_or_both_fields_normalised_as_signup_does() -> None:
    assert validate_change({"nickname": "  neon_fox "}) == ProfileChange(nickname="neon_fox")
    assert validate_change({"favorite_styles": [3, 1]}) == ProfileChange(favorite_styles=[3, 1])
    assert validate_change({"favorite_styles": []}) == ProfileChange(favorite_styles=[])
    assert validate_change({"nickname": "ab", "favorite_styles": [2]}) == ProfileChange("ab", [2])


@pytest.mark.parametrize("field,value", [
    ("nickname", "x"), ("nickname", "y" * 31), ("nickname", 12), ("nickname", "a\x00b"),
    ("favorite_styles", [1, 1]), ("favorite_styles", [9999]), ("favorite_styles", "1"),
    ("favorite_styles", [True]),
])
def test_a_change_is_refused_by_the_rules_a_signup_is_refused_by(field: str, value: Any) -> None:
    signup = {"email": "a@example.com", "password": "long enough", "name": "A",
              "phone": "+44 20 7946 0958", "birth": "1990-01-01", "gender": "OTHER",
              "role": "USER", "nickname": "fine", "favorite_styles": [1], field: value}
    with pytest.raises(ValueError) as signup_error:
        validate_signup(signup)
    with pytest.raises(ChangeInvalid) as change_error:
        validate_change({field: value})
    assert isinstance(signup_error.value, SignupInvalid)
    assert change_error.value.fields == {field: signup_error.value.fields[field]}


def test_every_bad_field_is_reported_at_once_in_the_shape_of_a_refused_signup() -> None:
    with pytest.raises(ChangeInvalid) as exc:
        validate_change({"nickname": "x", "email": "b@example.com", "favorite_styles": None})
    assert exc.value.as_json() == {"error": "invalid profile change", "fields": {
        "nickname": "must be 2 to 30 characters long",
        "email": "is not a known field (changeable: nickname, favorite_styles)",
        "favorite_styles": "must not be null (leave the field out to keep it)"}}


@pytest.mark.parametrize("payload,field", [({}, "body"), ([], "body"), ("x", "body"),
                                           (None, "body")])
def test_a_change_must_be_an_object_with_something_to_change(payload: Any, field: str) -> None:
    with pytest.raises(ChangeInvalid) as exc:
        validate_change(payload)
    assert list(exc.value.fields) == [field]


# --- the profile after a change, and its event ------------------------------------------------

def test_a_change_keeps_what_it_does_not_give() -> None:
    stored = styles_json([4, 2])
    assert changed_profile("old", stored, ProfileChange(nickname="new")) == PublicProfile(
        "new", [4, 2])
    assert changed_profile("old", stored, ProfileChange(favorite_styles=[])) == PublicProfile(
        "old", [])


@pytest.mark.parametrize("change", [ProfileChange(nickname="new"),
                                    ProfileChange(favorite_styles=[1])])
def test_an_account_without_a_stored_profile_needs_the_whole_profile(
        change: ProfileChange) -> None:
    with pytest.raises(ProfileUnknown, match="both nickname and favorite_styles"):
        changed_profile(None, None, change)
    assert changed_profile(None, None, ProfileChange("new", [1])) == PublicProfile("new", [1])


def test_the_events_carry_the_whole_profile_and_the_version_and_decode_as_such() -> None:
    changed = changed_event(UUID, 3, "PARTNER", PublicProfile("neon", [5, 1]), AT)
    assert changed.asdict() == {
        "kind": "changed", "uuid": UUID, "version": 3, "role": "PARTNER", "nickname": "neon",
        "favorite_styles": [5, 1], "occurred_at": "2026-03-03T20:06:07.890000+00:00"}
    deleted = deleted_event(UUID, 4, "USER", AT.astimezone(UTC))
    assert deleted.asdict() == {"kind": "deleted", "uuid": UUID, "version": 4, "role": "USER",
                                "occurred_at": "2026-03-03T20:06:07.890000+00:00"}
    assert decode_member_event(UUID.encode(), changed.dumps(), 4096) == changed
    assert decode_member_event(UUID.encode(), deleted.dumps(), 4096) == deleted


# --- credentials: one 401 for everything that does not open the account -----------------------

def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_what_a_client_sends_is_what_the_server_reads() -> None:
    header = basic_authorization("ada@example.com", "pässwörd:with colon")
    assert basic_credentials(header) == Credentials("ada@example.com", "pässwörd:with colon")


def test_basic_credentials_give_the_email_as_accounts_store_it() -> None:
    got = basic_credentials(basic(" Ada@Example.COM:pass:with:colons"))
    assert got == Credentials("ada@example.com", "pass:with:colons")
    assert "pass" not in repr(got)
    assert basic_credentials("basic  " + basic("a@b.io:pw").split()[1]) == Credentials(
        "a@b.io", "pw")


@pytest.mark.parametrize("header", [
    None, "", "Basic", "Bearer abc", "Basic !!!", basic("no-colon"), basic(":pw"),
    basic("a@b.io:"), "Basic " + base64.b64encode(b"a@b.io:\xff").decode(),
])
def test_a_header_without_usable_credentials_gives_none(header: str | None) -> None:
    assert basic_credentials(header) is None


@pytest.mark.parametrize("account_uuid,matches", [
    (None, False),   # unknown email (or a deleted account: its email is erased)
    (None, True),
    (UUID, False),   # wrong password
    (OTHER, True),   # the credentials of another account
    (OTHER, False),
])
def test_only_the_accounts_own_credentials_open_it(account_uuid: str | None,
                                                   matches: bool) -> None:
    assert not may_act(UUID, account_uuid, matches)


def test_the_right_credentials_open_the_account() -> None:
    assert may_act(UUID, UUID, True)


def test_the_one_401_answer_names_no_reason() -> None:
    text = UNAUTHORIZED["error"].lower()
    assert not any(word in text for word in ("deleted", "not found", "no such", "incorrect"))


# --- fake lives (signupflow signup --life) ----------------------------------------------------

def test_fake_lives_are_valid_changes_then_maybe_a_deletion_last() -> None:
    rng = random.Random(5)
    lives = [fake_life(rng, i) for i in range(400)]
    assert lives == [fake_life(r, i) for r in [random.Random(5)] for i in range(400)]
    changes = [[s for s in life if s is not None] for life in lives]
    assert {len(c) for c in changes} == {0, 1, 2, 3}
    for life in lives:
        assert None not in life[:-1], "a step after the deletion"
        for step in life:
            if step is not None:
                assert validate_change(step) == ProfileChange(**step)
    deleted = sum(1 for life in lives if life and life[-1] is None)
    assert 40 < deleted < 120  # about one in five
