"""A member's whole life in member.db: the version of each profile, the tombstones of deleted
members, and the changes skipped because their member was never stored."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("user_profile", "partner_profile"):
        with op.batch_alter_table(table) as t:
            t.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "member_tombstone",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "skipped_event",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uuid", "version"),
    )


def downgrade() -> None:
    op.drop_table("skipped_event")
    op.drop_table("member_tombstone")
    for table in ("user_profile", "partner_profile"):
        with op.batch_alter_table(table) as t:
            t.drop_column("version")
