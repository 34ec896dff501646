"""A member's whole life: the ordering rules of member and batch (signupflow.domain.life,
signupflow.domain.summary), each case once, then a property: random lives, delivered with the
redeliveries Kafka allows, end where the last event of every member says.

What Kafka allows, for one partition: the producer (auth's relay, member's publish) may write a
run of events again after a crash (it published, then died before it marked them published),
and the consumer may read a run again from its last committed offset. Either way one member's
events come in their order, with earlier runs repeated; never a later event before an earlier
one that was not delivered already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signupflow.domain.life import Gone, Profile, State, fold, step
from signupflow.domain.reuse import Conflict, instant
from signupflow.domain.summary import merge_partner, partner_event
from signupflow.models.events import (
    MemberDeleted,
    MemberEvent,
    PartnerChanged,
    PartnerCreated,
    PartnerDeleted,
    PartnerEvent,
    PartnerSummary,
    ProfileChanged,
    ProfileInsert,
)

UUID = "5b0c7a52-3f4e-4d1a-9c2b-7e8f9a0b1c2d"
JOINED = "2024-06-15T09:30:00+00:00"
NOW = datetime(2024, 6, 20, tzinfo=UTC)


def created(uuid: str = UUID, role: str = "PARTNER", nickname: str = "fox") -> ProfileInsert:
    return ProfileInsert(uuid=uuid, role=role, nickname=nickname, favorite_styles=[1, 2],
                         occurred_at=JOINED)


def changed(version: int, uuid: str = UUID, role: str = "PARTNER",
            nickname: str = "fox2", styles: tuple[int, ...] = (3,)) -> ProfileChanged:
    return ProfileChanged(kind="changed", uuid=uuid, version=version, role=role,
                          nickname=nickname, favorite_styles=list(styles),
                          occurred_at="2024-06-16T10:00:00+00:00")


def deleted(version: int, uuid: str = UUID, role: str = "PARTNER") -> MemberDeleted:
    return MemberDeleted(kind="deleted", uuid=uuid, version=version, role=role,
                         occurred_at="2024-06-17T10:00:00+00:00")


# --- member: each rule -----------------------------------------------------------------------


def test_an_older_change_does_not_undo_a_newer_one() -> None:
    state, steps = fold(None, [created(), changed(2, nickname="second"),
                               changed(3, nickname="third"), changed(2, nickname="second")])
    assert isinstance(state, Profile) and (state.nickname, state.version) == ("third", 3)
    assert [s.verdict for s in steps] == ["applied", "applied", "applied", "stale"]


def test_a_late_insert_after_a_delete_does_not_bring_the_member_back() -> None:
    state, steps = fold(None, [created(), deleted(2), created(), changed(2)])
    assert state == Gone("PARTNER", 2)
    assert [s.verdict for s in steps] == ["applied", "applied", "stale", "stale"]


def test_a_delete_before_the_insert_it_cancels_keeps_the_member_away() -> None:
    state, steps = fold(None, [deleted(2), created()])
    assert state == Gone("PARTNER", 2)
    assert [s.verdict for s in steps] == ["applied", "stale"]


def test_a_change_of_a_member_never_stored_is_skipped_with_its_reason() -> None:
    done = step(None, changed(2))
    assert (done.state, done.verdict) == (None, "skipped")
    assert done.reason is not None and "never stored" in done.reason


def test_a_redelivery_is_the_same_and_changes_nothing() -> None:
    state, _ = fold(None, [created(), changed(2)])
    again = step(state, changed(2))
    assert (again.state, again.verdict) == (state, "same")
    assert step(Gone("USER", 4), deleted(4, role="USER")).verdict == "same"


@pytest.mark.parametrize("event", [
    changed(1, nickname="other"),          # version 1 is the created one: different content
    created(role="USER"),                  # another role
    deleted(1),                            # a deletion at the stored version
    created(nickname="other"),             # the created event again, with other content
])
def test_the_same_version_saying_something_else_is_a_conflict(event: MemberEvent) -> None:
    done = step(step(None, created()).state, event)
    assert done.verdict == "conflict" and done.reason


def test_a_change_keeps_the_joining_time_and_replaces_the_whole_profile() -> None:
    state, _ = fold(None, [created(), changed(2, nickname="new", styles=(5, 6))])
    assert state == Profile("PARTNER", "new", frozenset({5, 6}), instant(JOINED), 2)


def test_a_change_after_a_gap_applies() -> None:
    """Version 2 was dead-lettered on its way: 3 carries the whole profile and applies."""
    state, _ = fold(None, [created(), changed(3, nickname="third")])
    assert isinstance(state, Profile) and state.version == 3


# --- batch: each rule ------------------------------------------------------------------------


def summarised(event: PartnerEvent, current: PartnerSummary | None = None,
               gone: int | None = None) -> tuple[PartnerSummary | None, int | None, str]:
    done = merge_partner(current, gone, event, NOW)
    return done.summary, done.deleted, done.verdict


def partner(event: MemberEvent) -> PartnerEvent:
    made = partner_event(event)
    assert made is not None
    return made


def test_the_partner_events_follow_the_member_events() -> None:
    assert isinstance(partner(created()), PartnerCreated)
    made = partner(changed(2, styles=(1, 2, 3)))
    assert isinstance(made, PartnerChanged) and (made.version, made.style_count) == (2, 3)
    assert isinstance(partner(deleted(3)), PartnerDeleted)
    assert partner_event(changed(2, role="USER")) is None


def test_a_summary_follows_changes_and_goes_with_the_deletion() -> None:
    first, _, _ = summarised(partner(created()))
    assert first is not None and first.version == 1
    second, _, verdict = summarised(partner(changed(2, nickname="new")), first)
    assert second is not None and (second.nickname, second.joined_at, verdict) == (
        "new", first.joined_at, "applied")
    assert summarised(partner(changed(2, nickname="new")), second)[2] == "same"
    assert summarised(partner(created()), second)[2] == "stale"
    assert summarised(partner(deleted(3)), second) == (None, 3, "applied")


def test_nothing_older_than_a_partners_deletion_brings_it_back() -> None:
    for event in (created(), changed(2), deleted(3)):
        summary, gone, verdict = summarised(partner(event), None, gone=3)
        assert (summary, gone) == (None, 3)
        assert verdict == ("same" if isinstance(event, MemberDeleted) else "stale")


def test_a_change_of_a_partner_never_summarised_is_skipped() -> None:
    assert summarised(partner(changed(2)))[2] == "skipped"


def test_a_partner_created_again_with_other_content_is_a_conflict() -> None:
    first, _, _ = summarised(partner(created()))
    with pytest.raises(Conflict):
        summarised(partner(created(nickname="other")), first)


# --- the property: random lives, Kafka's redeliveries ----------------------------------------


@dataclass(frozen=True)
class Life:
    """One member's events, in order, as auth writes them."""

    uuid: str
    role: str
    events: tuple[MemberEvent, ...]


