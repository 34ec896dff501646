"""A consuming service's batch, step by step, in one place: :class:`Stage`.

Every consuming service handles a batch the same way: decode (bad bytes become dead letters),
store (a database outage stalls the batch, an event the database refuses becomes a dead
letter), send the dead letters, publish what follows from the stored events (each step waits
for the broker's acknowledgement, so offsets are committed only after it), end the trace,
count. A service subclasses :class:`Stage` with its own decoding, store and publish steps; a
new event kind is a change to those hooks only.

A stage is built from explicit settings on an app (``build``), not at import, so a test builds
one on a temporary database and runs :meth:`Stage.handle` on events of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import ClassVar, Generic, TypeVar

from faust.types import AgentT
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.app import ServiceApp
from signupflow.metrics import count_events, kind_of_value
from signupflow.settings import Service, Settings
from signupflow.streams.common import (
    BatchTrace,
    DeadLetters,
    Decoded,
    RawEvent,
    RawStream,
    Resources,
    decode_events,
    raw_topic,
    run_batches,
)
from signupflow.streams.retry import Write, until_done, write_isolating

E = TypeVar("E")  # an event of the source topic, decoded
S = TypeVar("S")  # what a batch stored, as the publish step needs it
R = TypeVar("R")
T = TypeVar("T")


class Stage(ABC, Generic[E, S]):
    """One consuming service: its app, settings, database (:class:`Resources`), dead letters,
    and the agent that feeds :meth:`handle` batches of its source topic."""

    #: the service, its source topic, and its agent's name (as when it was a module function)
    service: ClassVar[Service]
    source: ClassVar[str]
    agent_name: ClassVar[str]

    def __init__(self, app: ServiceApp, settings: Settings, resources: Resources,
                 dead_letters: DeadLetters) -> None:
        self.app = app
        self.settings = settings
        self.resources = resources
        self.dead_letters = dead_letters
        self.topic = raw_topic(app, self.source, settings.partitions)

        async def consume(stream: RawStream) -> None:
            await run_batches(stream, self.handle, self.service)

        self.agent: AgentT[bytes] = app.agent(self.topic, name=self.agent_name)(consume)

    @abstractmethod
    def decode(self, key: bytes | None, value: bytes | None, max_bytes: int) -> E:
        """The event of a record; raises ``InvalidEvent`` (a dead letter) if it is none."""

    @abstractmethod
    async def store(self, decoded: Decoded[E], engine: AsyncEngine, traced: BatchTrace) -> S:
        """Write the batch's decoded events; the ones refused move to ``decoded.dead``."""

    @abstractmethod
    async def publish(self, stored: S, traced: BatchTrace) -> None:
        """What follows from what was stored, acknowledged by the broker before returning
        (the batch's offsets are committed after it); runs after the dead letters are sent."""

    @abstractmethod
    def outcomes(self, stored: S) -> Iterable[tuple[str, str]]:
        """The kind and outcome (``applied``, ``stale``, ``skipped``) of each event the batch
        did not dead-letter, for ``signupflow_events_total``."""

    async def handle(self, events: Sequence[RawEvent]) -> S:
        """Process one batch of raw events; returns what was stored."""
        engine = await self.resources.engine()
        traced = BatchTrace(self.service, events)
        decoded = decode_events(events, self.decode, self.settings.max_event_bytes,
                                self.service)
        stored = await self.store(decoded, engine, traced)
        await self.until_done("dead letters", partial(self.dead_letters.send, decoded.dead))
        await self.publish(stored, traced)
        traced.end(decoded.dead)
        for kind, outcome in self.outcomes(stored):
            count_events(self.service, kind, outcome)
        for letter in decoded.dead:
            count_events(self.service, kind_of_value(letter.value), "dead_lettered")
        return stored

    async def write(self, records: Sequence[R], write: Write[R], traced: BatchTrace
                    ) -> dict[int, str]:
        """``write_isolating`` in the batch's write span: the indexes refused, with why."""
        with traced.write():
            return await write_isolating(records, write, self.resources, self.service)

    async def until_done(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """``until_done``, its outage told as this service's ``what``."""
        return await until_done(f"{self.service} {what}", action)
