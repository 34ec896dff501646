"""``signupflow trace UUID|EMAIL``: where one signup is, hop by hop, with the delay of each.

Built from the system's own data (auth's outbox, the topics, member's and batch's rows, the
dead-letter topics), so it works without any tracing backend. Like ``verify``, an operator's
tool: the one other place allowed to read every service's data. :func:`timeline` is pure;
:func:`collect` does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


#: The flow's order of steps, which breaks ties between hops of the same millisecond (the
#: profile steps are either user or partner).
ORDER = ("accepted", "profile-insert record", "outbox published", "waiting in the outbox",
         "user profile stored", "partner profile stored", "partner-created record",
         "partner summary stored", "dead letter")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(at: datetime) -> int:
    """Whole milliseconds since the epoch: Kafka's record timestamps have no finer grain, so
    every hop is compared at that grain (a record of the acceptance's millisecond must not
    come before it)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def timeline(hops: list[Hop]) -> list[dict[str, Any]]:
    """The hops in time order (hops with no time last), each with the milliseconds since the
    signup was accepted (or, without an acceptance, since the first hop) and since the hop
    before it."""
    timed = sorted(((_ms(h.at), h) for h in hops if h.at is not None),
                   key=lambda t: (t[0], ORDER.index(t[1].step)))
    start = next((ms for ms, h in timed if h.step == "accepted"), timed[0][0] if timed else 0)
    untimed: list[tuple[int | None, Hop]] = [(None, h) for h in hops if h.at is None]
    rows: list[dict[str, Any]] = []
    previous: int | None = None
    for ms, hop in [*timed, *untimed]:
        rows.append({"step": hop.step, "service": hop.service,
                     "at": hop.at.isoformat(timespec="milliseconds") if hop.at else None,
                     "since_signup_ms": None if ms is None else ms - start,
                     "since_previous_ms": None if ms is None or previous is None
                     else ms - previous,
                     "detail": hop.detail})
        previous = ms
    return rows


def _delay(ms: int | None) -> str:
    return "-" if ms is None else f"+{ms} ms"


def render(uuid: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"signup {uuid}",
             f"  {'at (UTC)':<29} {'from signup':>12} {'from previous':>14}  "
             f"{'service':<7} step  detail"]
    for row in rows:
        lines.append(f"  {row['at'] or '-':<29} {_delay(row['since_signup_ms']):>12} "
                     f"{_delay(row['since_previous_ms']):>14}  {row['service']:<7} "
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
                            f"outbox row {o.id}"))
    for topic, service in ((PROFILE_INSERT, "auth"), (PARTNER_CREATED, "member")):
        for r in await _records(settings, topic, uuid):
            hops.append(Hop(f"{topic} record", service,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{topic}[{r.partition}]@{r.offset}"))
    for model, kind in ((schema.UserProfile, "user"), (schema.PartnerProfile, "partner")):
        table = table_of(model)
        for p in await _rows(settings.database_url("member"), model, table.c.uuid == uuid):
            hops.append(Hop(f"{kind} profile stored", "member", instant(p.stored_at),
                            f"nickname {p.nickname!r}"))
    summaries = table_of(schema.PartnerSummaryRow)
    for s in await _rows(settings.database_url("batch"), schema.PartnerSummaryRow,
                         summaries.c.partner_id == uuid):
        hops.append(Hop("partner summary stored", "batch", instant(s.summarized_at),
                        f"style_count {s.style_count}"))
    for topic in (PROFILE_INSERT, PARTNER_CREATED):
        for r in await _records(settings, dlq_topic(topic), uuid):
            letter = DeadLetter.from_headers(r.key, r.value, r.headers)
            hops.append(Hop("dead letter", letter.stage,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{letter.source_topic}[{letter.source_partition}]@"
                            f"{letter.source_offset}: {letter.error}"))
    return hops
