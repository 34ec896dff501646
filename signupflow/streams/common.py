"""What every consuming service does around its own logic.

Decode raw events, park the bad ones on the dead-letter topic, write the good ones in one
batch with retries (a database outage stalls the partition rather than losing events), and only
then let Faust acknowledge the offsets.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import faust
from faust.streams import _current_event
from faust.types import EventT, StreamT
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import create_schema, make_engine
from signupflow.dlq import DeadLetter, dead_letter
from signupflow.domain.decode import InvalidEvent
from signupflow.settings import Settings
from signupflow.topics import dlq_topic

log = logging.getLogger(__name__)
R = TypeVar("R")

#: Errors a retry cannot fix: the row itself is unacceptable to the database.
REJECTED = (IntegrityError, DataError)
MAX_BACKOFF = 5.0
BATCH_MAX = 500


class Resources:
    """A service's database engine, with its schema created once, on first use."""

    def __init__(self, service: str, settings: Settings):
        self.service = service
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._lock = asyncio.Lock()

    async def engine(self) -> AsyncEngine:
        if self._engine is None:
            async with self._lock:
                if self._engine is None:
                    engine = make_engine(self.settings.database_url(self.service))
                    await create_schema(engine, self.service)
                    self._engine = engine
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic read as raw bytes: decoding is ours, so bad bytes become dead letters."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


class Decoded(Generic[R]):
    """The usable records of a batch (with their events) and its dead letters."""

    def __init__(self) -> None:
        self.records: list[R] = []
        self.events: list[EventT] = []
        self.dead: list[DeadLetter] = []


def decode_events(
    events: Sequence[EventT], decode: Callable[[bytes | None, bytes | None, int], R],
    max_bytes: int, stage: str,
) -> Decoded[R]:
    out: Decoded[R] = Decoded()
    for event in events:
        msg = event.message
        try:
            out.records.append(decode(msg.key, msg.value, max_bytes))
            out.events.append(event)
        except InvalidEvent as exc:
            out.dead.append(dead_letter(msg.key, msg.value, str(exc), msg.topic,
                                        msg.partition, msg.offset, stage))
    return out


class DeadLetters:
    """Sends dead letters of one source topic and waits for the broker to acknowledge them."""

    def __init__(self, app: faust.App, source_topic: str, partitions: int):
        self.topic = raw_topic(app, dlq_topic(source_topic), partitions)

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        futures = []
        for letter in letters:
            log.warning("dead letter from %s[%d]@%d: %s", letter.source_topic,
                        letter.source_partition, letter.source_offset, letter.error)
            futures.append(await self.topic.send(key=letter.key, value=letter.value,
                                                 headers=letter.headers(), force=True))
        await asyncio.gather(*futures)


async def with_retry(what: str, action: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``action`` until it succeeds; transient errors are retried with backoff.

    Errors in ``REJECTED`` are raised at once: retrying would never help.
    """
    delay = 0.1
    while True:
        try:
            return await action()
        except REJECTED:
            raise
        except (OperationalError, OSError, ConnectionError) as exc:
            log.error("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


async def write_or_dead_letter(
    decoded: Decoded[R], write: Callable[[Sequence[R]], Awaitable[None]],
    dead_letters: DeadLetters, stage: str,
) -> list[R]:
    """Write all records in one batch; if the database rejects the batch, write them one by
    one and dead-letter only those it rejects. Returns the records that were written."""
    if not decoded.records:
        return []
    try:
        await with_retry(f"{stage} batch write", lambda: write(decoded.records))
        return decoded.records
    except REJECTED:
        log.warning("%s: database rejected a batch of %d; writing one by one",
                    stage, len(decoded.records))
    written: list[R] = []
    rejected: list[DeadLetter] = []
    for record, event in zip(decoded.records, decoded.events, strict=True):
        try:
            await with_retry(f"{stage} write", lambda r=record: write([r]))
            written.append(record)
        except REJECTED as exc:
            msg = event.message
            rejected.append(dead_letter(msg.key, msg.value, f"database rejected: {exc.orig}",
                                        msg.topic, msg.partition, msg.offset, stage))
    await dead_letters.send(rejected)
    return written


async def handle_until_done(
    events: Sequence[EventT], handle: Callable[[Sequence[EventT]], Awaitable[Any]], stage: str
) -> None:
    """Run ``handle`` on a batch until it succeeds (its effects are idempotent).

    Bad events never get here as errors, they become dead letters; what is left is an outage
    (database, broker) or a bug, and both are better met by a stalled partition that resumes
    than by acknowledged events that were never applied.
    """
    delay = 0.1
    while True:
        try:
            await handle(events)
            return
        except Exception:
            log.exception("%s: batch of %d failed; retrying in %.1fs", stage, len(events), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


async def run_batches(
    stream: StreamT, handle: Callable[[Sequence[EventT]], Awaitable[Any]], stage: str
) -> None:
    """Feed ``handle`` batches of events with natural batching, acknowledging each event only
    after its batch succeeded.

    A writer handles whatever has arrived as soon as it is free, while the stream keeps
    reading: under light load a batch is one event and waits for nothing, under heavy load
    batches grow to ``BATCH_MAX`` and amortise the commit and the publish round trip.
    (``take_events`` instead waits up to ``within`` for a full batch and reads nothing while a
    batch is handled.) Acks are manual (``noack``), so an event whose batch did not finish is
    redelivered after a crash.
    """
    manual = stream.noack()
    pending: list[EventT] = []
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
            await handle_until_done(batch, handle, stage)
            for event in batch:
                await manual.ack(event)

    task = asyncio.create_task(writer(), name=f"{stage}-writer")
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


@contextmanager
def current_event(event: EventT) -> Iterator[None]:
    """Make ``event`` Faust's current event while a table is updated for it.

    A table writes each change to the changelog partition of the current event. Batches from
    ``run_batches`` span partitions, so each update must name its own event, or a summary
    could land in another partition's changelog and be lost to its owner after a rebalance.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
