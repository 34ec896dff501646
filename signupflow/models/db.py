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


#: A per-member sequence number: 1 at signup, one more for each change or deletion.
VERSION_DEFAULT = {"server_default": "1"}


class Member(AuthTable, table=True):
    """An account. The password is only ever stored as a salted scrypt hash.

    Deleting an account erases its personal data (every nullable column below but ``role``):
    what stays is the uuid, the role, the version and when it was deleted, so that a replayed
    signup of that uuid is refused, and the email is free for a new account. ``nickname`` and
    ``favorite_styles`` (JSON) are the public profile as of ``version``; accounts made before
    auth kept it have None there."""

    __tablename__ = "member"
    uuid: str = Field(primary_key=True, max_length=36)
    email: str | None = Field(default=None, unique=True, index=True, max_length=254)
    password_hash: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=16)
    birth: date | None = None
    gender: str | None = Field(default=None, max_length=10)
    role: str = Field(max_length=10)
    created_at: datetime
    nickname: str | None = Field(default=None, max_length=30)
    favorite_styles: str | None = Field(default=None, max_length=100)
    version: int = Field(default=1, sa_column_kwargs=VERSION_DEFAULT)
    deleted_at: datetime | None = None


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
    #: the version of the member's latest event applied (an older one is ignored)
    version: int = Field(default=1, sa_column_kwargs=VERSION_DEFAULT)


class UserProfile(Profile, table=True):
    __tablename__ = "user_profile"


class PartnerProfile(Profile, table=True):
    __tablename__ = "partner_profile"


class FavoriteStyle(MemberTable, table=True):
    """(uuid, style_id) is the primary key: a redelivered event cannot add a second row."""

    __tablename__ = "favorite_style"
    uuid: str = Field(primary_key=True, max_length=36)
    style_id: int = Field(primary_key=True)


class MemberTombstone(MemberTable, table=True):
    """A deleted member: no profile, and no event of this ``version`` or older brings it back
    (a redelivered insert, a replayed change)."""

    __tablename__ = "member_tombstone"
    uuid: str = Field(primary_key=True, max_length=36)
    version: int
    role: str = Field(max_length=10)
    deleted_at: datetime


class SkippedEvent(MemberTable, table=True):
    """An event member could not apply and did not dead-letter: a change of a member it never
    stored (its insert was dead-lettered). Kept once per (uuid, version), with the reason."""

    __tablename__ = "skipped_event"
    uuid: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    kind: str = Field(max_length=10)
    reason: str = Field(max_length=300)
    recorded_at: datetime


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
    version: int = Field(default=1, sa_column_kwargs=VERSION_DEFAULT)


class PartnerTombstone(BatchTable, table=True):
    """A deleted partner: no summary, and no event of this ``version`` or older brings it back."""

    __tablename__ = "partner_tombstone"
    partner_id: str = Field(primary_key=True, max_length=36)
    version: int
    deleted_at: datetime


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table behind a SQLModel table class (``__table__``, typed)."""
    return model.metadata.tables[str(model.__tablename__)]


SCHEMAS = {"auth": AuthTable.metadata, "member": MemberTable.metadata, "batch": BatchTable.metadata}
