"""The databases of the code before migrations, frozen: the tables ``create_all`` made from
signupflow/models/db.py at commit 92aa8e1 (plain SQLAlchemy, the same DDL), and rows in every
one of them. The models move on; these do not, so upgrading them stays the test of an upgrade
from the last schema without ``alembic_version``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, MetaData

UUID = sa.String(36)
WHEN = sa.DateTime(timezone=True)


def _auth(traceparent: bool = True) -> MetaData:
    m = MetaData()
    sa.Table("member", m, sa.Column("uuid", UUID, primary_key=True),
             sa.Column("email", sa.String(254), nullable=False, unique=True, index=True),
             sa.Column("password_hash", sa.String(200), nullable=False),
             sa.Column("name", sa.String(100), nullable=False),
             sa.Column("phone", sa.String(16), nullable=False),
             sa.Column("birth", sa.Date(), nullable=False),
             sa.Column("gender", sa.String(10), nullable=False),
             sa.Column("role", sa.String(10), nullable=False),
             sa.Column("created_at", WHEN, nullable=False))
    sa.Table("outbox", m, sa.Column("id", sa.Integer(), primary_key=True),
             sa.Column("topic", sa.String(100), nullable=False),
             sa.Column("key", sa.String(100), nullable=False),
             sa.Column("payload", sa.LargeBinary(), nullable=False),
             sa.Column("created_at", WHEN, nullable=False),
             sa.Column("published_at", WHEN, index=True),
             *([sa.Column("traceparent", sa.String(55))] if traceparent else []))
    return m


def _member() -> MetaData:
    m = MetaData()
    for name in ("user_profile", "partner_profile"):
        sa.Table(name, m, sa.Column("uuid", UUID, primary_key=True),
                 sa.Column("nickname", sa.String(30), nullable=False),
                 sa.Column("joined_at", WHEN, nullable=False),
                 sa.Column("stored_at", WHEN, nullable=False))
    sa.Table("favorite_style", m, sa.Column("uuid", UUID, primary_key=True),
             sa.Column("style_id", sa.Integer(), primary_key=True, autoincrement=False))
    sa.Table("signup_minute", m,
             sa.Column("window_start", sa.BigInteger(), primary_key=True, autoincrement=False),
             sa.Column("role", sa.String(10), primary_key=True),
             sa.Column("source_partition", sa.Integer(), primary_key=True,
                       autoincrement=False),
             sa.Column("signups", sa.Integer(), nullable=False))
    return m


def _batch() -> MetaData:
    m = MetaData()
    sa.Table("partner_summary", m, sa.Column("partner_id", UUID, primary_key=True),
             sa.Column("nickname", sa.String(30), nullable=False),
             sa.Column("style_count", sa.Integer(), nullable=False),
             sa.Column("joined_at", WHEN, nullable=False),
             sa.Column("summarized_at", WHEN, nullable=False))
    return m


#: service -> the metadata whose create_all the code before migrations ran at start-up
LEGACY: dict[str, MetaData] = {"auth": _auth(), "member": _member(), "batch": _batch()}
#: auth.db as code older still left it: before the outbox had ``traceparent`` (54520fd)
AUTH_BEFORE_TRACEPARENT = _auth(traceparent=False)

T0 = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
U1, U2 = "6f1c0c1e-0000-4000-8000-000000000001", "6f1c0c1e-0000-4000-8000-000000000002"
ROWS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "auth": {
        "member": [
            {"uuid": U1, "email": "ada@example.com", "password_hash": "scrypt$x", "name": "Ada",
             "phone": "+4915112345678", "birth": date(1990, 5, 17), "gender": "female",
             "role": "USER", "created_at": T0},
            {"uuid": U2, "email": "bo@example.com", "password_hash": "scrypt$y", "name": "Bo",
             "phone": "+4915187654321", "birth": date(1985, 1, 2), "gender": "male",
             "role": "PARTNER", "created_at": T0}],
        "outbox": [
            {"id": 1, "topic": "profile-insert", "key": U1, "payload": b'{"uuid":"1"}',
             "created_at": T0, "published_at": T0},
            {"id": 2, "topic": "profile-insert", "key": U2, "payload": b"\x00\xff binary",
             "created_at": T0, "published_at": None}],
    },
    "member": {
        "user_profile": [{"uuid": U1, "nickname": "ada", "joined_at": T0, "stored_at": T0}],
        "partner_profile": [{"uuid": U2, "nickname": "bo", "joined_at": T0, "stored_at": T0}],
        "favorite_style": [{"uuid": U1, "style_id": 3}, {"uuid": U1, "style_id": 7},
                           {"uuid": U2, "style_id": 1}],
        "signup_minute": [
            {"window_start": 1_796_119_200, "role": "USER", "source_partition": 0, "signups": 4},
            {"window_start": 1_796_119_200, "role": "PARTNER", "source_partition": 3,
             "signups": 1}],
    },
    "batch": {
        "partner_summary": [{"partner_id": U2, "nickname": "bo", "style_count": 1,
                             "joined_at": T0, "summarized_at": T0}],
    },
}


def create_legacy(conn: Connection, metadata: MetaData, service: str) -> None:
    """What the code before migrations left: its tables (``create_all``), with rows."""
    metadata.create_all(conn)
    for name, rows in ROWS[service].items():
        table = metadata.tables[name]
        conn.execute(table.insert(), [{k: v for k, v in row.items() if k in table.c}
                                      for row in rows])


def every_row(conn: Connection, service: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the service's 0001 tables (the columns 0001 has), in key order."""
    found = {}
    for name, table in LEGACY[service].tables.items():
        columns = [c for c in table.c if c.name in {col["name"] for col in
                                                     sa.inspect(conn).get_columns(name)}]
        query = sa.select(*columns).order_by(*table.primary_key.columns)
        found[name] = [tuple(row) for row in conn.execute(query)]
    return found
