"""Validation of a signup request (HTTP body or CLI input) into a :class:`Signup`.

All problems are reported at once, field by field, so a client can fix its request in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

from signupflow.domain.fields import (
    MISSING,
    FieldError,
    canonical_timestamp,
    check_choice,
    check_str,
    check_styles,
    check_text,
    get,
)
from signupflow.models.events import ROLES, ProfileInsert, Role

Gender = Literal["FEMALE", "MALE", "OTHER"]
GENDERS: tuple[Gender, ...] = get_args(Gender)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*\.[^@\s.]{2,}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PHONE_STRIP_RE = re.compile(r"[\s().-]")


class SignupInvalid(ValueError):
    """The request is unusable; ``fields`` maps each bad field to what is wrong with it."""

    def __init__(self, fields: Mapping[str, str]):
        self.fields = dict(fields)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.fields.items()))

    #: what the body of the refused request was (the ``error`` of the answer)
    what = "invalid signup"

    def as_json(self) -> dict[str, Any]:
        return {"error": self.what, "fields": self.fields}


@dataclass(frozen=True)
class Signup:
    email: str
    password: str
    name: str
    phone: str
    birth: date
    gender: Gender
    role: Role
    nickname: str
    favorite_styles: list[int]

    def __repr__(self) -> str:  # never print the password
        return f"Signup(email={self.email!r}, role={self.role!r}, nickname={self.nickname!r})"


def check_email(value: Any) -> str:
    email = check_str(value, 1, 254).lower()
    if not EMAIL_RE.match(email):
        raise FieldError(f"must be an email address like name@example.com, got {email[:60]!r}")
    return email


def check_nickname(value: Any) -> str:
    return check_str(value, 2, 30)


def check_password(value: Any) -> str:
    password = check_text(value)
    if not 8 <= len(password) <= 128:
        raise FieldError("must be 8 to 128 characters long")
    return password


def check_phone(value: Any) -> str:
    raw = check_str(value, 4, 32)
    digits = PHONE_STRIP_RE.sub("", raw)
    plus = digits.startswith("+")
    digits = digits.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()) or not 7 <= len(digits) <= 15:
        raise FieldError(f"must be a phone number of 7 to 15 digits, got {raw!r}")
    return ("+" if plus else "") + digits


def check_birth(value: Any, today: date) -> date:
    if not isinstance(value, str):
        raise FieldError(f"must be a date string YYYY-MM-DD, got {type(value).__name__}")
    try:
        if not DATE_RE.match(value):
            raise ValueError(value)
        born = date.fromisoformat(value)
    except ValueError:
        raise FieldError(f"must be a date YYYY-MM-DD, got {value[:20]!r}") from None
    if born > today:
        raise FieldError("must not be in the future")
    if born < _years_before(today, 130):
        raise FieldError("must be within the last 130 years")
    return born


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def validate_signup(payload: Any, today: date | None = None) -> Signup:
    """Return a normalised :class:`Signup` or raise :class:`SignupInvalid`."""
    if not isinstance(payload, Mapping):
        raise SignupInvalid({"body": f"must be a JSON object, got {type(payload).__name__}"})
    today = today or datetime.now(UTC).date()
    checks: dict[str, Callable[[Any], Any]] = {
        "email": check_email,
        "password": check_password,
        "name": lambda v: check_str(v, 1, 100),
        "phone": check_phone,
        "birth": lambda v: check_birth(v, today),
        "gender": lambda v: check_choice(v, GENDERS),
        "role": lambda v: check_choice(v, ROLES),
        "nickname": check_nickname,
        "favorite_styles": check_styles,
    }
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, check in checks.items():
        raw = payload.get(name, MISSING)
        if name == "favorite_styles" and (raw is MISSING or raw is None):
            values[name] = []
            continue
        try:
            values[name] = check(get(payload, name))
        except FieldError as exc:
            errors[name] = str(exc)
    for name in payload:
        if name not in checks:
            errors[str(name)[:40]] = "is not a known field"
    if errors:
        raise SignupInvalid(errors)
    return Signup(**values)


def profile_event(signup: Signup, member_uuid: str, occurred_at: datetime) -> ProfileInsert:
    """The ``profile-insert`` event for a stored signup: public profile data only."""
    return ProfileInsert(
        uuid=member_uuid,
        role=signup.role,
        nickname=signup.nickname,
        favorite_styles=list(signup.favorite_styles),
        occurred_at=canonical_timestamp(occurred_at),
    )
