"""What an operator reads from a running system: /metrics equal to the known counts after a
load, /ready that says why a worker would not process an event now, /health apart from it, the
tables' views from any worker (partners; signups per minute equal to member.db's counts)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from signupflow.settings import SERVICES
from signupflow.topics import PROFILE_INSERT
from tests.integration.browser import SummaryTable, dump_dom
from tests.integration.kafka_util import changelog_config, produce
from tests.integration.system import System

SIGNUPS = 40


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    return status, json.loads(body) if body.startswith("{") else body


def metrics(system: System, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(system.url(service) + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_equal_the_known_counts_after_a_load(system: System) -> None:
    bodies = fake_signups(SIGNUPS, 0.3, seed=61)
    partners = sum(b["role"] == "PARTNER" for b in bodies)
    tally = asyncio.run(post_signups(system.url("auth"), [
        *bodies, bodies[0], {"email": "nope"}, {"email": "x@example.com", "role": "ADMIN"}]))
    assert len(tally.accepted) == SIGNUPS
    produce(system.bootstrap, PROFILE_INSERT, [(b"k1", b"{not json"), (b"k2", b"[]")])
    system.wait_until(lambda: system.profiles() == SIGNUPS, 60, "every profile")
    system.wait_until(lambda: system.count("batch", "partner_summary") == partners, 60,
                      "every summary")
    system.wait_until(lambda: sum(v for (n, _), v in metrics(system, "member").items()
                                  if n == "signupflow_consumer_lag") == 0, 30,
                      "member's lag to reach 0")

    auth = metrics(system, "auth")
    assert value(auth, "signupflow_signups_total", outcome="created") == SIGNUPS
    assert value(auth, "signupflow_signups_total", outcome="duplicate") == 1
    assert value(auth, "signupflow_signups_total", outcome="invalid") == 2
    assert value(auth, "signupflow_outbox_pending") == 0
    assert value(auth, "signupflow_outbox_oldest_pending_seconds") == 0

    member = metrics(system, "member")
    assert value(member, "signupflow_events_total", service="member", kind="created",
                 outcome="applied") == SIGNUPS
    assert value(member, "signupflow_events_total", service="member", kind="unknown",
                 outcome="dead_lettered") == 2
    assert value(member, "signupflow_dead_letters_total", topic=PROFILE_INSERT) == 2
    assert value(member, "signupflow_batch_seconds_count", service="member") >= 1
    lags = {dict(labels)["partition"]: v for (n, labels), v in member.items()
            if n == "signupflow_consumer_lag"}
    assert sorted(lags) == ["0", "1", "2", "3"] and set(lags.values()) == {0}

    batch = metrics(system, "batch")
    assert value(batch, "signupflow_events_total", service="batch", kind="created",
                 outcome="applied") == partners
    assert value(batch, "signupflow_table_entries", table="partner-summary") == partners


def test_views_answer_without_their_trailing_slash(system: System) -> None:
    """Finding: `/partners` and `/signups-per-minute` answered a bare 404."""
    for name, path, query in [("batch", "/partners", "limit=2"),
                              ("member", "/signups-per-minute", "minutes=3")]:
        status, slashed = get(f"{system.url(name)}{path}/?{query}")
        assert status == 200
        with urllib.request.urlopen(f"{system.url(name)}{path}?{query}", timeout=10) as resp:
            assert resp.url == f"{system.url(name)}{path}/?{query}"  # a redirect, query kept
            assert json.loads(resp.read()).keys() == slashed.keys()
    assert len(get(f"{system.url('batch')}/partners?limit=2")[1]["partners"]) == 2


def test_only_auth_exports_the_outbox_and_signup_metrics(system: System) -> None:
    """Finding: member and batch exported auth's outbox gauges, always 0."""
    auth_only = ("signupflow_outbox_", "signupflow_signups")  # families: no _total
    assert any(n.startswith(auth_only) for n, _ in metrics(system, "auth"))
    for service in ("member", "batch"):
        _, text = get(system.url(service) + "/metrics")
        exported = {f.name for f in text_string_to_metric_families(text)}
        assert not [n for n in exported if n.startswith(auth_only)], (service, exported)
        assert "signupflow_consumer_lag" in exported


