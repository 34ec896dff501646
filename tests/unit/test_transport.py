"""The consumer's commits: no event is ever committed unprocessed; the direct hand-off.

Reproduces, without a broker, the states that lost ``partner-created[0]@62`` in the scale-out
fault test on stock faust-streaming 0.15.3 (signupflow/transport.py). The fetch loop across
seeks: test_seek_window.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode.utils.locks import Event

from signupflow import transport
from signupflow.streams import batch
from signupflow.transport import Consumer

TP0 = TP("partner-created", 0)


@pytest.fixture
async def consumer() -> AsyncIterator[Consumer]:
    """The batch worker's own consumer (one app per process, as in a worker), TP0 reset."""
    consumer = batch.app.consumer
    assert isinstance(consumer, Consumer)
    for offsets in (consumer._acked, consumer._acked_index, consumer._gap,
                    consumer._committed_offset, consumer._read_offset, consumer._moves,
                    consumer._blocked_since):
        offsets.pop(TP0, None)
    yield consumer


def state(consumer: Consumer, committed: int | None, acked: list[int]) -> None:
    consumer._committed_offset[TP0] = committed
    consumer._acked[TP0] = list(acked)
    consumer._acked_index[TP0] = set(acked)


async def test_stock_faust_commits_past_an_unprocessed_head(consumer: Consumer) -> None:
    """The upstream fault (#606), kept as evidence: 62 is not acknowledged, Faust commits 70."""
    state(consumer, 62, list(range(63, 70)))
    assert aiokafka.Consumer._new_offset(consumer, TP0) == 70


async def test_no_commit_past_an_unprocessed_head(consumer: Consumer) -> None:
    state(consumer, 62, list(range(63, 70)))
    assert consumer._new_offset(TP0) is None
    consumer._acked[TP0].append(62)  # 62 is processed at last
    assert consumer._new_offset(TP0) == 70


async def test_contiguous_acknowledgements_commit_as_before(consumer: Consumer) -> None:
    state(consumer, 62, list(range(62, 70)))
    assert consumer._new_offset(TP0) == 70
    state(consumer, 62, [62, 63, 65])
    assert consumer._new_offset(TP0) == 64


async def test_a_gap_is_not_recorded_and_holds_the_commit(consumer: Consumer) -> None:
    """Faust records offsets its fetch loop did not see (up to and including the message in
    hand) as a gap that commits pass. signupflow's topics have no offsets that do not exist,
    so a gap is always events skipped: here it is not recorded, and the commit waits."""
    state(consumer, 62, [64, 65])
    await consumer._add_gap(TP0, 63, 64)
    assert not consumer._gap[TP0]
    assert consumer._new_offset(TP0) is None  # 62 and 63 are not acknowledged


async def test_a_rewound_read_offset_under_a_batch_loses_nothing(consumer: Consumer) -> None:
    """The loss a soak found (``partner-created[3]@35``): 14 committed; a rebalance's seek
    rewound the read offset to 14 while the fetch loop was handing out a batch it took for
    fresh, 15..34 already handed on. Message 35 then looked like a jump: Faust recorded the
    gap 15..35 (35 included) and committed past 35, which never got processed."""
    state(consumer, 14, [*range(14, 35), *range(36, 41)])  # all but 35 processed
    await consumer._add_gap(TP0, 15, 35)  # what the fetch loop does on seeing 35
    assert consumer._new_offset(TP0) == 35  # the commit stops at 35
    consumer._committed_offset[TP0] = 35
    consumer._acked[TP0].append(35)
    consumer._acked_index[TP0].add(35)
    assert consumer._new_offset(TP0) == 41


async def test_stock_faust_commits_past_a_fabricated_gap(consumer: Consumer) -> None:
    """Kept as evidence: the same moment (15..34 handed on, not yet acknowledged), with
    Faust's own gap bookkeeping."""
    state(consumer, 14, [14, *range(36, 41)])
    consumer._gap[TP0].addi(15, 36)  # what Faust's _add_gap(15, 35) records
    assert aiokafka.Consumer._new_offset(consumer, TP0) == 41  # 15..35 committed unprocessed


async def test_a_gap_right_after_the_head_does_not_let_a_commit_pass_it(
    consumer: Consumer,
) -> None:
    """Records skipped on their way to the agent: 40 committed, 41..70 skipped, 71
    acknowledged. Stock Faust records 41..71 as a gap and commits 72; here nothing passes
    40."""
    state(consumer, 40, [71, 72])
    await consumer._add_gap(TP0, 41, 71)
    assert consumer._new_offset(TP0) is None
    consumer._gap[TP0].addi(41, 71)
    assert aiokafka.Consumer._new_offset(consumer, TP0) == 73  # the loss, on stock Faust


async def test_a_partition_with_nothing_committed_commits_from_its_first_offset(
    consumer: Consumer,
) -> None:
    for nothing in (None, -1):
        state(consumer, nothing, [0, 1, 2])
        assert consumer._new_offset(TP0) == 3


@dataclass
class Seeks:
    """The seeks the consumer asks for, and a clock the test moves."""

    sought: list[tuple[TP, int]] = field(default_factory=list)
    now: float = 1000.0


