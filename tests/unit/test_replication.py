"""Replication settings: what a topic gets, what an existing topic is checked against, and the
local cluster's broker configs (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.assignor.leader_assignor import LeaderAssignor

from signupflow import broker
from signupflow.settings import load_settings
from signupflow.topics import (
    TopicMismatch,
    TopicPolicy,
    TopicState,
    changelog_topic,
    leader_topics,
    mismatches,
    table_topics,
)


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_default_replication_follows_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    assert TopicPolicy().resolve(brokers) == expected


def test_settings_override_the_defaults() -> None:
    policy = TopicPolicy.from_settings(load_settings({
        "SIGNUPFLOW_REPLICATION_FACTOR": "5", "SIGNUPFLOW_MIN_INSYNC_REPLICAS": "3",
        "SIGNUPFLOW_DLQ_RETENTION": "2d"}))

    assert policy.resolve(3) == (5, 3)  # more than the brokers: refused when creating
    assert policy.dlq_retention_ms == 2 * 86400 * 1000
    assert TopicPolicy(replication_factor=2).resolve(3) == (2, 1)


def test_a_min_isr_above_the_factor_is_refused() -> None:
    with pytest.raises(TopicMismatch, match="MIN_INSYNC_REPLICAS=3 is above the replication"):
        TopicPolicy(replication_factor=2, min_insync_replicas=3).resolve(3)


def test_configs_of_each_kind_of_topic() -> None:
    policy = TopicPolicy(dlq_retention_ms=1000)

    assert policy.configs("profile-insert", 2) == {"min.insync.replicas": "2"}
    assert policy.configs("profile-insert.dlq", 2) == {
        "min.insync.replicas": "2", "retention.ms": "1000"}
    assert policy.configs("x-changelog", 1, {"cleanup.policy": "compact"}) == {
        "min.insync.replicas": "1", "cleanup.policy": "compact"}


def test_a_topic_with_fewer_replicas_is_reported_with_the_way_out() -> None:
    states = [TopicState("a", 4, 1, 1), TopicState("b", 4, 1, 2), TopicState("c", 4, 3, 2)]

    problems = mismatches(states, 4, 3, 2)

    assert len(problems) == 2
    assert problems[0].startswith("topic(s) 'a', 'b' have 1 replica(s) but the replication "
                                  "factor is 3")
    assert "SIGNUPFLOW_REPLICATION_FACTOR=1" in problems[0]
    assert problems[1].startswith("topic(s) 'a' have min.insync.replicas=1 but "
                                  "SIGNUPFLOW_MIN_INSYNC_REPLICAS is 2")


def test_a_leader_topic_has_one_partition() -> None:
    states = [TopicState("lead", 1, 3, 2), TopicState("data", 1, 3, 2)]

    assert mismatches(states, 4, 3, 2, single=["lead"]) == [
        "topic(s) 'data' have 1 partitions but SIGNUPFLOW_PARTITIONS=4; use the same count "
        "everywhere"]


def test_more_replicas_or_a_higher_min_isr_than_asked_is_fine() -> None:
    assert mismatches([TopicState("a", 4, 3, 3), TopicState("b", 4, 2, None)], 4, 2, 1) == []
    assert mismatches([TopicState("a", 3, 3, 3)], 4, 2, 1) == [
        "topic(s) 'a' have 3 partitions but SIGNUPFLOW_PARTITIONS=4; use the same count "
        "everywhere"]


def test_signupflow_topics_creates_every_table_changelog_as_its_table_asks() -> None:
    from signupflow.streams import auth, batch, member

    settings = load_settings({})
    apps = [auth.app, member.app, batch.app]
    tables = table_topics(settings)

    assert tables[changelog_topic("signupflow-batch", "partner-summary")] == {
        "cleanup.policy": "compact"}
    assert {t.changelog_topic.get_topic_name() for a in apps for t in a.tables.values()} == set(
        tables)
    windowed = [c for c in tables.values() if "delete" in c.get("cleanup.policy", "")]
    assert windowed and all("retention.ms" in c for c in windowed)  # member's per-minute table
    for app in apps:  # Faust's own leader topic, created ahead too
        leader = app._leader_assignor
        assert isinstance(leader, LeaderAssignor)
        assert leader._leader_topic_name in leader_topics(settings)


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_three_node_cluster_is_configured_for_the_loss_of_one(tmp_path: Path) -> None:
    controllers = {1: 9101, 2: 9102, 3: 9103}

    config = _properties(broker._config(tmp_path, 2, 9002, controllers))

    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103")
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):
        assert config[key] == "3", key
    assert config["min.insync.replicas"] == "2"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["unclean.leader.election.enable"] == "false"


def test_a_single_node_keeps_everything_at_one(tmp_path: Path) -> None:
    config = _properties(broker._config(tmp_path, 1, 9002, {1: 9101}))

    assert config["offsets.topic.replication.factor"] == "1"
    assert config["min.insync.replicas"] == "1"


def test_node_folders_and_ports_survive_a_restart(tmp_path: Path) -> None:
    """A stopped node keeps its ports (its peers know its controller port)."""
    folder = broker.node_home(tmp_path, 3)
    folder.mkdir(parents=True)
    (folder / "server.properties").write_text(broker._config(folder, 3, 9003, {
        1: 9101, 2: 9102, 3: 9103}))

    assert folder == tmp_path / "node-3"
    assert broker.node_home(tmp_path, 1) == tmp_path
    assert broker._previous_ports(folder / "server.properties") == (9003, 9103)


def test_a_home_holding_another_cluster_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("cluster.id=x\n")
    (tmp_path / "broker.nodes").write_text("1")

    with pytest.raises(broker.BrokerError, match="holds a cluster of 1 node"):
        broker.start(tmp_path, 0, nodes=3)
