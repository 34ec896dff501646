"""Synchronous wrappers for tests."""

from __future__ import annotations

import asyncio
from typing import Any

from signupflow import topic_reader


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    return asyncio.run(topic_reader.read_topic(bootstrap, topic))


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
                   ) -> None:
    from signupflow.kafka_client import durable_producer

    producer = durable_producer(bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send raw records (key, value) in order, each acknowledged before the next."""
    asyncio.run(_produce(bootstrap, topic, records))


async def _lag(bootstrap: str, group: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await topic_reader.topic_partitions(consumer, topic)
        end = await consumer.end_offsets(parts)
        committed = {tp: (await consumer.committed(tp)) or 0 for tp in parts}
        return sum(end[tp] - committed[tp] for tp in parts)
    finally:
        await consumer.stop()


def lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` not yet committed by consumer group ``group``."""
    return asyncio.run(_lag(bootstrap, group, topic))


async def _topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(_error, _message, _type, _name, entries)] = response.resources
        return {name: value for name, value, *_ in entries}
    finally:
        await admin.close()


def changelog_config(bootstrap: str, topic: str) -> dict[str, str]:
    """The broker's settings of ``topic`` (cleanup.policy, retention.ms, ...)."""
    return asyncio.run(_topic_config(bootstrap, topic))
