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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faust.types import TopicT
from mode import want_seconds

from signupflow.kafka_client import KafkaAccess
from signupflow.kafka_client import admin as admin_client

if TYPE_CHECKING:
    from signupflow.settings import Settings

PROFILE_INSERT = "profile-insert"
PARTNER_CREATED = "partner-created"
DLQ_SUFFIX = ".dlq"
DATA_TOPICS = (PROFILE_INSERT, PARTNER_CREATED)
#: Kafka's error code for a topic the principal may not create (or see).
TOPIC_AUTHORIZATION_FAILED = 29
#: The Faust tables (member's and batch's), named here so that their changelog topics are
#: known without building the apps.
SIGNUPS_PER_MINUTE = "signups-per-minute"
PARTNER_SUMMARY = "partner-summary"
#: The consumer group of ``signupflow dlq replay`` (its progress).
REPLAY_GROUP = "signupflow-dlq-replay"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def changelog_topic(app_id: str, table: str) -> str:
    """The name Faust gives a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def topic_config(topic: TopicT) -> dict[str, str]:
    """The Kafka settings a Faust topic asks for (a table's changelog: compacted, and for a
    windowed table deleted after the window's expiry too), with its own extra config."""
    policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting))
              if on]
    config = {"cleanup.policy": ",".join(policy)} if policy else {}
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    return {**config, **{k: str(v) for k, v in (topic.config or {}).items()}}


