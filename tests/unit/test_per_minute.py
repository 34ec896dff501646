"""Signups per minute, the pure parts: window assignment, expiry, the query, the sums."""

from __future__ import annotations

import random

import pytest
from faust.windows import TumblingWindow

from signupflow.domain.per_minute import (
    EXPIRES,
    MAX_MINUTES,
    WINDOW_SECONDS,
    MinutesQuery,
    add,
    answer,
    expired,
    iso,
    oldest_kept,
    series,
    totals,
    window_start,
)

T0 = 1_795_860_000  # 2026-11-28T10:00:00Z, the start of a minute


@pytest.mark.parametrize(("at", "start"), [
    ("2026-11-28T10:00:00+00:00", T0),
    ("2026-11-28T10:00:59.999999+00:00", T0),
    ("2026-11-28T10:01:00+00:00", T0 + 60),
    ("2026-11-28T19:00:30+09:00", T0),  # the same instant at another offset
    ("2026-11-28T04:59:59.5-05:00", T0 - 60),
    ("0001-01-01T00:00:30+00:00", -62_135_596_800),  # the decoders' extremes still work
    ("9999-12-31T23:59:59.999999+00:00", 253_402_300_740),
    (T0 + 59.9, T0),
    (T0 - 0.000001, T0 - 60),
])
def test_a_signup_falls_in_the_minute_of_its_own_time(at: str | float, start: int) -> None:
    assert window_start(at) == start
    assert iso(T0) == "2026-11-28T10:00:00+00:00"


def test_windows_are_fausts_tumbling_minutes() -> None:
    window = TumblingWindow(WINDOW_SECONDS, expires=EXPIRES)
    rng = random.Random(7)
    for ts in [T0, T0 + 0.05, T0 + 59.95, *(rng.uniform(0, 2e9) for _ in range(500))]:
        (start, end), = window.ranges(ts)
        assert window_start(ts) == start and window.current(ts) == (start, end)


def test_a_window_expires_when_it_ended_a_day_ago_as_in_faust() -> None:
    window = TumblingWindow(WINDOW_SECONDS, expires=EXPIRES)
    day = int(EXPIRES.total_seconds())
    assert not expired(T0, T0 + 60 + day - 0.001)
    assert expired(T0, T0 + 60 + day)
    assert oldest_kept(T0 + 60 + day) == T0 + 60
    rng = random.Random(8)
    for _ in range(2000):
        start = window_start(rng.uniform(T0 - 2 * day, T0))
        now = T0 + rng.choice([0, rng.uniform(-60, 60), rng.uniform(0, day)])
        assert expired(start, now) == window.stale(window.current(start)[1], now), (start, now)
    assert MAX_MINUTES * WINDOW_SECONDS == EXPIRES.total_seconds() == 86_400


@pytest.mark.parametrize(("query", "parsed"), [
    ({}, MinutesQuery(60, None)),
    ({"minutes": "1"}, MinutesQuery(1, None)),
    ({"minutes": "1440", "end": str(T0)}, MinutesQuery(1440, T0)),
    ({"minutes": "5", "other": "ignored"}, MinutesQuery(5, None)),
])
def test_the_query_parses(query: dict[str, str], parsed: MinutesQuery) -> None:
    assert MinutesQuery.parse(query) == parsed


@pytest.mark.parametrize(("query", "message"), [
    ({"minutes": "0"}, "minutes must be a whole number from 1 to 1440 (a day of minutes is "
                       "kept), got '0'"),
    ({"minutes": "1441"}, "got '1441'"),
    ({"minutes": "-5"}, "got '-5'"),
    ({"minutes": "1.5"}, "got '1.5'"),
    ({"minutes": ""}, "got ''"),
    ({"minutes": "٣"}, "got '٣'"),  # digits to str.isdigit; int() takes the first only
    ({"minutes": "²"}, "got '²'"),
    ({"end": "later"}, "end must be the start of a minute in epoch seconds (a whole multiple "
                       "of 60), got 'later'"),
    ({"end": str(T0 + 1)}, f"got '{T0 + 1}'"),
])
def test_a_bad_query_says_precisely_what_is_wrong(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        MinutesQuery.parse(query)
    assert message in str(caught.value)


def test_the_minutes_asked_for_end_now_or_at_end_oldest_first() -> None:
    assert MinutesQuery(3).starts(T0 + 30) == [T0 - 120, T0 - 60, T0]
    pinned = MinutesQuery(3).pinned(T0 + 30)
    assert pinned == MinutesQuery(3, T0)
    assert pinned.starts(T0 + 3600) == [T0 - 120, T0 - 60, T0]  # the clock no longer counts
    assert pinned.params() == {"minutes": "3", "end": str(T0)}
    assert MinutesQuery(3).params() == {"minutes": "3"}


def test_series_sums_the_partitions_of_each_minute_and_fills_the_gaps() -> None:
    counts = [(("USER", 0, T0), 2), (("USER", 3, T0), 5), (("PARTNER", 1, T0), 1),
              (("PARTNER", 0, T0 - 120), 4), (("USER", 0, T0 - 180), 9),  # before the range
              (("USER", 2, T0 + 60), 7)]  # after it
    rows = series(counts, [T0 - 120, T0 - 60, T0])
    assert rows == [
        {"minute": iso(T0 - 120), "USER": 0, "PARTNER": 4},
        {"minute": iso(T0 - 60), "USER": 0, "PARTNER": 0},
        {"minute": iso(T0), "USER": 7, "PARTNER": 1},
    ]
    assert totals(rows) == {"USER": 7, "PARTNER": 5}
    assert answer(rows, 2) == {"per_minute": rows, "totals": {"USER": 7, "PARTNER": 5},
                               "workers": 2}


def test_workers_answers_add_up_minute_by_minute() -> None:
    starts = [T0 - 60, T0]
    mine = series([(("USER", 0, T0), 2)], starts)
    theirs = series([(("USER", 1, T0), 3), (("PARTNER", 2, T0 - 60), 1)], starts)
    assert add(mine, theirs) == series(
        [(("USER", 0, T0), 5), (("PARTNER", 0, T0 - 60), 1)], starts)
    assert add(mine) == mine and mine[1]["USER"] == 2  # the inputs are left as they were
    with pytest.raises(ValueError, match="other minutes"):
        add(mine, series([], [T0, T0 + 60]))
