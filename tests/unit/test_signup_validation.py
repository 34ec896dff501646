"""Unit tests for signup validation (signupflow.domain.signup) and the field checks it uses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from signupflow.domain import fields
from signupflow.domain.fields import FieldError
from signupflow.domain.signup import Signup, SignupInvalid, profile_event, validate_signup
from signupflow.domain.styles import MAX_FAVORITE_STYLES, STYLES

TODAY = date(2024, 6, 15)
PASSWORD = "s3cret-Passw0rd!"
MEMBER_UUID = "3f2b8c1e-9a4d-4b6e-8f1a-2c3d4e5f6a7b"


def body(**overrides: Any) -> dict[str, Any]:
    """A valid signup body; ``overrides`` replace fields (the value ``...`` removes the field)."""
    data: dict[str, Any] = {
        "email": "  Alice.Kim@Example.COM ",
        "password": PASSWORD,
        "name": "  Alice Kim ",
        "phone": "+82 (10) 1234-5678",
        "birth": "1990-04-01",
        "gender": "FEMALE",
        "role": "PARTNER",
        "nickname": " neon_fox ",
        "favorite_styles": [3, 1, 12],
    }
    for name, value in overrides.items():
        if value is ...:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def errors_of(payload: Any, today: date = TODAY) -> dict[str, str]:
    with pytest.raises(SignupInvalid) as info:
        validate_signup(payload, today=today)
    return info.value.fields


# --- valid bodies ------------------------------------------------------------------------------


def test_valid_body_is_normalised() -> None:
    signup = validate_signup(body(), today=TODAY)

    assert isinstance(signup, Signup)
    assert signup.email == "alice.kim@example.com"
    assert signup.password == PASSWORD
    assert signup.name == "Alice Kim"
    assert signup.phone == "+821012345678"
    assert signup.birth == date(1990, 4, 1)
    assert signup.gender == "FEMALE"
    assert signup.role == "PARTNER"
    assert signup.nickname == "neon_fox"
    assert signup.favorite_styles == [3, 1, 12]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+82 10-1234-5678", "+821012345678"),
        ("010.1234.5678", "01012345678"),
        ("(555) 123-4567", "5551234567"),
        ("1234567", "1234567"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_is_stripped_to_digits_with_optional_plus(raw: str, expected: str) -> None:
    assert validate_signup(body(phone=raw), today=TODAY).phone == expected


@pytest.mark.parametrize("styles", [..., None])
def test_favorite_styles_default_to_empty_list(styles: Any) -> None:
    signup = validate_signup(body(favorite_styles=styles), today=TODAY)

    assert signup.favorite_styles == []


def test_empty_favorite_styles_list_is_accepted() -> None:
    assert validate_signup(body(favorite_styles=[]), today=TODAY).favorite_styles == []


def test_user_role_and_every_gender_are_accepted() -> None:
    for gender in ("FEMALE", "MALE", "OTHER"):
        signup = validate_signup(body(role="USER", gender=gender), today=TODAY)
        assert (signup.role, signup.gender) == ("USER", gender)


def test_birth_today_and_130_years_ago_are_accepted() -> None:
    assert validate_signup(body(birth="2024-06-15"), today=TODAY).birth == TODAY
    assert validate_signup(body(birth="1894-06-15"), today=TODAY).birth == date(1894, 6, 15)


def test_max_favorite_styles_is_accepted() -> None:
    styles = sorted(STYLES)[:MAX_FAVORITE_STYLES]

    assert validate_signup(body(favorite_styles=styles), today=TODAY).favorite_styles == styles


def test_today_defaults_to_current_utc_date() -> None:
    tomorrow = date.fromordinal(datetime.now(UTC).date().toordinal() + 2)

    with pytest.raises(SignupInvalid) as info:
        validate_signup(body(birth=tomorrow.isoformat()))

    assert info.value.fields == {"birth": "must not be in the future"}


# --- one bad field at a time -------------------------------------------------------------------


MISSING_FIELDS = ["email", "password", "name", "phone", "birth", "gender", "role", "nickname"]


@pytest.mark.parametrize("field", MISSING_FIELDS)
def test_missing_field_is_required(field: str) -> None:
    assert errors_of(body(**{field: ...})) == {field: "is required"}


@pytest.mark.parametrize("field", MISSING_FIELDS)
def test_null_field_is_required(field: str) -> None:
    assert errors_of(body(**{field: None})) == {field: "is required"}


@pytest.mark.parametrize(
    ("field", "value", "type_name"),
    [
        ("email", 42, "int"),
        ("password", 12345678, "int"),
        ("name", ["Alice"], "list"),
        ("phone", 821012345678, "int"),
        ("birth", 19900401, "int"),
        ("gender", True, "bool"),
        ("role", {"name": "USER"}, "dict"),
        ("nickname", 3.5, "float"),
    ],
)
def test_wrong_type_is_reported(field: str, value: Any, type_name: str) -> None:
    errors = errors_of(body(**{field: value}))

    assert list(errors) == [field]
    assert "must be" in errors[field]
    assert errors[field].endswith(f"got {type_name}")


def test_favorite_styles_wrong_type() -> None:
    assert errors_of(body(favorite_styles="1,2")) == {
        "favorite_styles": "must be a list of style ids, got str"
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "x" * 101, "must be 1 to 100 characters long"),
        ("name", "   ", "must be 1 to 100 characters long"),
        ("nickname", "x", "must be 2 to 30 characters long"),
        ("nickname", " x ", "must be 2 to 30 characters long"),
        ("nickname", "x" * 31, "must be 2 to 30 characters long"),
        ("password", "short7!", "must be 8 to 128 characters long"),
        ("password", "p" * 129, "must be 8 to 128 characters long"),
        ("email", "", "must be 1 to 254 characters long"),
        ("email", "a" * 250 + "@x.com", "must be 1 to 254 characters long"),
        ("phone", "123", "must be 4 to 32 characters long"),
        ("phone", "1" * 33, "must be 4 to 32 characters long"),
    ],
)
def test_length_limits(field: str, value: str, message: str) -> None:
    assert errors_of(body(**{field: value})) == {field: message}


def test_length_limits_are_inclusive() -> None:
    signup = validate_signup(
        body(name="x" * 100, nickname="ab", password="p" * 8), today=TODAY
    )

    assert (len(signup.name), signup.nickname, len(signup.password)) == (100, "ab", 8)
    assert validate_signup(body(nickname="n" * 30, password="p" * 128), today=TODAY)


@pytest.mark.parametrize("phone", ["123456", "1234567890123456", "+82 10 abcd 5678", "12+3456789"])
def test_bad_phone(phone: str) -> None:
    errors = errors_of(body(phone=phone))

    assert errors == {"phone": f"must be a phone number of 7 to 15 digits, got {phone!r}"}


@pytest.mark.parametrize("role", ["ADMIN", "user", "Partner", ""])
def test_unknown_role(role: str) -> None:
    assert errors_of(body(role=role)) == {
        "role": f"must be one of PARTNER, USER; got {role!r}"
    }


@pytest.mark.parametrize("gender", ["UNKNOWN", "female", "F"])
def test_unknown_gender(gender: str) -> None:
    assert errors_of(body(gender=gender)) == {
        "gender": f"must be one of FEMALE, MALE, OTHER; got {gender!r}"
    }


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "@example.com",
        "alice@",
        "alice@example",
        "alice@example.c",
        "alice@@example.com",
        "alice@exa@mple.com",
        "alice smith@example.com",
        "alice@example.com.",
        "alice@.com",
        "a@b..co",
        "a@example..com",
    ],
)
def test_bad_email_shapes(email: str) -> None:
    errors = errors_of(body(email=email))

    assert list(errors) == ["email"]
    assert errors["email"].startswith("must be an email address like name@example.com, got ")
    assert repr(email.lower()) in errors["email"]


@pytest.mark.parametrize(
    ("birth", "message"),
    [
        ("1990-13-01", "must be a date YYYY-MM-DD, got '1990-13-01'"),
        ("yesterday", "must be a date YYYY-MM-DD, got 'yesterday'"),
        ("2024-06-16", "must not be in the future"),
        ("2030-01-01", "must not be in the future"),
        ("1893-12-31", "must be within the last 130 years"),
        ("1800-01-01", "must be within the last 130 years"),
    ],
)
def test_bad_birth(birth: str, message: str) -> None:
    assert errors_of(body(birth=birth)) == {"birth": message}


def test_birth_limit_follows_the_given_today() -> None:
    later = date(2030, 1, 1)

    assert errors_of(body(birth="1899-06-01"), today=later) == {
        "birth": "must be within the last 130 years"
    }
    assert validate_signup(body(birth="1899-06-01"), today=TODAY).birth == date(1899, 6, 1)


def test_birth_just_over_130_years_ago_is_rejected() -> None:
    assert errors_of(body(birth="1894-12-30"), today=date(2024, 12, 31)) == {
        "birth": "must be within the last 130 years"}
    assert validate_signup(body(birth="1894-12-31"), today=date(2024, 12, 31)).birth == date(
        1894, 12, 31)


@pytest.mark.parametrize("birth", ["19900401", "1990-4-1", "1990-04-01T00:00"])
def test_birth_must_be_written_yyyy_mm_dd(birth: str) -> None:
    assert "must be a date YYYY-MM-DD" in errors_of(body(birth=birth))["birth"]


@pytest.mark.parametrize("phone", ["²³⁴⁵⁶⁷⁸⁹", "١٢٣٤٥٦٧٨٩"])
def test_non_ascii_digits_are_not_a_phone_number(phone: str) -> None:
    assert "7 to 15 digits" in errors_of(body(phone=phone))["phone"]


@pytest.mark.parametrize(
    ("styles", "message"),
    [
        ([1, 99], "unknown style id 99 (known: 1..12)"),
        ([0], "unknown style id 0 (known: 1..12)"),
        ([-3], "unknown style id -3 (known: 1..12)"),
        ([2, 5, 2], "style id 2 is listed twice"),
        ([True], "must hold integer style ids, got True"),
        ([1, False], "must hold integer style ids, got False"),
        (["3"], "must hold integer style ids, got '3'"),
        ([2.0], "must hold integer style ids, got 2.0"),
        ([None], "must hold integer style ids, got None"),
        (
            list(range(1, MAX_FAVORITE_STYLES + 2)),
            f"must hold at most {MAX_FAVORITE_STYLES} styles, got {MAX_FAVORITE_STYLES + 1}",
        ),
    ],
)
def test_bad_favorite_styles(styles: list[Any], message: str) -> None:
    assert errors_of(body(favorite_styles=styles)) == {"favorite_styles": message}


# --- the body as a whole -----------------------------------------------------------------------


def test_unknown_extra_field_is_reported() -> None:
    assert errors_of(body(is_admin=True)) == {"is_admin": "is not a known field"}


def test_long_unknown_field_name_is_truncated() -> None:
    errors = errors_of(body(**{"x" * 100: 1}))

    assert errors == {"x" * 40: "is not a known field"}


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [([body()], "list"), ("email=a@b.com", "str"), (None, "NoneType"), (42, "int")],
)
def test_non_object_body(payload: Any, type_name: str) -> None:
    assert errors_of(payload) == {"body": f"must be a JSON object, got {type_name}"}


def test_empty_object_reports_every_required_field() -> None:
    errors = errors_of({})

    assert errors == {name: "is required" for name in MISSING_FIELDS}


def test_all_errors_are_reported_at_once() -> None:
    payload = body(email="nope", role="ADMIN", nickname="x", favorite_styles=[1, 1], extra=1)

    info_fields = errors_of(payload)

    assert set(info_fields) == {"email", "role", "nickname", "favorite_styles", "extra"}
    assert info_fields["role"] == "must be one of PARTNER, USER; got 'ADMIN'"
    assert info_fields["favorite_styles"] == "style id 1 is listed twice"
    assert info_fields["extra"] == "is not a known field"


def test_signup_invalid_message_and_json() -> None:
    exc = SignupInvalid({"email": "is required", "role": "bad"})

    assert str(exc) == "email: is required; role: bad"
    assert exc.as_json() == {
        "error": "invalid signup",
        "fields": {"email": "is required", "role": "bad"},
    }


def test_signup_invalid_does_not_echo_the_password() -> None:
    secret = "x" * 200  # too long, and therefore an error

    with pytest.raises(SignupInvalid) as exc:
        validate_signup(body(password=secret), today=TODAY)

    assert exc.value.fields == {"password": "must be 8 to 128 characters long"}
    assert secret not in str(exc.value)


# --- privacy -----------------------------------------------------------------------------------


def test_repr_never_contains_the_password() -> None:
    signup = validate_signup(body(), today=TODAY)

    text = repr(signup)

    assert PASSWORD not in text
    assert "password" not in text
    assert "alice.kim@example.com" in text
    assert PASSWORD not in str(signup)


def test_profile_event_carries_only_public_fields() -> None:
    signup = validate_signup(body(), today=TODAY)
    occurred = datetime(2024, 6, 15, 9, 30, tzinfo=UTC)

    event = profile_event(signup, MEMBER_UUID, occurred)

    assert event.asdict() == {
        "uuid": MEMBER_UUID,
        "role": "PARTNER",
        "nickname": "neon_fox",
        "favorite_styles": [3, 1, 12],
        "occurred_at": "2024-06-15T09:30:00+00:00",
        "kind": "created",
        "version": 1,
    }
    raw = event.dumps()
    assert isinstance(raw, bytes)
    for secret in (signup.email, signup.phone, signup.name, signup.password, "1990-04-01"):
        assert secret.encode() not in raw
    assert b"__faust" not in raw


def test_profile_event_copies_the_styles_list() -> None:
    signup = validate_signup(body(), today=TODAY)

    event = profile_event(signup, MEMBER_UUID, datetime(2024, 6, 15, tzinfo=UTC))
    event.favorite_styles.append(7)

    assert signup.favorite_styles == [3, 1, 12]


# --- fields.py directly ------------------------------------------------------------------------


def test_get_treats_none_as_missing() -> None:
    assert fields.get({"a": 0}, "a") == 0
    assert fields.get({"a": ""}, "a") == ""
    for data in ({}, {"a": None}):
        with pytest.raises(FieldError, match=r"^is required$"):
            fields.get(data, "a")


def test_check_str_strips_and_bounds() -> None:
    assert fields.check_str("  ab  ", 2, 2) == "ab"
    with pytest.raises(FieldError, match="must be 3 to 5 characters long"):
        fields.check_str("ab", 3, 5)
    with pytest.raises(FieldError, match="must be a string, got bytes"):
        fields.check_str(b"abc")


def test_check_choice() -> None:
    assert fields.check_choice("B", ("A", "B")) == "B"
    with pytest.raises(FieldError, match=r"must be one of A, B; got 'C'"):
        fields.check_choice("C", ("B", "A"))
    with pytest.raises(FieldError, match="must be a string, got int"):
        fields.check_choice(1, ("A",))


@pytest.mark.parametrize(
    ("value", "minimum", "maximum", "message"),
    [
        (True, 0, 10, "must be an integer, got bool"),
        ("3", 0, 10, "must be an integer, got str"),
        (1.0, 0, 10, "must be an integer, got float"),
        (-1, 0, 10, "must be between 0 and 10, got -1"),
        (11, 0, 10, "must be between 0 and 10, got 11"),
    ],
)
def test_check_int_errors(value: Any, minimum: int, maximum: int, message: str) -> None:
    with pytest.raises(FieldError) as info:
        fields.check_int(value, minimum, maximum)

    assert str(info.value) == message


def test_check_int_bounds_are_inclusive() -> None:
    assert [fields.check_int(v, 0, 10) for v in (0, 10)] == [0, 10]


def test_field_error_is_a_value_error() -> None:
    assert issubclass(FieldError, ValueError)
    assert issubclass(SignupInvalid, ValueError)


@pytest.mark.parametrize("field", ["password", "nickname", "name", "email", "phone"])
def test_nul_characters_are_refused_in_every_text_field(field: str) -> None:
    """Finding: NUL was accepted; PostgreSQL cannot store it, so a signup that worked on
    SQLite failed on PostgreSQL."""
    value = {"password": "correct\x00horse", "nickname": "velvet\x00fox", "name": "Min\x00ji",
             "email": "min\x00ji@example.com", "phone": "+82 10\x00 1234 5678"}[field]
    with pytest.raises(SignupInvalid) as raised:
        validate_signup(body(**{field: value}), TODAY)
    assert "NUL" in raised.value.fields[field]


def test_profile_event_time_is_canonical_utc() -> None:
    signup = validate_signup(body(), TODAY)
    tokyo = datetime(2024, 6, 15, 18, 0, tzinfo=datetime.fromisoformat("2024-01-01T00:00+09:00")
                     .tzinfo)
    assert profile_event(signup, "u", tokyo).occurred_at == "2024-06-15T09:00:00+00:00"
