"""Signups per minute by role (pure): the minute windows, their expiry, the query, the sums.

A signup counts in the minute it was accepted (``ProfileInsert.occurred_at``), not in the
minute it was processed: a redelivered or late event lands where it belongs, and replaying a
topic gives the same chart. Windows are tumbling minutes of UTC epoch time, kept for a day.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from signupflow.domain.reuse import instant
from signupflow.models.events import ROLES

WINDOW_SECONDS = 60
EXPIRES = timedelta(days=1)
DEFAULT_MINUTES = 60
MAX_MINUTES = int(EXPIRES.total_seconds()) // WINDOW_SECONDS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A count's place: (role, source partition, window start in epoch seconds).
MinuteKey = tuple[str, int, int]


def window_start(at: str | datetime | float) -> int:
    """The start (epoch seconds) of the minute ``at`` falls in (a datetime's exactly: as a
    float, the last microsecond of the year 9999 rounds up into the next minute)."""
    if isinstance(at, int | float):
        return int(at // WINDOW_SECONDS) * WINDOW_SECONDS
    return (instant(at) - EPOCH) // timedelta(seconds=WINDOW_SECONDS) * WINDOW_SECONDS


def oldest_kept(now: float) -> int:
    """The start of the oldest window still kept at ``now``: a window expires once it ended a
    whole day ago (as Faust's ``TumblingWindow.stale`` has it)."""
    return window_start(now) - int(EXPIRES.total_seconds())


def expired(start: int, now: float) -> bool:
    return start < oldest_kept(now)


def iso(start: int) -> str:
    return datetime.fromtimestamp(start, UTC).isoformat()


@dataclass(frozen=True)
class MinutesQuery:
    """``?minutes=&end=``: the last ``minutes`` minutes up to the one starting at ``end``
    (epoch seconds; default: the current minute, by the answering worker's clock)."""

    minutes: int = DEFAULT_MINUTES
    end: int | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> MinutesQuery:
        """The query of a request, or ValueError saying what is wrong with it."""
        raw = query.get("minutes", str(DEFAULT_MINUTES))
        if not _whole(raw) or not 1 <= int(raw) <= MAX_MINUTES:
            raise ValueError(f"minutes must be a whole number from 1 to {MAX_MINUTES} (a day "
                             f"of minutes is kept), got {raw!r}")
        end = query.get("end")
        if end is not None and not (_whole(end) and int(end) % WINDOW_SECONDS == 0):
            raise ValueError(f"end must be the start of a minute in epoch seconds (a whole "
                             f"multiple of {WINDOW_SECONDS}), got {end!r}")
        return cls(int(raw), None if end is None else int(end))

    def starts(self, now: float) -> list[int]:
        """The window starts asked for, oldest first."""
        last = window_start(now) if self.end is None else self.end
        return [last - WINDOW_SECONDS * i for i in range(self.minutes - 1, -1, -1)]

    def pinned(self, now: float) -> MinutesQuery:
        """The same minutes with ``end`` fixed, for asking other workers (whose clocks may
        be a minute boundary apart)."""
        return MinutesQuery(self.minutes, self.starts(now)[-1])

    def params(self) -> dict[str, str]:
        return {"minutes": str(self.minutes),
                **({"end": str(self.end)} if self.end is not None else {})}


def _whole(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²" (which ``int`` refuses) and "٣"."""
    return text.isascii() and text.isdigit()


def series(counts: Iterable[tuple[MinuteKey, int]], starts: Sequence[int]
           ) -> list[dict[str, Any]]:
    """One row per minute of ``starts``, oldest first: ``{"minute": ISO, "USER": n,
    "PARTNER": n}``, summed over partitions; counts outside ``starts`` are left out."""
    sums: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ROLES, 0))
    wanted = set(starts)
    for (role, _partition, start), n in counts:
        if start in wanted:
            sums[start][role] += n
    return [{"minute": iso(s), **(sums[s] if s in sums else dict.fromkeys(ROLES, 0))}
            for s in starts]


def add(*many: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the same minutes (several workers' answers) summed minute by minute."""
    first, *rest = many
    out = [dict(row) for row in first]
    for rows in rest:
        if [r["minute"] for r in rows] != [r["minute"] for r in out]:
            raise ValueError("answers for other minutes cannot be added")
        for mine, theirs in zip(out, rows, strict=True):
            for role in ROLES:
                mine[role] += theirs[role]
    return out


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    sums: dict[str, int] = dict.fromkeys(ROLES, 0)
    for row in rows:
        for role in ROLES:
            sums[role] += row[role]
    return sums


def answer(rows: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The JSON of ``GET /signups-per-minute/``."""
    return {"per_minute": rows, "totals": totals(rows), "workers": workers}
