"""A seek in flight while the fetch loop hands out records: the window of issue 21, item 3.

Drives the real fetch loop (Faust's ``_drain_messages`` and ``getmany``, signupflow's
``Consumer`` and ``ConsumerThread``) over a stand-in for aiokafka: a fetcher with a position per
partition that hands out records from there, and a ``seek_to_committed`` that, like aiokafka's,
asks the coordinator for the committed offset (a round trip the test holds open) before it
moves the position. The consumer thread's calls run inline, on the test's loop.

The stall: a rebalance's ``perform_seek`` begins, the fetch loop goes on handing out records
aiokafka returned from the old position, and only then is the seek made. With the seek counted
on the main loop when it *began*, those records passed for fresh: the rest of the batch was
handed out after the seek too, its read offsets past the seek's, so the records the seek read
again were dropped as already read. The partition's head then never reached the agent, and its
commits waited until it was read again 10 s later ("offsets ... skipped by the fetch loop", then
"never reached the agent" in the workers' logs).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP
from mode.utils.futures import maybe_async
from mode.utils.locks import Event

from signupflow.streams import batch
from signupflow.transport import Consumer

TP0 = TP("partner-created", 0)
TP1 = TP("partner-created", 1)
CHANGELOG0 = TP("signupflow-batch-partner-summary-changelog", 0)


class Fetcher:
    """aiokafka's fetcher, as far as positions go: records from each partition's position,
    which moves as they are returned, and with each seek."""

    def __init__(self, logs: dict[TP, list[int]], positions: dict[TP, int],
                 per_fetch: int = 6) -> None:
        self.logs, self.positions, self.per_fetch = logs, positions, per_fetch
        self._closed = False
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)
        self.sought: list[tuple[TP, int]] = []
        #: runs once, while the first fetch waits for the broker's answer
        self.while_fetching: Callable[[], Any] | None = None

    async def fetched_records(self, partitions: Any, timeout: float = 0,  # noqa: ASYNC109
                              max_records: int | None = None) -> dict[TP, list[Any]]:
        if self.while_fetching is not None:
            during, self.while_fetching = self.while_fetching, None
            await maybe_async(during())
        found = {}
        for tp, log in self.logs.items():
            if partitions and tp not in partitions:  # aiokafka's test: an empty set is all
                continue
            offsets = [o for o in log if o >= self.positions[tp]][:self.per_fetch]
            if offsets:
                self.positions[tp] = offsets[-1] + 1
                found[tp] = [SimpleNamespace(topic=tp.topic, partition=tp.partition, tp=tp,
                                             offset=o, key=None, value=None) for o in offsets]
        return found

    def seek_to(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset
        self.sought.append((tp, offset))


class Driver:
    """The aiokafka consumer: its fetcher, and a seek to the committed offsets that waits for
    the coordinator's answer (``answered``) before it moves a position, as aiokafka's does
    (a partition with nothing committed keeps its position)."""

    def __init__(self, fetcher: Fetcher, committed: dict[TP, int | None]) -> None:
        self._fetcher = fetcher
        self._closed = False
        self._max_poll_records = 500
        self.committed = committed
        self.answered = asyncio.Event()

    def assignment(self) -> set[TP]:
        return set(self._fetcher.logs)

    def seek(self, tp: Any, offset: int) -> None:
        self._fetcher.seek_to(tp, offset)

    async def position(self, tp: Any) -> int:
        return self._fetcher.positions[tp]

    async def beginning_offsets(self, tps: Any) -> dict[TP, int]:
        return {tp: self._fetcher.logs[tp][0] for tp in tps}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        await self.answered.wait()  # the committed offsets are on their way
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self._fetcher.seek_to(tp, offset)
        return dict(self.committed)


class OneAtATime(Driver):
    """aiokafka's seek to the committed offsets as it is made: one coordinator round trip per
    partition, each partition sought as its answer comes; the answer for ``held`` waits for
    ``answered``."""

    def __init__(self, fetcher: Fetcher, committed: dict[TP, int | None], held: TP) -> None:
        super().__init__(fetcher, committed)
        self.held = held

    async def seek_to_committed(self) -> dict[TP, int | None]:
        for tp, offset in self.committed.items():
            if tp == self.held:
                await self.answered.wait()
            await asyncio.sleep(0)  # the round trip
            if offset and offset > 0:
                self._fetcher.seek_to(tp, offset)
        return dict(self.committed)


class Acknowledged:
    """A message as the agent acknowledges it (Faust's ``Consumer.ack``)."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset, self.topic, self.acked = tp, offset, tp.topic, False


@pytest.fixture
async def consumer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Consumer]:
    consumer = batch.app.consumer
    assert isinstance(consumer, Consumer)
    for offsets in (consumer._acked, consumer._acked_index, consumer._committed_offset,
                    consumer._read_offset, consumer._moves, consumer._blocked_since):
        for tp in (TP0, TP1, CHANGELOG0):
            offsets.pop(tp, None)
    thread: Any = consumer._thread
    monkeypatch.setattr(thread, "call_thread",
                        lambda fun, *args, **kwargs: maybe_async(fun(*args, **kwargs)))
    monkeypatch.setattr(consumer, "_to_message", lambda tp, record: record)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 0)
    monkeypatch.setattr(consumer, "_active_partitions", None)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
    saved = consumer.callback, consumer._loop, consumer.suspend_flow, consumer._stopped
    consumer.loop = asyncio.get_running_loop()
    consumer.suspend_flow, consumer._stopped = cast(Any, Event()), cast(Any, Event())
    consumer.resume_flow()
    consumer.app.flow_control.resume()
    try:
        yield consumer
    finally:
        consumer.app.flow_control.suspend()
        consumer.callback, consumer.loop, consumer.suspend_flow, consumer._stopped = saved


