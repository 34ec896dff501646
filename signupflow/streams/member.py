"""member service: profile-insert -> user/partner profile + favourite styles (member.db);
for a partner, publishes partner-created.

Run: ``signupflow worker member`` or ``faust -A signupflow.streams.member worker``.
Guarantee: at-least-once processing with idempotent writes (keyed inserts), so the effect of
each event is exactly once. PartnerCreated is acknowledged by the broker before the
profile-insert offsets are committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from signupflow.app import create_app
from signupflow.db import ping
from signupflow.domain.decode import decode_profile_insert
from signupflow.domain.summary import partner_created
from signupflow.metrics import count_batch
from signupflow.models.events import PartnerCreated, ProfileInsert
from signupflow.settings import get_settings
from signupflow.storage.member import save_profiles
from signupflow.streams.common import (
    BatchTrace,
    DeadLetters,
    RawEvent,
    RawStream,
    consuming,
    decode_events,
    raw_topic,
    run_batches,
    service_resources,
)
from signupflow.streams.retry import until_done, write_isolating
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic

STAGE = "member"

settings = get_settings()
app = create_app(STAGE, settings, [PROFILE_INSERT, PARTNER_CREATED, dlq_topic(PROFILE_INSERT)])
profile_inserts = raw_topic(app, PROFILE_INSERT, settings.partitions)
dead_letters = DeadLetters(app, PROFILE_INSERT, settings.partitions)
resources = service_resources(app, STAGE, settings)
consuming(app, PROFILE_INSERT)


async def publish_partners(
    events: Sequence[tuple[PartnerCreated, list[tuple[str, bytes]] | None]],
) -> None:
    """Publish and wait for the broker's acknowledgement (before the offsets are committed).

    Straight through the app's producer: ``Topic.send`` adds a task and a FutureMessage per
    event, which cost 13% of this worker's CPU in a profile.
    """
    producer = app.producer
    futures = [await producer.send(PARTNER_CREATED, e.partner_id.encode(), e.dumps(),
                                   None, None, headers) for e, headers in events]
    await asyncio.gather(*futures)


async def handle(events: Sequence[RawEvent]) -> list[ProfileInsert]:
    """Process one batch of raw profile-insert events; returns the profiles stored (or found
    stored already: a redelivered partner is published again, in case the first publish was
    lost in a crash)."""
    engine = await resources.engine()
    traced = BatchTrace(STAGE, events)
    decoded = decode_events(events, decode_profile_insert, settings.max_event_bytes, STAGE)
    with traced.write():
        refused = await write_isolating(decoded.records, partial(save_profiles, engine),
                                        partial(ping, engine), STAGE)
    written = decoded.refuse(refused, STAGE)
    await until_done(f"{STAGE} dead letters", partial(dead_letters.send, decoded.dead))
    partners = [(e, traced.headers_for(raw)) for p, raw in written
                if (e := partner_created(p)) is not None]
    await until_done(f"{STAGE} publish partner-created", partial(publish_partners, partners))
    traced.end(decoded.dead)
    count_batch(STAGE, len(events), len(decoded.dead))
    return [p for p, _ in written]


@app.agent(profile_inserts)
async def write_profiles(stream: RawStream) -> None:
    await run_batches(stream, handle, STAGE)

