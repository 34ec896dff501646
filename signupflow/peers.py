"""The member stage written with other Python Kafka tools: the peers of ``signupflow bench``.

Each peer does the work of the Faust member worker and of the bench's aiokafka baseline, with
the same guarantees: decode and validate each ProfileInsert, write profiles and styles with the
worker's own :func:`~signupflow.storage.member.save_profiles` (SQLite), publish PartnerCreated
for partners (and a dead letter for an invalid event) with acks=all and idempotence, and commit
the offsets only after the writes are done and the publishes acknowledged.

Run as ``python -m signupflow.peers quix|confluent BOOTSTRAP SOURCE TARGET GROUP DB``: the
benchmark starts each peer as a process of its own, like the Faust workers, and counts the
rows in DB. Quix's ``Application.run`` installs signal handlers, so it must own a main thread.
The packages come from the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signupflow.db import make_engine
from signupflow.domain.decode import InvalidEvent, decode_profile_insert
from signupflow.domain.summary import partner_created
from signupflow.migrations import upgrade
from signupflow.models.events import ProfileInsert
from signupflow.storage.member import save_profiles
from signupflow.topics import dlq_topic

#: The importable package of each peer.
PACKAGES = {"confluent": "confluent_kafka", "quix": "quixstreams"}
#: The baseline's batch: at most this many records, or what arrived within WAIT seconds.
BATCH = 500
WAIT = 0.05
MAX_EVENT_BYTES = 64 * 1024
#: librdkafka's spelling of :data:`signupflow.kafka_client.DURABLE`.
DURABLE = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}

Headers = list[tuple[str, bytes]]


def missing_peers(find_spec: Callable[[str], object] = importlib.util.find_spec) -> dict[str, str]:
    """The peers whose package is not installed, with the reason to print."""
    return {name: f"{package} is not installed (pip install -e '.[bench]')"
            for name, package in PACKAGES.items() if find_spec(package) is None}


@dataclass(frozen=True)
class Dead:
    """An event that cannot be processed, bound for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    reason: str

    @property
    def headers(self) -> Headers:
        return [("dlq.error", self.reason.encode())]


def decode(key: bytes | None, value: bytes | None) -> ProfileInsert | Dead:
    try:
        return decode_profile_insert(key, value, MAX_EVENT_BYTES)
    except InvalidEvent as exc:
        return Dead(key, value, str(exc))


def split(
    records: Iterable[tuple[bytes | None, bytes | None]],
) -> tuple[list[ProfileInsert], list[Dead]]:
    """The valid profiles of a batch of (key, value) records, and the dead letters."""
    profiles: list[ProfileInsert] = []
    dead: list[Dead] = []
    for key, value in records:
        decoded = decode(key, value)
        if isinstance(decoded, Dead):
            dead.append(decoded)
        else:
            profiles.append(decoded)
    return profiles, dead


def partner_messages(profiles: Iterable[ProfileInsert]) -> list[tuple[bytes, bytes]]:
    """(key, value) of the PartnerCreated event of each partner among ``profiles``."""
    return [(e.partner_id.encode(), e.dumps()) for p in profiles
            if (e := partner_created(p)) is not None]


def partner_value(decoded: ProfileInsert | Dead) -> bytes | None:
    """The PartnerCreated value for a partner's profile, else None."""
    event = partner_created(decoded) if isinstance(decoded, ProfileInsert) else None
    return None if event is None else event.dumps()


class Store:
    """``save_profiles`` (async) from a synchronous consumer: one event loop and engine for the
    whole process, so that each batch costs what it costs the async consumers."""

    def __init__(self, db: Path):
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(f"sqlite+aiosqlite:///{db}")
        self.loop.run_until_complete(upgrade(self.engine, "member"))

    def save(self, profiles: Sequence[ProfileInsert]) -> None:
        if profiles:
            self.loop.run_until_complete(save_profiles(self.engine, profiles))

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()


