"""One trace per signup across auth, the outbox relay, member and batch (OpenTelemetry),
exported as JSON lines by every worker into ``SIGNUPFLOW_TRACE_FILE``."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from tests.integration.system import System

COUNT = 50
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, Path]]:
    system = System(tmp_path_factory.mktemp("traced"))
    spans = system.root / "spans.jsonl"
    try:
        system.start_broker()
        system.env["SIGNUPFLOW_TRACE_FILE"] = str(spans)
        system.start()
        yield system, spans
    finally:
        system.shutdown()


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def post_with_traceparent(system: System, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        system.url("auth") + "/signup", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        uuid: str = json.load(resp)["uuid"]
    return uuid


def test_every_signup_is_one_trace_through_every_hop(traced: tuple[System, Path]) -> None:
    system, path = traced
    bodies = fake_signups(COUNT, 0.5, seed=71)
    first = post_with_traceparent(system, bodies[0])
    tally = asyncio.run(post_signups(system.url("auth"), bodies[1:]))
    uuids = [first, *(o.body["uuid"] for o in tally.accepted)]
    roles = {first: bodies[0]["role"], **{o.body["uuid"]: o.body["role"] for o in tally.accepted}}
    partners = [u for u in uuids if roles[u] == "PARTNER"]
    assert len(uuids) == COUNT and 0 < len(partners) < COUNT

    def by_member(name: str) -> dict[str, dict[str, Any]]:
        return {s["attributes"].get("signupflow.member_uuid"): s
                for s in read_spans(path) if s["name"] == name}

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (set(uuids) <= by_member("member process").keys()
                and set(partners) <= by_member("batch process").keys()):
            break
        time.sleep(0.5)
    signup, relay = by_member("auth signup"), by_member("auth relay publish")
    member, batch = by_member("member process"), by_member("batch process")

    def ids(span: dict[str, Any]) -> tuple[str, str]:
        return span["context"]["trace_id"], span["context"]["span_id"]

    for uuid in uuids:
        trace_id, signup_id = ids(signup[uuid])
        assert relay[uuid]["parent_id"] == signup_id and ids(relay[uuid])[0] == trace_id
        assert member[uuid]["parent_id"] == ids(relay[uuid])[1]
        assert ids(member[uuid])[0] == trace_id
        assert member[uuid]["attributes"]["messaging.system"] == "kafka"
        assert member[uuid]["attributes"]["messaging.destination.name"] == "profile-insert"
        assert isinstance(member[uuid]["attributes"]["messaging.kafka.offset"], int)
        if uuid in partners:
            assert batch[uuid]["parent_id"] == ids(member[uuid])[1]
            assert ids(batch[uuid])[0] == trace_id
        else:
            assert uuid not in batch
    assert ids(signup[first])[0] == f"0x{CLIENT_TRACE}"  # the client's trace continues
    assert signup[first]["parent_id"] == f"0x{CLIENT_SPAN}"
    assert len({ids(signup[u])[0] for u in uuids}) == COUNT  # one trace per signup

    writes = [s for s in read_spans(path) if s["name"] == "member write"]
    linked = {link["context"]["span_id"] for w in writes for link in w["links"]}
    assert {ids(member[u])[1] for u in uuids} <= linked  # each write links its events
