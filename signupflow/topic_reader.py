"""Read topics to their current end with a plain consumer, independently of Faust.

Used by ``signupflow dlq show|replay``, the benchmark and the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from signupflow.kafka_client import KafkaAccess, consumer


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (an unsubscribed consumer has no metadata for it yet)."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def records_until(
    consumer: AIOKafkaConsumer, end: Mapping[TopicPartition, int]
) -> AsyncIterator[ConsumerRecord]:
    """The records of the assigned partitions from their current positions up to ``end``."""
    remaining = {tp for tp in end if await consumer.position(tp) < end[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000)
        for tp, msgs in batch.items():
            for record in msgs:
                if record.offset < end[tp]:
                    yield record
            if await consumer.position(tp) >= end[tp]:
                remaining.discard(tp)


async def read_topic(
    kafka: KafkaAccess, topic: str, partitions: Collection[int] | None = None
) -> list[ConsumerRecord]:
    """Every record of ``topic`` (of its ``partitions`` only, if given) up to the end offsets
    at call time, partition by partition (no consumer group: nothing is committed)."""
    reader = consumer(kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await reader.start()
    try:
        parts = [tp for tp in await topic_partitions(reader, topic)
                 if partitions is None or tp.partition in partitions]
        if not parts:
            return []
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        end = await reader.end_offsets(parts)
        return [record async for record in records_until(reader, end)]
    finally:
        await reader.stop()
