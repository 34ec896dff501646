"""docs/asyncapi.yaml: what the code generates, valid AsyncAPI 3.0 (the vendored JSON Schema,
offline), every reference resolves, and it agrees with the committed schemas and the apps."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from signupflow.contracts.asyncapi import document, message_name, render
from signupflow.contracts.catalogue import CONTRACTS
from signupflow.contracts.compat import kinds_of
from tests.unit.test_contracts import Joined, Left, life

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
SPEC = ROOT / "tests" / "vendor" / "asyncapi" / "3.0.0.json"


def offline(uri: str) -> Resource[Any]:
    raise LookupError(f"the AsyncAPI schema asked for {uri}: validation must be offline")


def asyncapi_validator() -> Draft7Validator:
    spec = json.loads(SPEC.read_text())
    registry: Registry[Any] = Registry(retrieve=offline).with_resource(  # type: ignore[call-arg]
        spec["$id"], Resource.from_contents(spec, default_specification=DRAFT7))
    return Draft7Validator(spec, registry=registry)


def committed() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return doc


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert DOCUMENT.read_text() == render(document()), "run `signupflow schemas asyncapi`"


def test_the_document_is_valid_asyncapi_3() -> None:
    errors = [f"{e.json_path}: {e.message[:200]}"
              for e in asyncapi_validator().iter_errors(committed())]
    assert errors == []


@pytest.mark.parametrize("path", [("operations", "auth-send-profile-insert", "action"),
                                  ("channels", "partner-created", "bindings", "kafka",
                                   "partitions"),
                                  ("components", "schemas", "ProfileInsert", "type")])
def test_the_validator_refuses_a_broken_document(path: tuple[str, ...]) -> None:
    doc = copy.deepcopy(committed())
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = {"action": "publish", "partitions": 0, "type": "objekt"}[path[-1]]
    assert not asyncapi_validator().is_valid(doc)


def test_every_reference_resolves() -> None:
    doc = committed()
    found = list(refs(doc))
    assert len(found) > 20
    for ref in found:
        resolve(doc, ref)


def test_each_channel_carries_the_kinds_of_its_committed_schema() -> None:
    doc = committed()
    for contract in CONTRACTS:
        channel = doc["channels"][contract.topic]
        schema = json.loads((ROOT / "schemas" / contract.file).read_text())
        assert list(channel["messages"]) == [message_name(contract, k) for k in contract.kinds]
        for title, kind in kinds_of(schema).items():
            assert doc["components"]["schemas"][title] == {
                k: v for k, v in kind.items() if k not in ("$schema", "$comment")}
        assert channel["bindings"]["kafka"]["topic"] == contract.topic


def test_the_operations_are_the_apps_topics() -> None:
    """Who receives a channel is the app whose agent reads it; who sends it declared it."""
    from signupflow.streams import auth, batch, member

    doc = committed()
    topics = {c.topic for c in CONTRACTS}
    for module in (auth, batch, member):
        app, service = module.app, module.STAGE
        read = {a.channel.get_topic_name() for a in app.agents.values()}
        changelogs = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
        operations = [o for o in doc["operations"].values() if o["tags"] == [{"name": service}]]
        received = {o["channel"]["$ref"].split("/")[-1] for o in operations
                    if o["action"] == "receive"}
        sent = {o["channel"]["$ref"].split("/")[-1] for o in operations if o["action"] == "send"}
        assert read <= topics, f"{service} reads a topic without a contract"
        assert read <= received
        assert received - read <= changelogs  # a table read back at start-up
        assert sent <= set(app.signupflow_topics) | changelogs


def test_a_topic_of_several_kinds_has_a_message_per_kind() -> None:
    doc = document([*CONTRACTS, life(Joined, Left)])
    assert list(doc["channels"]["member-life"]["messages"]) == ["Joined", "Left"]
    assert asyncapi_validator().is_valid(doc)
    for ref in refs(doc):
        resolve(doc, ref)
