"""What every consuming service does around its own logic.

Decode raw events, park the bad ones on the dead-letter topic, write the good ones in one
batch with retries (a database outage stalls the partition rather than losing events), and only
then let Faust acknowledge the offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Generic, TypeVar, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.streams import Stream
from faust.types import EventT, StreamT
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow import tracing
from signupflow.app import EXIT_SCHEMA_BEHIND, ServiceApp
from signupflow.db import describe, make_engine, unwritable
from signupflow.dlq import DeadLetter, dead_letter
from signupflow.domain.decode import InvalidEvent
from signupflow.kafka_client import consumer as kafka_consumer
from signupflow.metrics import BATCH_SECONDS, CONSUMER_LAG, DEAD_LETTERS
from signupflow.migrations import NotAtHead, require_head
from signupflow.outages import Outage
from signupflow.probes import Check, consumer_checks
from signupflow.settings import Settings
from signupflow.streams.retry import Backoff
from signupflow.topic_reader import topic_partitions
from signupflow.topics import dlq_topic

log = logging.getLogger(__name__)
#: The events and streams of a raw topic (bytes in, decoding is ours).
RawEvent = EventT[bytes]
RawStream = StreamT[bytes]
R = TypeVar("R")

BATCH_MAX = 500
#: How many dead-lettered source positions a worker remembers, so that retrying a batch (or
#: seeing it again after a rebalance) never sends its dead letters twice.
SENT_MEMORY = 100_000


#: Seconds a write probe of a SQLite file waits for its lock (see ``db.unwritable``).
LOCK_WAIT = 1.0


class Resources:
    """A service's database engine, made on first use once the database is found at the
    code's schema revision (``signupflow db upgrade`` brings it there: no DDL runs here), and
    the database's outages as the service sees them."""

    def __init__(self, service: str, settings: Settings):
        self.service = service
        self.settings = settings
        self.outage = Outage(f"{service}: database")
        self._engine: AsyncEngine | None = None
        self._lock = asyncio.Lock()

    async def unwritable(self) -> str | None:
        """Why the database would not take a write now (None: it would)."""
        try:
            engine = await self.engine()
        except NotAtHead as exc:
            return str(exc)
        except Exception as exc:  # its revision could not be read: down
            return describe(exc)
        return await unwritable(engine, LOCK_WAIT)

    async def engine(self) -> AsyncEngine:
        if self._engine is None:
            async with self._lock:
                if self._engine is None:
                    engine = make_engine(self.settings.database_url(self.service))
                    try:
                        await require_head(engine, self.service)
                    except BaseException:
                        await engine.dispose()
                        raise
                    self._engine = engine
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def service_resources(app: ServiceApp, service: str, settings: Settings) -> Resources:
    """The service's :class:`Resources`, closed when its app shuts down; ``/ready`` checks
    that its database takes a write (and so tells an outage even while no event comes) and is
    at the code's schema revision. At start the worker checks that revision and refuses to run
    (exits, :data:`~signupflow.app.EXIT_SCHEMA_BEHIND`) on a database not upgraded."""
    resources = Resources(service, settings)
    app.worker_task(partial(check_schema, app, resources))

    async def database() -> str | None:
        problem = resources.outage.observe(await resources.unwritable())
        return None if problem is None else f"database of {service} cannot be written " \
                                            f"({problem})"

    app.ready_checks.append(Check("database", "dependency", database))

    async def close(_app: Any, *_: Any, signal: Any, **__: Any) -> None:
        await resources.close()

    # mode types a handler's return as None | Awaitable[None]; a coroutine function is both
    app.on_before_shutdown.connect(close, weak=False)  # type: ignore[arg-type]
    return resources


async def check_schema(app: ServiceApp, resources: Resources) -> None:
    """Stop the worker if its database is not at the code's revision: processing events on
    the wrong tables would fail every batch, or worse. A database that does not answer is an
    outage (``/ready`` says so): the check is retried until it answers."""
    backoff = Backoff()
    while True:
        try:
            await resources.engine()
            return
        except NotAtHead as exc:
            app.refuse(str(exc), EXIT_SCHEMA_BEHIND)
            return
        except Exception as exc:  # told once (then reminded) as the database's outage
            resources.outage.failed(f"its schema revision unreadable: {describe(exc)}")
            await backoff.sleep()


