"""Malformed events never stop an agent: they land in the dead-letter topic with a reason,
and the valid events around them are all processed."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import Counter

import orjson

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic
from tests.integration.kafka_util import produce, read_topic
from tests.integration.system import System

NOW = "2026-11-26T10:00:00+00:00"
GHOST = "00000000-0000-4000-8000-000000000000"


def profile(u: str, **override: object) -> bytes:
    event = {"uuid": u, "role": "USER", "nickname": "neon_owl", "favorite_styles": [1],
             "occurred_at": NOW, **override}
    return orjson.dumps({k: v for k, v in event.items() if v is not ...})


def malformed_profile_inserts() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, a word of the expected reason): at least 15 kinds."""
    u = str(uuid.uuid4())
    k = u.encode()
    return [
        (k, b"{not json", "not valid UTF-8 JSON"),
        (k, b"", "empty"),
        (k, b"   ", "empty"),
        (k, None, "tombstone"),
        (k, b"\xff\xfe\x00", "not valid UTF-8 JSON"),
        (k, b"[1, 2]", "must be a JSON object, got list"),
        (k, b'"USER"', "must be a JSON object, got str"),
        (k, profile(u, padding="x" * 70_000), "over the 65536-byte limit"),
        (k, profile(u, nickname=...), "nickname is required"),
        (k, profile(u, role="ADMIN"), "role must be one of"),
        (k, profile(u, role=5), "role must be a string"),
        (b"not-a-uuid", profile("not-a-uuid"), "uuid must be a UUID"),
        (k, profile(u, favorite_styles="1,2"), "favorite_styles must be a list"),
        (k, profile(u, favorite_styles=[999]), "unknown style id 999"),
        (k, profile(u, favorite_styles=[1, 1]), "listed twice"),
        (k, profile(u, occurred_at="yesterday"), "occurred_at must be an ISO-8601"),
        (k, profile(u, occurred_at="2026-11-26T10:00:00"), "UTC offset"),
        (k, profile(u, nickname=["x"]), "nickname must be a string"),
        (None, profile(u), "key is missing"),
        (str(uuid.uuid4()).encode(), profile(u), "does not match uuid"),
        (b"\xff\xff", profile(u), "key is not valid UTF-8"),
    ]


def malformed_partner_created() -> list[tuple[bytes | None, bytes | None, str]]:
    p = str(uuid.uuid4())
    good = {"partner_id": p, "nickname": "amber_owl", "style_count": 2, "occurred_at": NOW}
    return [
        (p.encode(), b"{", "not valid UTF-8 JSON"),
        (p.encode(), orjson.dumps({**good, "style_count": -1}), "between 0 and 100"),
        (p.encode(), orjson.dumps({**good, "style_count": "2"}), "must be an integer"),
        (p.encode(), orjson.dumps({k: v for k, v in good.items() if k != "partner_id"}),
         "partner_id is required"),
        (b"someone-else", orjson.dumps(good), "does not match partner_id"),
    ]


