"""The wire format stays readable by others: after a realistic flow (users, partners, poison
events and their dead letters), every topic is read with an independent client (confluent-kafka)
and every event validated against its committed schema (schemas/) and the key and headers its
AsyncAPI message declares (docs/asyncapi.yaml), with jsonschema and no signupflow code."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition
from jsonschema import Draft7Validator, FormatChecker

from signupflow.client import post_signups
from signupflow.domain.fake import fake_signups
from tests.integration.kafka_util import produce
from tests.integration.system import System

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-12-07T10:00:00+00:00"
CHANGELOG = "signupflow-batch-partner-summary-changelog"


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record of ``topic`` up to its end now, read with confluent-kafka."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wire-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        left = sum(high - low for low, high in ends.values())
        records: list[Record] = []
        while len(records) < left:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: {len(records)} of {left} records read"
            assert msg.error() is None, msg.error()
            records.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                  {k: v.decode() for k, v in msg.headers() or []}))
        return records
    finally:
        consumer.close()


def validator(schema: dict[str, Any]) -> Draft7Validator:
    return Draft7Validator(schema, format_checker=FormatChecker())


@dataclass(frozen=True)
class Contract:
    """A topic's committed schema, and its AsyncAPI message's key and headers schemas."""

    topic: str
    schema: Draft7Validator
    key: Draft7Validator | None
    key_json: bool
    headers: Draft7Validator | None

    @classmethod
    def load(cls, topic: str, asyncapi: dict[str, Any]) -> Contract:
        [file] = sorted((ROOT / "schemas" / topic).glob("v*.json"))[-1:]
        # one message per kind of the topic: they share the key and the headers
        ref = next(iter(asyncapi["channels"][topic]["messages"].values()))["$ref"]
        message = asyncapi["components"]["messages"][ref.split("/")[-1]]
        binding = message["bindings"]["kafka"]
        key = binding["key"]
        headers = message.get("headers", {}).get("$ref", "")
        return cls(topic, validator(json.loads(file.read_text())),
                   validator(key) if "type" in key else None, binding["x-key-encoding"] == "json",
                   validator(asyncapi["components"]["schemas"][headers.split("/")[-1]])
                   if headers and not topic.endswith(".dlq") else None)

    def problems(self, record: Record) -> Iterator[str]:
        """What is wrong with ``record`` ([] when nothing)."""
        at = f"{self.topic}[{record.partition}]@{record.offset}"
        if self.key is not None:
            text = (record.key or b"").decode("utf-8", "replace")
            key = json.loads(text) if self.key_json else text
            yield from (f"{at} key: {e.message}" for e in self.key.iter_errors(key))
        if self.headers is not None:
            yield from (f"{at} headers: {e.message}"
                        for e in self.headers.iter_errors(record.headers))
        if self.topic.endswith(".dlq"):  # the contract is the headers; the value is the original
            yield from (f"{at}: {e.message}" for e in self.schema.iter_errors(record.headers))
            return
        try:
            value = json.loads(record.value or b"")
        except ValueError as exc:
            yield f"{at}: not JSON ({exc})"
            return
        yield from (f"{at}: {e.message}" for e in self.schema.iter_errors(value))


def profile(**change: Any) -> tuple[bytes, bytes]:
    """A profile-insert event with ``change``: each the schema refuses and member dead-letters."""
    member = str(uuid.uuid4())
    event = {"uuid": member, "role": "USER", "nickname": "neon_owl", "favorite_styles": [1],
             "occurred_at": NOW, **change}
    return member.encode(), json.dumps(event).encode()


def partner(**change: Any) -> tuple[bytes, bytes]:
    member = str(uuid.uuid4())
    event = {"partner_id": member, "nickname": "amber_owl", "style_count": 2,
             "occurred_at": NOW, **change}
    return member.encode(), json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def test_every_event_on_every_topic_keeps_to_its_committed_schema(system: System) -> None:
    tally = asyncio.run(post_signups(system.url("auth"), fake_signups(200, 0.4, seed=77)))
    accepted = len(tally.accepted)
    assert accepted == 200, tally.summary()
    poison = {
        "profile-insert": [profile(role="ADMIN"), profile(favorite_styles=[999]),
                           profile(occurred_at="yesterday"), profile(nickname=" x "),
                           (str(uuid.uuid4()).encode(), b"{not json")],
        "partner-created": [partner(style_count=-1), partner(nickname=None)],
    }
    for topic, events in poison.items():
        produce(system.bootstrap, topic, list(events))
    system.wait_until(lambda: system.profiles() == accepted, 120, "every profile stored")
    partners = system.count("member", "partner_profile")
    assert partners > 50
    system.wait_until(lambda: system.count("batch", "partner_summary") == partners, 120,
                      "every partner summarised")
    system.wait_until(
        lambda: all(len(read_all(system.bootstrap, f"{t}.dlq")) == len(p)
                    for t, p in poison.items()), 60, "every poison event dead-lettered")

    asyncapi = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert set(asyncapi["channels"]) == {p.name for p in (ROOT / "schemas").iterdir()}
    seen: dict[str, int] = {}
    for topic in sorted(asyncapi["channels"]):
        contract = Contract.load(topic, asyncapi)
        records = read_all(system.bootstrap, topic)
        seen[topic] = len(records)
        refused = {(r.key, r.value) for r in records if list(contract.problems(r))}
        # exactly the poison events are refused: everything the services wrote keeps to it
        assert refused == set(poison.get(topic, [])), [
            p for r in records for p in contract.problems(r)][:10]
        if topic.endswith(".dlq"):
            source = topic.removesuffix(".dlq")
            assert {(r.key, r.value) for r in records} == set(poison[source])
            assert {r.headers["dlq.source.topic"] for r in records} == {source}
    assert seen == {"profile-insert": accepted + len(poison["profile-insert"]),
                    "profile-insert.dlq": len(poison["profile-insert"]),
                    "partner-created": partners + len(poison["partner-created"]),
                    "partner-created.dlq": len(poison["partner-created"]),
                    CHANGELOG: partners}