def consuming(app: ServiceApp, topic: str) -> None:
    """What a service that consumes ``topic`` adds to ``/ready`` (group joined, partitions
    assigned, tables recovered) and to ``/metrics`` (its group's lag on ``topic``)."""
    app.ready_checks.extend(consumer_checks(app))
    reader: AIOKafkaConsumer | None = None

    async def consumer_lag() -> None:
        nonlocal reader
        if reader is None:  # not in the group (never subscribes): it only reads its offsets
            candidate = kafka_consumer(app.signupflow_kafka, group_id=app.conf.id,
                                       enable_auto_commit=False)
            await candidate.start()
            reader = candidate
        parts = await topic_partitions(reader, topic)
        end = await reader.end_offsets(parts)
        for tp in parts:
            committed = await reader.committed(tp) or 0
            CONSUMER_LAG.labels(topic, str(tp.partition)).set(end[tp] - committed)

    async def close(_app: Any, *_: Any, signal: Any, **__: Any) -> None:
        if reader is not None:
            await reader.stop()

    app.metric_refreshers.append(consumer_lag)
    app.on_before_shutdown.connect(close, weak=False)  # type: ignore[arg-type]


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic read as raw bytes: decoding is ours, so bad bytes become dead letters."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


class Decoded(Generic[R]):
    """The usable records of a batch (with their events) and its dead letters."""

    def __init__(self) -> None:
        self.records: list[R] = []
        self.events: list[RawEvent] = []
        self.dead: list[DeadLetter] = []

    def refuse(self, refused: Mapping[int, str], stage: str) -> list[tuple[R, RawEvent]]:
        """Move the records refused (index -> reason) to the dead letters; returns the rest,
        each with its event."""
        for i, reason in sorted(refused.items()):
            self.dead.append(letter_for(self.events[i], reason, stage))
        return [(r, e) for i, (r, e) in enumerate(zip(self.records, self.events, strict=True))
                if i not in refused]


class BatchTrace:
    """The spans of one batch: a ``<stage> process`` span per event continuing its trace, a
    ``<stage> write`` span linked to them. Nothing at all while tracing is off."""

    def __init__(self, stage: str, events: Sequence[RawEvent]):
        self.stage = stage
        self.spans = tracing.consume_spans(stage, [e.message for e in events]) \
            if tracing.enabled else []
        self.index = {(e.message.partition, e.message.offset): i
                      for i, e in enumerate(events)} if self.spans else {}

    def headers_for(self, event: RawEvent) -> list[tuple[str, bytes]] | None:
        """Headers that carry ``event``'s trace on to the record it causes."""
        if not self.spans:
            return None
        return tracing.kafka_headers(
            self.spans[self.index[(event.message.partition, event.message.offset)]])

    def write(self) -> AbstractContextManager[None]:
        return tracing.write_span(self.stage, self.spans)

    def end(self, letters: Sequence[DeadLetter]) -> None:
        failed = {i: letter.error for letter in letters
                  if (i := self.index.get((letter.source_partition, letter.source_offset)))
                  is not None}
        tracing.end_spans(self.spans, failed)


def decode_events(
    events: Sequence[RawEvent], decode: Callable[[bytes | None, bytes | None, int], R],
    max_bytes: int, stage: str,
) -> Decoded[R]:
    out: Decoded[R] = Decoded()
    for event in events:
        msg = event.message
        try:
            out.records.append(decode(msg.key, msg.value, max_bytes))
            out.events.append(event)
        except InvalidEvent as exc:
            out.dead.append(letter_for(event, str(exc), stage))
    return out


def letter_for(event: RawEvent, reason: str, stage: str) -> DeadLetter:
    msg = event.message
    return dead_letter(msg.key, msg.value, reason, msg.topic, msg.partition, msg.offset, stage)


