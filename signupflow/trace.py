"""``signupflow trace UUID|EMAIL``: a member's whole life, event by event, hop by hop, with
the delay of each, and what each database holds of it now.

Built from the system's own data (auth's account and outbox, the topics, member's and batch's
rows, tombstones and skipped events, the dead-letter topics), so it works without any tracing
backend. Like ``verify``, an operator's tool: the one other place allowed to read every
service's data. :func:`timeline` is pure; :func:`collect` does the reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from signupflow.db import make_engine, no_such_table
from signupflow.dlq import DeadLetter
from signupflow.domain.decode import InvalidEvent, decode_member_event, decode_partner_event
from signupflow.domain.reuse import instant
from signupflow.models import db as schema
from signupflow.models.db import table_of
from signupflow.settings import SERVICES, Settings
from signupflow.topic_reader import read_topic
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic, partition_for
from signupflow.verify import PERSONAL


@dataclass(frozen=True)
class Hop:
    """One step of a member's life: what happened, in which service, when, and where; the
    ``kind`` and ``version`` of the event it is a step of, where known. A hop of step
    ``state`` (no time) is what a database holds now."""

    step: str
    service: str
    at: datetime | None
    detail: str = ""
    kind: str = ""
    version: int | None = None


STATE = "state"
#: The flow's order of steps, which breaks ties between hops of the same millisecond and
#: version (the profile steps are either user or partner).
ORDER = ("accepted", "outbox row written", "account deleted", "profile-insert record",
         "outbox published", "waiting in the outbox", "user profile stored",
         "partner profile stored", "member tombstone", "event skipped",
         "partner-created record", "partner summary stored", "partner tombstone", "dead letter",
         STATE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(at: datetime) -> int:
    """Whole milliseconds since the epoch: Kafka's record timestamps have no finer grain, so
    every hop is compared at that grain (a record of the acceptance's millisecond must not
    come before it)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _tie(hop: Hop) -> tuple[int, int]:
    """Within one millisecond: the older event first, then the flow's order."""
    return (hop.version or 0, ORDER.index(hop.step))


def _untimed(hop: Hop) -> tuple[bool, int, int, int]:
    """Hops with no time: events waiting by version, then the state, auth to batch."""
    state = hop.step == STATE
    return (state, SERVICES.index(hop.service) if state else 0, *_tie(hop))


def timeline(hops: list[Hop]) -> list[dict[str, Any]]:
    """The hops in time order (hops with no time after them, by version, and what the
    databases hold now last), each with the milliseconds since the signup was accepted (or,
    without an acceptance, since the first hop) and since the hop before it."""
    timed = sorted(((_ms(h.at), h) for h in hops if h.at is not None),
                   key=lambda t: (t[0], *_tie(t[1])))
    start = next((ms for ms, h in timed if h.step == "accepted"), timed[0][0] if timed else 0)
    untimed: list[tuple[int | None, Hop]] = [
        (None, h) for h in sorted((h for h in hops if h.at is None), key=_untimed)]
    rows: list[dict[str, Any]] = []
    previous: int | None = None
    for ms, hop in [*timed, *untimed]:
        rows.append({"step": hop.step, "service": hop.service, "kind": hop.kind,
                     "version": hop.version,
                     "at": hop.at.isoformat(timespec="milliseconds") if hop.at else None,
                     "since_signup_ms": None if ms is None else ms - start,
                     "since_previous_ms": None if ms is None or previous is None
                     else ms - previous,
                     "detail": hop.detail})
        previous = ms
    return rows


def _delay(ms: int | None) -> str:
    return "-" if ms is None else f"+{ms} ms"


def _event(row: dict[str, Any]) -> str:
    """``changed v2``: the event a hop is a step of, where known."""
    version = "" if row["version"] is None else f"v{row['version']}"
    return " ".join(part for part in (row["kind"], version) if part)


def render(uuid: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"member {uuid}",
             f"  {'at (UTC)':<29} {'from signup':>12} {'from previous':>14}  "
             f"{'service':<7} {'event':<11} step  detail"]
    now = [row for row in rows if row["step"] == STATE]
    for row in rows:
        if row["step"] != STATE:
            lines.append(f"  {row['at'] or '-':<29} {_delay(row['since_signup_ms']):>12} "
                         f"{_delay(row['since_previous_ms']):>14}  {row['service']:<7} "
                         f"{_event(row) or '-':<11} {row['step']}  {row['detail']}".rstrip())
    if now:
        lines.append("now")
        lines.extend(f"  {row['service']:<7} {row['detail']}" for row in now)
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


def _kind_version(topic: str, key: bytes | None, value: bytes | None) -> tuple[str, int | None]:
    """The kind and version of an event of ``topic`` (``profile-insert`` or
    ``partner-created``, or their dead letters), or why it cannot be read."""
    decode = decode_partner_event if topic.startswith(PARTNER_CREATED) else decode_member_event
    try:
        event = decode(key, value, 2**20)
    except InvalidEvent:
        return "unreadable", None
    return event.kind, event.version


