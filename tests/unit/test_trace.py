"""``signupflow trace``'s timeline: hops in time order, each with its delay from the signup
and from the hop before (finding: `outbox published +97 ms` was listed above `user profile
stored +69 ms`, each delay measured from another step)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signupflow.trace import Hop, render, timeline

T0 = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_hops_are_sorted_by_time_with_delays_from_the_signup_and_the_previous_hop() -> None:
    hops = [Hop("outbox published", "auth", at(97), "outbox row 1"),
            Hop("user profile stored", "member", at(69), "nickname 'neon_owl'"),
            Hop("profile-insert record", "auth", at(28), "profile-insert[2]@17"),
            Hop("accepted", "auth", at(0), "role USER")]
    rows = timeline(hops)
    assert [r["step"] for r in rows] == ["accepted", "profile-insert record",
                                         "user profile stored", "outbox published"]
    assert [r["since_signup_ms"] for r in rows] == [0, 28, 69, 97]
    assert [r["since_previous_ms"] for r in rows] == [None, 28, 41, 28]
    text = render("u-1", rows)
    lines = text.splitlines()
    assert "from signup" in lines[1] and "from previous" in lines[1]
    assert lines[4].split()[1:3] == ["+69", "ms"] and "+41 ms" in lines[4]
    assert "user profile stored" in lines[4]


def test_a_kafka_timestamp_in_the_same_millisecond_keeps_the_flow_order() -> None:
    """Kafka's record timestamps are whole milliseconds: the record of a signup accepted at
    .123456 says .123, and must not come before the acceptance."""
    hops = [Hop("profile-insert record", "auth", datetime(2026, 12, 6, 10, 0, 0, 123000,
                                                          tzinfo=UTC)),
            Hop("accepted", "auth", T0)]
    rows = timeline(hops)
    assert [r["step"] for r in rows] == ["accepted", "profile-insert record"]
    assert rows[1]["since_previous_ms"] == 0


def test_a_hop_with_no_time_comes_last_and_a_trace_without_acceptance_starts_at_its_first(
) -> None:
    hops = [Hop("waiting in the outbox", "auth", None, "outbox row 3"),
            Hop("dead letter", "member", at(5)), Hop("profile-insert record", "auth", at(2))]
    rows = timeline(hops)
    assert [r["step"] for r in rows] == ["profile-insert record", "dead letter",
                                         "waiting in the outbox"]
    assert [r["since_signup_ms"] for r in rows] == [0, 3, None]
    assert rows[2]["at"] is None and rows[2]["since_previous_ms"] is None


def life() -> list[Hop]:
    """A user's life: created, changed twice, deleted; each event written to the outbox,
    recorded on profile-insert and published, then applied by member."""
    created, changed, deleted = "created", "changed", "deleted"
    return [  # the order collect() reads them in: by database, then topic
        Hop("accepted", "auth", at(0), "role USER", created, 1),
        Hop("account deleted", "auth", at(3000), "personal data erased", deleted, 4),
        Hop("state", "auth", None, "account v4, USER, deleted, personal data erased",
            version=4),
        Hop("outbox row written", "auth", at(0), "outbox row 1", created, 1),
        Hop("outbox published", "auth", at(25), "outbox row 1", created, 1),
        Hop("outbox row written", "auth", at(1000), "outbox row 7", changed, 2),
        Hop("outbox published", "auth", at(2000), "outbox row 7", changed, 2),
        Hop("outbox row written", "auth", at(2000), "outbox row 9", changed, 3),
        Hop("outbox published", "auth", at(2010), "outbox row 9", changed, 3),
        Hop("outbox row written", "auth", at(3000), "outbox row 12", deleted, 4),
        Hop("waiting in the outbox", "auth", None, "outbox row 12", deleted, 4),
        Hop("member tombstone", "member", at(3040), "role USER", deleted, 4),
        Hop("state", "member", None, "tombstone v4", version=4),
        Hop("state", "batch", None, "no summary"),
        Hop("profile-insert record", "auth", at(20), "profile-insert[1]@3", created, 1),
        Hop("profile-insert record", "auth", at(1015), "profile-insert[1]@8", changed, 2),
        Hop("profile-insert record", "auth", at(2004), "profile-insert[1]@9", changed, 3),
        Hop("profile-insert record", "auth", at(3000), "profile-insert[1]@11", deleted, 4),
        Hop("event skipped", "member", at(3050), "no stored member", changed, 3),
    ]


def test_a_whole_life_is_in_order_event_by_event_and_what_stays_comes_last() -> None:
    rows = timeline(life())
    assert [(r["step"], r["kind"], r["version"]) for r in rows] == [
        ("accepted", "created", 1),
        ("outbox row written", "created", 1),  # the same millisecond: the flow's order
        ("profile-insert record", "created", 1),
        ("outbox published", "created", 1),
        ("outbox row written", "changed", 2),
        ("profile-insert record", "changed", 2),
        ("outbox published", "changed", 2),  # the same millisecond as v3's row: v2 first
        ("outbox row written", "changed", 3),
        ("profile-insert record", "changed", 3),
        ("outbox published", "changed", 3),
        ("outbox row written", "deleted", 4),
        ("account deleted", "deleted", 4),
        ("profile-insert record", "deleted", 4),
        ("member tombstone", "deleted", 4),
        ("event skipped", "changed", 3),
        ("waiting in the outbox", "deleted", 4),
        ("state", "", 4),
        ("state", "", 4),
        ("state", "", None),  # no version: a database without anything of the member
    ]
    assert [r["since_signup_ms"] for r in rows[:15]] == [
        0, 0, 20, 25, 1000, 1015, 2000, 2000, 2004, 2010, 3000, 3000, 3000, 3040, 3050]
    assert [r["since_previous_ms"] for r in rows[10:15]] == [990, 0, 0, 40, 10]
    assert [r["service"] for r in rows[-3:]] == ["auth", "member", "batch"]


def test_a_life_is_rendered_with_each_hop_s_event_and_the_state_below() -> None:
    text = render("u-1", timeline(life()))
    lines = text.splitlines()
    assert lines[0] == "member u-1" and "event" in lines[1]
    assert "changed v2" in lines[7] and "profile-insert record" in lines[7]
    assert "deleted v4" in lines[17] and "waiting in the outbox" in lines[17]
    assert lines[18] == "now"
    assert lines[19:] == ["  auth    account v4, USER, deleted, personal data erased",
                          "  member  tombstone v4",
                          "  batch   no summary"]
