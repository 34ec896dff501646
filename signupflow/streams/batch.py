"""batch service: partner-created -> the partner-summary table (changelog) and batch.db.

Run: ``signupflow worker batch`` or ``faust -A signupflow.streams.batch worker``.
Guarantee: at-least-once with idempotent effects. A redelivered PartnerCreated produces the
same summary, which :func:`merge_summary` recognises, so neither the table (nor its changelog)
nor batch.db changes; one that says something else about a summarised partner is a conflict
and is dead-lettered. The table is rebuilt from its changelog after a restart, and a changelog
record is acknowledged by the broker before the offset of its event is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from signupflow.app import create_app
from signupflow.console import register_console
from signupflow.domain.decode import decode_partner_created
from signupflow.domain.reuse import Conflict
from signupflow.domain.summary import merge_summary
from signupflow.metrics import TABLE_ENTRIES, count_batch
from signupflow.models.events import PartnerSummary
from signupflow.settings import Service, get_settings
from signupflow.storage.batch import save_summaries
from signupflow.streams.common import (
    BatchTrace,
    DeadLetters,
    Decoded,
    RawEvent,
    RawStream,
    consuming,
    decode_events,
    raw_topic,
    run_batches,
    service_resources,
)
from signupflow.streams.retry import until_done, write_isolating
from signupflow.tables.partitioned import write_acknowledged
from signupflow.tables.partner_summary import TABLE_NAME, define_table, register_views
from signupflow.topics import PARTNER_CREATED, dlq_topic

STAGE: Service = "batch"

settings = get_settings()
app = create_app(STAGE, settings, [PARTNER_CREATED, dlq_topic(PARTNER_CREATED)])
partners_created = raw_topic(app, PARTNER_CREATED, settings.partitions)
dead_letters = DeadLetters(app, PARTNER_CREATED, settings.partitions)
partner_summary = define_table(app, settings.partitions)
register_views(app, partner_summary)
register_console(app, settings)
resources = service_resources(app, STAGE, settings)
consuming(app, PARTNER_CREATED)


async def table_entries() -> None:
    TABLE_ENTRIES.labels(TABLE_NAME).set(len(partner_summary))


app.metric_refreshers.append(table_entries)


async def handle(events: Sequence[RawEvent]) -> list[PartnerSummary]:
    """Process one batch of raw partner-created events; returns the summaries changed."""
    engine = await resources.engine()
    traced = BatchTrace(STAGE, events)
    decoded = decode_events(events, decode_partner_created, settings.max_event_bytes, STAGE)
    now = datetime.now(UTC)
    latest: dict[str, tuple[PartnerSummary, RawEvent]] = {}  # one summary per partner per batch
    conflicts: dict[int, str] = {}
    for i, (event, raw) in enumerate(zip(decoded.records, decoded.events, strict=True)):
        pid = event.partner_id
        try:
            summary = merge_summary(latest[pid][0] if pid in latest else partner_summary.get(pid),
                                    event, now)
        except Conflict as exc:
            conflicts[i] = str(exc)
            continue
        if summary is not None:
            latest[pid] = (summary, raw)
    decoded.refuse(conflicts, STAGE)
    changed: Decoded[PartnerSummary] = Decoded()
    for summary, raw in latest.values():
        changed.records.append(summary)
        changed.events.append(raw)
    with traced.write():
        refused = await write_isolating(changed.records, partial(save_summaries, engine),
                                        resources, STAGE)
    written = changed.refuse(refused, STAGE)
    letters = decoded.dead + changed.dead
    await until_done(f"{STAGE} dead letters", partial(dead_letters.send, letters))
    await until_done(f"{STAGE} changelog", partial(
        update_table, [(s, raw.message.partition) for s, raw in written]))
    traced.end(letters)
    count_batch(STAGE, len(events), len(letters))
    return [s for s, _ in written]


async def update_table(summaries: Sequence[tuple[PartnerSummary, int]]) -> None:
    """Each summary to the table, in the changelog partition of its event, acknowledged by
    the broker before the table (and so the offsets) move on."""
    await write_acknowledged(partner_summary, [(partition, s.partner_id, s)
                                               for s, partition in summaries])


@app.agent(partners_created)
async def summarize_partners(stream: RawStream) -> None:
    await run_batches(stream, handle, STAGE)

