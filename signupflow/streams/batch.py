"""batch service: a partner's life on partner-created (created, changed, deleted) -> the
partner-summary table (changelog) and batch.db.

Run: ``signupflow worker batch`` or ``faust -A signupflow.streams.batch worker``.
Guarantee: at-least-once with effects applied by version (:func:`merge_partner`): an event
older than or equal to the summary changes nothing, so neither the table (nor its changelog)
nor batch.db changes on a redelivery; one that says something else at the summary's version is
a conflict and is dead-lettered. A deletion removes the table entry (a tombstone on the
changelog) and the batch.db row, and keeps the deletion's version in batch.db, so no older
event brings the partner back. The table is rebuilt from its changelog after a restart, and a
changelog record is acknowledged by the broker before the offset of its event is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.app import ServiceApp, create_app
from signupflow.console import register_console
from signupflow.domain.decode import decode_partner_event
from signupflow.domain.life import OUTCOME
from signupflow.domain.reuse import Conflict
from signupflow.domain.summary import SummaryStep, merge_partner
from signupflow.metrics import TABLE_ENTRIES
from signupflow.models.events import PartnerEvent, PartnerSummary
from signupflow.settings import Service, Settings, get_settings
from signupflow.storage.batch import Deletion, deleted_versions, save_summaries
from signupflow.streams.common import (
    BatchTrace,
    DeadLetters,
    Decoded,
    RawEvent,
    Resources,
    SendLetter,
    consuming,
    service_resources,
)
from signupflow.streams.stage import Stage
from signupflow.tables.partitioned import write_acknowledged
from signupflow.tables.partner_summary import (
    TABLE_NAME,
    SummaryTable,
    define_table,
    register_views,
)
from signupflow.topics import PARTNER_CREATED, dlq_topic

STAGE: Service = "batch"
#: The summaries a batch stored or deleted (a partner's id and the deletion's version), each
#: with the (last) event that made it.
Summaries = list[tuple[PartnerSummary | Deletion, RawEvent]]


@dataclass
class Stored:
    """What a batch wrote (``summaries``), and the kind and outcome of each event it did not
    dead-letter."""

    summaries: Summaries = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)


class BatchStage(Stage[PartnerEvent, Stored]):
    """partner-created -> the partner-summary table and batch.db."""

    service = STAGE
    source = PARTNER_CREATED
    agent_name = f"{__name__}.summarize_partners"

    def __init__(self, app: ServiceApp, settings: Settings, resources: Resources,
                 dead_letters: DeadLetters, partner_summary: SummaryTable) -> None:
        super().__init__(app, settings, resources, dead_letters)
        self.partner_summary = partner_summary

    @classmethod
    def build(cls, app: ServiceApp, settings: Settings, *, send_letter: SendLetter | None = None
              ) -> BatchStage:
        """The stage on ``app``, its database and partitions as ``settings`` say; dead letters
        go to the broker unless ``send_letter`` says otherwise."""
        return cls(app, settings, service_resources(app, STAGE, settings),
                   DeadLetters(app, PARTNER_CREATED, settings.partitions, send_letter),
                   define_table(app, settings.partitions))

    def decode(self, key: bytes | None, value: bytes | None, max_bytes: int) -> PartnerEvent:
        return decode_partner_event(key, value, max_bytes)

    async def store(self, decoded: Decoded[PartnerEvent], engine: AsyncEngine,
                    traced: BatchTrace) -> Stored:
        """The summaries changed or deleted, one write per partner (its last); a conflict
        with the summary is refused."""
        now = datetime.now(UTC)
        tables = {p: self.partner_summary.get(p) for p in {e.partner_id for e in decoded.records}}
        deleted = await self.until_done("read tombstones", partial(
            deleted_versions, engine, [p for p, s in tables.items() if s is None]))
        state = {p: SummaryStep(s, deleted.get(p), "same") for p, s in tables.items()}
        latest: dict[str, tuple[PartnerSummary | Deletion, int]] = {}  # the write, its event
        conflicts: dict[int, str] = {}
        outcomes: dict[int, tuple[str, str]] = {}
        for i, event in enumerate(decoded.records):
            pid, before = event.partner_id, state[event.partner_id]
            try:
                done = merge_partner(before.summary, before.deleted, event, now)
            except Conflict as exc:
                conflicts[i] = str(exc)
                continue
            state[pid] = done
            outcomes[i] = (event.kind, OUTCOME[done.verdict])
            if done.verdict == "applied":
                latest[pid] = (done.summary if done.summary is not None
                               else (pid, done.deleted or event.version), i)
        decoded.refuse(conflicts, self.service)
        writes = list(latest.values())
        refused = await self.write([w for w, _ in writes], partial(self.save, engine), traced)
        dead = {writes[n][1]: reason for n, reason in refused.items()}  # by event index
        decoded.refuse(dead, self.service)
        for i in dead:  # a dead letter, not applied
            del outcomes[i]
        return Stored([(w, decoded.events[i]) for n, (w, i) in enumerate(writes)
                       if n not in refused], list(outcomes.values()))

    async def save(self, engine: AsyncEngine, writes: Sequence[PartnerSummary | Deletion]
                   ) -> dict[int, str]:
        """One write of summaries and deletions (the batch's, or a part of it
        ``write_isolating`` tries alone); returns the ones refused by index, with why."""
        return await save_summaries(engine, writes)

    def outcomes(self, stored: Stored) -> Iterable[tuple[str, str]]:
        return stored.outcomes

    async def publish(self, stored: Stored, traced: BatchTrace) -> None:
        await self.until_done("changelog", partial(
            self.update_table, [(s, raw.message.partition) for s, raw in stored.summaries]))

    async def update_table(self, summaries: Sequence[tuple[PartnerSummary | Deletion, int]]
                           ) -> None:
        """Each summary to the table (a deletion: a tombstone), in the changelog partition of
        its event, acknowledged by the broker before the table (and so the offsets) move on."""
        await write_acknowledged(self.partner_summary, [
            (partition, s.partner_id, s) if isinstance(s, PartnerSummary)
            else (partition, s[0], None) for s, partition in summaries])


def create_batch(settings: Settings) -> BatchStage:
    """The batch worker's app and stage, with its views, console, probes and metrics."""
    app = create_app(STAGE, settings, [PARTNER_CREATED, dlq_topic(PARTNER_CREATED)])
    stage = BatchStage.build(app, settings)
    register_views(app, stage.partner_summary)
    register_console(app, settings)
    consuming(app, PARTNER_CREATED)

    async def table_entries() -> None:
        TABLE_ENTRIES.labels(TABLE_NAME).set(len(stage.partner_summary))

    app.metric_refreshers.append(table_entries)
    return stage


stage = create_batch(get_settings())
app = stage.app
