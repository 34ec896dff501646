"""A seek during a message hand-off must not drop the records it re-reads.

For faust-streaming (t/unit/transport/), with faust-seek-epochs.patch. It drives the real
``Consumer._drain_messages`` of the aiokafka driver, with the broker replaced by a list of
fetches. While the fetch loop hands a message on, another task seeks its partition, as a
rebalance's ``perform_seek`` or table recovery's ``seek_wait`` does. On stock 0.15.3 the
loop then hands out the rest of the batch fetched before the seek and writes their offsets
back as the read offset, past the seek's: the records the seek reads again are dropped as
already seen ("DROPPED MESSAGE ROFF", dev log level). After a rebalance the stream buffers
that held the first copies are cleared, so those events never reach the agent: lost, or a
recovery that waits for ever. Every test here fails without the patch.

Runs with plain pytest (no plugins): ``pytest test_seek_epochs.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

SOURCE = TP("events", 0)
CHANGELOG = TP("app-table-changelog", 0)


def record(tp: TP, offset: int) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, tp=tp,
                           key=None, value=None)


async def hand_off(
    fetches: list[dict[TP, list[int]]], seek_at: int,
    seek: Callable[[Any], Awaitable[None]],
) -> list[int]:
    """Run the fetch loop over ``fetches``; ``seek`` runs while the message at ``seek_at``
    is handed on. Returns the offsets handed on after the seek."""
    app = faust.App("seek-epochs", broker="kafka://127.0.0.1:1")
    consumer: Any = app.consumer
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    pending = list(fetches)

    async def next_records(timeout: float) -> Any:  # noqa: ASYNC109
        if not pending:
            fetcher._stopped.set()
            return {}, set()
        batch = pending.pop(0)
        return ({tp: [record(tp, o) for o in offsets] for tp, offsets in batch.items()},
                set(batch))

    consumer._wait_next_records = next_records
    consumer._to_message = lambda tp, rec: rec
    consumer.highwater = lambda tp: 0
    after: list[int] = []
    sought = False

    async def callback(message: Any) -> None:
        nonlocal sought
        if sought:
            after.append(message.offset)
        elif message.offset == seek_at:
            await seek(consumer)  # another task's seek, while this message is handed on
            sought = True

    consumer.callback = callback
    await asyncio.wait_for(consumer._drain_messages(fetcher), 10)
    return after


def test_a_rebalance_seek_during_a_hand_off_drops_nothing() -> None:
    """62..65 fetched; the rebalance ends with a seek to the committed 62 while 63 is handed
    on. Stock: 64 and 65 are still handed on and the read offset ends at 65, so of the
    re-read 62..65 only 65 passes."""

    async def rebalance_ends(consumer: Any) -> None:
        async def seek_to_committed() -> dict[TP, int]:
            return {SOURCE: 62}

        consumer.seek_to_committed = seek_to_committed
        await consumer.perform_seek()

    after = asyncio.run(hand_off([{SOURCE: [62, 63, 64, 65]}, {SOURCE: [62, 63, 64, 65]}],
                                 63, rebalance_ends))
    assert after == [62, 63, 64, 65]


def test_a_recovery_seek_during_a_hand_off_drops_nothing() -> None:
    """A worker takes back a changelog partition it read before: recovery seeks it to 0
    (``seek_wait``) while 50 is handed on. Stock: 51 is still handed on and the read offset
    ends at 51, so recovery's 0..2 are all dropped and it waits for them for ever."""

    async def recovery_starts(consumer: Any) -> None:
        driver = SimpleNamespace(seek=lambda tp, offset: None)

        async def position(tp: TP) -> int:
            return 0

        driver.position = position
        await consumer._thread._seek_wait(driver, {CHANGELOG: 0})

    after = asyncio.run(hand_off([{CHANGELOG: [50, 51]}, {CHANGELOG: [0, 1, 2]}],
                                 50, recovery_starts))
    assert after == [0, 1, 2]
