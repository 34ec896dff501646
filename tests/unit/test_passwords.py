"""Unit tests for scrypt password hashing (signupflow.domain.passwords)."""

from __future__ import annotations

import base64

import pytest

from signupflow.domain.passwords import DKLEN, hash_password, verify_password

N = 4096  # the smallest cost the settings allow: keeps the tests fast
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD, N)


def test_hash_then_verify(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is True


@pytest.mark.parametrize(
    "attempt",
    ["wrong password", "", PASSWORD.upper(), PASSWORD + " ", PASSWORD[:-1], " " + PASSWORD],
)
def test_wrong_password_is_rejected(stored: str, attempt: str) -> None:
    assert verify_password(attempt, stored) is False


def test_non_ascii_password_round_trips() -> None:
    stored = hash_password("비밀번호-Пароль-🔑", N)

    assert verify_password("비밀번호-Пароль-🔑", stored) is True
    assert verify_password("비밀번호-Пароль-", stored) is False


def test_two_hashes_of_the_same_password_differ(stored: str) -> None:
    again = hash_password(PASSWORD, N)

    assert again != stored
    assert again.split("$")[4] != stored.split("$")[4]  # the salt
    assert verify_password(PASSWORD, again) is True


def test_stored_format(stored: str) -> None:
    parts = stored.split("$")

    assert len(parts) == 6
    scheme, n, r, p, salt, digest = parts
    assert scheme == "scrypt"
    assert (n, r, p) == (str(N), "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(digest, validate=True)) == DKLEN


def test_cost_is_recorded_as_given() -> None:
    stored = hash_password(PASSWORD, 8192)

    assert stored.startswith("scrypt$8192$8$1$")
    assert verify_password(PASSWORD, stored) is True


def test_password_text_does_not_appear_in_the_hash(stored: str) -> None:
    assert PASSWORD not in stored
    for word in PASSWORD.split():
        assert word not in stored
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert encoded not in stored


def test_tampered_digest_is_rejected(stored: str) -> None:
    head, digest = stored.rsplit("$", 1)
    raw = bytearray(base64.b64decode(digest))
    raw[0] ^= 0x01

    tampered = f"{head}${base64.b64encode(bytes(raw)).decode()}"

    assert verify_password(PASSWORD, tampered) is False


def test_other_salt_is_rejected(stored: str) -> None:
    other = hash_password(PASSWORD, N)
    scheme, n, r, p, _salt, digest = stored.split("$")
    mixed = "$".join([scheme, n, r, p, other.split("$")[4], digest])

    assert verify_password(PASSWORD, mixed) is False


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "$$$$$",
        "scrypt$4096$8$1$c2FsdA==",
        "scrypt$4096$8$1$c2FsdA==$ZGlnZXN0$extra",
        "bcrypt$4096$8$1$c2FsdA==$ZGlnZXN0",
        "SCRYPT$4096$8$1$c2FsdA==$ZGlnZXN0",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "pbkdf2_sha256$600000$salt$hash$x$y",
        PASSWORD,
    ],
)
def test_garbage_or_unknown_scheme_is_rejected(garbage: str) -> None:
    assert verify_password(PASSWORD, garbage) is False


def test_unknown_scheme_with_matching_parameters_is_rejected(stored: str) -> None:
    _, rest = stored.split("$", 1)

    assert verify_password(PASSWORD, f"argon2${rest}") is False


@pytest.mark.parametrize(
    "malformed",
    [
        "scrypt$abc$8$1$c2FsdA==$ZGlnZXN0",  # n not a number -> ValueError
        "scrypt$1000$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two -> ValueError
        "scrypt$4096$8$1$c2FsdA$ZGlnZXN0",  # bad base64 padding -> binascii.Error
        "scrypt$4096$8$1$!!$ZGlnZXN0",  # not base64 at all
    ],
)
def test_malformed_scrypt_entry_is_rejected(malformed: str) -> None:
    assert verify_password(PASSWORD, malformed) is False
