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
