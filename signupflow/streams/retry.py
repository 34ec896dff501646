"""Retrying, and telling an outage from a bad event.

Two kinds of failure reach a consuming stage, and they need opposite answers:

* an **outage** (database or broker unreachable, busy, timing out) hits every event alike; the
  stage waits with backoff and retries, so events wait in Kafka instead of being lost;
* a **deterministic** failure belongs to particular events (a value the database refuses, a
  bug that some input triggers); retrying never helps, so :func:`write_isolating` splits the
  batch until it has the events that fail on their own, and only those are dead-lettered.

Every sleep here is an ``asyncio.sleep``, so a worker that is told to stop is never held up by
a retry loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from signupflow.outages import Outage
from signupflow.storage.errors import Rejected, Retriable

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: Attempts at a write that fails while its database is healthy before the failure is taken as
#: deterministic (a property of the events, not of the moment).
MAX_ATTEMPTS = 3
FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class Backoff:
    """Exponential backoff from :data:`FIRST_DELAY` doubling up to :data:`MAX_DELAY` seconds."""

    def __init__(self, first: float | None = None, cap: float | None = None):
        self.first = FIRST_DELAY if first is None else first
        self.cap = MAX_DELAY if cap is None else cap
        self.delay = self.first

    def reset(self) -> None:
        self.delay = self.first

    def next_delay(self) -> float:
        """This wait's delay; the next one is twice as long, up to the cap."""
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())


async def until_done(what: str, action: Callable[[], Awaitable[T]]) -> T:
    """Run ``action`` until it succeeds, with backoff: for steps whose failure can only be an
    outage (a send to the broker that must be acknowledged before offsets are committed).
    The log tells the outage once, with reminders, and when it is over (:class:`Outage`)."""
    backoff, outage = Backoff(), Outage(what, down="failing")
    while True:
        started = time.monotonic()
        try:
            result = await action()
        except Exception as exc:
            outage.failed(repr(exc), since=started)
            await backoff.sleep()
            continue
        outage.recovered()
        return result


#: Writes a batch; returns the records it refused itself (by index) with the reason.
Write = Callable[[Sequence[R]], Awaitable[Mapping[int, str]]]


class Database(Protocol):
    """What :func:`write_isolating` needs of a service's database besides the write."""

    #: its outages as the service's writes and probes see them (and the log tells them)
    outage: Outage

    async def unwritable(self) -> str | None:
        """Why the database would not take a write now (None: it would)."""


async def write_isolating(
    records: Sequence[R], write: Write[R], database: Database, stage: str,
) -> dict[int, str]:
    """Write ``records``; returns the indexes that could not be written, with the reason.

    A :class:`Retriable` error while the database would not take a write (``unwritable``) is an
    outage: wait and retry, as long as it lasts (the log says so once, with reminders, and when
    it is over). Any other failure (a :class:`Rejected` at once, anything else after
    :data:`MAX_ATTEMPTS`) is deterministic: the batch is split in halves, and halves again,
    until the records that fail on their own are found. The rest is written, in order.
    """
    refused: dict[int, str] = {}

    async def attempt(chunk: list[int]) -> str | None:
        """Write ``chunk``; None once written, else why it failed deterministically."""
        backoff, failures = Backoff(), 0
        while True:
            started = time.monotonic()
            try:
                for j, reason in (await write([records[i] for i in chunk])).items():
                    refused[chunk[j]] = reason
                database.outage.recovered()
                return None
            except Rejected as exc:
                return f"database rejected: {exc}"
            except Retriable as exc:
                if await database.unwritable() is not None:
                    database.outage.failed(str(exc), since=started)
                    await backoff.sleep()
                    continue
                reason = f"database error: {exc}"
            except Exception as exc:  # unknown: a bug or an unclassified driver error
                reason = f"unexpected error: {type(exc).__name__}: {exc}"
            failures += 1
            if failures >= MAX_ATTEMPTS:
                return reason
            log.warning("%s: write of %d failed (%s); attempt %d of %d in %.1fs", stage,
                        len(chunk), reason, failures + 1, MAX_ATTEMPTS, backoff.delay)
            await backoff.sleep()

    async def isolate(chunk: list[int]) -> None:
        reason = await attempt(chunk)
        if reason is None:
            return
        if len(chunk) == 1:
            refused[chunk[0]] = reason
            return
        log.warning("%s: a batch of %d failed (%s); splitting it", stage, len(chunk), reason)
        middle = len(chunk) // 2
        await isolate(chunk[:middle])
        await isolate(chunk[middle:])

    if records:
        await isolate(list(range(len(records))))
    return refused
