"""A partner's whole life in batch.db: the version of each summary, and the tombstones of
deleted partners."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("partner_summary") as table:
        table.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "partner_tombstone",
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partner_id"),
    )


def downgrade() -> None:
    op.drop_table("partner_tombstone")
    with op.batch_alter_table("partner_summary") as table:
        table.drop_column("version")
