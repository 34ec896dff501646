"""Faust's aiokafka transport with a cheaper hand-off of each fetched message.

Faust's fetch loop (``Consumer._drain_messages``) passes every message to the streams with
``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per
message, so that a rebalance can abandon a callback stuck on a full stream buffer. A profile
of the member worker put that race at more than half of a no-op agent's CPU per event.

The callback (the conductor's ``on_message``) only ever suspends when flow is suspended, the
producer buffer is over its limit, the conductor is rebuilding its index, or a stream buffer is
full. When none of those hold it runs to completion without yielding, so there is nothing to
race: awaiting it directly gives the same result without the tasks. Otherwise Faust's race is
used unchanged.

After each message the fast path still yields to the event loop once, as Faust's race did.
Without that, the fetch loop ran up to 100 messages while table recovery was waiting to resume
flow (which clears the stream buffers) after seeking to the committed offsets, and a batch
worker restarted under load then skipped a range of events for good (marked as an offset gap):
2 runs in 5 of the batch kill -9 test failed that way, none in 6 with the yield.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cached_property
from typing import Any

from faust.transport.drivers import aiokafka
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


class Consumer(aiokafka.Consumer):
    """aiokafka consumer that awaits a message callback directly when it cannot block."""

    async def wait_first(
        self,
        *coros: WaitArgT,
        timeout: Seconds | None = None,  # noqa: ASYNC109 - mode.Service.wait_first's signature
    ) -> WaitResults:
        if (
            len(coros) == 2
            and timeout is None
            and getattr(coros[0], "cr_code", None) is self.callback.__code__
            and self.callback_cannot_block()
        ):
            message_callback, suspend_flow_wait = coros
            suspend_flow_wait.close()  # type: ignore[union-attr]
            result = await message_callback  # type: ignore[misc]
            await asyncio.sleep(0)  # let recovery and rebalance steps run between messages
            return WaitResults([message_callback], [result], False)
        return await super().wait_first(*coros, timeout=timeout)

    def callback_cannot_block(self) -> bool:
        """True when the conductor's ``on_message`` would run without suspending."""
        app = self.app
        conductor: Any = app.topics
        return (
            not self.suspend_flow.is_set()
            and app.flow_control.is_active()
            and self.producer_backlog() <= app.producer.buffer.max_messages
            and not conductor._tp_to_callback_lock.locked()
            and not any(channel.queue.full() for channel in conductor)
        )

    @cached_property
    def producer_backlog(self) -> Callable[[], int]:
        """Messages waiting in the producer buffer, as ``ProducerBuffer.size`` counts them.

        ``size`` looks up a setting on every call, 4% of the member worker's CPU when called
        per message; the queue it reads is fixed, so it is found once.
        """
        buffer = self.app.producer.buffer
        if self.app.conf.producer_threaded:
            return lambda: buffer.size
        return buffer.pending.qsize


class Transport(aiokafka.Transport):
    """The ``kafka://`` transport, with :class:`Consumer`."""

    Consumer = Consumer