@pytest.fixture
def seeks(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> Seeks:
    recorded = Seeks()

    async def seek(partition: TP, offset: int) -> None:
        recorded.sought.append((partition, offset))

    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(transport.time, "monotonic", lambda: recorded.now)
    return recorded


async def test_a_head_that_never_reached_the_agent_is_read_again(
    consumer: Consumer, seeks: Seeks, caplog: pytest.LogCaptureFixture
) -> None:
    """Later events acknowledged, the head neither acknowledged nor in flight: after
    HEAD_LOST_AFTER seconds the partition is read again from the head (it was dropped)."""
    state(consumer, 40, [41, 42, 43])
    assert consumer._new_offset(TP0) is None
    seeks.now += transport.HEAD_LOST_AFTER - 1
    assert consumer._new_offset(TP0) is None
    await asyncio.sleep(0)
    assert seeks.sought == []  # not yet: it may still be on its way
    seeks.now += 2
    assert consumer._new_offset(TP0) is None
    for _ in range(3):
        await asyncio.sleep(0)
    assert seeks.sought == [(TP0, 40)]
    warning, = (r.getMessage() for r in caplog.records if "never reached" in r.getMessage())
    assert "acknowledged 3, from [41, 42, 43]; the head is not among" in warning


async def test_a_head_in_flight_is_waited_for(
    consumer: Consumer, seeks: Seeks, monkeypatch: pytest.MonkeyPatch
) -> None:
    head: Any = SimpleNamespace(tp=TP0, offset=40)
    monkeypatch.setattr(consumer, "_unacked_messages", [head])  # a stream holds it
    state(consumer, 40, [41, 42])
    consumer._new_offset(TP0)
    seeks.now += 60
    consumer._new_offset(TP0)
    await asyncio.sleep(0)
    assert seeks.sought == []  # a slow batch (an outage, say) is not a lost event


@pytest.mark.parametrize(("known", "answer", "kept"), [
    (None, 66, 66), (None, None, None), (72, 66, 72), (66, 72, 72), (72, None, 72)])
def test_the_later_of_a_known_commit_and_the_coordinators_answer_is_kept(
    known: int | None, answer: int | None, kept: int | None,
) -> None:
    assert transport.newer_commit(known, answer) == kept


def test_the_apps_producer_is_idempotent_with_acks_all() -> None:
    """A send retried after a broker failed over is written once (needs a replicated cluster
    to matter; Faust asks for idempotence only in exactly_once mode)."""
    from signupflow.streams import member

    producer = member.app.producer
    assert isinstance(producer, transport.Producer)
    settings = {**producer._settings_default(), **producer._settings_extra()}

    assert settings["enable_idempotence"] is True
    assert settings["acks"] in ("all", -1)


# --- the direct hand-off -------------------------------------------------------------------
@pytest.fixture
async def handing(consumer: Consumer) -> AsyncIterator[Consumer]:
    """The consumer between rebalances (flow on), its events and loop this test's own (the
    app is shared by the tests, each with its own loop)."""
    saved = consumer.callback, consumer._loop, consumer.suspend_flow, consumer._stopped, \
        consumer._crashed
    consumer.loop = asyncio.get_running_loop()
    fresh: Any = (Event(), Event(), Event())
    consumer.suspend_flow, consumer._stopped, consumer._crashed = fresh
    consumer.app.flow_control.resume()
    try:
        yield consumer
    finally:
        consumer.app.flow_control.suspend()
        (consumer.callback, consumer.loop, consumer.suspend_flow, consumer._stopped,
         consumer._crashed) = saved


async def handed_off_in_own_task(consumer: Consumer) -> bool:
    """Hand one message on as Faust's fetch loop does; True if the callback ran in the fetch
    loop's own task (directly), False if in a task of its own (Faust's race)."""
    ran_in: list[asyncio.Task[Any] | None] = []

    async def on_message(message: Any) -> str:
        ran_in.append(asyncio.current_task())
        return str(message)

    consumer.callback = on_message
    done = await consumer.wait_first(on_message("m"), consumer.suspend_flow.wait())
    assert done.results == ["m"]
    return ran_in == [asyncio.current_task()]


async def test_a_callback_that_cannot_block_is_awaited_directly(handing: Consumer) -> None:
    assert handing.callback_cannot_block()
    assert await handed_off_in_own_task(handing)


async def test_the_direct_hand_off_lets_a_seek_run_between_two_messages(
    handing: Consumer,
) -> None:
    ran: list[bool] = []

    async def seek() -> None:
        ran.append(True)

    asyncio.get_running_loop().create_task(seek())
    assert await handed_off_in_own_task(handing)
    assert ran


@pytest.mark.parametrize("why", ["flow suspended", "stream buffer full", "producer buffer full",
                                 "conductor re-indexing"])
async def test_a_callback_that_may_wait_keeps_fausts_race(handing: Consumer, why: str) -> None:
    app = handing.app
    undo: list[Any] = []
    if why == "flow suspended":
        app.flow_control.suspend()
    elif why == "stream buffer full":
        topic = app.topic("handoff-test", value_serializer="raw")
        app.topics.add(topic)
        undo.append(lambda: app.topics.discard(topic))
        while not topic.queue.full():
            topic.queue.put_nowait(None)
        undo.append(topic.queue.clear)
    elif why == "producer buffer full":
        pending = app.producer.buffer.pending
        for _ in range(app.producer.buffer.max_messages + 1):
            pending.put_nowait(None)
        undo.append(lambda: [pending.get_nowait() for _ in range(pending.qsize())])
    else:
        lock = app.topics._tp_to_callback_lock  # type: ignore[attr-defined]
        await lock.acquire()
        undo.append(lock.release)
    try:
        assert not handing.callback_cannot_block()
        assert not await handed_off_in_own_task(handing)
    finally:
        for step in reversed(undo):
            step()


async def test_other_waits_are_fausts_own(handing: Consumer) -> None:
    event = asyncio.Event()
    event.set()
    done = await handing.wait_first(event.wait(), timeout=1.0)
    assert done.results == [True]
