"""One member's events leave the outbox in order, however many auth workers share it (issue 20,
item 5), on a private PostgreSQL server (the one database auth workers share).

Two relays (two engines: two workers' connections) drain one outbox while writers keep adding
many members' interleaved changes and deletions; each relay publishes batches of random size
to a recording "topic" after a random delay, as a broker's acknowledgement would come. With
row locks alone (``FOR UPDATE SKIP LOCKED``, before issue 20) the second relay took the next
rows while the first was still publishing, and its batch could land first: a member's version
3 before its version 2. With one relay at a time (the advisory lock), every member's events
arrive in version order, each once. And a relay that dies while holding the lock (its
connection is cut, as kill -9 of its worker does) hands over to the other, from the oldest
row still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import make_engine
from signupflow.domain.account import ProfileChange
from signupflow.domain.signup import profile_event, validate_signup
from signupflow.migrations import upgrade
from signupflow.storage.auth import (
    PendingEvent,
    change_profile,
    delete_account,
    publish_pending,
    register,
)
from signupflow.storage.errors import StorageError
from tests.integration.postgres import Postgres

MEMBERS = 10
CHANGES = 10  # per member, the writers interleave them across members


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start(["auth"])
        yield server
    finally:
        server.remove()


@asynccontextmanager
async def engines(server: Postgres, count: int) -> AsyncIterator[list[AsyncEngine]]:
    """``count`` engines on a fresh auth schema (each another worker's connections)."""
    made = [make_engine(server.url("auth")) for _ in range(count)]
    try:
        async with made[0].begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS member, outbox, alembic_version"))
        await upgrade(made[0], "auth")
        yield made
    finally:
        for engine in made:
            await engine.dispose()


async def sign_up(engine: AsyncEngine, index: int) -> str:
    signup = validate_signup({
        "email": f"m{index}@example.com", "password": "correct horse battery",
        "name": "Ada Lovelace", "phone": "+44 20 7946 0958", "birth": "1990-05-17",
        "gender": "FEMALE", "role": "PARTNER" if index % 3 else "USER",
        "nickname": f"nick{index}", "favorite_styles": [1, 2]}, today=date(2026, 1, 1))
    now = datetime.now(UTC)
    event = profile_event(signup, f"00000000-0000-4000-8000-{index:012d}", now)
    await register(engine, signup, "scrypt$x", event, now)
    return event.uuid


class Topic:
    """What the relays published, in the order the "broker" acknowledged it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.records: list[PendingEvent] = []

    def publisher(self) -> Callable[[list[PendingEvent]], Awaitable[None]]:
        async def publish(pending: list[PendingEvent]) -> None:
            await asyncio.sleep(self.rng.uniform(0, 0.02))  # the broker's acknowledgement
            self.records.extend(pending)
        return publish

    def versions(self) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = defaultdict(list)
        for record in self.records:
            seen[record.key.decode()].append(orjson.loads(record.payload)["version"])
        return seen


async def relay(engine: AsyncEngine, topic: Topic, done: asyncio.Event,
                counts: dict[str, int]) -> None:
    """Publish until the writers are done and nothing is pending, as the worker's relay does:
    stand by briefly while the other publishes."""
    publish = topic.publisher()
    while True:
        published = await publish_pending(engine, topic.rng.randint(1, 8), publish)
        if published is None:
            counts["stood_by"] += 1
            await asyncio.sleep(0.002)
        elif published:
            counts["published"] += published
        elif done.is_set():
            return
        else:
            await asyncio.sleep(0.001)


async def lives(engine: AsyncEngine, uuids: list[str], seed: int, rounds: range,
                last: dict[str, int]) -> None:
    """Rounds of one change per member, in a random order of the members each round (the
    outbox interleaves them); after the last round, some deletions. ``last``: each member's
    last version."""
    rng = random.Random(seed)
    for round_ in rounds:
        for member in rng.sample(uuids, len(uuids)):
            changed = await change_profile(engine, member, ProfileChange(f"n{round_}x"),
                                           datetime.now(UTC))
            last[member] = changed.version
    if rounds.stop == CHANGES:
        for member in uuids[::5]:
            last[member] = (await delete_account(engine, member, datetime.now(UTC))).version


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_relays_publish_every_members_events_in_version_order(
    postgres: Postgres, seed: int
) -> None:
    async def scenario() -> tuple[Topic, dict[str, int], list[dict[str, int]]]:
        async with engines(postgres, 4) as (writer_a, writer_b, relay_a, relay_b):
            uuids = [await sign_up(writer_a, i) for i in range(MEMBERS)]
            last = dict.fromkeys(uuids, 1)
            # a backlog first (the relays start on a full outbox), then more as they publish
            await lives(writer_a, uuids, seed, range(CHANGES // 2), last)
            topic, done = Topic(seed), asyncio.Event()
            counts = [{"published": 0, "stood_by": 0} for _ in range(2)]
            relays = [asyncio.create_task(relay(engine, topic, done, c))
                      for engine, c in zip((relay_a, relay_b), counts, strict=True)]
            half, later = MEMBERS // 2, range(CHANGES // 2, CHANGES)
            await asyncio.gather(lives(writer_a, uuids[:half], seed, later, last),
                                 lives(writer_b, uuids[half:], seed + 100, later, last))
            done.set()
            await asyncio.gather(*relays)
            return topic, last, counts

    topic, last, counts = asyncio.run(scenario())
    versions = topic.versions()
    out_of_order = {m: v for m, v in versions.items() if v != sorted(v)}
    assert not out_of_order, f"members whose events were published out of order: {out_of_order}"
    assert versions == {m: list(range(1, n + 1)) for m, n in last.items()}, \
        "an event lost or published twice"
    assert all(c["published"] for c in counts), f"one relay published everything: {counts}"
    assert sum(c["stood_by"] for c in counts), f"the relays never met: {counts}"


def test_a_relay_that_dies_holding_the_lock_hands_over_from_the_oldest_pending_row(
    postgres: Postgres,
) -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        async with engines(postgres, 3) as (first, second, observer):
            for i in range(6):
                await sign_up(first, i)
            async with observer.connect() as conn:
                ids = [r[0] for r in await conn.execute(text("SELECT id FROM outbox ORDER BY id"))]
            holding, handed = asyncio.Event(), list[int]()

            async def stuck(pending: list[PendingEvent]) -> None:
                handed.extend(p.id for p in pending)
                holding.set()
                await asyncio.sleep(3600)  # the broker never answers; the worker is killed

            dying = asyncio.create_task(publish_pending(first, 3, stuck))
            await holding.wait()
            taken: list[int] = []

            async def record(pending: list[PendingEvent]) -> None:
                taken.extend(p.id for p in pending)

            assert await publish_pending(second, 10, record) is None, "two relays at once"
            async with observer.begin() as conn:  # what kill -9 of the worker does
                killed = (await conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted"))).scalars().all()
            assert killed == [True]
            for _ in range(200):  # the terminated backend exits (and unlocks) in a moment
                if await publish_pending(second, 10, record) is not None:
                    break
                await asyncio.sleep(0.05)
            dying.cancel()
            with contextlib.suppress(asyncio.CancelledError, StorageError, OSError):
                await dying
            return ids, handed, taken

    ids, handed, taken = asyncio.run(scenario())
    assert handed == ids[:3]
    assert taken == ids, "the other relay did not take over from the oldest pending row"
