"""auth.db: accounts and the transactional outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.domain.signup import Signup
from signupflow.models.db import Member, OutboxEvent
from signupflow.models.events import ProfileInsert
from signupflow.topics import PROFILE_INSERT

MEMBERS = Member.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxEvent.__table__  # type: ignore[attr-defined]


class EmailTaken(Exception):
    """Another account already uses this email."""


@dataclass(frozen=True)
class PendingEvent:
    id: int
    topic: str
    key: bytes
    payload: bytes


async def register(
    engine: AsyncEngine, signup: Signup, password_hash: str, event: ProfileInsert, now: datetime
) -> None:
    """Store the account and its ``profile-insert`` event in one transaction (the outbox).

    Either both exist or neither does, so an account can never lack its profile event.
    """
    member = {
        "uuid": event.uuid, "email": signup.email, "password_hash": password_hash,
        "name": signup.name, "phone": signup.phone, "birth": signup.birth,
        "gender": signup.gender, "role": signup.role, "created_at": now,
    }
    outbox = {"topic": PROFILE_INSERT, "key": event.uuid, "payload": event.dumps(),
              "created_at": now, "published_at": None}
    try:
        async with engine.begin() as conn:
            await conn.execute(MEMBERS.insert(), member)
            await conn.execute(OUTBOX.insert(), outbox)
    except IntegrityError as exc:
        if "email" in str(exc.orig).lower():
            raise EmailTaken(signup.email) from None
        raise


async def pending_events(engine: AsyncEngine, limit: int) -> list[PendingEvent]:
    """Unpublished outbox rows, oldest first (the order they were committed in)."""
    query = (select(OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload)
             .where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id).limit(limit))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [PendingEvent(r.id, r.topic, r.key.encode(), r.payload) for r in rows]


async def mark_published(engine: AsyncEngine, ids: list[int], now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(published_at=now))


async def count_members(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(MEMBERS))).scalar_one())
