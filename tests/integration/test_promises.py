"""The promises, tried as an outside user would: an independent Kafka client, hostile events.

Each test here reproduces a finding that once broke a promise (issue "Promises that hold
against anyone's tests"): one event that stalled the member service for good, a uuid reused
with other content, a valid timestamp in another UTC offset that left verify inconsistent.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import orjson

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from signupflow.topics import PROFILE_INSERT, dlq_topic
from tests.integration.kafka_util import produce, read_topic
from tests.integration.system import System
from tests.integration.test_dead_letters import malformed_profile_inserts, profile


def letters(system: System, topic: str) -> dict[tuple[int, int], str]:
    """The reason of every dead letter of ``topic`` so far, by its position."""
    return {(r.partition, r.offset): dict(r.headers)["dlq.error"].decode()
            for r in read_topic(system.bootstrap, dlq_topic(topic))}


def new_letters(system: System, topic: str, before: dict[tuple[int, int], str]) -> list[str]:
    return [r for position, r in letters(system, topic).items() if position not in before]


def signup(system: System, count: int, seed: int, partner_ratio: float) -> list[str]:
    """Signups through HTTP; returns their uuids."""
    tally = asyncio.run(post_signups(system.url("auth"),
                                     fake_signups(count, partner_ratio, seed=seed)))
    assert len(tally.accepted) == count, tally.summary()
    return [outcome.body["uuid"] for outcome in tally.accepted]


def test_one_event_the_database_cannot_store_never_stalls_member(system: System) -> None:
    """Finding: ``9999-12-31T23:59:59-12:00`` decoded, overflowed at the database bind and was
    retried for ever: 0 of 20 later signups got a profile, and every retry re-sent the batch's
    dead letters (1,291 letters for 57 events)."""
    before = letters(system, PROFILE_INSERT)
    poison = [(k, profile(k.decode(), occurred_at=edge)) for k, edge in (
        (b"00000000-0000-4000-8000-00000000e001", "9999-12-31T23:59:59-12:00"),
        (b"00000000-0000-4000-8000-00000000e002", "0001-01-01T00:00:00+14:00"))]
    bad = [(k, v) for k, v, _ in malformed_profile_inserts() * 4] + poison
    produce(system.bootstrap, PROFILE_INSERT, bad)  # one burst: they share batches
    profiles = system.profiles()
    signup(system, 20, seed=51, partner_ratio=0.3)
    system.wait_until(lambda: system.profiles() == profiles + 20, 60,
                      "the 20 signups behind the poison events")
    system.wait_until(lambda: len(new_letters(system, PROFILE_INSERT, before)) >= len(bad), 30,
                      "a dead letter for every bad event")
    time.sleep(2)  # a retried batch would add more
    reasons = new_letters(system, PROFILE_INSERT, before)
    assert len(reasons) == len(bad)  # each exactly once
    assert sum("out of range once converted to UTC" in r for r in reasons) == 2
    system.assert_consistent()


def test_a_uuid_reused_with_other_content_is_dead_lettered(system: System) -> None:
    """Finding: a USER's event re-sent as PARTNER made a partner profile and a summary for a
    user; with another nickname it was dropped silently. An identical copy stays a no-op."""
    user, partner = signup(system, 1, seed=52, partner_ratio=0.0) + signup(
        system, 1, seed=53, partner_ratio=1.0)
    system.wait_until(lambda: {user, partner} <= stored(system), 30, "both profiles")
    events = {r.key.decode(): orjson.loads(r.value)
              for r in read_topic(system.bootstrap, PROFILE_INSERT)
              if r.key in (user.encode(), partner.encode())}
    before = letters(system, PROFILE_INSERT)
    summaries = system.count("batch", "partner_summary")
    copies: list[tuple[str, dict[str, object]]] = [
        (user, {}),  # a redelivery
        (user, {"role": "PARTNER"}),
        (user, {"nickname": "someone_else"}),
        (partner, {"role": "USER"}),
        (partner, {"favorite_styles": []}),
        (partner, {}),  # a redelivery
    ]
    produce(system.bootstrap, PROFILE_INSERT,
            [(u.encode(), orjson.dumps({**events[u], **change})) for u, change in copies])
    system.wait_until(lambda: len(new_letters(system, PROFILE_INSERT, before)) >= 4, 30,
                      "a dead letter for each conflicting copy")
    time.sleep(2)
    reasons = new_letters(system, PROFILE_INSERT, before)
    assert len(reasons) == 4, reasons
    assert all("reused with different content" in r for r in reasons)
    assert any("role 'USER' != 'PARTNER'" in r for r in reasons)
    assert any("nickname" in r and "someone_else" in r for r in reasons)
    assert system.count("batch", "partner_summary") == summaries  # no summary for a user
    system.assert_consistent()  # the dead letters explain the events: nothing inconsistent


def test_a_timestamp_in_another_utc_offset_keeps_every_store_consistent(system: System) -> None:
    """Finding: ``2024-05-01T19:00:00+09:00`` left the table with the original text and the
    databases with the UTC instant, and verify compared strings: inconsistent for good."""
    system.stop("auth")
    system.start("auth", SIGNUPFLOW_OUTBOX_RELAY="off")  # the events wait in the outbox
    uuids = signup(system, 5, seed=54, partner_ratio=1.0)
    seoul = timezone(timedelta(hours=9))
    with sqlite3.connect(system.data_dir / "auth.db") as conn:  # another producer's offset
        for row_id, payload in conn.execute("SELECT id, payload FROM outbox").fetchall():
            event = orjson.loads(payload)
            if event["uuid"] in uuids:
                event["occurred_at"] = datetime.fromisoformat(
                    event["occurred_at"]).astimezone(seoul).isoformat()
                conn.execute("UPDATE outbox SET payload = ? WHERE id = ?",
                             (orjson.dumps(event), row_id))
    system.stop("auth")
    system.start("auth")
    system.wait_until(lambda: set(uuids) <= stored(system, "batch"), 60, "their summaries")
    system.assert_consistent()


def stored(system: System, service: str = "member") -> set[str]:
    if service == "batch":
        return {r[0] for r in system.query("batch", "SELECT partner_id FROM partner_summary")}
    return {r[0] for r in system.query(
        "member", "SELECT uuid FROM user_profile UNION SELECT uuid FROM partner_profile")}

