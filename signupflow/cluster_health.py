"""``signupflow broker status``'s verdict: is the local cluster whole (every node up, every
partition led and fully in sync)?

An operator upgrading brokers one at a time waits for that before taking the next
(``broker status --wait``). :class:`Health` is pure; :func:`check` reads the cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from signupflow.broker import BrokerStatus
from signupflow.broker import status as broker_status
from signupflow.topics import PartitionState, describe_partitions

#: Seconds ``broker status --wait`` waits when given no number.
DEFAULT_WAIT = 300.0
#: Kafka's leader id of a partition that has none (offline).
NO_LEADER = -1


@dataclass(frozen=True)
class Health:
    """The cluster's nodes and partitions, and what keeps it from being whole."""

    status: BrokerStatus
    partitions: Sequence[PartitionState] = ()
    #: why the partitions could not be described (None: they were)
    error: str | None = None

    @property
    def nodes(self) -> int:
        return len(self.status.nodes)

    @property
    def nodes_up(self) -> int:
        return sum(n.running for n in self.status.nodes)

    @property
    def under_replicated(self) -> list[PartitionState]:
        return [p for p in self.partitions if set(p.isr) != set(p.replicas)]

    @property
    def offline(self) -> list[PartitionState]:
        return [p for p in self.partitions if p.leader == NO_LEADER]

    @property
    def healthy(self) -> bool:
        return (self.nodes_up == self.nodes and self.error is None
                and not self.under_replicated and not self.offline)

    def summary(self) -> str:
        """One line, e.g. ``3 nodes up, 37 partitions, 0 under-replicated``."""
        up = (f"{self.nodes} node{'s' * (self.nodes != 1)} up" if self.nodes_up == self.nodes
              else f"{self.nodes_up} of {self.nodes} nodes up")
        if self.error is not None:
            return f"{up}, partitions unknown ({self.error})"
        parts = [up, f"{len(self.partitions)} partitions",
                 f"{len(self.under_replicated)} under-replicated"]
        if self.offline:
            parts.append(f"{len(self.offline)} without a leader")
        return ", ".join(parts)


def check(home: Path) -> Health:
    """The local cluster in ``home`` now: its nodes and, if any runs, its partitions."""
    status = broker_status(home)
    if not any(n.running for n in status.nodes):
        return Health(status, error="no node runs")
    try:
        return Health(status, asyncio.run(describe_partitions(status.access("reader"))))
    except Exception as exc:
        return Health(status, error=f"cannot describe them: {exc}")


def wait_healthy(probe: Callable[[], Health], seconds: float, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Health:
    """Ask ``probe`` until the cluster is whole or ``seconds`` have passed; the last answer."""
    deadline = clock() + seconds
    while True:
        health = probe()
        if health.healthy or clock() >= deadline:
            return health
        sleep(interval)