def _account(m: Any) -> list[Hop]:
    """The account's hops and its state in auth.db."""
    hops = [Hop("accepted", "auth", instant(m.created_at), f"role {m.role}", "created", 1)]
    styles = json.loads(m.favorite_styles) if m.favorite_styles is not None else None
    profile = f", nickname {m.nickname!r}, styles {styles}" if m.nickname is not None else ""
    if m.deleted_at is None:
        return [*hops, Hop(STATE, "auth", None, f"account v{m.version}, {m.role}{profile}",
                           version=m.version)]
    left = [c for c in PERSONAL if getattr(m, c) is not None]
    erased = f"personal data LEFT: {', '.join(left)}" if left else "personal data erased"
    return [*hops, Hop("account deleted", "auth", instant(m.deleted_at), erased, "deleted",
                       m.version),
            Hop(STATE, "auth", None, f"account v{m.version}, {m.role}, deleted at "
                f"{instant(m.deleted_at).isoformat()}, {erased}", version=m.version)]


def _outbox(o: Any) -> list[Hop]:
    kind, version = _kind_version(o.topic, o.key.encode(), o.payload)
    where = f"outbox row {o.id}"
    written = Hop("outbox row written", "auth", instant(o.created_at), where, kind, version)
    if o.published_at is None:
        return [written, Hop("waiting in the outbox", "auth", None, where, kind, version)]
    # marked once the broker acknowledged the record
    return [written, Hop("outbox published", "auth", instant(o.published_at), where, kind,
                         version)]


async def _auth(settings: Settings, uuid: str) -> list[Hop]:
    members, outbox = table_of(schema.Member), table_of(schema.OutboxEvent)
    url = settings.database_url("auth")
    hops: list[Hop] = []
    for m in await _rows(url, schema.Member, members.c.uuid == uuid):
        hops.extend(_account(m))
    for o in await _rows(url, schema.OutboxEvent, outbox.c.key == uuid):
        hops.extend(_outbox(o))
    return hops


async def _member(settings: Settings, uuid: str) -> list[Hop]:
    url = settings.database_url("member")
    hops: list[Hop] = []
    styles = sorted(r.style_id for r in await _rows(
        url, schema.FavoriteStyle, table_of(schema.FavoriteStyle).c.uuid == uuid))
    for model, kind in ((schema.UserProfile, "user"), (schema.PartnerProfile, "partner")):
        for p in await _rows(url, model, table_of(model).c.uuid == uuid):
            hops.append(Hop(f"{kind} profile stored", "member", instant(p.stored_at),
                            f"nickname {p.nickname!r}", version=p.version))
            hops.append(Hop(STATE, "member", None, f"{kind} profile v{p.version}, nickname "
                            f"{p.nickname!r}, styles {styles}", version=p.version))
    for t in await _rows(url, schema.MemberTombstone,
                         table_of(schema.MemberTombstone).c.uuid == uuid):
        hops.append(Hop("member tombstone", "member", instant(t.deleted_at), f"role {t.role}",
                        "deleted", t.version))
        hops.append(Hop(STATE, "member", None, f"tombstone v{t.version}", version=t.version))
    for k in await _rows(url, schema.SkippedEvent, table_of(schema.SkippedEvent).c.uuid == uuid):
        hops.append(Hop("event skipped", "member", instant(k.recorded_at), k.reason, k.kind,
                        k.version))
    if not any(h.step == STATE for h in hops):
        hops.append(Hop(STATE, "member", None, "no profile"))
    return hops


async def _batch(settings: Settings, uuid: str) -> list[Hop]:
    url = settings.database_url("batch")
    hops: list[Hop] = []
    for s in await _rows(url, schema.PartnerSummaryRow,
                         table_of(schema.PartnerSummaryRow).c.partner_id == uuid):
        hops.append(Hop("partner summary stored", "batch", instant(s.summarized_at),
                        f"style_count {s.style_count}", version=s.version))
        hops.append(Hop(STATE, "batch", None, f"summary v{s.version}, nickname "
                        f"{s.nickname!r}, style_count {s.style_count}", version=s.version))
    for t in await _rows(url, schema.PartnerTombstone,
                         table_of(schema.PartnerTombstone).c.partner_id == uuid):
        hops.append(Hop("partner tombstone", "batch", instant(t.deleted_at), "", "deleted",
                        t.version))
        hops.append(Hop(STATE, "batch", None, f"tombstone v{t.version}", version=t.version))
    if not any(h.step == STATE for h in hops):
        hops.append(Hop(STATE, "batch", None, "no summary"))
    return hops


async def _topics(settings: Settings, uuid: str) -> list[Hop]:
    hops: list[Hop] = []
    for topic, service in ((PROFILE_INSERT, "auth"), (PARTNER_CREATED, "member")):
        for r in await _records(settings, topic, uuid):
            kind, version = _kind_version(topic, r.key, r.value)
            hops.append(Hop(f"{topic} record", service,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{topic}[{r.partition}]@{r.offset}", kind, version))
    for topic in (PROFILE_INSERT, PARTNER_CREATED):
        for r in await _records(settings, dlq_topic(topic), uuid):
            letter = DeadLetter.from_headers(r.key, r.value, r.headers)
            kind, version = _kind_version(topic, r.key, r.value)
            hops.append(Hop("dead letter", letter.stage,
                            datetime.fromtimestamp(r.timestamp / 1000, UTC),
                            f"{letter.source_topic}[{letter.source_partition}]@"
                            f"{letter.source_offset}: {letter.error}", kind, version))
    return hops


async def collect(settings: Settings, uuid: str) -> list[Hop]:
    """Every trace of ``uuid`` in the databases and topics; nothing if no service knows it."""
    hops = [*await _auth(settings, uuid), *await _member(settings, uuid),
            *await _batch(settings, uuid), *await _topics(settings, uuid)]
    if all(h.step == STATE and h.detail in ("no profile", "no summary") for h in hops):
        return []
    return hops
