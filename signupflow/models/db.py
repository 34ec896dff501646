"""Database tables, one SQLModel registry (and so one schema) per service.

auth, member and batch each create only their own tables in their own database: no service can
read another's tables, even by accident, because they are not in its metadata.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, LargeBinary, Table
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class AuthTable(SQLModel, registry=registry()):
    """Tables of auth.db."""


class MemberTable(SQLModel, registry=registry()):
    """Tables of member.db."""


class BatchTable(SQLModel, registry=registry()):
    """Tables of batch.db."""


class Member(AuthTable, table=True):
    """An account. The password is only ever stored as a salted scrypt hash."""

    __tablename__ = "member"
    uuid: str = Field(primary_key=True, max_length=36)
    email: str = Field(unique=True, index=True, max_length=254)
    password_hash: str = Field(max_length=200)
    name: str = Field(max_length=100)
    phone: str = Field(max_length=16)
    birth: date
    gender: str = Field(max_length=10)
    role: str = Field(max_length=10)
    created_at: datetime


class OutboxEvent(AuthTable, table=True):
    """An event written in the same transaction as its member row; the relay publishes it."""

    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=100)
    key: str = Field(max_length=100)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    published_at: datetime | None = Field(default=None, index=True)
    #: W3C trace context of the request that wrote the row: the relay's publish continues it.
    traceparent: str | None = Field(default=None, max_length=55)


class Profile(MemberTable):
    """Columns of both profile tables. ``joined_at`` is when auth accepted the signup,
    ``stored_at`` when member wrote the row (their difference is the pipeline's latency)."""

    uuid: str = Field(primary_key=True, max_length=36)
    nickname: str = Field(max_length=30)
    joined_at: datetime
    stored_at: datetime


class UserProfile(Profile, table=True):
    __tablename__ = "user_profile"


class PartnerProfile(Profile, table=True):
    __tablename__ = "partner_profile"


class FavoriteStyle(MemberTable, table=True):
    """(uuid, style_id) is the primary key: a redelivered event cannot add a second row."""

    __tablename__ = "favorite_style"
    uuid: str = Field(primary_key=True, max_length=36)
    style_id: int = Field(primary_key=True)


class SignupMinute(MemberTable, table=True):
    """Signups per minute (of ``joined_at``) by role and source partition, counted in the
    transaction that stores the profile, and only when it inserts it: the truth the member
    service's ``signups-per-minute`` table is (re)written from. Rows older than a day go."""

    __tablename__ = "signup_minute"
    window_start: int = Field(primary_key=True, sa_type=BigInteger)  # epoch seconds
    role: str = Field(primary_key=True, max_length=10)
    source_partition: int = Field(primary_key=True)
    signups: int


class PartnerSummaryRow(BatchTable, table=True):
    """batch.db copy of the ``partner-summary`` Faust table."""

    __tablename__ = "partner_summary"
    partner_id: str = Field(primary_key=True, max_length=36)
    nickname: str = Field(max_length=30)
    style_count: int
    joined_at: datetime
    summarized_at: datetime


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table behind a SQLModel table class (``__table__``, typed)."""
    return model.metadata.tables[str(model.__tablename__)]


SCHEMAS = {"auth": AuthTable.metadata, "member": MemberTable.metadata, "batch": BatchTable.metadata}
