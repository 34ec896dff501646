"""reconcile(): every kind of disagreement between the three stores is named, none invented."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from signupflow.domain.reuse import instant
from signupflow.models.events import MemberDeleted, ProfileChanged, ProfileInsert
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
    (lambda s: s.events[USER].append(s.events[USER][0]),
     "account with several events of one version", USER),
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


# --- a member's whole life: changes and deletions ------------------------------------------

GONE = "00000000-0000-4000-8000-000000000003"


def changed(uuid: str, version: int, role: str, nickname: str, styles: list[int]) -> bytes:
    return ProfileChanged(kind="changed", uuid=uuid, version=version, role=role,
                          nickname=nickname, favorite_styles=styles, occurred_at=NOW).dumps()


def life() -> Snapshot:
    """A user changed twice (version 3), a partner changed once (2), a partner deleted (2):
    everything where it should be."""
    summary = ("amber_fox2", 3, instant(NOW))
    return Snapshot(
        accounts={USER: "USER", PARTNER: "PARTNER", GONE: "PARTNER"},
        events={USER: [event(USER, "USER", "neon_owl", [1]),
                       changed(USER, 2, "USER", "neon_owl1", [1]),
                       changed(USER, 3, "USER", "neon_owl2", [1, 5])],
                PARTNER: [event(PARTNER, "PARTNER", "amber_fox", [2, 3]),
                          changed(PARTNER, 2, "PARTNER", "amber_fox2", [2, 3, 4])],
                GONE: [event(GONE, "PARTNER", "gone_fox", [6]),
                       MemberDeleted(kind="deleted", uuid=GONE, version=2, role="PARTNER",
                                     occurred_at=NOW).dumps()]},
        unpublished=set(),
        users={USER: "neon_owl2"}, partners={PARTNER: "amber_fox2"},
        styles={USER: {1, 5}, PARTNER: {2, 3, 4}},
        summaries={PARTNER: summary}, table={PARTNER: summary},
        deleted={GONE: ()},
        versions={USER: 3, PARTNER: 2, GONE: 2},
        nicknames={USER: "neon_owl2", PARTNER: "amber_fox2"},
        favorites={USER: {1, 5}, PARTNER: {2, 3, 4}},
        profile_versions={USER: 3, PARTNER: 2},
        summary_versions={PARTNER: 2}, table_versions={PARTNER: 2},
    )


def test_a_whole_life_where_everything_followed_is_consistent() -> None:
    report = reconcile(life())
    assert report.problems == {} and report.status == 0 and report.in_flight == 0
    assert report.counts["accounts"] == 3 and report.counts["deleted"] == 1


def left_behind(s: Snapshot) -> None:
    """The deleted partner's profile, styles and summary all stayed."""
    s.partners[GONE], s.styles[GONE] = "gone_fox", {6}
    s.summaries[GONE] = ("gone_fox", 1, instant(NOW))


LIFE_PLANTS: list[tuple[Callable[[Snapshot], object], str, str]] = [
    (lambda s: s.users.update({GONE: "gone_fox"}), "profile of a deleted account", GONE),
    (lambda s: s.partners.update({GONE: "gone_fox"}), "profile of a deleted account", GONE),
    (lambda s: s.styles.update({GONE: {6}}), "styles of a deleted account", GONE),
    (left_behind, "styles of a deleted account", GONE),
    (lambda s: s.summaries.update({GONE: ("gone_fox", 1, instant(NOW))}),
     "summary of a deleted account", GONE),
    (lambda s: s.table.update({GONE: ("gone_fox", 1, instant(NOW))}),  # type: ignore[union-attr]
     "table entry of a deleted account", GONE),
    (lambda s: s.deleted.update({GONE: ("email", "password_hash")}),
     "personal data of a deleted account", GONE),
    (lambda s: s.deleted.update({GONE: ("birth",)}), "personal data of a deleted account", GONE),
    (lambda s: s.profile_versions.update({USER: 2}), "profile version differs from account",
     USER),
    (lambda s: s.profile_versions.update({PARTNER: 3}), "profile version differs from account",
     PARTNER),
    (lambda s: s.nicknames.update({USER: "other"}), "profile differs from account", USER),
    (lambda s: s.favorites.update({USER: {1}}), "profile differs from account", USER),
    (lambda s: s.summary_versions.update({PARTNER: 1}), "summary version differs from account",
     PARTNER),
    (lambda s: s.favorites.update({PARTNER: {2, 3}}), "summary differs from account", PARTNER),
    (lambda s: s.nicknames.update({PARTNER: "other"}), "summary differs from account", PARTNER),
    (lambda s: s.table_versions.update({PARTNER: 1}), "batch.db differs from table", PARTNER),
    (lambda s: s.events[USER].append(changed(USER, 3, "USER", "other", [1])),
     "account with several events of one version", USER),
    (lambda s: s.events[USER].append(b"{not json"), "outbox event unreadable", USER),
    (lambda s: s.events[USER].__setitem__(2, changed(USER, 3, "USER", "other", [1, 5])),
     "profile differs from its event", USER),
]


@pytest.mark.parametrize(("plant", "kind", "uuid"), LIFE_PLANTS,
                         ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(LIFE_PLANTS)])
def test_each_planted_problem_of_a_life_is_reported(
    plant: Callable[[Snapshot], None], kind: str, uuid: str
) -> None:
    snapshot = life()
    plant(snapshot)
    report = reconcile(snapshot)
    assert uuid in report.problems[kind], report.problems
    assert report.status == 1 and f"PROBLEM {kind}:" in report.render()


def test_a_deleted_account_is_not_an_account_without_profile_or_summary() -> None:
    """Nothing downstream is what a deletion asks for (even once its events expired)."""
    snapshot = life()
    del snapshot.events[GONE]
    assert reconcile(snapshot).problems == {}


def test_a_deleted_account_s_leftovers_are_named_once_as_such() -> None:
    """Not also as orphans (styles or a summary without a profile)."""
    snapshot = life()
    left_behind(snapshot)
    del snapshot.partners[GONE]
    problems = reconcile(snapshot).problems
    assert problems == {"styles of a deleted account": [GONE],
                        "summary of a deleted account": [GONE],
                        "batch.db differs from table": [GONE]}


def test_an_unpublished_change_or_deletion_is_in_flight_not_a_problem() -> None:
    snapshot = life()
    snapshot.profile_versions[USER] = 2  # its version 3 waits in the outbox
    snapshot.users[USER], snapshot.styles[USER] = "neon_owl1", {1}
    left_behind(snapshot)  # its deletion waits in the outbox
    snapshot.table[GONE] = snapshot.summaries[GONE]  # type: ignore[index]
    snapshot.unpublished |= {USER, GONE}
    report = reconcile(snapshot)
    assert report.problems == {} and report.in_flight == 2


def test_personal_data_left_is_a_problem_even_while_the_deletion_is_in_flight() -> None:
    """auth erases it in the deletion's own transaction: there is nothing to wait for."""
    snapshot = life()
    snapshot.deleted[GONE] = ("email",)
    snapshot.unpublished.add(GONE)
    assert reconcile(snapshot).problems == {"personal data of a deleted account": [GONE]}


def test_an_account_without_a_public_profile_in_auth_is_compared_with_its_event_only() -> None:
    """Accounts made before auth kept nickname and styles have NULL there: nothing to compare
    with but the outbox event of the profile's version (here expired: nothing at all)."""
    snapshot = life()
    del snapshot.nicknames[USER], snapshot.favorites[USER], snapshot.events[USER]
    snapshot.users[USER] = "whatever"
    assert reconcile(snapshot).problems == {}
