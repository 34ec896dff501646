"""auth.db: accounts and the transactional outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import transaction
from signupflow.domain.signup import Signup
from signupflow.models.db import Member, OutboxEvent, table_of
from signupflow.models.events import ProfileInsert
from signupflow.storage.errors import EmailTaken, translated
from signupflow.topics import PROFILE_INSERT

MEMBERS = table_of(Member)
OUTBOX = table_of(OutboxEvent)


@dataclass(frozen=True)
class PendingEvent:
    id: int
    topic: str
    key: bytes
    payload: bytes
    traceparent: str | None = None


async def register(
    engine: AsyncEngine, signup: Signup, password_hash: str, event: ProfileInsert, now: datetime,
    traceparent: str | None = None,
) -> None:
    """Store the account and its ``profile-insert`` event in one transaction (the outbox).

    Either both exist or neither does, so an account can never lack its profile event. On
    SQLite the transaction is one call on a worker thread (:func:`signupflow.db.transaction`):
    its write lock is never held across turns of the event loop, which a flood of requests
    can make long (a run with 400 clients saw other writers time out on that lock).
    """
    member = {
        "uuid": event.uuid, "email": signup.email, "password_hash": password_hash,
        "name": signup.name, "phone": signup.phone, "birth": signup.birth,
        "gender": signup.gender, "role": signup.role, "created_at": now,
    }
    outbox = {"topic": PROFILE_INSERT, "key": event.uuid, "payload": event.dumps(),
              "created_at": now, "published_at": None, "traceparent": traceparent}

    def store(conn: Connection) -> None:
        try:
            conn.execute(MEMBERS.insert(), member)
        except IntegrityError:
            # The uuid is fresh and random: the one unique value a new account can clash on
            # is its email, so no need to parse the driver's message.
            raise EmailTaken(signup.email) from None
        conn.execute(OUTBOX.insert(), outbox)

    with translated():
        await transaction(engine, store)


async def publish_pending(
    engine: AsyncEngine, limit: int, publish: Callable[[list[PendingEvent]], Awaitable[None]],
) -> int:
    """Publish up to ``limit`` unpublished outbox rows, oldest first, and mark them published.

    ``publish`` must return only once the broker has acknowledged every event; the rows are
    marked in the same transaction that selected them, so a crash before the commit leaves
    them pending (published again later: at-least-once). On PostgreSQL the rows are locked
    with ``FOR UPDATE SKIP LOCKED`` until then, so auth workers sharing one database each
    publish different rows instead of the same ones twice. (SQLite has no row locks and
    ignores the clause; there each auth worker has its own database file.)
    """
    query = (select(OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload,
                    OUTBOX.c.traceparent)
             .where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id).limit(limit)
             .with_for_update(skip_locked=True))
    with translated():
        async with engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            await publish([PendingEvent(r.id, r.topic, r.key.encode(), r.payload, r.traceparent)
                           for r in rows])
            await conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows]))
                               .values(published_at=datetime.now(UTC)))
    return len(rows)


async def delete_published(engine: AsyncEngine, older_than: datetime, limit: int) -> int:
    """Delete up to ``limit`` outbox rows published before ``older_than`` (aware), the longest
    published first; returns how many. Pending rows are never deleted, whatever their age: they
    are events not yet sent.

    The publish time, not the creation time, is what ages: a row that waited long in the
    outbox (relay off, broker down) is still kept for the whole retention once published.
    One statement per batch (``DELETE ... WHERE id IN (SELECT ... LIMIT)``: SQLite has no
    ``DELETE ... LIMIT``), so the write lock is held only briefly. On PostgreSQL the batch's
    rows are locked with ``FOR UPDATE SKIP LOCKED``: auth workers sharing one database each
    delete other rows instead of waiting for one another's locks.
    """
    expired = (select(OUTBOX.c.id)
               .where(OUTBOX.c.published_at.is_not(None), OUTBOX.c.published_at < older_than)
               .order_by(OUTBOX.c.published_at).limit(limit)
               .with_for_update(skip_locked=True))
    with translated():
        async with engine.begin() as conn:
            result = await conn.execute(delete(OUTBOX).where(OUTBOX.c.id.in_(expired)))
    return int(result.rowcount)


async def pending_outbox(engine: AsyncEngine, now: datetime) -> tuple[int, float]:
    """How many outbox events wait to be published, and the age in seconds of the oldest."""
    query = select(func.count(), func.min(OUTBOX.c.created_at)).where(
        OUTBOX.c.published_at.is_(None))
    with translated():
        async with engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
    if not count or oldest is None:
        return 0, 0.0
    created = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    return int(count), max((now - created).total_seconds(), 0.0)


async def count_members(engine: AsyncEngine) -> int:
    with translated():
        async with engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(MEMBERS))).scalar_one())
