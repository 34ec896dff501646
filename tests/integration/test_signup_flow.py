"""The walking skeleton, end to end: CLI -> auth -> Kafka -> member -> Kafka -> batch."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from signupflow.domain.fake import fake_signups
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT
from tests.integration.browser import SummaryTable, dump_dom
from tests.integration.kafka_util import read_topic
from tests.integration.system import System

SEED = 42
COUNT = 200


def http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_200_signups_reach_all_three_databases_and_the_table(system: System) -> None:
    result = system.cli("signup", "--count", str(COUNT), "--partner-ratio", "0.3",
                        "--seed", str(SEED), "--url", system.url("auth"))
    assert result.returncode == 0, result.stderr
    expected = fake_signups(COUNT, 0.3, SEED)
    partners_expected = sum(1 for s in expected if s["role"] == "PARTNER")
    assert f"accepted {COUNT} ({partners_expected} partners" in result.stdout
    assert 0.2 * COUNT < partners_expected < 0.4 * COUNT

    # auth.db: every account, with the role and a hash instead of the password
    accounts = {email: (uuid, role, pw_hash) for uuid, email, role, pw_hash in system.query(
        "auth", "SELECT uuid, email, role, password_hash FROM member")}
    assert len(accounts) == COUNT
    by_uuid = {}
    for s in expected:
        uuid, role, pw_hash = accounts[s["email"]]
        assert role == s["role"]
        assert pw_hash.startswith("scrypt$") and s["password"] not in pw_hash
        by_uuid[uuid] = s

    def member_rows() -> int:
        return system.count("member", "user_profile") + system.count("member", "partner_profile")

    system.wait_until(lambda: member_rows() == COUNT, 60, f"{COUNT} profiles in member.db")
    users = {u for (u,) in system.query("member", "SELECT uuid FROM user_profile")}
    partners = {u for (u,) in system.query("member", "SELECT uuid FROM partner_profile")}
    assert users == {u for u, s in by_uuid.items() if s["role"] == "USER"}
    assert partners == {u for u, s in by_uuid.items() if s["role"] == "PARTNER"}
    styles: dict[str, set[int]] = {}
    for uuid, style_id in system.query("member", "SELECT uuid, style_id FROM favorite_style"):
        styles.setdefault(uuid, set()).add(style_id)
    assert styles == {u: set(s["favorite_styles"]) for u, s in by_uuid.items()}
    assert system.count("member", "favorite_style") == sum(
        len(s["favorite_styles"]) for s in expected)
    nicknames = dict(system.query("member", "SELECT uuid, nickname FROM partner_profile"))
    assert nicknames == {u: by_uuid[u]["nickname"] for u in partners}

    # batch: one summary per partner, in batch.db and in the Faust table (web view)
    system.wait_until(lambda: system.count("batch", "partner_summary") == len(partners), 60,
                      "one partner summary per partner in batch.db")
    rows = {pid: (nick, count) for pid, nick, count in system.query(
        "batch", "SELECT partner_id, nickname, style_count FROM partner_summary")}
    assert rows == {u: (by_uuid[u]["nickname"], len(by_uuid[u]["favorite_styles"]))
                    for u in partners}
    # the table follows batch.db within the same batch (its changelog is acknowledged after the
    # database commit), so the view may lag the database by that one broker round trip
    system.wait_until(lambda: http("GET", system.url("batch") + "/partners/")[1].get("count")
                      == len(partners), 30, "one partner summary per partner in the table")
    status, table = http("GET", system.url("batch") + "/partners/")
    assert status == 200 and table["count"] == len(partners)
    assert {p["partner_id"]: (p["nickname"], p["style_count"]) for p in table["partners"]} == rows
    one = next(iter(partners))
    assert http("GET", f"{system.url('batch')}/partners/{one}/") == (
        200, next(p for p in table["partners"] if p["partner_id"] == one))

    # the topics hold exactly one event per signup / per partner, keyed by uuid
    inserts = read_topic(system.bootstrap, PROFILE_INSERT)
    assert Counter(r.key.decode() for r in inserts) == Counter(list(by_uuid))
    created = read_topic(system.bootstrap, PARTNER_CREATED)
    assert {r.key.decode() for r in created} == partners and len(created) == len(partners)
    for record in inserts:  # no personal data beyond what member needs
        event = orjson.loads(record.value)
        assert set(event) == {"uuid", "role", "nickname", "favorite_styles", "occurred_at",
                              "kind", "version"}


def test_html_view_lists_every_partner(system: System) -> None:
    _, table = http("GET", system.url("batch") + "/partners/")
    assert table["count"] > 0  # runs after the 200-signup test
    with urllib.request.urlopen(system.url("batch") + "/partners.html", timeout=30) as resp:
        assert resp.headers.get_content_type() == "text/html"
        page = resp.read().decode()
    rows = re.findall(r'<tr data-partner-id="([0-9a-f-]{36})"><td>[^<]*</td><td>([^<]*)</td>',
                      page)
    assert dict(rows) == {p["partner_id"]: p["nickname"] for p in table["partners"]}
    assert f'<strong id="count">{table["count"]}</strong>' in page


def test_html_view_in_headless_chromium_shows_every_summary(system: System) -> None:
    _, table = http("GET", system.url("batch") + "/partners/")
    assert table["count"] > 0  # runs after the 200-signup test
    dom = SummaryTable(dump_dom(system.url("batch") + "/partners.html", system.root / "chromium"))
    assert dom.count == str(table["count"])
    assert dom.rows == {p["partner_id"]: [p["partner_id"], p["nickname"], str(p["style_count"]),
                                          p["joined_at"]] for p in table["partners"]}


def test_unknown_partner_is_404(system: System) -> None:
    status, body = http("GET", system.url("batch") +
                        "/partners/00000000-0000-4000-8000-000000000000/")
    assert status == 404 and "no partner" in body["error"]


def test_invalid_signups_are_rejected_and_publish_nothing(system: System) -> None:
    before = len(read_topic(system.bootstrap, PROFILE_INSERT))
    members_before = system.count("auth", "member")
    good = fake_signups(1, 0.0, seed=7, run="dup")[0]
    assert http("POST", system.url("auth") + "/signup", good)[0] == 201
    signup_url = system.url("auth") + "/signup"

    cases = [
        ({**good, "email": "x@new.example.com", "role": "ADMIN"}, 400, "role"),
        ({k: v for k, v in good.items() if k != "email"}, 400, "email"),
        ({**good, "email": "not-an-email"}, 400, "email"),
        ({**good, "email": "y@new.example.com", "favorite_styles": [999]}, 400,
         "favorite_styles"),
        ({**good, "email": "z@new.example.com", "birth": "2999-01-01"}, 400, "birth"),
    ]
    for body, status, field in cases:
        got_status, got = http("POST", signup_url, body)
        assert got_status == status, (body, got)
        assert field in got["fields"] and got["fields"][field], got
    dup_status, dup = http("POST", signup_url, {**good, "email": good["email"].upper()})
    assert dup_status == 409 and dup["field"] == "email" and "already" in dup["error"]
    bad_json_status, bad_json = http("POST", signup_url, b"{not json")
    assert bad_json_status == 400 and "not valid JSON" in bad_json["error"]
    array_status, array = http("POST", signup_url, [good])
    assert array_status == 400 and "JSON object" in array["fields"]["body"]

    assert system.count("auth", "member") == members_before + 1
    system.wait_until(lambda: len(read_topic(system.bootstrap, PROFILE_INSERT)) == before + 1,
                      30, "the one valid signup's event")
    assert system.count("auth", "outbox") == members_before + 1


def test_cli_rejects_bad_arguments_with_a_message(system: System) -> None:
    result = system.cli("signup", "--count", "0")
    assert result.returncode != 0 and "--count" in result.stderr
    result = system.cli("signup", "--count", "3", "--partner-ratio", "1.5")
    assert result.returncode != 0 and "--partner-ratio" in result.stderr
    result = system.cli("worker", "payments")
    assert result.returncode != 0 and "payments" in result.stderr
    unreachable = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = system.cli("signup", "--count", "1", "--url", unreachable)
    assert result.returncode == 2 and "cannot reach the auth service" in result.stderr


def test_no_plaintext_password_in_any_database_topic_log_or_dead_letter(system: System) -> None:
    """Grep every file the system wrote (SQLite files and WALs, worker logs, and the broker's
    log segments, which hold every topic: events, changelogs, offsets, dead letters)."""
    rejected_password = "Rejected-Secret-0451"
    status, _ = http("POST", system.url("auth") + "/signup",
                     {**fake_signups(1, 0, seed=99)[0], "email": "nope",
                      "password": rejected_password})
    assert status == 400
    passwords = [s["password"] for s in fake_signups(COUNT, 0.3, SEED)] + [rejected_password]
    files = [p for p in system.root.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".log") and "profile-insert" in str(p) for p in files)
    assert any(p.name == "auth.db" for p in files)
    nickname = fake_signups(COUNT, 0.3, SEED)[0]["nickname"].encode()
    found: list[str] = []
    control: list[Path] = []
    for path in files:
        data = path.read_bytes()
        found.extend(f"{path}: {pw}" for pw in passwords if pw.encode() in data)
        if nickname in data and path.is_relative_to(system.broker_home):
            control.append(path)
    assert found == []
    assert control, "the grep must see topic data (a nickname is in the broker's segments)"
