"""Realistic fake signups for the CLI, the tests and the benchmark (deterministic by seed)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from signupflow.domain.signup import GENDERS
from signupflow.domain.styles import STYLES

FIRST = ["Minji", "Jisoo", "Hana", "Seojun", "Doyun", "Yuna", "Liam", "Emma", "Noah", "Olivia",
         "Ava", "Lucas", "Mia", "Ethan", "Sofia", "Mateo", "Chloe", "Leo", "Aria", "Kai"]
LAST = ["Kim", "Lee", "Park", "Choi", "Jung", "Smith", "Garcia", "Müller", "Rossi", "Tanaka",
        "Nguyen", "Silva", "Brown", "Martin", "Kowalski", "Haddad", "Okafor", "Jensen"]
WORDS = ["neon", "linen", "denim", "velvet", "urban", "retro", "mono", "indigo", "pastel",
         "tweed", "olive", "chrome", "sable", "cotton", "amber", "cobalt"]


def fake_signup(rng: random.Random, index: int, partner_ratio: float, run: str) -> dict[str, Any]:
    """One valid signup body. ``run`` makes emails unique across separate runs."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    role = "PARTNER" if rng.random() < partner_ratio else "USER"
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    styles = rng.sample(sorted(STYLES), rng.randint(1, 3))
    return {
        "email": f"{first}.{last}.{run}.{index}@example.com".lower(),
        "password": f"pw-{rng.getrandbits(64):016x}",
        "name": f"{first} {last}",
        "phone": f"+82 10-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}",
        "birth": born.isoformat(),
        "gender": rng.choice(GENDERS),
        "role": role,
        "nickname": f"{rng.choice(WORDS)}_{rng.choice(WORDS)}{index % 1000}",
        "favorite_styles": styles,
    }


def fake_signups(count: int, partner_ratio: float, seed: int | None = None,
                 run: str | None = None) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    run = run or f"{rng.getrandbits(32):08x}"
    return [fake_signup(rng, i, partner_ratio, run) for i in range(count)]


#: A step of a member's life after its signup: a profile change (a ``PATCH`` body), or None:
#: its deletion.
LifeStep = dict[str, Any] | None


def fake_life(rng: random.Random, index: int, delete_ratio: float = 0.2) -> list[LifeStep]:
    """What a member does after signing up: 0 to 3 profile changes (a nickname, styles or
    both), then, with probability ``delete_ratio``, the deletion of the account."""
    steps: list[LifeStep] = []
    for n in range(rng.randint(0, 3)):
        what = rng.random()
        change: dict[str, Any] = {}
        if what < 2 / 3:
            change["nickname"] = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}{index % 1000}v{n + 2}"
        if what >= 1 / 3:
            change["favorite_styles"] = rng.sample(sorted(STYLES), rng.randint(0, 3))
        steps.append(change)
    if rng.random() < delete_ratio:
        steps.append(None)
    return steps


def fake_lives(count: int, partner_ratio: float, seed: int | None = None,
               run: str | None = None) -> list[tuple[dict[str, Any], list[LifeStep]]]:
    """``count`` signups, each with its life (deterministic by seed)."""
    rng = random.Random(seed)
    run = run or f"{rng.getrandbits(32):08x}"
    signups = [fake_signup(rng, i, partner_ratio, run) for i in range(count)]
    return [(s, fake_life(rng, i)) for i, s in enumerate(signups)]
