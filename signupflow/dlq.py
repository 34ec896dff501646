"""Dead letters: events an agent cannot use, parked on ``<topic>.dlq`` with the reason.

The dead letter's key and value are the original bytes, unchanged; the reason and the source
position travel in headers (the Kafka Connect convention), so replaying a dead letter after a
fix is a plain re-send of key and value to the source topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from signupflow.domain.fields import Choice, Pattern, Text, Timestamp
from signupflow.kafka_client import KafkaAccess
from signupflow.topics import DATA_TOPICS, REPLAY_GROUP, dlq_topic

H_ERROR = "dlq.error"
H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_FAILED_AT = "dlq.failed_at"
H_STAGE = "dlq.stage"
MAX_REASON = 500
#: the services that dead-letter the events they consume
STAGES = ("member", "batch")
DIGITS = "^[0-9]+$"

#: Every header of a dead letter, with what its UTF-8 text holds: the contract of the
#: ``<topic>.dlq`` topics (``schemas/<topic>.dlq/``; key and value are the original bytes).
HEADER_FIELDS: dict[str, Any] = {
    H_ERROR: Annotated[str, Text(1, MAX_REASON, trimmed=False)],
    H_TOPIC: Annotated[str, Choice(DATA_TOPICS)],
    H_PARTITION: Annotated[str, Pattern(DIGITS)],
    H_OFFSET: Annotated[str, Pattern(DIGITS)],
    H_STAGE: Annotated[str, Choice(STAGES)],
    H_FAILED_AT: Annotated[str, Timestamp()],
}


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    failed_at: str

    @property
    def position(self) -> tuple[str, int, int]:
        """Where the event came from: (topic, partition, offset)."""
        return (self.source_topic, self.source_partition, self.source_offset)

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (H_ERROR, self.error.replace("\x00", "\\x00")[:MAX_REASON].encode()),
            (H_TOPIC, self.source_topic.encode()),
            (H_PARTITION, str(self.source_partition).encode()),
            (H_OFFSET, str(self.source_offset).encode()),
            (H_STAGE, self.stage.encode()),
            (H_FAILED_AT, self.failed_at.encode()),
        ]

    @classmethod
    def from_headers(
        cls, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> DeadLetter:
        h: Mapping[str, str] = {k: v.decode("utf-8", "replace") for k, v in headers}
        return cls(
            key=key, value=value, error=h.get(H_ERROR, "?"),
            source_topic=h.get(H_TOPIC, "?"),
            source_partition=int(h.get(H_PARTITION, "-1")),
            source_offset=int(h.get(H_OFFSET, "-1")),
            stage=h.get(H_STAGE, "?"), failed_at=h.get(H_FAILED_AT, "?"),
        )


def dead_letter(
    key: bytes | None, value: bytes | None, error: str, topic: str, partition: int,
    offset: int, stage: str,
) -> DeadLetter:
    return DeadLetter(key, value, error, topic, partition, offset, stage,
                      datetime.now(UTC).isoformat())


async def show(kafka: KafkaAccess, source_topic: str) -> list[tuple[int, int, DeadLetter]]:
    """All dead letters of ``source_topic`` as (partition, offset, letter)."""
    from signupflow.topic_reader import read_topic

    records = await read_topic(kafka, dlq_topic(source_topic))
    return [(r.partition, r.offset, DeadLetter.from_headers(r.key, r.value, r.headers))
            for r in records]


async def replay(kafka: KafkaAccess, source_topic: str, group: str = REPLAY_GROUP) -> int:
    """Re-send dead letters not replayed before to their source topic; returns how many.

    Progress is kept as the offsets of consumer group ``group``, committed only after the
    re-sent events were acknowledged, so running replay twice does not send a letter twice.
    """
    from signupflow.kafka_client import consumer as kafka_consumer
    from signupflow.kafka_client import durable_producer
    from signupflow.topic_reader import records_until, topic_partitions

    topic = dlq_topic(source_topic)
    consumer = kafka_consumer(kafka, group_id=group, enable_auto_commit=False,
                              auto_offset_reset="earliest")
    producer = durable_producer(kafka)
    await consumer.start()
    await producer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        if not parts:
            return 0
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        for tp in parts:
            if await consumer.committed(tp) is None:
                await consumer.seek_to_beginning(tp)
        futures = [await producer.send(source_topic, m.value, key=m.key)
                   async for m in records_until(consumer, end)]
        for fut in futures:
            await fut
        await consumer.commit({tp: end[tp] for tp in parts})
        return len(futures)
    finally:
        await producer.stop()
        await consumer.stop()
