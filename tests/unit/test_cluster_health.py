"""``broker status``'s verdict: a summary line, and whole only when every node is up and
every partition led and in sync (finding: it listed partitions and gave no verdict)."""

from __future__ import annotations

from pathlib import Path

from signupflow.broker import BrokerStatus, NodeStatus
from signupflow.cluster_health import Health, wait_healthy
from signupflow.topics import PartitionState


def cluster(*running: bool) -> BrokerStatus:
    nodes = (NodeStatus(i, up, i if up else None, 9000 + i, Path("/x"))
             for i, up in enumerate(running, 1))
    return BrokerStatus(Path("/x"), tuple(nodes))


def partition(n: int, leader: int = 1, isr: tuple[int, ...] = (1, 2, 3)) -> PartitionState:
    return PartitionState("profile-insert", n, leader, (1, 2, 3), isr)


def test_a_whole_cluster_is_healthy_and_says_so_in_one_line() -> None:
    health = Health(cluster(True, True, True), [partition(n) for n in range(37)])
    assert health.healthy
    assert health.summary() == "3 nodes up, 37 partitions, 0 under-replicated"


def test_a_node_down_and_its_partitions_out_of_sync_are_not_healthy() -> None:
    health = Health(cluster(True, True, False), [partition(0, isr=(1, 2)), partition(1)])
    assert not health.healthy
    assert health.summary() == "2 of 3 nodes up, 2 partitions, 1 under-replicated"


def test_every_node_up_but_a_replica_behind_is_not_healthy() -> None:
    health = Health(cluster(True, True, True), [partition(0, isr=(1, 3))])
    assert not health.healthy and len(health.under_replicated) == 1


def test_a_partition_without_a_leader_is_named() -> None:
    health = Health(cluster(True), [partition(0, leader=-1, isr=(1, 2, 3))])
    assert not health.healthy
    assert health.summary().endswith("1 without a leader")


def test_partitions_that_cannot_be_described_are_not_healthy() -> None:
    health = Health(cluster(True), error="no node runs")
    assert not health.healthy
    assert health.summary() == "1 node up, partitions unknown (no node runs)"


def test_wait_returns_as_soon_as_the_cluster_is_whole_or_at_the_deadline() -> None:
    now = [0.0]
    answers = iter([Health(cluster(True, False)), Health(cluster(True, True))])
    health = wait_healthy(lambda: next(answers), 60, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert health.healthy and now[0] == 1.0

    never = Health(cluster(True, False))
    now[0] = 0.0
    assert not wait_healthy(lambda: never, 5, clock=lambda: now[0],
                            sleep=lambda s: now.__setitem__(0, now[0] + s)).healthy
    assert now[0] == 5.0
