"""member service: a member's life on profile-insert (created, changed, deleted) -> the
user/partner profile and favourite styles in member.db (a tombstone once deleted); for a
partner, the same life on partner-created; keeps the signups-per-minute table.

Run: ``signupflow worker member`` or ``faust -A signupflow.streams.member worker``.
Guarantee: at-least-once processing with effects applied by version (signupflow/domain/life.py:
an older or equal event changes nothing), so the effect of each event is exactly once and a
redelivery never undoes a newer one. The partner events are acknowledged by the broker before
the profile-insert offsets are committed, and so are the table's changelog records (exact
counts under redelivery: signupflow/tables/signups_per_minute.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from faust.types.tables import WindowWrapperT
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.app import ServiceApp, create_app
from signupflow.domain.decode import decode_member_event
from signupflow.domain.life import OUTCOME, Step
from signupflow.domain.per_minute import MinuteKey, oldest_kept
from signupflow.domain.summary import partner_event
from signupflow.metrics import TABLE_ENTRIES
from signupflow.models.events import MemberEvent, PartnerEvent
from signupflow.settings import Service, Settings, get_settings
from signupflow.storage.member import prune_minutes, save_profiles
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
from signupflow.tables import signups_per_minute as per_minute
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic

STAGE: Service = "member"
log = logging.getLogger(__name__)

#: A partner event with the headers that carry its trace on.
Partner = tuple[PartnerEvent, list[tuple[str, bytes]] | None]
#: Publishes partner events, acknowledged by the broker when it returns.
PublishPartners = Callable[[Sequence[Partner]], Awaitable[None]]


@dataclass
class StoredProfiles:
    """What a batch did: each event not refused, with its raw event and its step (applied,
    same, stale, skipped), and the signups of each minute the batch touched."""

    profiles: list[tuple[MemberEvent, RawEvent, Step]] = field(default_factory=list)
    counts: dict[MinuteKey, int] = field(default_factory=dict)


class MemberStage(Stage[MemberEvent, StoredProfiles]):
    """profile-insert -> profiles and styles in member.db (tombstones once deleted), a
    partner's life on partner-created, the signups-per-minute table."""

    service = STAGE
    source = PROFILE_INSERT
    agent_name = f"{__name__}.write_profiles"

    def __init__(self, app: ServiceApp, settings: Settings, resources: Resources,
                 dead_letters: DeadLetters, signups: WindowWrapperT,
                 publish_partners: PublishPartners | None = None) -> None:
        super().__init__(app, settings, resources, dead_letters)
        self.signups = signups
        self.publish_partners = publish_partners or self.produce_partners

    @classmethod
    def build(cls, app: ServiceApp, settings: Settings, *, send_letter: SendLetter | None = None,
              publish_partners: PublishPartners | None = None) -> MemberStage:
        """The stage on ``app``, its database and partitions as ``settings`` say; dead letters
        and partner-created events go to the broker unless ``send_letter`` and
        ``publish_partners`` say otherwise."""
        return cls(app, settings, service_resources(app, STAGE, settings),
                   DeadLetters(app, PROFILE_INSERT, settings.partitions, send_letter),
                   per_minute.define_table(app, settings.partitions), publish_partners)

    def decode(self, key: bytes | None, value: bytes | None, max_bytes: int) -> MemberEvent:
        return decode_member_event(key, value, max_bytes)

    async def store(self, decoded: Decoded[MemberEvent], engine: AsyncEngine,
                    traced: BatchTrace) -> StoredProfiles:
        """Each event's step; a conflict (a uuid reused) is refused, a dead letter."""
        stored = StoredProfiles()  # counts: once stored
        steps: dict[int, Step] = {}  # by the event's index in the batch

        async def save(located: Sequence[tuple[MemberEvent, int, int]]) -> dict[int, str]:
            done: list[Step] = []
            refused = await self.save(engine, [e for e, _, _ in located],
                                      [partition for _, partition, _ in located],
                                      stored.counts, done)
            steps.update((i, s) for (_, _, i), s in zip(located, done, strict=True))
            return refused

        refused = await self.write(
            [(e, raw.message.partition, i) for i, (e, raw) in enumerate(
                zip(decoded.records, decoded.events, strict=True))], save, traced)
        kept = [(i, e, raw) for i, (e, raw) in enumerate(zip(decoded.records, decoded.events,
                                                             strict=True)) if i not in refused]
        decoded.refuse(refused, self.service)
        stored.profiles = [(e, raw, steps[i]) for i, e, raw in kept]
        for event, _, step in stored.profiles:
            if step.verdict == "skipped":
                log.warning("%s: skipped %s of %s version %d: %s", STAGE, event.kind,
                            event.uuid, event.version, step.reason)
        return stored

    async def save(self, engine: AsyncEngine, events: Sequence[MemberEvent],
                   partitions: Sequence[int], counts: dict[MinuteKey, int],
                   steps: list[Step]) -> dict[int, str]:
        """One write of events (the batch, or a part of it ``write_isolating`` tries alone);
        returns the ones refused by index, with why; ``steps`` gets each event's step."""
        return await save_profiles(engine, events, partitions, counts, steps)

    def outcomes(self, stored: StoredProfiles) -> Iterable[tuple[str, str]]:
        return ((event.kind, OUTCOME[step.verdict]) for event, _, step in stored.profiles)

    async def publish(self, stored: StoredProfiles, traced: BatchTrace) -> None:
        """A partner's event for each of its events applied, or seen again (in case the
        first publish was lost in a crash), in the order of the batch."""
        partners = [(e, traced.headers_for(raw)) for event, raw, step in stored.profiles
                    if step.verdict in ("applied", "same")
                    and (e := partner_event(event)) is not None]
        await asyncio.gather(  # independent: one broker round trip for both
            self.until_done("publish partner events",
                            lambda: self.publish_partners(partners)),
            self.until_done("changelog", lambda: per_minute.record(
                self.signups, stored.counts, time.time())))

    async def produce_partners(self, events: Sequence[Partner]) -> None:
        """Publish and wait for the broker's acknowledgement (before the offsets are committed).

        Straight through the app's producer: ``Topic.send`` adds a task and a FutureMessage per
        event, which cost 13% of this worker's CPU in a profile.
        """
        producer = self.app.producer
        futures = [await producer.send(PARTNER_CREATED, e.partner_id.encode(), e.dumps(),
                                       None, None, headers) for e, headers in events]
        await asyncio.gather(*futures)

    async def expire_minutes(self) -> None:
        """Drop the minutes older than a day, from memory and from member.db (best effort: a
        database that does not answer now is pruned next time)."""
        now = time.time()
        per_minute.prune(self.signups, now)
        try:
            await prune_minutes(await self.resources.engine(), oldest_kept(now))
        except Exception as exc:
            log.warning("%s: pruning signups per minute failed (%r); next time", STAGE, exc)


def create_member(settings: Settings) -> MemberStage:
    """The member worker's app and stage, with its views, probes, metrics and timers."""
    app = create_app(STAGE, settings,
                     [PROFILE_INSERT, PARTNER_CREATED, dlq_topic(PROFILE_INSERT)])
    stage = MemberStage.build(app, settings)
    per_minute.register_views(app, stage.signups)
    consuming(app, PROFILE_INSERT)

    async def table_entries() -> None:
        TABLE_ENTRIES.labels(per_minute.TABLE_NAME).set(len(stage.signups.table))

    app.metric_refreshers.append(table_entries)

    async def expire_minutes() -> None:
        await stage.expire_minutes()

    app.timer(60.0)(expire_minutes)
    return stage


stage = create_member(get_settings())
app = stage.app
