"""batch.db as created before migrations existed (models/db.py at 92aa8e1): the copy of the
partner-summary table. Written out, not derived from the models, which move on in later
revisions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    op.create_table(
        "partner_summary",
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("nickname", sa.String(length=30), nullable=False),
        sa.Column("style_count", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summarized_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partner_id"),
    )


def downgrade() -> None:
    op.drop_table("partner_summary")
