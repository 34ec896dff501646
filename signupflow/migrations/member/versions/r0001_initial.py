"""member.db as created before migrations existed (models/db.py at 92aa8e1): the two profile
tables, favourite styles and signups per minute. Written out, not derived from the models,
which move on in later revisions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    op.create_table(
        "favorite_style",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("style_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", "style_id"),
    )
    for name in ("partner_profile", "user_profile"):
        op.create_table(
            name,
            sa.Column("uuid", sa.String(length=36), nullable=False),
            sa.Column("nickname", sa.String(length=30), nullable=False),
            sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("uuid"),
        )
    op.create_table(
        "signup_minute",
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("signups", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("window_start", "role", "source_partition"),
    )


def downgrade() -> None:
    for name in ("signup_minute", "user_profile", "partner_profile", "favorite_style"):
        op.drop_table(name)
