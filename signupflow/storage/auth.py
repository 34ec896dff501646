"""auth.db: accounts and the transactional outbox.

Every write of an account (signup, profile change, deletion) and the outbox row of its event
commit in one transaction. A change or deletion first bumps the member's ``version`` (``UPDATE
... SET version = version + 1 ... RETURNING``): on PostgreSQL that takes the member row's lock,
so concurrent writes of one member queue up and get consecutive versions, and each inserts its
outbox row only after the previous one committed. One member's outbox ids therefore increase
with its versions, and publishing in id order is publishing in version order.

Publishing in id order across auth workers that share a PostgreSQL outbox takes one relay at a
time: ``publish_pending`` holds a transaction-scoped advisory lock (``RELAY_LOCK``) from the
moment it selects the pending rows until it marked them published. A second relay that finds
the lock taken publishes nothing (it stands by and tries again); a relay that dies loses the
lock with its connection (its transaction is rolled back), and the next one takes over from the
oldest row still pending. Row locks alone (``FOR UPDATE SKIP LOCKED``, until issue 20) let two
relays take two batches at once, and the later batch could reach the broker first
(docs/decisions/one-relay-at-a-time.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import transaction
from signupflow.domain.account import (
    ProfileChange,
    changed_event,
    changed_profile,
    deleted_event,
    styles_json,
)
from signupflow.domain.signup import Signup
from signupflow.models.db import Member, OutboxEvent, table_of
from signupflow.models.events import (
    MemberDeleted,
    MemberEvent,
    ProfileChanged,
    ProfileInsert,
    Role,
)
from signupflow.storage.errors import AccountGone, EmailTaken, translated
from signupflow.topics import PROFILE_INSERT

MEMBERS = table_of(Member)
OUTBOX = table_of(OutboxEvent)
#: The PostgreSQL advisory lock the publishing relay holds: any bigint no other lock on the
#: database uses.
RELAY_LOCK = 2_026_020_001
#: What a deletion erases: every personal column, and the public profile.
ERASED = ("email", "password_hash", "name", "phone", "birth", "gender", "nickname",
          "favorite_styles")


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
        "nickname": signup.nickname, "favorite_styles": styles_json(signup.favorite_styles),
        "version": event.version,
    }

    def store(conn: Connection) -> None:
        try:
            conn.execute(MEMBERS.insert(), member)
        except IntegrityError:
            # The uuid is fresh and random: the one unique value a new account can clash on
            # is its email, so no need to parse the driver's message. (A deleted account keeps
            # its row, uuid included: an insert of its uuid is refused here too, so nothing
            # brings a deleted uuid back.)
            raise EmailTaken(signup.email) from None
        conn.execute(OUTBOX.insert(), _outbox_row(event, now, traceparent))

    with translated():
        await transaction(engine, store)


def _outbox_row(event: MemberEvent, now: datetime, traceparent: str | None) -> dict[str, Any]:
    return {"topic": PROFILE_INSERT, "key": event.uuid, "payload": event.dumps(),
            "created_at": now, "published_at": None, "traceparent": traceparent}


@dataclass(frozen=True)
class AccountKey:
    """What checking an account's credentials needs."""

    uuid: str
    password_hash: str

    def __repr__(self) -> str:  # not even the hash in a log
        return f"AccountKey(uuid={self.uuid!r})"


async def find_account(engine: AsyncEngine, email: str) -> AccountKey | None:
    """The live account with this email (as signup stored it: lower case), if any. A deleted
    account has no email left, so it is never found."""
    query = select(MEMBERS.c.uuid, MEMBERS.c.password_hash).where(
        MEMBERS.c.email == email, MEMBERS.c.deleted_at.is_(None))
    with translated():
        async with engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
    if row is None or row.password_hash is None:
        return None
    return AccountKey(row.uuid, row.password_hash)


def _next_version(conn: Connection, member_uuid: str, **values: Any) -> Any:
    """Bump the live member's version (and set ``values``), returning the row after it; the
    first statement of the transaction, so it takes the member's row lock (PostgreSQL) or
    the write lock (SQLite) before anything is read. :class:`AccountGone` if none."""
    row = conn.execute(
        update(MEMBERS)
        .where(MEMBERS.c.uuid == member_uuid, MEMBERS.c.deleted_at.is_(None))
        .values(version=MEMBERS.c.version + 1, **values)
        .returning(MEMBERS.c.version, MEMBERS.c.role, MEMBERS.c.nickname,
                   MEMBERS.c.favorite_styles)).one_or_none()
    if row is None:
        raise AccountGone(member_uuid)
    return row


async def change_profile(
    engine: AsyncEngine, member_uuid: str, change: ProfileChange, now: datetime,
    traceparent: str | None = None,
) -> ProfileChanged:
    """Apply ``change`` to the live account and store its ``ProfileChanged`` (the whole
    profile, the new version) in the outbox, in one transaction; returns the event.

    :class:`AccountGone` if the account is deleted (or never was); ProfileUnknown (nothing
    written) if it predates stored profiles and ``change`` does not give all of it.
    """

    def store(conn: Connection) -> ProfileChanged:
        row = _next_version(conn, member_uuid)
        profile = changed_profile(row.nickname, row.favorite_styles, change)
        conn.execute(update(MEMBERS).where(MEMBERS.c.uuid == member_uuid).values(
            nickname=profile.nickname, favorite_styles=styles_json(profile.favorite_styles)))
        event = changed_event(member_uuid, row.version, cast(Role, row.role), profile, now)
        conn.execute(OUTBOX.insert(), _outbox_row(event, now, traceparent))
        return event

    with translated():
        return await transaction(engine, store)


async def delete_account(
    engine: AsyncEngine, member_uuid: str, now: datetime, traceparent: str | None = None,
) -> MemberDeleted:
    """Erase the live account's personal data and public profile (:data:`ERASED`), mark it
    deleted and store its ``MemberDeleted`` in the outbox, in one transaction; returns the
    event. What stays: uuid, role, version, created_at, deleted_at. :class:`AccountGone` if
    it is deleted already (or never was)."""

    def store(conn: Connection) -> MemberDeleted:
        row = _next_version(conn, member_uuid, deleted_at=now,
                            **dict.fromkeys(ERASED))
        event = deleted_event(member_uuid, row.version, cast(Role, row.role), now)
        conn.execute(OUTBOX.insert(), _outbox_row(event, now, traceparent))
        return event

    with translated():
        return await transaction(engine, store)


async def publish_pending(
    engine: AsyncEngine, limit: int, publish: Callable[[list[PendingEvent]], Awaitable[None]],
) -> int | None:
    """Publish up to ``limit`` unpublished outbox rows, oldest first, and mark them published;
    returns how many, or None if another relay is publishing now (nothing done).

    ``publish`` must return only once the broker has acknowledged every event; the rows are
    marked in the same transaction that selected them, so a crash before the commit leaves
    them pending (published again later: at-least-once). On PostgreSQL that transaction first
    takes the advisory lock :data:`RELAY_LOCK` (``pg_try_advisory_xact_lock``), so auth workers
    sharing one database publish one after the other, each from the oldest pending row: one
    member's events leave in id order (the module docstring says why that is version order).
    (SQLite has no advisory locks; there each auth worker has its own database file and one
    relay.)
    """
    query = (select(OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload,
                    OUTBOX.c.traceparent)
             .where(OUTBOX.c.published_at.is_(None)).order_by(OUTBOX.c.id).limit(limit))
    with translated():
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql" and not (await conn.execute(
                    select(func.pg_try_advisory_xact_lock(RELAY_LOCK)))).scalar_one():
                return None
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
