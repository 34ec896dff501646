"""Read a topic from the beginning to its current end with a plain consumer (no group).

Used by ``signupflow dlq show`` and ``verify`` and by the tests: an independent view of what
is on the broker, without Faust.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (an unsubscribed consumer has no metadata for it yet)."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to the end offsets at call time, partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = await topic_partitions(consumer, topic)
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        remaining = {tp for tp in parts if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, msgs in batch.items():
                records.extend(m for m in msgs if m.offset < end[tp])
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()
