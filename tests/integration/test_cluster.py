"""A replicated cluster: three real Kafka nodes (RF 3, min.insync.replicas 2), a broker lost
under load.

Each test has its own 3-node KRaft cluster (``signupflow broker start --nodes 3`` underneath).
A node is killed with kill -9 (no controlled shutdown) or stopped, the system must keep working
on the other two, and every test ends with exact counts, a clean ``signupflow verify`` and the
restarted node back in every in-sync replica set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from signupflow import broker
from signupflow.broker import free_port
from signupflow.supervisor import start_worker, stop_process
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, changelog_topic
from tests.integration.system import System, finish

LOAD = 2000
CHANGELOG = changelog_topic("signupflow-batch", "partner-summary")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[System]:
    sys_ = System(tmp_path, nodes=3)
    try:
        sys_.start_broker()
        yield sys_
    finally:
        sys_.shutdown()


def summaries(system: System) -> int:
    return system.count("batch", "partner_summary")


def profiles_reach(system: System, count: int) -> Callable[[], bool]:
    return lambda: system.profiles() >= count


def lose_node(cluster: System, node: int, progress: Callable[[], int], more: int,
              kill: bool = True, cap: int = LOAD) -> None:
    """Stop ``node`` (kill -9, or SIGTERM as in an upgrade), wait until ``progress`` has grown
    by ``more`` (at most to ``cap``) while it is down: the cluster goes on without it. Then
    start it again."""
    cluster.stop_node(node, kill=kill)
    target = min(progress() + more, cap)
    cluster.wait_until(lambda: progress() >= target, 180,
                       f"progress while node {node} is down")
    cluster.start_nodes()


def test_broker_start_nodes_3_then_topics_gives_replicated_topics(tmp_path: Path) -> None:
    """The acceptance of `broker start --nodes 3` + `topics`, checked by an independent client
    (librdkafka), and `broker status` listing each node and partition."""
    env = {"SIGNUPFLOW_DATA_DIR": str(tmp_path), "SIGNUPFLOW_BROKER_PORT": str(free_port())}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "signupflow.cli", *args],
                              env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=300)

    try:
        started = cli("broker", "start", "--nodes", "3")
        assert started.returncode == 0, started.stderr
        topics = cli("topics")
        assert topics.returncode == 0, topics.stderr
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{env['SIGNUPFLOW_BROKER_PORT']}"})
        metadata = admin.list_topics(timeout=20)
        assert len(metadata.brokers) == 3
        ours = {n: t for n, t in metadata.topics.items() if not n.startswith("__")}
        assert {PROFILE_INSERT, PARTNER_CREATED, f"{PROFILE_INSERT}.dlq", CHANGELOG,
                "signupflow-member-__assignor-__leader"} <= set(ours)
        for name, topic in ours.items():
            assert {len(p.replicas) for p in topic.partitions.values()} == {3}, name
            configs = next(iter(admin.describe_configs(
                [ConfigResource("topic", name)]).values())).result()
            assert configs["min.insync.replicas"].value == "2", name
            if name.endswith(".dlq"):  # SIGNUPFLOW_DLQ_RETENTION's default: 30 days
                assert configs["retention.ms"].value == str(30 * 86400 * 1000), name
        status = cli("broker", "status")
        assert status.returncode == 0, status.stdout
        assert "3 of 3 nodes running" in status.stdout
        assert f"{PROFILE_INSERT}[0]: leader" in status.stdout
        assert "UNDER-REPLICATED" not in status.stdout
        partitions = status.stdout.count("]: leader ")
        assert status.stdout.splitlines()[-1] == (
            f"3 nodes up, {partitions} partitions, 0 under-replicated")
        # a node stopped, as in a rolling upgrade: a verdict, and a wait for the way back
        assert broker.stop(tmp_path / "broker", node=3)
        status = cli("broker", "status")
        assert status.returncode == 1, status.stdout
        last = status.stdout.splitlines()[-1]
        assert last.startswith(f"2 of 3 nodes up, {partitions} partitions, "), last
        assert "UNDER-REPLICATED" in status.stdout and ", 0 under-replicated" not in last
        assert cli("broker", "start", "--nodes", "3").returncode == 0
        status = cli("broker", "status", "--wait", "120")
        assert status.returncode == 0, status.stdout
        assert status.stdout.splitlines()[-1].endswith(", 0 under-replicated")
    finally:
        stopped = cli("broker", "stop")
    assert stopped.stdout.strip() == "broker stopped"
    assert cli("broker", "status").returncode == 1


def test_leader_of_profile_insert_killed_mid_load(cluster: System) -> None:
    cluster.start()
    load = cluster.signup(LOAD, seed=41)
    cluster.wait_until(lambda: cluster.profiles() >= 200, 180, "member under load")
    lose_node(cluster, cluster.leader(PROFILE_INSERT, 0), cluster.profiles, 300)
    assert finish(load) == LOAD
    cluster.assert_exactly(LOAD, seed=41)
    cluster.wait_in_sync()


def test_broker_leading_the_changelog_killed_while_batch_writes(cluster: System) -> None:
    cluster.start()
    load = cluster.signup(LOAD, seed=42)
    cluster.wait_until(lambda: summaries(cluster) >= 60, 180, "batch under load")
    lose_node(cluster, cluster.leader(CHANGELOG, 0), partial(summaries, cluster), 60,
              cap=LOAD // 5)
    assert finish(load) == LOAD
    # verify also compares batch.db with the table, rebuilt from the changelog on restart
    cluster.stop("batch")
    cluster.start("batch")
    cluster.assert_exactly(LOAD, seed=42)
    cluster.wait_in_sync()


def test_rolling_restart_of_every_node_under_load(cluster: System) -> None:
    """An upgrade, one node at a time: each is stopped (SIGTERM) while signups flow, started
    again, and the next waits until every replica is back in sync."""
    cluster.start()
    total = 0
    for node, seed in zip((1, 2, 3), (43, 44, 45), strict=True):
        load = cluster.signup(LOAD // 3, seed=seed)
        cluster.wait_until(profiles_reach(cluster, total + 100), 180,
                           f"load before node {node} stops")
        lose_node(cluster, node, cluster.profiles, 200, kill=False, cap=total + LOAD // 3)
        total += finish(load)
        cluster.wait_in_sync()
    assert total == 3 * (LOAD // 3)
    cluster.wait_until(lambda: cluster.profiles() == total, 180, f"{total} profiles")
    assert cluster.count("auth", "member") == total
    cluster.assert_consistent()


def test_two_workers_per_service_on_postgresql_while_a_broker_dies(cluster: System) -> None:
    with cluster.databases("postgresql"):
        cluster.start()
        cluster.start_extra("member-2", "member")
        cluster.start_extra("batch-2", "batch")
        load = cluster.signup(LOAD, seed=46)
        cluster.wait_until(lambda: summaries(cluster) >= 60, 180, "load on every stage")
        lose_node(cluster, cluster.leader(PARTNER_CREATED, 0), cluster.profiles, 300)
        assert finish(load) == LOAD
        cluster.assert_exactly(LOAD, seed=46)
        cluster.wait_in_sync()


def test_a_worker_refuses_topics_with_fewer_replicas_than_configured(tmp_system: System) -> None:
    """One broker, topics with one replica, and a worker configured for two: it says so and
    stops, instead of running under-replicated."""
    proc = start_worker("member", tmp_system.log("member"),
                        {**tmp_system.env, "SIGNUPFLOW_REPLICATION_FACTOR": "2"})
    try:
        assert proc.wait(timeout=90) != 0
    finally:
        stop_process(proc)
    log = tmp_system.log("member").read_text()
    refusal = next(line for line in log.splitlines() if "TopicMismatch" in line)
    assert "have 1 replica(s) but the replication factor is 2" in refusal
    for topic in ("profile-insert", "profile-insert.dlq", "partner-created",
                  "signupflow-member-__assignor-__leader"):
        assert f"'{topic}'" in refusal, topic
    assert "SIGNUPFLOW_REPLICATION_FACTOR=1 to run with fewer knowingly" in log