async def drain(consumer: Consumer, driver: Driver,
                on_handed: Callable[[int], Any], tp: TP = TP0) -> list[int]:
    """Run the fetch loop until the fetcher has nothing more; the offsets of ``tp`` handed to
    the agent, in order. ``on_handed(offset)`` runs as each of them is handed on (a coroutine
    is awaited)."""
    thread: Any = consumer._thread
    thread._consumer = driver
    thread.count_seeks(driver)
    handed: list[int] = []
    service = SimpleNamespace(_stopped=asyncio.Event())
    quiet = 0

    async def callback(message: Any) -> None:
        nonlocal quiet
        quiet = 0
        if message.tp == tp:
            handed.append(message.offset)
            await maybe_async(on_handed(message.offset))

    consumer.callback = callback
    fetch = driver._fetcher.fetched_records

    async def fetched(*args: Any, **kwargs: Any) -> dict[TP, list[Any]]:
        nonlocal quiet
        records = await fetch(*args, **kwargs)
        quiet = 0 if records else quiet + 1
        if quiet > 2:
            service._stopped.set()
        return records

    driver._fetcher.fetched_records = fetched  # type: ignore[method-assign]
    await asyncio.wait_for(consumer._drain_messages(cast(Any, service)), 10)
    return handed


def changelog_sought_back_at(consumer: Consumer, handed: int) -> Callable[[int], Any]:
    """An ``on_handed`` for :func:`drain`: table recovery's ``seek_wait`` of the changelog
    partition back to 0, once, while ``handed`` is handed on."""
    done: list[bool] = []

    async def recovery_starts(offset: int) -> None:
        if offset == handed and not done:
            done.append(True)
            await consumer.seek_wait({CHANGELOG0: 0})

    return recovery_starts


async def test_records_returned_while_a_seek_is_on_its_way_lose_none_it_reads_again(
    consumer: Consumer,
) -> None:
    """90 committed, 90..99 handed out before (their acknowledgements lost to the rebalance),
    the position at 100. The rebalance's seek to 90 begins while the fetch loop waits for
    records; aiokafka returns 100..105 from the old position (the seek is not made yet), and
    the loop hands them on (fine: they are processed again later). The seek is made while 102
    is handed on. Everything from 90 must then reach the agent again: 103..105 of the old
    batch are not handed out after the seek, and none of the records it reads again is
    dropped as already read."""
    fetcher = Fetcher({TP0: list(range(90, 106))}, {TP0: 100})
    driver = Driver(fetcher, {TP0: 90})
    consumer._read_offset.seek_to(TP0, 99)
    consumer._committed_offset[TP0] = 90
    seeking: list[asyncio.Task[None]] = []

    async def rebalance_begins() -> None:
        seeking.append(asyncio.get_running_loop().create_task(consumer.perform_seek()))
        await asyncio.sleep(0)  # it asks the coordinator, and waits

    async def coordinator_answers(offset: int) -> None:
        if offset == 102 and not driver.answered.is_set():
            driver.answered.set()
            await seeking[0]  # the seek is made while 102 is handed on

    fetcher.while_fetching = rebalance_begins
    handed = await drain(consumer, driver, coordinator_answers)

    assert fetcher.sought == [(TP0, 90)]
    assert handed[:3] == [100, 101, 102]
    assert handed[3:] == list(range(90, 106))  # all read again, in order, none dropped
    assert consumer._committed_offset[TP0] == 90


