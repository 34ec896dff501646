"""batch.db: the persisted copy of the partner-summary table, and the deleted partners'
tombstones."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import transaction, upsert
from signupflow.models.db import PartnerSummaryRow, PartnerTombstone, table_of
from signupflow.models.events import PartnerSummary
from signupflow.storage.errors import translated

SUMMARIES = table_of(PartnerSummaryRow)
TOMBSTONES = table_of(PartnerTombstone)
#: A partner deleted at a version: (partner_id, version).
Deletion = tuple[str, int]


async def save_summaries(
    engine: AsyncEngine, summaries: Sequence[PartnerSummary | Deletion]
) -> dict[int, str]:
    """Upsert summaries by partner_id, or delete a partner's row and keep its tombstone, in
    one transaction. Each write is guarded by version (an older one changes nothing), so
    writing the same summary twice changes nothing, and two writers cannot step one back.

    Refuses none itself (conflicts are found against the table first): returns ``{}``.
    """
    if summaries:
        with translated():
            await transaction(engine, lambda conn: _write(conn, summaries))
    return {}


def _write(conn: Connection, writes: Sequence[PartnerSummary | Deletion]) -> None:
    dialect = conn.dialect.name
    now = datetime.now(UTC)
    for w in writes:
        if isinstance(w, PartnerSummary):
            conn.execute(upsert(SUMMARIES, dialect, ["partner_id"], newer="version"), {
                "partner_id": w.partner_id, "nickname": w.nickname,
                "style_count": w.style_count, "joined_at": datetime.fromisoformat(w.joined_at),
                "summarized_at": datetime.fromisoformat(w.summarized_at),
                "version": w.version})
        else:
            partner_id, version = w
            conn.execute(upsert(TOMBSTONES, dialect, ["partner_id"], newer="version"), {
                "partner_id": partner_id, "version": version, "deleted_at": now})
            conn.execute(delete(SUMMARIES).where(SUMMARIES.c.partner_id == partner_id,
                                                 SUMMARIES.c.version < version))


async def deleted_versions(engine: AsyncEngine, partner_ids: Collection[str]) -> dict[str, int]:
    """The version each of ``partner_ids`` was deleted at, for those deleted."""
    if not partner_ids:
        return {}
    with translated():
        async with engine.connect() as conn:
            rows = (await conn.execute(select(TOMBSTONES.c.partner_id, TOMBSTONES.c.version)
                                       .where(TOMBSTONES.c.partner_id.in_(partner_ids)))).all()
    return {r.partner_id: r.version for r in rows}


async def load_summaries(engine: AsyncEngine) -> list[PartnerSummaryRow]:
    with translated():
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(SUMMARIES).order_by(SUMMARIES.c.partner_id))).all()
    return [PartnerSummaryRow(**row._mapping) for row in rows]
