"""A member's whole life in auth.db: the public profile, a version per member, the time of
deletion; the personal columns become erasable (NULL once the account is deleted)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

PERSONAL = (("email", sa.String(length=254)), ("password_hash", sa.String(length=200)),
            ("name", sa.String(length=100)), ("phone", sa.String(length=16)),
            ("birth", sa.Date()), ("gender", sa.String(length=10)))


def upgrade() -> None:
    with op.batch_alter_table("member") as table:
        table.add_column(sa.Column("nickname", sa.String(length=30), nullable=True))
        table.add_column(sa.Column("favorite_styles", sa.String(length=100), nullable=True))
        table.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        table.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        for name, kind in PERSONAL:
            table.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("member") as table:
        for name, kind in PERSONAL:
            table.alter_column(name, existing_type=kind, nullable=False)
        for name in ("deleted_at", "version", "favorite_styles", "nickname"):
            table.drop_column(name)