async def test_records_returned_after_the_seek_they_waited_through_are_handed_out(
    consumer: Consumer,
) -> None:
    """The seek is made before aiokafka returns the next records: they are from the new
    position and must all be handed out, once."""
    fetcher = Fetcher({TP0: list(range(0, 12))}, {TP0: 6})
    driver = Driver(fetcher, {TP0: 3})
    driver.answered.set()
    consumer._read_offset.seek_to(TP0, 5)
    consumer._committed_offset[TP0] = 3
    done: list[bool] = []

    async def seek_first(offset: int) -> None:
        if not done:
            done.append(True)
            await consumer.perform_seek()  # made while 6 is handed on

    handed = await drain(consumer, driver, seek_first)

    assert handed == [6, *range(3, 12)]


async def test_a_seek_of_the_head_made_between_two_batches_reads_it_again(
    consumer: Consumer,
) -> None:
    """The guard's own seek (a head that never reached the agent): made on the consumer's
    thread, the next records come from there, none dropped."""
    fetcher = Fetcher({TP0: list(range(40, 52))}, {TP0: 46})
    driver = Driver(fetcher, {TP0: 40})
    consumer._read_offset.seek_to(TP0, 45)
    done: list[bool] = []

    async def seek_head(offset: int) -> None:
        if offset == 51 and not done:
            done.append(True)
            await consumer.seek(TP0, 40)

    handed = await drain(consumer, driver, seek_head)

    assert handed == [*range(46, 52), *range(40, 52)]
    assert consumer.moves(TP0) == 1


async def test_the_rest_of_a_batch_is_not_handed_out_after_a_seek_made_meanwhile(
    consumer: Consumer,
) -> None:
    """62..65 fetched; the rebalance's seek to the committed 62 is made while 63 is handed on.
    Stock Faust hands 64 and 65 on after it and records read offset 65, so the re-read 62..64
    are dropped as already seen (the original loss, ``partner-created[0]@62``)."""
    fetcher = Fetcher({TP0: [62, 63, 64, 65]}, {TP0: 62})
    driver = Driver(fetcher, {TP0: 62})
    driver.answered.set()
    consumer._committed_offset[TP0] = 62
    done: list[bool] = []

    async def rebalance(offset: int) -> None:
        if offset == 63 and not done:
            done.append(True)
            await consumer.perform_seek()

    handed = await drain(consumer, driver, rebalance)

    assert handed == [62, 63, 62, 63, 64, 65]


async def test_recoverys_seek_during_a_hand_off_reads_the_changelog_from_its_start(
    consumer: Consumer,
) -> None:
    """The recovery stall: a worker takes back a changelog partition it read before; recovery
    seeks it to 0 (Faust's ``seek_wait``, not ``seek``) while 50 of an old batch is handed on.
    Stock: 51 was still handed on and the read offset ended past the seek's, so every record
    recovery asked for was dropped as already read ("No event received for active tp ...
    since recovery start")."""
    fetcher = Fetcher({CHANGELOG0: [0, 1, 2, 50, 51]}, {CHANGELOG0: 3})
    driver = Driver(fetcher, {})
    recovery_starts = changelog_sought_back_at(consumer, 50)
    handed = await drain(consumer, driver, recovery_starts, CHANGELOG0)

    assert handed == [50, 0, 1, 2, 50, 51]


async def test_a_seek_of_another_partition_drops_nothing(consumer: Consumer) -> None:
    """Table recovery seeks changelog partitions only: a source partition's fetched records,
    whose position did not move, must all be handed out (or they are never read again)."""
    fetcher = Fetcher({TP0: [62, 63, 64], CHANGELOG0: [0, 1]}, {TP0: 62, CHANGELOG0: 2})
    driver = Driver(fetcher, {})
    recovery_starts = changelog_sought_back_at(consumer, 62)
    handed = await drain(consumer, driver, recovery_starts)

    assert handed == [62, 63, 64]
    assert consumer._read_offset[TP0] == 64


