"""Topic names and their explicit creation.

Topics are created up front with the configured partition count: all data topics of one flow
share that count, so a member's events land in the same partition number on every hop, and a
Faust table's changelog matches the topic that feeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TopicT
from mode import want_seconds

PROFILE_INSERT = "profile-insert"
PARTNER_CREATED = "partner-created"
DLQ_SUFFIX = ".dlq"
DATA_TOPICS = (PROFILE_INSERT, PARTNER_CREATED)


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner picks for ``key``: every producer
    here sends a member's events (and so the partner's summary) to that one."""
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), every, every))


def all_topics() -> list[str]:
    """Every topic signupflow itself reads or writes (Faust adds its own internal ones)."""
    return [*DATA_TOPICS, *(dlq_topic(t) for t in DATA_TOPICS)]


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count than the settings ask for."""


async def _described(
    admin: Any, names: list[str], seconds: float = 15.0
) -> list[dict[str, Any]]:
    """Describe topics, waiting while a topic just created (here or by another worker
    starting at the same moment) still shows no partitions."""
    deadline = time.monotonic() + seconds
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        if all(t["partitions"] for t in described) or time.monotonic() > deadline:
            return described
        await asyncio.sleep(0.2)


def topic_config(topic: TopicT) -> dict[str, str]:
    """The Kafka settings a Faust topic asks for (a table's changelog: compacted, and for a
    windowed table deleted after the window's expiry too), with its own extra config."""
    policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting))
              if on]
    config = {"cleanup.policy": ",".join(policy)} if policy else {}
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    return {**config, **{k: str(v) for k, v in (topic.config or {}).items()}}


async def ensure_topics(
    bootstrap: str, partitions: int, names: Iterable[str] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create missing topics; refuse to run against a topic with another partition count.

    ``configs``: more topics to create, each with its Kafka settings (table changelogs, see
    :func:`topic_config`). An existing topic keeps its settings.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    configs = configs or {}
    wanted = [*(names if names is not None else all_topics()), *sorted(configs)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([
                    NewTopic(n, num_partitions=partitions, replication_factor=1,
                             topic_configs=dict(configs.get(n, {})))
                    for n in missing
                ])
        for topic in await _described(admin, wanted):
            count = len(topic["partitions"])
            if count != partitions:
                raise TopicMismatch(
                    f"topic {topic['topic']!r} has {count} partitions but "
                    f"SIGNUPFLOW_PARTITIONS={partitions}; use the same count everywhere"
                )
    finally:
        await admin.close()
