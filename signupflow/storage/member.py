"""member.db: user and partner profiles and their favourite styles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from signupflow.db import insert_ignore
from signupflow.domain.reuse import Fingerprint, conflict
from signupflow.models.db import FavoriteStyle, PartnerProfile, UserProfile, table_of
from signupflow.models.events import ProfileInsert
from signupflow.storage.errors import translated

USERS = table_of(UserProfile)
PARTNERS = table_of(PartnerProfile)
STYLES = table_of(FavoriteStyle)


def fingerprint(p: ProfileInsert) -> Fingerprint:
    return Fingerprint.of(p.role, p.nickname, p.favorite_styles, p.occurred_at)


async def save_profiles(engine: AsyncEngine, profiles: Sequence[ProfileInsert]) -> dict[int, str]:
    """Write a batch of profiles in one transaction; returns the refused ones by index, with
    the reason.

    A profile whose uuid is already stored (or earlier in the batch) with the same content is
    a redelivery and changes nothing; with other content (role, nickname, styles, time) it is
    a conflicting reuse of the uuid and is refused, so a uuid can never be both a user and a
    partner. Keyed inserts that ignore conflicts keep concurrent writers of one uuid safe too.
    """
    refused: dict[int, str] = {}
    users: list[dict[str, object]] = []
    partners: list[dict[str, object]] = []
    styles: list[dict[str, object]] = []
    now = datetime.now(UTC)
    with translated():
        async with engine.begin() as conn:
            known = await _stored(conn, {p.uuid for p in profiles})
            for i, p in enumerate(profiles):
                mine = fingerprint(p)
                if p.uuid in known:
                    reason = conflict(p.uuid, known[p.uuid], mine)
                    if reason is not None:
                        refused[i] = reason
                    continue
                known[p.uuid] = mine
                row = {"uuid": p.uuid, "nickname": p.nickname,
                       "joined_at": mine.occurred_at, "stored_at": now}
                (partners if p.role == "PARTNER" else users).append(row)
                styles.extend({"uuid": p.uuid, "style_id": s} for s in p.favorite_styles)
            dialect = engine.dialect.name
            for table, rows in ((USERS, users), (PARTNERS, partners), (STYLES, styles)):
                if rows:
                    await conn.execute(insert_ignore(table, dialect), rows)
    return refused


async def _stored(conn: AsyncConnection, uuids: set[str]) -> dict[str, Fingerprint]:
    """The fingerprints of the profiles stored under ``uuids``.

    Profiles first, then their styles: each statement reads what was committed when it began
    (SQLite before the write lock, PostgreSQL's read committed), so a profile seen has its
    styles committed too. Read the other way round, a concurrent writer's commit in between
    showed its profile without styles: a false conflicting reuse (two writers of one batch).
    """
    found: dict[str, Fingerprint] = {}
    if not uuids:
        return found
    profiles: dict[str, tuple[str, Any]] = {}
    for kind, table in (("USER", USERS), ("PARTNER", PARTNERS)):
        for row in await conn.execute(select(table).where(table.c.uuid.in_(uuids))):
            profiles[row.uuid] = (kind, row)
    if not profiles:
        return found
    styles: dict[str, set[int]] = {}
    for row in await conn.execute(select(STYLES).where(STYLES.c.uuid.in_(profiles))):
        styles.setdefault(row.uuid, set()).add(row.style_id)
    for uuid, (kind, row) in profiles.items():
        found[uuid] = Fingerprint.of(kind, row.nickname, styles.get(uuid, ()), row.joined_at)
    return found
