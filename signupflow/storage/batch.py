"""batch.db: the persisted copy of the partner-summary table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import transaction, upsert
from signupflow.models.db import PartnerSummaryRow, table_of
from signupflow.models.events import PartnerSummary
from signupflow.storage.errors import translated

SUMMARIES = table_of(PartnerSummaryRow)


async def save_summaries(
    engine: AsyncEngine, summaries: Sequence[PartnerSummary]
) -> dict[int, str]:
    """Upsert summaries by partner_id: writing the same summary twice changes nothing.

    Refuses none itself (conflicts are found against the table first): returns ``{}``.
    """
    if not summaries:
        return {}
    rows = [{
        "partner_id": s.partner_id, "nickname": s.nickname, "style_count": s.style_count,
        "joined_at": datetime.fromisoformat(s.joined_at),
        "summarized_at": datetime.fromisoformat(s.summarized_at),
    } for s in summaries]
    with translated():
        await transaction(engine, lambda conn: conn.execute(
            upsert(SUMMARIES, conn.dialect.name, ["partner_id"]), rows))
    return {}


async def load_summaries(engine: AsyncEngine) -> list[PartnerSummaryRow]:
    with translated():
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(SUMMARIES).order_by(SUMMARIES.c.partner_id))).all()
    return [PartnerSummaryRow(**row._mapping) for row in rows]
