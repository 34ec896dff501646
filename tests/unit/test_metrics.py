"""The counters the stages and auth call, and the README naming every metric a worker exports
(with its labels), so that an operator finds each one documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from signupflow import metrics
from signupflow.metrics import (
    ACCOUNT_CHANGES,
    REGISTRY,
    count_account_change,
    count_events,
    kind_of_value,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def events(service: str, kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("signupflow_events_total",
                                     {"service": service, "kind": kind, "outcome": outcome}
                                     ) or 0.0


def account_changes(kind: str) -> float:
    """auth's counter is not in this process's registry (only the auth worker exports it)."""
    return next((s.value for family in ACCOUNT_CHANGES.collect() for s in family.samples
                 if s.name == "signupflow_account_changes_total" and s.labels == {"kind": kind}),
                0.0)


def test_count_events_counts_by_service_kind_and_outcome() -> None:
    before = {o: events("member", "changed", o) for o in metrics.EVENT_OUTCOMES}
    count_events("member", "changed", "applied")
    count_events("member", "changed", "stale", 3)
    after = {o: events("member", "changed", o) for o in metrics.EVENT_OUTCOMES}
    assert {o: after[o] - before[o] for o in after} == {
        "applied": 1, "stale": 3, "skipped": 0, "dead_lettered": 0}


@pytest.mark.parametrize(("kind", "outcome"), [("update", "applied"), ("changed", "processed"),
                                               ("Changed", "applied")])
def test_a_kind_or_outcome_outside_the_set_is_refused(kind: str, outcome: str) -> None:
    """A typo at a call would be a new series nobody looks at."""
    with pytest.raises(ValueError, match="must be one of"):
        count_events("member", kind, outcome)


@pytest.mark.parametrize(("value", "kind"), [
    (b'{"kind": "changed", "uuid": 1}', "changed"), (b'{"uuid": "x"}', "created"),
    (b'{"kind": "renamed"}', "unknown"), (b'{"kind": ["deleted"]}', "unknown"),
    (b"{not json", "unknown"), (b"[1]", "unknown"), (None, "unknown")])
def test_a_dead_letter_is_counted_under_the_kind_its_bytes_say(value: bytes | None,
                                                               kind: str) -> None:
    assert kind_of_value(value) == kind


def test_count_account_change_counts_changes_and_deletions_apart() -> None:
    changed, deleted = account_changes("changed"), account_changes("deleted")
    count_account_change("changed")
    count_account_change("changed")
    count_account_change("deleted")
    assert (account_changes("changed") - changed, account_changes("deleted") - deleted) == (2, 1)
    with pytest.raises(ValueError, match="must be one of"):
        count_account_change("created")


def documented_name(metric: MetricWrapperBase) -> str:
    """``name{label,label}`` as the README writes it (a counter's name ends in _total)."""
    name = metric._name + ("_total" if isinstance(metric, Counter) else "")
    labels = ",".join(metric._labelnames)
    return f"{name}{{{labels}}}" if labels else name


def test_every_metric_is_in_the_readme_with_its_labels() -> None:
    ours = [m for m in vars(metrics).values() if isinstance(m, (Counter, Gauge, Histogram))]
    assert len(ours) >= 10
    text = README.read_text()
    missing = [documented_name(m) for m in ours if f"`{documented_name(m)}`" not in text]
    assert not missing, f"not in the README (as `name{{labels}}`): {missing}"