def test_ready_says_why_while_the_broker_is_down_and_health_stays_up(system: System) -> None:
    system.wait_until(
        lambda: all(get(system.url(s) + "/ready") == (200, {"ready": True}) for s in SERVICES),
        60, "every worker ready (joined its group)")
    system.stop_broker()
    try:
        deadline = time.monotonic() + 30
        answers: dict[str, tuple[int, Any]] = {}
        while time.monotonic() < deadline:
            answers = {s: get(system.url(s) + "/ready") for s in SERVICES}
            if all(status == 503 for status, _ in answers.values()):
                break
            time.sleep(0.5)
        for name, (status, body) in answers.items():
            assert status == 503, (name, body)
            assert body["ready"] is False
            assert any("broker unreachable" in r for r in body["reasons"]), body
            assert get(system.url(name) + "/health")[0] == 200  # alive, only not ready
    finally:
        system.start_broker()
    system.wait_until(
        lambda: all(get(system.url(s) + "/ready")[0] == 200 for s in SERVICES), 90,
        "every worker ready again")


def trace(system: System, who: str) -> tuple[int, dict[str, Any]]:
    result = system.cli("trace", who, "--json")
    assert result.returncode in (0, 1), result.stderr  # 1: unknown (yet)
    return result.returncode, json.loads(result.stdout) if result.returncode == 0 else {}


