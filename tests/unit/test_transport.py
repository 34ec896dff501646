"""The consumer's per-message hand-off: direct when the callback cannot block, raced otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signupflow.app import create_app
from signupflow.transport import Consumer


@pytest.fixture
async def consumer() -> AsyncIterator[Consumer]:
    app = create_app("member", topics=[])
    app.flow_control.resume()  # as a running worker has it between rebalances
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    yield consumer


async def handed_off_in_own_task(consumer: Consumer) -> bool:
    """Hand one message to the consumer's callback; True if it ran in the fetch loop's task."""
    ran_in: list[asyncio.Task[Any] | None] = []

    async def on_message(message: Any) -> str:
        ran_in.append(asyncio.current_task())
        return message

    consumer.callback = on_message
    done = await consumer.wait_first(on_message("m"), consumer.suspend_flow.wait())
    assert done.results == ["m"]
    return ran_in == [asyncio.current_task()]


async def test_a_callback_that_cannot_block_is_awaited_directly(consumer: Consumer) -> None:
    assert consumer.callback_cannot_block()
    assert await handed_off_in_own_task(consumer)


async def test_the_direct_hand_off_still_lets_other_tasks_run(consumer: Consumer) -> None:
    ran: list[bool] = []

    async def other_task() -> None:
        ran.append(True)

    asyncio.get_running_loop().create_task(other_task())
    assert await handed_off_in_own_task(consumer)
    assert ran  # table recovery must get its turn between messages


async def test_suspended_flow_keeps_faust_race(consumer: Consumer) -> None:
    consumer.app.flow_control.suspend()
    assert not consumer.callback_cannot_block()
    assert not await handed_off_in_own_task(consumer)


async def test_full_stream_buffer_keeps_faust_race(consumer: Consumer) -> None:
    topic = consumer.app.topic("t", value_serializer="raw")
    consumer.app.topics.add(topic)
    while not topic.queue.full():
        topic.queue.put_nowait(None)
    assert not consumer.callback_cannot_block()
    assert not await handed_off_in_own_task(consumer)


async def test_full_producer_buffer_keeps_faust_race(consumer: Consumer) -> None:
    buffer = consumer.app.producer.buffer
    for _ in range(buffer.max_messages):
        buffer.pending.put_nowait(None)
    assert consumer.callback_cannot_block()
    buffer.pending.put_nowait(None)
    assert buffer.size > buffer.max_messages
    assert not consumer.callback_cannot_block()


async def test_other_waits_are_faust_own(consumer: Consumer) -> None:
    event = asyncio.Event()
    event.set()
    done = await consumer.wait_first(event.wait(), timeout=1.0)
    assert done.results == [True]
