"""batch service: partner-created -> the partner-summary table (changelog) and batch.db.

Run: ``signupflow worker batch`` or ``faust -A signupflow.streams.batch worker``.
Guarantee: at-least-once with idempotent effects. A redelivered PartnerCreated produces the
same summary, which :func:`merge_summary` recognises, so neither the table (nor its changelog)
nor batch.db changes. The table is rebuilt from its changelog after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

from faust.types import EventT, StreamT

from signupflow.app import create_app
from signupflow.domain.decode import decode_partner_created
from signupflow.domain.summary import merge_summary
from signupflow.models.events import PartnerSummary
from signupflow.settings import get_settings
from signupflow.storage.batch import save_summaries
from signupflow.streams.common import (
    DeadLetters,
    Decoded,
    Resources,
    current_event,
    decode_events,
    raw_topic,
    run_batches,
    write_or_dead_letter,
)
from signupflow.tables.partner_summary import define_table, register_views
from signupflow.topics import PARTNER_CREATED, dlq_topic

STAGE = "batch"

settings = get_settings()
app = create_app(STAGE, settings, [PARTNER_CREATED, dlq_topic(PARTNER_CREATED)])
partners_created = raw_topic(app, PARTNER_CREATED, settings.partitions)
dead_letters = DeadLetters(app, PARTNER_CREATED, settings.partitions)
partner_summary = define_table(app, settings.partitions)
register_views(app, partner_summary)
resources = Resources(STAGE, settings)


async def handle(events: Sequence) -> list[PartnerSummary]:
    """Process one batch of raw partner-created events; returns the summaries changed."""
    engine = await resources.engine()
    decoded = decode_events(events, decode_partner_created, settings.max_event_bytes, STAGE)
    await dead_letters.send(decoded.dead)
    now = datetime.now(UTC)
    latest: dict[str, tuple[PartnerSummary, EventT]] = {}  # one summary per partner per batch
    for event, raw in zip(decoded.records, decoded.events, strict=True):
        pid = event.partner_id
        current = latest[pid][0] if pid in latest else partner_summary.get(pid)
        summary = merge_summary(current, event, now)
        if summary is not None:
            latest[pid] = (summary, raw)
    changed: Decoded[PartnerSummary] = Decoded()
    for summary, raw in latest.values():
        changed.records.append(summary)
        changed.events.append(raw)
    written = await write_or_dead_letter(changed, partial(save_summaries, engine),
                                         dead_letters, STAGE)
    for summary in written:
        with current_event(latest[summary.partner_id][1]):
            partner_summary[summary.partner_id] = summary
    return written


@app.agent(partners_created)
async def summarize_partners(stream: StreamT) -> None:
    await run_batches(stream, handle, STAGE)


@app.on_before_shutdown.connect
async def _close(_app: object, **_: object) -> None:
    await resources.close()
