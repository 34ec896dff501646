"""reconcile(): every kind of disagreement between the three stores is named, none invented."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from signupflow.domain.reuse import instant
from signupflow.models.events import ProfileInsert
from signupflow.verify import Snapshot, reconcile

NOW = "2026-11-26T10:00:00+00:00"
USER = "00000000-0000-4000-8000-000000000001"
PARTNER = "00000000-0000-4000-8000-000000000002"


def event(uuid: str, role: str, nickname: str, styles: list[int]) -> bytes:
    return ProfileInsert(uuid=uuid, role=role, nickname=nickname, favorite_styles=styles,
                         occurred_at=NOW).dumps()


def clean() -> Snapshot:
    return Snapshot(
        accounts={USER: "USER", PARTNER: "PARTNER"},
        events={USER: [event(USER, "USER", "neon_owl", [1])],
                PARTNER: [event(PARTNER, "PARTNER", "amber_fox", [2, 3])]},
        unpublished=set(),
        users={USER: "neon_owl"}, partners={PARTNER: "amber_fox"},
        styles={USER: {1}, PARTNER: {2, 3}},
        summaries={PARTNER: ("amber_fox", 2, instant(NOW))},
        table={PARTNER: ("amber_fox", 2, instant(NOW))},
    )


def test_the_same_instant_in_another_offset_is_no_difference() -> None:
    """The table serves timestamps as text; one instant written two ways is one instant."""
    s = clean()
    s.table = {PARTNER: ("amber_fox", 2, instant("2026-11-26T19:00:00+09:00"))}
    assert reconcile(s).ok


def test_a_clean_snapshot_is_consistent() -> None:
    report = reconcile(clean())
    assert report.ok and report.problems == {} and report.in_flight == 0
    assert report.counts == {"accounts": 2, "users": 1, "partners": 1, "favorite_styles": 3,
                             "summaries": 1, "table": 1}
    assert report.render().endswith("consistent")


def drop_profile(s: Snapshot) -> None:
    del s.users[USER]


def lost_event(s: Snapshot) -> None:
    drop_profile(s)
    del s.events[USER]


def unpublished_without_profile(s: Snapshot) -> None:
    del s.users[USER], s.styles[USER]
    s.unpublished.add(USER)


PLANTS: list[tuple[Callable[[Snapshot], object], str, str]] = [
    (drop_profile, "account without profile", USER),
    (lambda s: s.accounts.pop(USER), "profile without account", USER),
    (lambda s: s.users.update({PARTNER: "amber_fox"}), "profile both user and partner", PARTNER),
    (lost_event, "account without outbox event", USER),
    (lambda s: s.events[USER].append(s.events[USER][0]), "account with several events", USER),
    (lambda s: s.accounts.update({USER: "PARTNER"}), "profile role differs from account", USER),
    (lambda s: s.users.update({USER: "other"}), "profile differs from its event", USER),
    (lambda s: s.styles.update({USER: {1, 4}}), "profile differs from its event", USER),
    (lambda s: s.styles.update({"ghost": {1}}), "styles without profile", "ghost"),
    (lambda s: s.summaries.pop(PARTNER), "partner without summary", PARTNER),
    (lambda s: s.summaries.update({"ghost": ("g", 1, instant(NOW))}), "summary without partner",
     "ghost"),
    (lambda s: s.summaries.update({PARTNER: ("amber_fox", 5, instant(NOW))}),
     "summary differs from partner", PARTNER),
    (lambda s: s.table.pop(PARTNER), "batch.db differs from table", PARTNER),  # type: ignore[union-attr]
]


@pytest.mark.parametrize(("plant", "kind", "uuid"), PLANTS,
                         ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(PLANTS)])
def test_each_planted_problem_is_reported(
    plant: Callable[[Snapshot], None], kind: str, uuid: str
) -> None:
    snapshot = copy.deepcopy(clean())
    plant(snapshot)
    report = reconcile(snapshot)
    assert not report.ok
    assert uuid in report.problems[kind]
    assert f"PROBLEM {kind}:" in report.render() and "INCONSISTENT" in report.render()


def test_an_unpublished_event_is_in_flight_not_a_problem() -> None:
    snapshot = clean()
    unpublished_without_profile(snapshot)
    report = reconcile(snapshot)
    assert report.ok and report.in_flight == 1


def test_events_deleted_by_the_outbox_retention_are_no_problem() -> None:
    """The relay deletes published outbox rows after SIGNUPFLOW_OUTBOX_RETENTION: the profile
    shows the event was published (there is just nothing left to compare it with)."""
    snapshot = clean()
    snapshot.events.clear()
    report = reconcile(snapshot)
    assert report.ok and report.problems == {} and report.in_flight == 0


def test_an_unreadable_table_is_not_checked_rather_than_a_problem() -> None:
    """Exit 2, not 1: nothing is known about the table, which is not the same as wrong."""
    snapshot = clean()
    snapshot.table, snapshot.table_error = None, "batch web view: refused"
    report = reconcile(snapshot)
    assert report.ok and report.problems == {} and report.status == 2
    assert report.unchecked == {"partner-summary table": "batch web view: refused"}
    assert "--no-table" in report.render() and "INCONSISTENT" not in report.render()
    snapshot.table_error = None  # left out on purpose (--no-table)
    assert reconcile(snapshot).status == 0


def test_a_disagreement_outweighs_an_unreadable_table() -> None:
    snapshot = clean()
    snapshot.table, snapshot.table_error = None, "batch web view: refused"
    del snapshot.users[USER]
    report = reconcile(snapshot)
    assert report.status == 1 and report.render().endswith("INCONSISTENT")
