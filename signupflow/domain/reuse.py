"""A uuid seen again: an identical redelivery (a no-op) or a conflicting reuse (an error).

Kafka delivers at least once, so every consumer sees some events twice and must change nothing
the second time. An event that reuses a uuid with other content is something else: a producer
bug or a forgery. Writing it would make two stores disagree for good, so it is refused with a
reason that names the difference, and dead-lettered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime


class Conflict(ValueError):
    """An event reuses a uuid with other content; ``str(exc)`` names the difference."""


@dataclass(frozen=True)
class Fingerprint:
    """What an event says about one member, in comparable form."""

    kind: str  # USER | PARTNER (the profile table), or "summary"
    nickname: str
    styles: frozenset[int] | int  # the style ids, or only their count (partner summaries)
    occurred_at: datetime

    @classmethod
    def of(cls, kind: str, nickname: str, styles: Iterable[int] | int,
           occurred_at: str | datetime) -> Fingerprint:
        return cls(kind, nickname, styles if isinstance(styles, int) else frozenset(styles),
                   instant(occurred_at))


def instant(value: str | datetime) -> datetime:
    """An aware UTC datetime; databases give stored UTC timestamps back without an offset."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def conflict(uuid: str, stored: Fingerprint, incoming: Fingerprint) -> str | None:
    """None when ``incoming`` says what ``stored`` says; otherwise the reason, naming each field
    that differs."""
    differences = [
        f"{name} {old!r} != {new!r}"
        for name, old, new in (
            ("role", stored.kind, incoming.kind),
            ("nickname", stored.nickname, incoming.nickname),
            ("styles", _show(stored.styles), _show(incoming.styles)),
            ("occurred_at", stored.occurred_at.isoformat(), incoming.occurred_at.isoformat()),
        ) if old != new
    ]
    if not differences:
        return None
    return f"uuid {uuid} reused with different content (stored vs event): " + "; ".join(
        differences)


def _show(styles: frozenset[int] | int) -> object:
    return styles if isinstance(styles, int) else sorted(styles)
