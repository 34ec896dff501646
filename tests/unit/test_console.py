"""The console's per-second rates, worked out by the batch worker from the counts it read
before (finding: the page divided by its own timers, and showed 0.0 under load whenever they
ran fast, as in the headless browser that made docs/console.png)."""

from __future__ import annotations

from signupflow.console import Rates, stage_figures


def test_no_rate_until_a_sample_is_a_second_old_then_per_second_since_it() -> None:
    rates = Rates()
    assert rates.rate("auth", 0, 100.0) is None
    assert rates.rate("auth", 3, 100.4) is None
    assert rates.rate("auth", 10, 102.0) == 5.0


def test_the_rate_covers_about_the_window_and_each_stage_has_its_own() -> None:
    rates = Rates(window=10.0)
    for second in range(0, 21, 2):  # 7 events a second throughout
        rates.rate("member", 7 * second, 1000.0 + second)
        rates.rate("batch", 0, 1000.0 + second)
    assert rates.rate("member", 7 * 22 + 60, 1022.0) == (7 * 22 + 60 - 7 * 12) / 10
    assert rates.rate("batch", 0, 1022.0) == 0.0


def test_a_restarted_worker_counts_from_zero_again_and_is_no_negative_rate() -> None:
    rates = Rates()
    rates.rate("member", 500, 0.0)
    assert rates.rate("member", 520, 2.0) == 10.0
    assert rates.rate("member", 4, 4.0) is None
    assert rates.rate("member", 24, 6.0) == 10.0


def test_stage_figures_read_the_stage_s_own_counter() -> None:
    text = """# TYPE signupflow_events_total counter
signupflow_events_total{outcome="processed",service="member"} 12.0
signupflow_events_total{outcome="dead_lettered",service="member"} 1.0
# TYPE signupflow_consumer_lag gauge
signupflow_consumer_lag{partition="0",topic="profile-insert"} 3.0
signupflow_consumer_lag{partition="1",topic="profile-insert"} 4.0
"""
    assert stage_figures("member", text) == {"processed": 12.0, "dead_lettered": 0.0,
                                             "lag": 7.0, "outbox_pending": 0.0}
