"""The AsyncAPI 3.0 document of the flow, generated from the contracts: ``docs/asyncapi.yaml``.

Channels are the topics (key, partitions, topic settings as Kafka bindings), one message per
kind of event a topic carries (its key's schema in the Kafka binding, with ``x-key-encoding``:
``utf-8``, the key's bytes are that text; ``json``, they are JSON), and operations say which
service sends or receives each channel (with its consumer group). Written by ``signupflow
schemas asyncapi``; a unit test fails when the committed document is stale or not valid
AsyncAPI 3.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import yaml

from signupflow.contracts.catalogue import CONTRACTS, DEFAULTS, Contract
from signupflow.contracts.jsonschema_of import field_schema, shape_schema
from signupflow.models.shape import Shape

BINDING = "0.5.0"
HEADER = ("# The AsyncAPI document of signupflow, written by `signupflow schemas asyncapi` "
          "from signupflow/contracts;\n# do not edit. The events' JSON Schemas: "
          "schemas/<topic>/v<N>.json (README, Event contracts).\n")
SERVICES = {
    "auth": "POST /signup; stores the account and its ProfileInsert in one transaction (outbox) "
            "and relays it to profile-insert.",
    "member": "Stores profiles (member.db), counts signups per minute, publishes "
              "PartnerCreated for partners.",
    "batch": "Keeps one summary per partner: the partner-summary table (changelog) and batch.db.",
}


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def message_name(contract: Contract, kind: Shape) -> str:
    """A kind of event is its Record's name; a dead letter is named after its topic."""
    if contract.part == "headers":
        return "".join(w.capitalize() for w in contract.topic.replace(".", "-").split("-"))
    return kind.title


def _message(contract: Contract, kind: Shape) -> dict[str, Any]:
    key = {"description": contract.key_description}
    if contract.key is not None:
        key = {**field_schema(contract.key, f"{contract.topic} key"), **key}
    message: dict[str, Any] = {"name": message_name(contract, kind), "title": kind.title,
                               "summary": kind.description}
    if contract.part == "headers":
        message.update(
            contentType="application/octet-stream",
            payload={"description": "The original value bytes, unchanged (any content)."},
            headers=_ref("components", "schemas", kind.title))
    else:
        message.update(contentType="application/json",
                       payload=_ref("components", "schemas", kind.title))
        if contract.headers is not None:
            message["headers"] = _ref("components", "schemas", contract.headers.title)
    message["bindings"] = {"kafka": {"key": key, "x-key-encoding": contract.key_encoding,
                                     "bindingVersion": BINDING}}
    return message


def _channel(contract: Contract) -> dict[str, Any]:
    binding: dict[str, Any] = {"topic": contract.topic, "partitions": DEFAULTS.partitions}
    if contract.config:
        binding["topicConfiguration"] = dict(contract.config)
    return {
        "address": contract.topic,
        "title": contract.topic,
        "description": f"{contract.summary} Key: {contract.key_description}. Schema: "
                       f"schemas/{contract.file}.",
        "messages": {message_name(contract, k): _ref("components", "messages",
                                                     message_name(contract, k))
                     for k in contract.kinds},
        "bindings": {"kafka": {**binding, "bindingVersion": BINDING}},
    }


def _operations(contract: Contract) -> dict[str, Any]:
    messages = [_ref("channels", contract.topic, "messages", message_name(contract, k))
                for k in contract.kinds]
    operations: dict[str, Any] = {}
    for action, services in (("send", contract.sent_by), ("receive", contract.read_by)):
        for service in services:
            operation: dict[str, Any] = {
                "action": action, "channel": _ref("channels", contract.topic),
                "title": f"{service} {action}s {contract.topic}",
                "tags": [{"name": service}], "messages": messages}
            if action == "receive":
                group = {"type": "string", "enum": [DEFAULTS.app_ids[service]],
                         "description": f"SIGNUPFLOW_{service.upper()}_APP_ID"}
                operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": BINDING}}
            operations[f"{service}-{action}-{contract.topic}"] = operation
    return operations


def document(contracts: Sequence[Contract] = CONTRACTS) -> dict[str, Any]:
    shapes = {k.title: k for c in contracts for k in (*c.kinds, *filter(None, [c.headers]))}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "signupflow",
            "version": version("signupflow"),
            "description": "A signup flows auth -> member -> batch over Apache Kafka; each "
                           "service owns its database and meets the others only at these "
                           "topics. JSON values, keys the member's uuid as UTF-8; consumers "
                           "ignore unknown fields. Every topic has SIGNUPFLOW_PARTITIONS "
                           f"partitions (default {DEFAULTS.partitions}, as in the bindings) "
                           "and SIGNUPFLOW_REPLICATION_FACTOR replicas (default min(3, "
                           "brokers)).",
            "license": {"name": "MIT"},
            "tags": [{"name": s, "description": d} for s, d in SERVICES.items()],
        },
        "defaultContentType": "application/json",
        "servers": {"local": {
            "host": f"127.0.0.1:{DEFAULTS.broker_port}", "protocol": "kafka",
            "description": "`signupflow broker start` (elsewhere: SIGNUPFLOW_KAFKA_BROKER)"}},
        "channels": {c.topic: _channel(c) for c in contracts},
        "operations": {k: v for c in contracts for k, v in _operations(c).items()},
        "components": {
            "schemas": {title: shape_schema(shape) for title, shape in shapes.items()},
            "messages": {message_name(c, k): _message(c, k) for c in contracts for k in c.kinds},
        },
    }


def render(doc: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
