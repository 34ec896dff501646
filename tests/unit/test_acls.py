"""Least privilege: each principal is granted exactly what its code uses, nothing else."""

from __future__ import annotations

from collections import defaultdict

from signupflow.acls import Acl, plan
from signupflow.settings import PRINCIPALS, Principal, load_settings
from signupflow.topics import (
    PARTNER_CREATED,
    PROFILE_INSERT,
    REPLAY_GROUP,
    all_topics,
    dlq_topic,
    service_uses,
)

PRINCIPAL_NAMES: dict[Principal, str] = {p: f"User:{p}" for p in PRINCIPALS}


def grants(acls: list[Acl]) -> dict[str, set[tuple[str, str, str]]]:
    by: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for a in acls:
        by[a.principal.removeprefix("User:")].add((a.resource, a.name, a.operation))
    return by


def on(granted: set[tuple[str, str, str]], operation: str, resource: str = "TOPIC") -> set[str]:
    return {name for r, name, op in granted if op == operation and r == resource}


SETTINGS = load_settings({})
GRANTS = grants(plan(SETTINGS, PRINCIPAL_NAMES))
USES = service_uses(SETTINGS)


def test_each_service_reads_and_writes_exactly_what_it_uses() -> None:
    for service, use in USES.items():
        granted = GRANTS[service]
        assert on(granted, "READ") == set(use.reads), service
        assert on(granted, "WRITE") == set(use.writes), service
        assert on(granted, "READ", "GROUP") == {use.group}, service
        assert on(granted, "DESCRIBE_CONFIGS") == set(use.topics), service
        assert {op for _, _, op in granted} == {"READ", "WRITE", "DESCRIBE_CONFIGS"}, service


def test_the_flow_of_the_issue() -> None:
    # auth writes profile-insert and reads none of the events; member cannot forge a signup;
    # batch cannot read profile-insert
    assert PROFILE_INSERT in on(GRANTS["auth"], "WRITE")
    assert PROFILE_INSERT not in on(GRANTS["auth"], "READ")
    assert PROFILE_INSERT not in on(GRANTS["member"], "WRITE")
    assert {PARTNER_CREATED, dlq_topic(PROFILE_INSERT)} <= on(GRANTS["member"], "WRITE")
    assert not {n for _, n, _ in GRANTS["batch"]} & {PROFILE_INSERT, dlq_topic(PROFILE_INSERT)}


def test_the_reader_reads_and_never_writes_or_joins_a_group() -> None:
    reader = GRANTS["reader"]
    assert {op for _, _, op in reader} == {"READ", "DESCRIBE"}
    assert set(all_topics()) <= on(reader, "READ")
    assert not on(reader, "READ", "GROUP")


def test_only_the_operator_creates_topics_and_it_replays_dead_letters() -> None:
    creators = {who for who, granted in GRANTS.items() if on(granted, "CREATE")}
    assert creators == {"operator"}
    operator = GRANTS["operator"]
    every = {t for use in USES.values() for t in use.topics}
    assert on(operator, "CREATE") == every == on(operator, "DESCRIBE")
    assert on(operator, "WRITE") == {PROFILE_INSERT, PARTNER_CREATED}
    assert on(operator, "READ") == {dlq_topic(PROFILE_INSERT), dlq_topic(PARTNER_CREATED)}
    assert on(operator, "READ", "GROUP") == {REPLAY_GROUP}


def test_grants_follow_the_app_ids() -> None:
    settings = load_settings({"SIGNUPFLOW_MEMBER_APP_ID": "member-v2"})
    member = grants(plan(settings, PRINCIPAL_NAMES))["member"]

    assert on(member, "READ", "GROUP") == {"member-v2"}
    assert "member-v2-signups-per-minute-changelog" in on(member, "WRITE")
    assert "member-v2-__assignor-__leader" in on(member, "READ")


def test_a_grant_as_a_kafka_acls_command() -> None:
    acl = Acl("User:signupflow-member", "TOPIC", "partner-created", "DESCRIBE_CONFIGS")

    assert acl.kafka_acls() == (
        "kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config admin.properties --add "
        "--allow-principal User:signupflow-member --operation DescribeConfigs "
        "--topic partner-created")
    assert Acl("User:x", "GROUP", "g", "READ").kafka_acls().endswith("--operation Read --group g")


def test_the_grants_agree_with_the_event_contracts() -> None:
    """Two declarations of who uses a topic (the ACLs', the AsyncAPI document's) cannot drift
    apart: each contract's writers are exactly the services granted WRITE, its readers those
    granted READ."""
    from signupflow.contracts.catalogue import CONTRACTS

    for c in CONTRACTS:
        writers = {s for s, use in USES.items() if c.topic in use.writes}
        readers = {s for s, use in USES.items() if c.topic in use.reads}
        assert writers == set(c.sent_by), c.topic
        assert readers == set(c.read_by), c.topic