async def test_a_partition_with_nothing_committed_is_read_again_from_its_start(
    consumer: Consumer,
) -> None:
    """aiokafka's seek to the committed offsets leaves a partition with none where it was,
    past the rest of a batch the seek kept from the agent (3, 4: lost in the 3-node cluster
    test, a second batch worker joining before the first commit). Here it is read again from
    its first offset, and that offset holds every commit back."""
    fetcher = Fetcher({TP0: [0, 1, 2, 3, 4]}, {TP0: 0})
    driver = Driver(fetcher, {TP0: None})
    driver.answered.set()
    done: list[bool] = []

    async def rebalance(offset: int) -> None:
        if offset == 2 and not done:
            done.append(True)
            await consumer.perform_seek()  # while 2 is handed on

    handed = await drain(consumer, driver, rebalance)

    assert handed == [0, 1, 2, 0, 1, 2, 3, 4]
    assert fetcher.sought == [(TP0, 0)]
    assert consumer._committed_offset[TP0] == 0
    consumer._acked[TP0], consumer._acked_index[TP0] = [5, 6], {5, 6}
    assert consumer._new_offset(TP0) is None  # 0.. must be processed first


async def test_records_of_a_paused_partition_are_not_consumed_once_none_is_active(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The restarted member's skipped changes (test_life.py). At the end of table recovery
    Faust pauses the changelog partitions while the fetch loop waits in aiokafka with the set
    of active partitions, now empty; the source partitions are paused until recovery is
    complete. aiokafka reads an empty set as every partition: it returned profile-insert
    records from the committed offset (10..15 here), which advanced its position past them,
    and Faust dropped them (not active). Once resumed, the partition was read from 16, ahead
    of the committed offset, until the seek to it: changes handed on before their member's
    creation. Nothing of a paused partition may be consumed; it is read from 10."""
    fetcher = Fetcher({TP0: list(range(10, 20)), CHANGELOG0: []}, {TP0: 10, CHANGELOG0: 0})
    driver = Driver(fetcher, {TP0: 10})
    monkeypatch.setattr(consumer, "_active_partitions", {CHANGELOG0})
    monkeypatch.setattr(consumer, "_paused_partitions", {TP0})

    def recovery_ends() -> None:
        consumer.pause_partitions({CHANGELOG0})  # while aiokafka waits for records
        asyncio.get_running_loop().call_soon(consumer.resume_partitions, {TP0})

    fetcher.while_fetching = recovery_ends
    handed = await drain(consumer, driver, lambda offset: None)

    assert handed == list(range(10, 20))


async def test_a_commit_landing_during_the_seek_is_not_undone_by_its_older_answer(
    consumer: Consumer,
) -> None:
    """A worker's fresh assignment (the joining and leaving soaks' "never reached the agent"
    with no skip before it). Recovery resumes the stream partitions, then seeks them to their
    committed offsets. 66..71 are handed out from aiokafka's own position (66) and processed
    first; the commit timer commits 72; the coordinator's answer for TP0 (66, from before that
    commit) seeks it back, and 66..71 are processed again while TP1's answer is on its way:
    their acknowledgements are refused, below the committed 72. Stock Faust then set the
    older 66 as committed, and the partition's commits waited for an acknowledgement of 66
    that had already been refused."""
    fetcher = Fetcher({TP0: list(range(66, 76)), TP1: [10]}, {TP0: 66, TP1: 11})
    driver = OneAtATime(fetcher, {TP0: 66, TP1: 11}, held=TP1)
    seeking: list[asyncio.Task[None]] = []
    seen: list[int] = []

    async def agent(offset: int) -> None:
        seen.append(offset)
        consumer.ack(cast(Any, Acknowledged(TP0, offset)))
        if len(seen) == 6:  # 66..71 processed once
            committed = consumer._new_offset(TP0)
            assert committed == 72
            consumer._committed_offset[TP0] = committed  # as Faust's _commit_offsets
            seeking.append(asyncio.get_running_loop().create_task(consumer.perform_seek()))
            for _ in range(3):
                await asyncio.sleep(0)  # TP0 sought back to 66; TP1's answer on its way
        if len(seen) == 12:  # 66..71 processed again
            driver.answered.set()
            await seeking[0]

    handed = await drain(consumer, driver, agent)

    assert handed == [*range(66, 72), *range(66, 76)]
    assert fetcher.sought == [(TP0, 66), (TP1, 11)]
    assert consumer._committed_offset[TP0] == 72
    assert consumer._new_offset(TP0) == 76  # 72..75 commit; nothing waits for 66
