"""member service: profile-insert -> user/partner profile + favourite styles (member.db);
for a partner, publishes partner-created; keeps the signups-per-minute table.

Run: ``signupflow worker member`` or ``faust -A signupflow.streams.member worker``.
Guarantee: at-least-once processing with idempotent writes (keyed inserts), so the effect of
each event is exactly once. PartnerCreated is acknowledged by the broker before the
profile-insert offsets are committed, and so are the table's changelog records (exact counts
under redelivery: signupflow/tables/signups_per_minute.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial

from signupflow.app import create_app
from signupflow.domain.decode import decode_profile_insert
from signupflow.domain.per_minute import MinuteKey, oldest_kept
from signupflow.domain.summary import partner_created
from signupflow.metrics import TABLE_ENTRIES, count_batch
from signupflow.models.events import PartnerCreated, ProfileInsert
from signupflow.settings import Service, get_settings
from signupflow.storage.member import prune_minutes, save_profiles
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
from signupflow.tables import signups_per_minute as per_minute
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic

STAGE: Service = "member"
log = logging.getLogger(__name__)

settings = get_settings()
app = create_app(STAGE, settings, [PROFILE_INSERT, PARTNER_CREATED, dlq_topic(PROFILE_INSERT)])
profile_inserts = raw_topic(app, PROFILE_INSERT, settings.partitions)
dead_letters = DeadLetters(app, PROFILE_INSERT, settings.partitions)
signups = per_minute.define_table(app, settings.partitions)
per_minute.register_views(app, signups)
resources = service_resources(app, STAGE, settings)
consuming(app, PROFILE_INSERT)


async def table_entries() -> None:
    TABLE_ENTRIES.labels(per_minute.TABLE_NAME).set(len(signups.table))


app.metric_refreshers.append(table_entries)


@app.timer(60.0)
async def expire_minutes() -> None:
    """Drop the minutes older than a day, from memory and from member.db (best effort: a
    database that does not answer now is pruned next time)."""
    now = time.time()
    per_minute.prune(signups, now)
    try:
        await prune_minutes(await resources.engine(), oldest_kept(now))
    except Exception as exc:
        log.warning("%s: pruning signups per minute failed (%r); next time", STAGE, exc)


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
    counts: dict[MinuteKey, int] = {}  # signups of each minute the batch touches, once stored

    async def save(located: Sequence[tuple[ProfileInsert, int]]) -> dict[int, str]:
        return await save_profiles(engine, [p for p, _ in located],
                                   [partition for _, partition in located], counts)

    with traced.write():
        refused = await write_isolating(
            [(p, raw.message.partition) for p, raw in zip(decoded.records, decoded.events,
                                                          strict=True)],
            save, resources, STAGE)
    written = decoded.refuse(refused, STAGE)
    await until_done(f"{STAGE} dead letters", partial(dead_letters.send, decoded.dead))
    partners = [(e, traced.headers_for(raw)) for p, raw in written
                if (e := partner_created(p)) is not None]
    await asyncio.gather(  # independent: one broker round trip for both
        until_done(f"{STAGE} publish partner-created", partial(publish_partners, partners)),
        until_done(f"{STAGE} changelog", lambda: per_minute.record(signups, counts, time.time())))
    traced.end(decoded.dead)
    count_batch(STAGE, len(events), len(decoded.dead))
    return [p for p, _ in written]


@app.agent(profile_inserts)
async def write_profiles(stream: RawStream) -> None:
    await run_batches(stream, handle, STAGE)