def test_malformed_events_go_to_the_dlq_and_valid_ones_all_get_through(system: System) -> None:
    import asyncio

    bad_profiles, bad_partners = malformed_profile_inserts(), malformed_partner_created()
    assert len(bad_profiles) >= 15
    signups = fake_signups(len(bad_profiles), 0.5, seed=21)
    for (key, value, _), body in zip(bad_profiles, signups, strict=True):
        produce(system.bootstrap, PROFILE_INSERT, [(key, value)])
        tally = asyncio.run(post_signups(system.url("auth"), [body]))
        assert len(tally.accepted) == 1, tally.summary()
    produce(system.bootstrap, PARTNER_CREATED, [(k, v) for k, v, _ in bad_partners])
    more = fake_signups(10, 1.0, seed=22)
    assert len(asyncio.run(post_signups(system.url("auth"), more)).accepted) == 10

    accepted = len(signups) + len(more)
    system.wait_until(lambda: system.profiles() == accepted, 60, "every valid profile")
    partners = system.count("member", "partner_profile")
    system.wait_until(lambda: system.count("batch", "partner_summary") == partners, 60,
                      "every partner summary")
    system.wait_until(
        lambda: len(read_topic(system.bootstrap, dlq_topic(PROFILE_INSERT))) == len(bad_profiles)
        and len(read_topic(system.bootstrap, dlq_topic(PARTNER_CREATED))) == len(bad_partners),
        30, "every malformed event in its dead-letter topic")
    for service in ("member", "batch"):
        assert system.procs[service].poll() is None, f"{service} worker died"

    for topic, cases in ((PROFILE_INSERT, bad_profiles), (PARTNER_CREATED, bad_partners)):
        result = system.cli("dlq", "show", topic, "--json")
        assert result.returncode == 0, result.stderr
        letters = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(letters) == len(cases)
        assert all(letter["source"].startswith(topic + "[") for letter in letters)
        reasons = [letter["error"] for letter in letters]
        for _, _, word in cases:  # each kind's reason appears
            assert any(word in r for r in reasons), (word, reasons)
        raw = read_topic(system.bootstrap, dlq_topic(topic))
        # the original key and value bytes, untouched (a tombstone stays a tombstone)
        assert Counter((r.key, r.value) for r in raw) == Counter((k, v) for k, v, _ in cases)
    system.assert_consistent()


def test_replay_resends_dead_letters_once(system: System) -> None:
    before = len(read_topic(system.bootstrap, dlq_topic(PARTNER_CREATED)))
    summaries = system.count("batch", "partner_summary")
    first = system.cli("dlq", "replay", PARTNER_CREATED)
    assert first.returncode == 0 and f"replayed {before} dead letter(s)" in first.stdout
    # still malformed, so each comes back as a new dead letter; nothing else changes
    system.wait_until(
        lambda: len(read_topic(system.bootstrap, dlq_topic(PARTNER_CREATED))) == 2 * before,
        30, "the replayed letters back in the DLQ")
    assert system.count("batch", "partner_summary") == summaries
    second = system.cli("dlq", "replay", PARTNER_CREATED)
    assert f"replayed {before} dead letter(s)" in second.stdout  # only the new ones


def test_verify_reports_planted_inconsistencies(system: System) -> None:
    system.assert_consistent()
    member_db, batch_db = system.data_dir / "member.db", system.data_dir / "batch.db"
    with sqlite3.connect(member_db) as conn:
        row, kept = conn.execute("SELECT * FROM user_profile ORDER BY uuid LIMIT 2").fetchall()
        conn.execute("DELETE FROM user_profile WHERE uuid = ?", (row[0],))
    with sqlite3.connect(batch_db) as conn:
        conn.execute("INSERT INTO partner_summary (partner_id, nickname, style_count, joined_at,"
                     " summarized_at) VALUES (?, 'ghost', 1, ?, ?)",
                     (GHOST, "2026-01-01 00:00:00", "2026-01-01 00:00:00"))
    with sqlite3.connect(system.data_dir / "auth.db") as conn:  # deleted, nothing erased
        conn.execute("UPDATE member SET deleted_at = ? WHERE uuid = ?",
                     ("2026-01-01 00:00:00", kept[0]))
    result = system.cli("verify")
    assert result.returncode == 1, result.stdout
    assert f"account without profile: 1 ({row[0]})" in result.stdout
    assert f"summary without partner: 1 ({GHOST})" in result.stdout
    assert f"profile of a deleted account: 1 ({kept[0]})" in result.stdout
    assert f"personal data of a deleted account: 1 ({kept[0]})" in result.stdout
    assert "batch.db differs from table: 1" in result.stdout
    assert "INCONSISTENT" in result.stdout

    with sqlite3.connect(member_db) as conn:  # undo: verify is clean again
        conn.execute(f"INSERT INTO user_profile VALUES ({', '.join('?' * len(row))})", row)
    with sqlite3.connect(batch_db) as conn:
        conn.execute("DELETE FROM partner_summary WHERE partner_id = ?", (GHOST,))
    with sqlite3.connect(system.data_dir / "auth.db") as conn:
        conn.execute("UPDATE member SET deleted_at = NULL WHERE uuid = ?", (kept[0],))
    system.assert_consistent(settle=0)