def in_time_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hops with a time, checked to come in time order, each delay from the signup and
    from the hop before (finding: listed in the flow's order, each delay from another step)."""
    hops = [h for h in rows if h["at"] is not None]
    assert [h["at"] for h in hops] == sorted(h["at"] for h in hops), hops
    assert hops[0]["since_signup_ms"] == 0 and hops[0]["since_previous_ms"] is None
    for before, hop in itertools.pairwise(hops):
        assert hop["since_previous_ms"] >= 0, hops
        assert hop["since_signup_ms"] == before["since_signup_ms"] + hop["since_previous_ms"]
    return hops


def test_trace_shows_every_hop_of_a_user_and_a_partner_and_a_dead_letter(
    system: System,
) -> None:
    bodies = fake_signups(2, 0.0, seed=62) + fake_signups(1, 1.0, seed=63)
    tally = asyncio.run(post_signups(system.url("auth"), bodies, 1))  # in order
    user, _, partner = (o.body["uuid"] for o in tally.accepted)
    system.wait_until(lambda: bool(system.query(
        "batch", f"SELECT 1 FROM partner_summary WHERE partner_id = '{partner}'")), 60,
        "the partner's summary")
    system.wait_until(lambda: len(system.query(
        "member", f"SELECT 1 FROM user_profile WHERE uuid = '{user}'")) == 1, 60,
        "the user's profile")

    code, by_email = trace(system, bodies[0]["email"].upper())
    assert code == 0 and by_email["uuid"] == user
    hops = in_time_order(by_email["hops"])
    # the relay marks its row after the broker's ack: before or after the profile is stored
    assert [h["step"] for h in hops[:3]] == ["accepted", "outbox row written",
                                             "profile-insert record"]
    assert sorted(h["step"] for h in hops[3:]) == ["outbox published", "user profile stored"]
    assert hops[2]["detail"].startswith("profile-insert[")
    assert {(h["kind"], h["version"]) for h in hops[:3]} == {("created", 1)}
    assert [(h["service"], h["detail"].split(",")[0]) for h in by_email["hops"]
            if h["step"] == "state"] == [("auth", "account v1"), ("member", "user profile v1"),
                                         ("batch", "no summary")]

    hops = in_time_order(trace(system, partner)[1]["hops"])
    steps = [h["step"] for h in hops if h["step"] != "outbox published"]
    assert steps == ["accepted", "outbox row written", "profile-insert record",
                     "partner profile stored", "partner-created record",
                     "partner summary stored"], steps
    assert [h["kind"] for h in hops if h["step"] == "partner-created record"] == ["created"]

    stranger = "00000000-0000-4000-8000-00000000f00d"
    produce(system.bootstrap, PROFILE_INSERT, [(stranger.encode(), json.dumps({
        "uuid": stranger, "role": "ADMIN", "nickname": "mallory", "favorite_styles": [],
        "occurred_at": "2026-01-01T00:00:00+00:00"}).encode())])
    system.wait_until(lambda: any(h["step"] == "dead letter"
                                  for h in trace(system, stranger)[1].get("hops", [])), 30,
                      "the dead letter in the trace")
    hops = trace(system, stranger)[1]["hops"]
    assert [h["step"] for h in hops] == ["profile-insert record", "dead letter", "state",
                                         "state"]
    assert "role must be one of" in hops[1]["detail"] and hops[1]["kind"] == "unreadable"
    assert [h["detail"] for h in hops[2:]] == ["no profile", "no summary"]

    unknown = system.cli("trace", "nobody@example.com")
    assert unknown.returncode == 1 and "unknown signup" in unknown.stderr


def pages(system: System, name: str, **query: str) -> list[dict[str, Any]]:
    """Every page of ``/partners/`` from worker ``name``, in order."""
    rows: list[dict[str, Any]] = []
    after = ""
    while True:
        params = urllib.parse.urlencode({**query, "after": after})
        status, page = get(f"{system.url(name)}/partners/?{params}")
        assert status == 200, page
        assert page["workers"] == 2
        rows.extend(page["partners"])
        if page["next"] is None:
            return rows
        after = page["next"]


def test_either_batch_worker_lists_every_partner_paged_and_searchable(system: System) -> None:
    summaries = dict(system.query("batch", "SELECT partner_id, nickname FROM partner_summary"))
    assert len(summaries) > 10
    system.start_extra("batch-2", "batch")
    try:
        system.wait_until(lambda: all(get(f"{system.url(n)}/partners/?limit=1")[1].get(
            "workers") == 2 for n in ("batch", "batch-2")), 60, "both workers in the table")
        needle = sorted(summaries.values())[0][1:4].upper()
        for name in ("batch", "batch-2"):
            rows = pages(system, name, limit="7")
            assert [r["partner_id"] for r in rows] == sorted(summaries)  # all, once, in order
            assert {r["partner_id"]: r["nickname"] for r in rows} == summaries
            found = pages(system, name, limit="5", q=needle)
            assert {r["partner_id"] for r in found} == {
                p for p, nick in summaries.items() if needle.casefold() in nick.casefold()}
            assert found
            # the HTML page too (finding: it showed the asking worker's partitions only),
            # in a browser, paged as the JSON view
            html = SummaryTable(dump_dom(f"{system.url(name)}/partners.html?limit=1000",
                                         system.root / "chromium"))
            assert {p: cells[1] for p, cells in html.rows.items()} == summaries
            assert html.count == str(len(summaries))
            first = SummaryTable(dump_dom(f"{system.url(name)}/partners.html?limit=7",
                                          system.root / "chromium"))
            assert list(first.rows) == sorted(summaries)[:7] and first.next is not None
            second = SummaryTable(dump_dom(f"{system.url(name)}{first.next}",
                                           system.root / "chromium"))
            assert list(second.rows) == sorted(summaries)[7:14]
        status, body = get(system.url("batch-2") + "/partners/?limit=0")
        assert status == 400 and "limit must be" in body["error"]
        for name in ("batch", "batch-2"):  # each partner from either worker, whoever owns it
            assert get(system.url(name) + "/partners/00000000-0000-4000-8000-00000000dead/"
                       )[0] == 404
            for partner_id, nickname in summaries.items():
                status, detail = get(f"{system.url(name)}/partners/{partner_id}/")
                assert (status, detail["nickname"]) == (200, nickname), (name, detail)
    finally:
        system.stop("batch-2")



def test_either_member_worker_counts_signups_per_minute_as_the_database_has_them(
    system: System,
) -> None:
    before = system.profiles()
    tally = asyncio.run(post_signups(system.url("auth"), fake_signups(40, 0.5, seed=64)))
    assert len(tally.accepted) == 40
    system.wait_until(lambda: system.profiles() == before + 40, 60, "every profile")
    assert system.stored_by_role()["PARTNER"] >= 15
    system.assert_counted_per_minute()
    body = system.per_minute("member", "minutes=3")
    assert len(body["per_minute"]) == 3 and body["workers"] == 1
    keys = value(metrics(system, "member"), "signupflow_table_entries", table="signups-per-minute")
    assert keys >= 2  # a (role, partition) per minute with signups, both roles here
    assert body["per_minute"][-1]["minute"] <= datetime.now(UTC).isoformat()
    system.start_extra("member-2", "member")
    try:
        system.assert_counted_per_minute("member", "member-2", workers=2)
        for query, message in [("minutes=0", "minutes must be a whole number from 1 to 1440"),
                               ("minutes=abc", "got 'abc'"),
                               (f"end={60 * 29_000_000 + 1}", "end must be the start of a")]:
            status, error = get(f"{system.url('member-2')}/signups-per-minute/?{query}")
            assert status == 400 and message in error["error"], error
    finally:
        system.stop("member-2")
    config = changelog_config(system.bootstrap, "signupflow-member-signups-per-minute-changelog")
    assert (config["cleanup.policy"], config["retention.ms"]) == ("compact,delete", "86400000")
