"""Synchronous wrappers for tests: each takes a plain ``host:port`` (an unsecured broker) or a
:class:`KafkaAccess` (a principal of a secured one)."""

from __future__ import annotations

import asyncio
from typing import Any

from signupflow import topic_reader
from signupflow.kafka_client import KafkaAccess, admin, consumer, durable_producer

Kafka = KafkaAccess | str


def access(kafka: Kafka) -> KafkaAccess:
    return kafka if isinstance(kafka, KafkaAccess) else KafkaAccess(kafka)


def read_topic(kafka: Kafka, topic: str) -> list[Any]:
    return asyncio.run(topic_reader.read_topic(access(kafka), topic))


async def _produce(kafka: Kafka, topic: str, records: list[tuple[bytes | None, bytes | None]]
                   ) -> None:
    producer = durable_producer(access(kafka), max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def produce(kafka: Kafka, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send raw records (key, value) in order, each acknowledged before the next."""
    asyncio.run(_produce(kafka, topic, records))


async def _lag(kafka: Kafka, group: str, topic: str) -> int:
    reader = consumer(access(kafka), group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        parts = await topic_reader.topic_partitions(reader, topic)
        end = await reader.end_offsets(parts)
        committed = {tp: (await reader.committed(tp)) or 0 for tp in parts}
        return sum(end[tp] - committed[tp] for tp in parts)
    finally:
        await reader.stop()


def lag(kafka: Kafka, group: str, topic: str) -> int:
    """Records of ``topic`` not yet committed by consumer group ``group``."""
    return asyncio.run(_lag(kafka, group, topic))


async def _topic_config(kafka: Kafka, topic: str) -> dict[str, str]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    client = admin(access(kafka))
    await client.start()
    try:
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(_error, _message, _type, _name, entries)] = response.resources
        return {name: value for name, value, *_ in entries}
    finally:
        await client.close()


def changelog_config(kafka: Kafka, topic: str) -> dict[str, str]:
    """The broker's settings of ``topic`` (cleanup.policy, retention.ms, ...)."""
    return asyncio.run(_topic_config(kafka, topic))
