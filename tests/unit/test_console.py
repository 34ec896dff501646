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
    """Processed: every event the stage finished but its dead letters; changes and deletions:
    those it applied (a stale one changed nothing); another stage's samples are not its own."""
    text = """# TYPE signupflow_events_total counter
signupflow_events_total{kind="created",outcome="applied",service="member"} 12.0
signupflow_events_total{kind="created",outcome="stale",service="member"} 2.0
signupflow_events_total{kind="changed",outcome="applied",service="member"} 5.0
signupflow_events_total{kind="changed",outcome="stale",service="member"} 1.0
signupflow_events_total{kind="changed",outcome="skipped",service="member"} 1.0
signupflow_events_total{kind="deleted",outcome="applied",service="member"} 3.0
signupflow_events_total{kind="unknown",outcome="dead_lettered",service="member"} 1.0
signupflow_events_total{kind="deleted",outcome="applied",service="batch"} 9.0
# TYPE signupflow_consumer_lag gauge
signupflow_consumer_lag{partition="0",topic="profile-insert"} 3.0
signupflow_consumer_lag{partition="1",topic="profile-insert"} 4.0
"""
    assert stage_figures("member", text) == {
        "processed": 12.0 + 2 + 5 + 1 + 1 + 3, "changed": 5.0, "deleted": 3.0,
        "dead_lettered": 0.0, "lag": 7.0, "outbox_pending": 0.0}
    assert stage_figures("batch", text)["deleted"] == 9.0


def test_auth_s_figures_are_its_signups_and_its_account_changes() -> None:
    text = """# TYPE signupflow_signups_total counter
signupflow_signups_total{outcome="created"} 40.0
signupflow_signups_total{outcome="duplicate"} 1.0
# TYPE signupflow_account_changes_total counter
signupflow_account_changes_total{kind="changed"} 7.0
signupflow_account_changes_total{kind="deleted"} 2.0
# TYPE signupflow_outbox_pending gauge
signupflow_outbox_pending 4.0
"""
    assert stage_figures("auth", text) == {
        "processed": 40.0, "changed": 7.0, "deleted": 2.0, "dead_lettered": 0.0, "lag": 0.0,
        "outbox_pending": 4.0}