@st.composite
def lives(draw: st.DrawFn) -> list[Life]:
    """A few members, each created, changed 0 to 3 times, and maybe deleted."""
    out = []
    for n in range(draw(st.integers(1, 4))):
        uuid = f"00000000-0000-4000-8000-{n:012d}"
        role = draw(st.sampled_from(["USER", "PARTNER"]))
        events: list[MemberEvent] = [created(uuid, role, f"nick{n}")]
        for v in range(2, 2 + draw(st.integers(0, 3))):
            events.append(changed(v, uuid, role, f"nick{n}v{v}",
                                  tuple(draw(st.sets(st.integers(1, 12), max_size=5)))))
        if draw(st.booleans()):
            events.append(deleted(len(events) + 1, uuid, role))
        out.append(Life(uuid, role, tuple(events)))
    return out


@st.composite
def delivered(draw: st.DrawFn, log: list[MemberEvent]) -> list[MemberEvent]:
    """``log`` as a consumer may see it: after any position, a crash sends it back to an
    earlier one (its last commit, or a producer's retry of a run), and it reads on from there."""
    out: list[MemberEvent] = []
    position, crashes = 0, draw(st.integers(0, 4))
    while position < len(log):
        out.append(log[position])
        position += 1
        if crashes and draw(st.booleans()):
            crashes -= 1
            position = draw(st.integers(0, position))
    return out


@st.composite
def interleaved(draw: st.DrawFn, members: list[Life]) -> list[MemberEvent]:
    """The members' events on one partition: any interleaving that keeps each one's order."""
    queues = [list(life.events) for life in members]
    log: list[MemberEvent] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        log.append(queue.pop(0))
    return log


def expected(life: Life) -> State:
    last = life.events[-1]
    if isinstance(last, MemberDeleted):
        return Gone(life.role, last.version)
    state, _ = fold(None, list(life.events))
    return state


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_any_delivery_kafka_allows_ends_in_every_members_last_event(data: st.DataObject) -> None:
    members = data.draw(lives())
    log = data.draw(interleaved(members))
    seen = data.draw(delivered(log))
    member_states: dict[str, State] = {}
    summaries: dict[str, PartnerSummary | None] = {}
    partner_gone: dict[str, int | None] = {}
    for event in seen:
        done = step(member_states.get(event.uuid), event)
        assert done.verdict not in ("conflict", "skipped"), done
        member_states[event.uuid] = done.state
        made = partner_event(event) if done.verdict in ("applied", "same") else None
        if made is not None:  # member publishes; batch applies (in the same order)
            merged = merge_partner(summaries.get(event.uuid), partner_gone.get(event.uuid),
                                   made, NOW)
            summaries[event.uuid], partner_gone[event.uuid] = merged.summary, merged.deleted
    for life in members:
        want = expected(life)
        assert member_states[life.uuid] == want
        if life.role == "PARTNER":
            summary = summaries[life.uuid]
            if isinstance(want, Profile):
                assert summary is not None
                assert (summary.nickname, summary.style_count, summary.version) == (
                    want.nickname, len(want.styles), want.version)
            else:
                assert summary is None and partner_gone[life.uuid] == life.events[-1].version
