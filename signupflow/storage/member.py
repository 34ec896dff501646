"""member.db: user and partner profiles and their favourite styles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import insert_ignore
from signupflow.models.db import FavoriteStyle, PartnerProfile, UserProfile
from signupflow.models.events import ProfileInsert

USERS = UserProfile.__table__  # type: ignore[attr-defined]
PARTNERS = PartnerProfile.__table__  # type: ignore[attr-defined]
STYLES = FavoriteStyle.__table__  # type: ignore[attr-defined]


async def save_profiles(engine: AsyncEngine, profiles: Sequence[ProfileInsert]) -> None:
    """Write a batch of profiles in one transaction; rows that exist already are left alone.

    Keyed inserts (uuid, and (uuid, style_id)) make a redelivered event a no-op.
    """
    users, partners, styles = [], [], []
    now = datetime.now(UTC)
    for p in profiles:
        row = {"uuid": p.uuid, "nickname": p.nickname,
               "joined_at": datetime.fromisoformat(p.occurred_at), "stored_at": now}
        (partners if p.role == "PARTNER" else users).append(row)
        styles.extend({"uuid": p.uuid, "style_id": s} for s in p.favorite_styles)
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        for table, rows in ((USERS, users), (PARTNERS, partners), (STYLES, styles)):
            if rows:
                await conn.execute(insert_ignore(table, dialect), rows)