def table_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every worker's table changelogs under the app ids of ``settings``, each with the Kafka
    settings its table asks for (for ``signupflow topics``, which creates them ahead of the
    workers).

    The tables are defined as their services define them, on a Faust app of that service's
    id that never starts: the service modules' own apps are built from the process's settings,
    not from these.
    """
    import faust

    from signupflow.tables import partner_summary, signups_per_minute

    found: dict[str, dict[str, str]] = {}
    for service, define in (("batch", partner_summary.define_table),
                            ("member", signups_per_minute.define_table)):
        app = faust.App(settings.app_ids[service], autodiscover=False, store="memory://",
                        topic_partitions=settings.partitions)
        define(app, settings.partitions)
        found.update({t.changelog_topic.get_topic_name(): topic_config(t.changelog_topic)
                      for t in app.tables.values()})
    return found


def leader_topic(app_id: str) -> str:
    """The one-partition topic Faust's assignor uses to elect a leader among an app's
    workers (created here, so that it is replicated like the others)."""
    return f"{app_id}-__assignor-__leader"


def leader_topics(settings: Settings) -> list[str]:
    return [leader_topic(app_id) for app_id in settings.app_ids.values()]


@dataclass(frozen=True)
class Uses:
    """What one service's worker uses in Kafka: its consumer group, the topics it reads and
    those it writes (its leader topic and changelog included). Least privilege grants exactly
    this (signupflow/acls.py)."""

    group: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.reads, *self.writes)))


def service_uses(settings: Settings) -> dict[str, Uses]:
    """Each service's :class:`Uses`, with the app ids (groups, internal topics) of
    ``settings``."""
    ids = settings.app_ids
    spm = changelog_topic(ids["member"], SIGNUPS_PER_MINUTE)
    summary = changelog_topic(ids["batch"], PARTNER_SUMMARY)
    return {
        "auth": Uses(ids["auth"], (leader_topic(ids["auth"]),), (PROFILE_INSERT,)),
        "member": Uses(ids["member"], (PROFILE_INSERT, spm, leader_topic(ids["member"])),
                       (PARTNER_CREATED, dlq_topic(PROFILE_INSERT), spm)),
        "batch": Uses(ids["batch"], (PARTNER_CREATED, summary, leader_topic(ids["batch"])),
                      (dlq_topic(PARTNER_CREATED), summary)),
    }


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
    """An existing topic differs from what the settings ask for (partitions, replicas), or the
    cluster cannot hold what they ask for."""


@dataclass(frozen=True)
class TopicPolicy:
    """How signupflow's topics are replicated and kept (from the settings)."""

    #: None: min(3, the brokers the cluster reports)
    replication_factor: int | None = None
    #: None: the replication factor - 1, at least 1
    min_insync_replicas: int | None = None
    dlq_retention_ms: int = 30 * 86400 * 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicPolicy:
        return cls(settings.replication_factor, settings.min_insync_replicas,
                   int(settings.dlq_retention * 1000))

    def resolve(self, brokers: int) -> tuple[int, int]:
        """Replication factor and min.insync.replicas on a cluster reporting ``brokers``.

        With min ISR = RF - 1, one broker may be lost (or restarted for an upgrade) and
        ``acks=all`` writes go on; a second loss stops writes rather than risk losing them.
        """
        factor = self.replication_factor or max(1, min(3, brokers))
        min_isr = self.min_insync_replicas or max(1, factor - 1)
        if min_isr > factor:
            raise TopicMismatch(
                f"SIGNUPFLOW_MIN_INSYNC_REPLICAS={min_isr} is above the replication factor "
                f"{factor}: no write could ever be acknowledged")
        return factor, min_isr

    def configs(self, name: str, min_isr: int,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The topic configs signupflow sets on a topic it creates (``extra``: what its Faust
        table asks for)."""
        configs = {"min.insync.replicas": str(min_isr)}
        if name.endswith(DLQ_SUFFIX):
            configs["retention.ms"] = str(self.dlq_retention_ms)
        return {**configs, **(extra or {})}


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster describes it."""

    name: str
    partitions: int
    #: the fewest replicas of any of its partitions
    replicas: int
    min_insync_replicas: int | None

    def problems(self, partitions: int, factor: int, min_isr: int) -> list[str]:
        """What is wrong with this topic for these settings ([] when nothing), in words that
        do not name the topic (several topics share a problem)."""
        found = []
        if self.partitions != partitions:
            found.append(f"{self.partitions} partitions but SIGNUPFLOW_PARTITIONS={partitions}; "
                         "use the same count everywhere")
        if self.replicas < factor:
            found.append(
                f"{self.replicas} replica(s) but the replication factor is {factor} "
                "(SIGNUPFLOW_REPLICATION_FACTOR, default min(3, brokers)): losing a broker "
                "could lose events. Add replicas with kafka-reassign-partitions.sh, or set "
                f"SIGNUPFLOW_REPLICATION_FACTOR={self.replicas} to run with fewer knowingly")
        if self.min_insync_replicas is not None and self.min_insync_replicas < min_isr:
            found.append(
                f"min.insync.replicas={self.min_insync_replicas} but "
                f"SIGNUPFLOW_MIN_INSYNC_REPLICAS is {min_isr}: raise it with kafka-configs.sh "
                f"--alter --add-config min.insync.replicas={min_isr}")
        return found


def mismatches(states: Iterable[TopicState], partitions: int, factor: int,
               min_isr: int, single: Iterable[str] = ()) -> list[str]:
    """Each problem once, with the topics that have it (``single``: one-partition topics)."""
    ones = set(single)
    topics: dict[str, list[str]] = {}
    for state in states:
        expected = 1 if state.name in ones else partitions
        for problem in state.problems(expected, factor, min_isr):
            topics.setdefault(problem, []).append(state.name)
    return [f"topic(s) {', '.join(map(repr, names))} have {problem}"
            for problem, names in topics.items()]


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


async def _min_insync(admin: Any, names: list[str]) -> dict[str, int]:
    """Each topic's effective min.insync.replicas (its own or the broker's default)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, configs={"min.insync.replicas": None})
         for n in names])
    found: dict[str, int] = {}
    for response in responses:
        for _code, _msg, _kind, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "min.insync.replicas" and entry[1] is not None:
                    found[name] = int(entry[1])
    return found


async def ensure_topics(
    kafka: KafkaAccess, partitions: int, names: Iterable[str] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    policy: TopicPolicy | None = None, single: Iterable[str] = (),
) -> list[TopicState]:
    """Create missing topics (replicated as ``policy`` says); refuse to run against a topic with
    another partition count or fewer replicas. Returns every topic's state.

    ``configs``: more topics to create, each with its Kafka settings (table changelogs, see
    :func:`topic_config`); an existing topic keeps its settings. ``single`` topics (Faust's
    leader topics) have one partition.
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    policy = policy or TopicPolicy()
    configs, ones = configs or {}, set(single)
    wanted = [*(names if names is not None else all_topics()), *sorted(configs), *sorted(ones)]
    admin = admin_client(kafka)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, min_isr = policy.resolve(brokers)
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing and factor > brokers:
            raise TopicMismatch(
                f"cannot create {', '.join(missing)} with {factor} replicas: the cluster "
                f"reports {brokers} broker(s) (SIGNUPFLOW_REPLICATION_FACTOR={factor})")
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                response = await admin.create_topics([
                    NewTopic(n, num_partitions=1 if n in ones else partitions,
                             replication_factor=factor,
                             topic_configs=policy.configs(n, min_isr, configs.get(n)))
                    for n in missing
                ])
                refused = [name for name, code, *_ in response.topic_errors
                           if code == TOPIC_AUTHORIZATION_FAILED]
                if refused:
                    raise TopicMismatch(
                        f"topic(s) {', '.join(refused)} do not exist and "
                        f"{kafka.security.principal} may not create them: create them with "
                        "`signupflow topics` as the operator principal (or grant CREATE)")
        described = await _described(admin, wanted)
        isr = await _min_insync(admin, wanted)
    finally:
        await admin.close()
    states = sorted((TopicState(t["topic"], len(t["partitions"]),
                                min((len(p["replicas"]) for p in t["partitions"]), default=0),
                                isr.get(t["topic"])) for t in described),
                    key=lambda t: t.name)
    problems = mismatches(states, partitions, factor, min_isr, ones)
    if problems:
        raise TopicMismatch("; ".join(problems))
    return states


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


async def describe_partitions(kafka: KafkaAccess) -> list[PartitionState]:
    """Leader, replicas and in-sync replicas of every partition of every topic but Kafka's own
    (``__consumer_offsets``, ...) that ``kafka``'s principal may describe."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        names = sorted(n for n in await admin.list_topics() if not n.startswith("__"))
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return sorted(
        (PartitionState(t["topic"], p["partition"], p["leader"], tuple(p["replicas"]),
                        tuple(p["isr"])) for t in described for p in t["partitions"]),
        key=lambda p: (p.topic, p.partition))


async def ensure_every_topic(kafka: KafkaAccess, settings: Settings) -> list[TopicState]:
    """Every topic signupflow and its workers use (data, dead letters, table changelogs,
    Faust's leader topics), as the settings ask: ``signupflow topics``."""
    return await ensure_topics(kafka, settings.partitions, all_topics(),
                               configs=table_topics(settings),
                               policy=TopicPolicy.from_settings(settings),
                               single=leader_topics(settings))


async def cluster_id(kafka: KafkaAccess) -> str | None:
    """The cluster's id, as its brokers report it (None if they do not): what a table's store
    on disk is marked with, so that a copy from another cluster is not taken for this one's."""
    admin = admin_client(kafka)
    await admin.start()
    try:
        found = (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()
    return str(found) if found else None