def run_confluent(bootstrap: str, source: str, target: str, group: str, store: Store) -> None:
    """A hand-written librdkafka consumer: per batch (up to BATCH records or WAIT seconds),
    write, produce, flush the producer (every delivery acknowledged), then commit the consumed
    offsets synchronously. Stops at SIGTERM."""
    from confluent_kafka import Consumer, KafkaException, Producer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": bootstrap, **DURABLE})
    failures: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    consumer.subscribe([source])
    try:
        while not stopping:
            messages = consumer.consume(num_messages=BATCH, timeout=WAIT)
            for m in messages:
                if m.error() is not None:
                    raise KafkaException(m.error())
            if not messages:
                continue
            profiles, dead = split((m.key(), m.value()) for m in messages)
            store.save(profiles)
            for d in dead:
                producer.produce(dlq_topic(source), d.value, d.key, headers=d.headers,
                                 on_delivery=delivered)
            for key, value in partner_messages(profiles):
                producer.produce(target, value, key, on_delivery=delivered)
            producer.flush()
            if failures:
                raise KafkaException(failures[0])
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def run_quix(bootstrap: str, source: str, target: str, group: str, store: Store) -> None:
    """A Quix Streams application: decoded events branch to a BatchingSink (the profiles) and
    to ``to_topic`` (PartnerCreated, dead letters).

    Delivery: at-least-once (Quix's ``processing_guarantee="at-least-once"``). Quix produces
    as each event is processed, buffers the sink's records per partition, and at each
    checkpoint (every BATCH events or WAIT seconds, like the baseline's batches) flushes the
    sinks (our transactions), then the producer (every delivery acknowledged), and only then
    commits the offsets; a failed flush aborts the checkpoint, so the events are processed
    again. Quix copies (pickles) the value for each extra branch: ~4 µs per copy here.
    """
    from quixstreams import Application
    from quixstreams.models import Topic
    from quixstreams.sinks import BatchingSink, SinkBatch

    class ProfileSink(BatchingSink):
        """One transaction per partition per checkpoint."""

        def write(self, batch: SinkBatch) -> None:
            store.save([item.value for item in batch])

    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", processing_guarantee="at-least-once",
                      commit_every=BATCH, commit_interval=WAIT, consumer_poll_timeout=WAIT,
                      producer_extra_config=DURABLE,
                      # Quix would otherwise make ./state in the working directory.
                      use_changelog_topics=False, state_dir=str(store.db.parent / "quix-state"),
                      loglevel="WARNING")

    def raw(name: str) -> Topic:  # bytes in and out: decoding is ours
        return app.topic(name, key_deserializer="bytes", value_deserializer="bytes",
                         key_serializer="bytes", value_serializer="bytes")

    decoded = app.dataframe(raw(source)).apply(
        lambda value, key, _ts, _headers: decode(key, value), metadata=True)
    decoded.filter(lambda v: isinstance(v, ProfileInsert)).sink(ProfileSink())
    # The PartnerCreated key is the profile's uuid, which decode checked is the event's key.
    decoded.apply(partner_value).filter(lambda v: v is not None).to_topic(
        raw(target))
    decoded.filter(lambda v: isinstance(v, Dead)).set_headers(
        lambda d, _key, _ts, _headers: d.headers).apply(lambda d: d.value).to_topic(
        raw(dlq_topic(source)))
    app.run()


PEERS = {"confluent": run_confluent, "quix": run_quix}


def command(name: str, bootstrap: str, source: str, target: str, group: str,
            db: Path) -> list[str]:
    """The command line of one peer's process."""
    return [sys.executable, "-m", "signupflow.peers", name, bootstrap, source, target, group,
            str(db)]


def main(argv: Sequence[str]) -> None:
    name, bootstrap, source, target, group, db = argv
    store = Store(Path(db))
    try:
        PEERS[name](bootstrap, source, target, group, store)
    finally:
        store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
