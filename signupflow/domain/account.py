"""The rules of ``PATCH`` and ``DELETE /accounts/{uuid}``: what a change may say, who may make
it, what profile it leaves and which event tells the others.

Pure on purpose: the view reads the request and the storage layer runs the transaction; both
ask these functions what is allowed and what to write, so the rules are tested without either.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signupflow.domain.fields import FieldError, canonical_timestamp, check_styles
from signupflow.domain.signup import SignupInvalid, check_nickname
from signupflow.models.events import MemberDeleted, ProfileChanged, Role

#: The fields of the public profile a member may change, with the checks ``POST /signup`` runs.
CHANGEABLE: dict[str, Callable[[Any], Any]] = {
    "nickname": check_nickname,
    "favorite_styles": check_styles,
}

#: Where the accounts are (``/accounts/{uuid}``).
ACCOUNTS = "/accounts/"

#: The one answer to every request whose credentials do not open this account: no header, a
#: malformed one, an unknown email, a wrong password, another member's uuid, a deleted account.
#: Telling them apart would tell a stranger which emails have accounts.
UNAUTHORIZED = {"error": "unknown account or wrong credentials (HTTP Basic: email and password)"}
WWW_AUTHENTICATE = 'Basic realm="signupflow"'


class ChangeInvalid(SignupInvalid):
    """The body of a profile change is unusable (per field, as a refused signup)."""

    what = "invalid profile change"


class ProfileUnknown(ValueError):
    """The account predates auth keeping the public profile, and the change does not give all
    of it: auth cannot tell the others the whole profile after the change (409)."""

    def __init__(self) -> None:
        super().__init__(
            "this account was created before auth kept the public profile: give both "
            "nickname and favorite_styles in this change (the whole profile) once")


@dataclass(frozen=True)
class ProfileChange:
    """What a ``PATCH`` changes; None: left as it is."""

    nickname: str | None = None
    favorite_styles: list[int] | None = None


@dataclass(frozen=True)
class PublicProfile:
    """The public profile as every event carries it: all of it."""

    nickname: str
    favorite_styles: list[int]


def costs_a_hash(method: str, path: str) -> bool:
    """Whether a request is a change or deletion of an account: it checks a password (a scrypt
    hash), so it is admitted, rate limited and shed as a signup is."""
    return path.startswith(ACCOUNTS) and method in ("PATCH", "DELETE")


def validate_change(payload: Any) -> ProfileChange:
    """The change a ``PATCH`` body asks for, or :class:`ChangeInvalid` naming every bad field.

    At least one field; unknown fields are refused; a field given as null is refused too
    (leave it out to keep it; ``[]`` clears the styles).
    """
    if not isinstance(payload, Mapping):
        raise ChangeInvalid({"body": f"must be a JSON object, got {type(payload).__name__}"})
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in payload.items():
        check = CHANGEABLE.get(name)
        if check is None:
            errors[str(name)[:40]] = "is not a known field (changeable: nickname, " \
                                     "favorite_styles)"
        elif value is None:
            errors[name] = "must not be null (leave the field out to keep it)"
        else:
            try:
                values[name] = check(value)
            except FieldError as exc:
                errors[name] = str(exc)
    if not payload:
        errors["body"] = "must give at least one of nickname, favorite_styles"
    if errors:
        raise ChangeInvalid(errors)
    return ProfileChange(**values)


def styles_json(styles: list[int]) -> str:
    """How auth.db keeps a list of style ids (``member.favorite_styles``)."""
    return json.dumps(styles, separators=(",", ":"))


def changed_profile(nickname: str | None, favorite_styles: str | None,
                    change: ProfileChange) -> PublicProfile:
    """The profile after ``change``, from the stored one (``favorite_styles`` as auth.db keeps
    it); :class:`ProfileUnknown` if a part is neither stored nor given."""
    new_nickname = change.nickname if change.nickname is not None else nickname
    if change.favorite_styles is not None:
        styles: list[int] | None = list(change.favorite_styles)
    else:
        styles = None if favorite_styles is None else json.loads(favorite_styles)
    if new_nickname is None or styles is None:
        raise ProfileUnknown()
    return PublicProfile(new_nickname, styles)


def changed_event(member_uuid: str, version: int, role: Role, profile: PublicProfile,
                  occurred_at: datetime) -> ProfileChanged:
    """The ``profile-insert`` event of an accepted change: the whole public profile after it."""
    return ProfileChanged(kind="changed", uuid=member_uuid, version=version, role=role,
                          nickname=profile.nickname,
                          favorite_styles=list(profile.favorite_styles),
                          occurred_at=canonical_timestamp(occurred_at))


def deleted_event(member_uuid: str, version: int, role: Role,
                  occurred_at: datetime) -> MemberDeleted:
    """The ``profile-insert`` event of an accepted deletion."""
    return MemberDeleted(kind="deleted", uuid=member_uuid, version=version, role=role,
                         occurred_at=canonical_timestamp(occurred_at))


@dataclass(frozen=True)
class Credentials:
    """What an ``Authorization: Basic`` header gives: the email as accounts store it."""

    email: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(email={self.email!r})"


def basic_credentials(header: str | None) -> Credentials | None:
    """The credentials of an ``Authorization`` header, or None if it has none (missing, not
    Basic, not base64, no colon, not UTF-8, an empty part)."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    email, colon, password = decoded.partition(":")
    email = email.strip().lower()
    if not colon or not email or not password:
        return None
    return Credentials(email, password)


def basic_authorization(email: str, password: str) -> str:
    """The ``Authorization`` header a client sends for these credentials (UTF-8, as
    :func:`basic_credentials` reads them)."""
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode("ascii")


def may_act(target_uuid: str, account_uuid: str | None, password_matches: bool) -> bool:
    """Whether the credentials open ``target_uuid``: they name an account (``account_uuid``,
    None: no live account has that email; a deleted one has none), it is that one, and the
    password is its password."""
    return account_uuid is not None and account_uuid == target_uuid and password_matches
