"""member.db: user and partner profiles, their favourite styles, and signups per minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import insert_ignore, transaction, upsert
from signupflow.domain.per_minute import MinuteKey, window_start
from signupflow.domain.reuse import Fingerprint, conflict
from signupflow.models.db import FavoriteStyle, PartnerProfile, SignupMinute, UserProfile, table_of
from signupflow.models.events import ProfileInsert
from signupflow.storage.errors import translated

USERS = table_of(UserProfile)
PARTNERS = table_of(PartnerProfile)
STYLES = table_of(FavoriteStyle)
MINUTES = table_of(SignupMinute)


def fingerprint(p: ProfileInsert) -> Fingerprint:
    return Fingerprint.of(p.role, p.nickname, p.favorite_styles, p.occurred_at)


async def save_profiles(
    engine: AsyncEngine, profiles: Sequence[ProfileInsert], partitions: Sequence[int] = (),
    counts: MutableMapping[MinuteKey, int] | None = None,
) -> dict[int, str]:
    """Write a batch of profiles in one transaction; returns the refused ones by index, with
    the reason.

    A profile whose uuid is already stored (or earlier in the batch) with the same content is
    a redelivery and changes nothing; with other content (role, nickname, styles, time) it is
    a conflicting reuse of the uuid and is refused, so a uuid can never be both a user and a
    partner. Keyed inserts that ignore conflicts keep concurrent writers of one uuid safe too.

    Signups per minute: a profile whose row this transaction inserts (``RETURNING`` says
    which: not a redelivery, nor one a concurrent writer inserted first) adds one to its
    ``signup_minute`` row (role, source partition ``partitions[i]``, 0 when not given, minute
    of ``occurred_at``) in the same transaction. Once committed, ``counts`` gets the signups
    of every minute the batch's stored profiles fall in, redeliveries' minutes too: a count
    lost on its way to the table after the commit is written again when its event comes back.
    """
    now = datetime.now(UTC)
    with translated():
        refused, read = await transaction(
            engine, lambda conn: _write_profiles(conn, profiles, partitions, now))
    if counts is not None:
        counts.update(read)
    return refused


def _write_profiles(
    conn: Connection, profiles: Sequence[ProfileInsert], partitions: Sequence[int],
    now: datetime,
) -> tuple[dict[int, str], dict[MinuteKey, int]]:
    """:func:`save_profiles`' transaction: the refused profiles, and the signups of the minutes
    the stored ones fall in."""
    refused: dict[int, str] = {}
    users: list[dict[str, object]] = []
    partners: list[dict[str, object]] = []
    styles: list[dict[str, object]] = []
    minute_of: dict[str, MinuteKey] = {}  # uuid -> its minute, for every profile not refused
    known = _stored(conn, {p.uuid for p in profiles})
    for i, p in enumerate(profiles):
        mine = fingerprint(p)
        if p.uuid in known:
            reason = conflict(p.uuid, known[p.uuid], mine)
            if reason is not None:
                refused[i] = reason
            else:
                minute_of.setdefault(p.uuid, _minute(p, mine, partitions, i))
            continue
        known[p.uuid] = mine
        minute_of[p.uuid] = _minute(p, mine, partitions, i)
        row = {"uuid": p.uuid, "nickname": p.nickname,
               "joined_at": mine.occurred_at, "stored_at": now}
        (partners if p.role == "PARTNER" else users).append(row)
        styles.extend({"uuid": p.uuid, "style_id": s} for s in p.favorite_styles)
    dialect = conn.dialect.name
    inserted: list[str] = []
    for table, rows in ((USERS, users), (PARTNERS, partners)):
        if rows:
            stmt = insert_ignore(table, dialect).returning(table.c.uuid)
            inserted.extend(conn.execute(stmt, rows).scalars())
    if styles:
        conn.execute(insert_ignore(STYLES, dialect), styles)
    read = _count(conn, dialect, Counter(minute_of[u] for u in inserted),
                  set(minute_of.values()))
    return refused, read


def _minute(p: ProfileInsert, mine: Fingerprint, partitions: Sequence[int], i: int) -> MinuteKey:
    return p.role, partitions[i] if partitions else 0, window_start(mine.occurred_at)


def _count(conn: Connection, dialect: str, new: Counter[MinuteKey],
           touched: set[MinuteKey]) -> dict[MinuteKey, int]:
    """Add ``new`` signups to their minutes; returns the signups of every ``touched`` minute
    that has a row (one stored before counting began, or pruned, has none)."""
    found: dict[MinuteKey, int] = {}
    c = MINUTES.c
    if new:
        stmt = upsert(MINUTES, dialect, ["window_start", "role", "source_partition"],
                      add=["signups"])
        rows = [{"window_start": s, "role": r, "source_partition": n, "signups": k}
                for (r, n, s), k in new.items()]
        result = conn.execute(stmt.returning(c.role, c.source_partition, c.window_start,
                                             c.signups), rows)
        found.update(((r.role, r.source_partition, r.window_start), r.signups) for r in result)
    rest = [(s, r, n) for r, n, s in touched if (r, n, s) not in found]
    if rest:
        query = select(c.role, c.source_partition, c.window_start, c.signups).where(
            tuple_(c.window_start, c.role, c.source_partition).in_(rest))
        found.update(((r.role, r.source_partition, r.window_start), r.signups)
                     for r in conn.execute(query))
    return found


async def prune_minutes(engine: AsyncEngine, before: int) -> int:
    """Delete the signups-per-minute rows of windows starting before ``before`` (epoch
    seconds); returns how many went."""
    with translated():
        return await transaction(engine, lambda conn: int(conn.execute(
            delete(MINUTES).where(MINUTES.c.window_start < before)).rowcount))


def _stored(conn: Connection, uuids: set[str]) -> dict[str, Fingerprint]:
    """The fingerprints of the profiles stored under ``uuids``.

    Profiles first, then their styles: each statement reads what was committed when it began
    (SQLite before the write lock, PostgreSQL's read committed), so a profile seen has its
    styles committed too. Read the other way round, a concurrent writer's commit in between
    showed its profile without styles: a false conflicting reuse (two writers of one batch).
    """
    found: dict[str, Fingerprint] = {}
    if not uuids:
        return found
    profiles: dict[str, tuple[str, Any]] = {}
    for kind, table in (("USER", USERS), ("PARTNER", PARTNERS)):
        for row in conn.execute(select(table).where(table.c.uuid.in_(uuids))):
            profiles[row.uuid] = (kind, row)
    if not profiles:
        return found
    styles: dict[str, set[int]] = {}
    for row in conn.execute(select(STYLES).where(STYLES.c.uuid.in_(profiles))):
        styles.setdefault(row.uuid, set()).add(row.style_id)
    for uuid, (kind, row) in profiles.items():
        found[uuid] = Fingerprint.of(kind, row.nickname, styles.get(uuid, ()), row.joined_at)
    return found