#: Sends one record (as ``Topic.send``, keywords only); awaited, the broker's acknowledgement.
SendLetter = Callable[..., Awaitable[Awaitable[Any]]]


class DeadLetters:
    """Sends dead letters of one source topic and waits for the broker to acknowledge them.

    Each source event is dead-lettered once per worker however often its batch is retried:
    the positions acknowledged are remembered (the last :data:`SENT_MEMORY` of them).
    """

    def __init__(self, app: faust.App, source_topic: str, partitions: int,
                 send: SendLetter | None = None):
        self.topic = raw_topic(app, dlq_topic(source_topic), partitions)
        #: ``topic.send`` unless told otherwise (a test records the letters instead)
        self._send: SendLetter = send or self.topic.send
        self._sent: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        fresh = [letter for letter in letters if letter.position not in self._sent]
        futures = []
        for letter in fresh:
            log.warning("dead letter from %s[%d]@%d: %s", letter.source_topic,
                        letter.source_partition, letter.source_offset, letter.error)
            futures.append(await self._send(key=letter.key, value=letter.value,
                                            headers=letter.headers(), force=True))
        results = await asyncio.gather(*futures, return_exceptions=True)
        for letter, result in zip(fresh, results, strict=True):
            if not isinstance(result, BaseException):
                self._sent[letter.position] = None
                DEAD_LETTERS.labels(letter.source_topic).inc()
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def handle_until_done(
    events: Sequence[RawEvent], handle: Callable[[Sequence[RawEvent]], Awaitable[Any]], stage: str
) -> None:
    """Run ``handle`` on a batch until it succeeds (its effects are idempotent).

    ``handle`` isolates bad events itself (dead letters) and waits out outages step by step;
    what still raises here is a bug, better met by a stalled partition that resumes after a
    fix than by acknowledged events that were never applied. Cancellation (shutdown) ends the
    wait at once, leaving the batch unacknowledged: it is processed again after the restart.
    """
    backoff = Backoff()
    while True:
        try:
            await handle(events)
            return
        except Exception:
            log.exception("%s: batch of %d failed; retrying in %.1fs", stage, len(events),
                          backoff.delay)
            await backoff.sleep()


async def run_batches(
    stream: RawStream, handle: Callable[[Sequence[RawEvent]], Awaitable[Any]], stage: str
) -> None:
    """Feed ``handle`` batches of events with natural batching, acknowledging each event only
    after its batch succeeded.

    A writer handles whatever has arrived as soon as it is free, while the stream keeps
    reading: under light load a batch is one event and waits for nothing, under heavy load
    batches grow to ``BATCH_MAX`` and amortise the commit and the publish round trip.
    (``take_events`` instead waits up to ``within`` for a full batch and reads nothing while a
    batch is handled.) Acks are manual (``noack``), so an event whose batch did not finish is
    redelivered after a crash. The writer is registered with the app, which cancels it if it
    holds up a shutdown (a batch in an outage's retry loop, say).
    """
    manual = cast("Stream[bytes]", stream).noack()
    pending: list[RawEvent] = []
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def writer() -> None:
        while True:
            await arrived.wait()
            batch, pending[:] = pending[:BATCH_MAX], pending[BATCH_MAX:]
            if not pending:
                arrived.clear()
            room.set()
            with BATCH_SECONDS.labels(stage).time():
                await handle_until_done(batch, handle, stage)
            for event in batch:
                await manual.ack(event)

    task = asyncio.create_task(writer(), name=f"{stage}-writer")
    writers: set[asyncio.Task[None]] = getattr(stream.app, "batch_writers", set())
    writers.add(task)
    try:
        async for event in manual.events():
            if task.done():  # the writer never returns by itself; surface why it stopped
                task.result()
            pending.append(event)
            arrived.set()
            if len(pending) >= 2 * BATCH_MAX:  # back-pressure: let the writer catch up
                room.clear()
                await room.wait()
    finally:
        task.cancel()
        writers.discard(task)
        pending.clear()  # unacknowledged: redelivered after a restart
