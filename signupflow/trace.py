"""``signupflow trace UUID|EMAIL``: where one signup is, hop by hop, with the delay of each.

Built from the system's own data (auth's outbox, the topics, member's and batch's rows, the
dead-letter topics), so it works without any tracing backend. Like ``verify``, an operator's
tool: the one other place allowed to read every service's data. :func:`timeline` is pure;
:func:`collect` does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from signupflow.db import make_engine, no_such_table
from signupflow.dlq import DeadLetter
from signupflow.domain.reuse import instant
from signupflow.models import db as schema
from signupflow.models.db import table_of
from signupflow.settings import Settings
from signupflow.topic_reader import read_topic
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic, partition_for


@dataclass(frozen=True)
class Hop:
    """One step of a signup's way: what happened, in which service, when, and where."""

    step: str
    service: str
    at: datetime | None
    detail: str = ""
    #: The step this one follows from (its delay is measured from there).
    after: str | None = None


#: The flow's order of steps; the profile steps are either user or partner.
ORDER = ("accepted", "profile-insert record", "outbox published", "waiting in the outbox",
         "user profile stored", "partner profile stored", "partner-created record",
         "partner summary stored", "dead letter")


def timeline(hops: list[Hop]) -> list[dict[str, Any]]:
    """The hops in the flow's order, each with the milliseconds since the step it follows
    from (the record's publication after the acceptance, the profile after the record...)."""
    at = {hop.step: hop.at for hop in hops if hop.at is not None}
    rows: list[dict[str, Any]] = []
    for hop in sorted(hops, key=lambda h: (ORDER.index(h.step), h.at or datetime.max.replace(
            tzinfo=UTC))):
        since = at.get(hop.after) if hop.after else None
        delay = None if hop.at is None or since is None else round(
            (hop.at - since).total_seconds() * 1000, 1)
        rows.append({"step": hop.step, "service": hop.service,
                     "at": hop.at.isoformat() if hop.at else None, "delay_ms": delay,
                     "after": hop.after, "detail": hop.detail})
    return rows


def render(uuid: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"signup {uuid}"]
    for row in rows:
        delay = "" if row["delay_ms"] is None else f"+{row['delay_ms']:.1f} ms"
        lines.append(f"  {row['at'] or '-':<34} {delay:>12}  {row['service']:<7} "
                     f"{row['step']}  {row['detail']}".rstrip())
    return "\n".join(lines)


async def _rows(url: str, model: type[Any], where: Any) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(table_of(model)).where(where))).all())
    except Exception as exc:  # a service that never ran has no tables yet
        if no_such_table(exc):
            return []
        raise
    finally:
        await engine.dispose()


async def resolve(settings: Settings, who: str) -> str | None:
    """The member uuid of ``who`` (a uuid, or the email of an account)."""
    if "@" not in who:
        return who.lower()
    members = table_of(schema.Member)
    found = await _rows(settings.database_url("auth"), schema.Member,
                        members.c.email == who.strip().lower())
    return found[0].uuid if found else None


async def _records(settings: Settings, topic: str, uuid: str) -> list[Any]:
    partition = partition_for(uuid, settings.partitions)
    records = await read_topic(settings.kafka("reader"), topic, [partition])
    return [r for r in records if r.key == uuid.encode()]


async def collect(settings: Settings, uuid: str) -> list[Hop]:
    """Every trace of ``uuid`` in the databases and topics."""
    hops: list[Hop] = []
    members, outbox = table_of(schema.Member), table_of(schema.OutboxEvent)
    for m in await _rows(settings.database_url("auth"), schema.Member, members.c.uuid == uuid):
        hops.append(Hop("accepted", "auth", instant(m.created_at), f"role {m.role}"))
    for o in await _rows(settings.database_url("auth"), schema.OutboxEvent, outbox.c.key == uuid):
        if o.published_at is None:
            hops.append(Hop("waiting in the outbox", "auth", None, f"outbox row {o.id}"))
        else:  # marked once the broker acknowledged the record
            hops.append(Hop("outbox published", "auth", instant(o.published_at),
                            f"outbox row {o.id}", after="profile-insert record"))
    for topic, service, after in ((PROFILE_INSERT, "auth", "accepted"),
                                  (PARTNER_CREATED, "member", "partner profile stored")):
        for r in await _records(settings, topic, uuid):
            hops.append(Hop(f"{topic} record", service,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{topic}[{r.partition}]@{r.offset}", after=after))
    for model, kind in ((schema.UserProfile, "user"), (schema.PartnerProfile, "partner")):
        table = table_of(model)
        for p in await _rows(settings.database_url("member"), model, table.c.uuid == uuid):
            hops.append(Hop(f"{kind} profile stored", "member", instant(p.stored_at),
                            f"nickname {p.nickname!r}", after="profile-insert record"))
    summaries = table_of(schema.PartnerSummaryRow)
    for s in await _rows(settings.database_url("batch"), schema.PartnerSummaryRow,
                         summaries.c.partner_id == uuid):
        hops.append(Hop("partner summary stored", "batch", instant(s.summarized_at),
                        f"style_count {s.style_count}", after="partner-created record"))
    for topic in (PROFILE_INSERT, PARTNER_CREATED):
        for r in await _records(settings, dlq_topic(topic), uuid):
            letter = DeadLetter.from_headers(r.key, r.value, r.headers)
            hops.append(Hop("dead letter", letter.stage,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{letter.source_topic}[{letter.source_partition}]@"
                            f"{letter.source_offset}: {letter.error}", after=f"{topic} record"))
    return hops
