"""member.db: user and partner profiles, their favourite styles, tombstones of deleted members,
skipped events, and signups per minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import insert_ignore, transaction, upsert
from signupflow.domain.life import Gone, Profile, State, Step, step
from signupflow.domain.per_minute import MinuteKey, window_start
from signupflow.domain.reuse import instant
from signupflow.models.db import (
    FavoriteStyle,
    MemberTombstone,
    PartnerProfile,
    SignupMinute,
    SkippedEvent,
    UserProfile,
    table_of,
)
from signupflow.models.events import MemberEvent, ProfileInsert
from signupflow.storage.errors import translated

USERS = table_of(UserProfile)
PARTNERS = table_of(PartnerProfile)
STYLES = table_of(FavoriteStyle)
MINUTES = table_of(SignupMinute)
TOMBSTONES = table_of(MemberTombstone)
SKIPPED = table_of(SkippedEvent)


async def save_profiles(
    engine: AsyncEngine, events: Sequence[MemberEvent], partitions: Sequence[int] = (),
    counts: MutableMapping[MinuteKey, int] | None = None, steps: list[Step] | None = None,
) -> dict[int, str]:
    """Apply a batch of a member's life events (created, changed, deleted) in one transaction;
    returns the refused ones (conflicts) by index, with the reason.

    What each event does is :func:`signupflow.domain.life.step`'s, from the state stored
    (profile, styles, tombstone) and the batch's earlier events: a newer event applies, an
    older or equal one changes nothing, a change of a member never stored is recorded in
    ``skipped_event``. ``steps`` (when given) gets each event's step, in order. The writes
    are guarded by version (``UPDATE ... WHERE version < new``, inserts that ignore
    conflicts), so two writers of one member (a rebalance) cannot step it back.

    Signups per minute: a profile whose row this transaction inserts (``RETURNING`` says
    which: not a redelivery, nor one a concurrent writer inserted first) adds one to its
    ``signup_minute`` row (role, source partition ``partitions[i]``, 0 when not given, minute
    of ``occurred_at``) in the same transaction. Once committed, ``counts`` gets the signups
    of every minute the batch's created events fall in, redeliveries' minutes too: a count
    lost on its way to the table after the commit is written again when its event comes back.
    """
    now = datetime.now(UTC)
    with translated():
        done, read = await transaction(
            engine, lambda conn: _apply(conn, events, partitions, now))
    if counts is not None:
        counts.update(read)
    if steps is not None:
        steps.extend(done)
    return {i: s.reason or "" for i, s in enumerate(done) if s.verdict == "conflict"}


def _apply(
    conn: Connection, events: Sequence[MemberEvent], partitions: Sequence[int], now: datetime,
) -> tuple[list[Step], dict[MinuteKey, int]]:
    """:func:`save_profiles`' transaction: each event's step, and the signups of the minutes
    the batch's created events fall in."""
    before = _stored(conn, {e.uuid for e in events})
    state: dict[str, State] = dict(before)
    done: list[Step] = []
    minute_of: dict[str, MinuteKey] = {}  # uuid -> its minute, for each created not refused
    for i, event in enumerate(events):
        result = step(state.get(event.uuid), event)
        state[event.uuid] = result.state
        done.append(result)
        if isinstance(event, ProfileInsert) and result.verdict in ("applied", "same"):
            minute_of.setdefault(event.uuid, _minute(event, partitions, i))
    inserted = _write(conn, {u: s for u, s in state.items() if s != before.get(u)}, before, now)
    _record_skipped(conn, [(e, s) for e, s in zip(events, done, strict=True)
                           if s.verdict == "skipped"], now)
    read = _count(conn, conn.dialect.name,
                  Counter(minute_of[u] for u in inserted if u in minute_of),
                  set(minute_of.values()))
    return done, read


def _write(conn: Connection, changed: Mapping[str, State], before: Mapping[str, State],
           now: datetime) -> list[str]:
    """Store each member's new state; returns the uuids whose profile row this inserted."""
    dialect = conn.dialect.name
    inserted: list[str] = []
    for uuid, new in changed.items():
        old = before.get(uuid)
        if isinstance(new, Gone):
            conn.execute(upsert(TOMBSTONES, dialect, ["uuid"], newer="version"), {
                "uuid": uuid, "version": new.version, "role": new.role, "deleted_at": now})
            for table in (USERS, PARTNERS):
                conn.execute(delete(table).where(table.c.uuid == uuid,
                                                 table.c.version < new.version))
            if not _profile_left(conn, uuid):
                conn.execute(delete(STYLES).where(STYLES.c.uuid == uuid))
        elif isinstance(new, Profile):
            table = PARTNERS if new.role == "PARTNER" else USERS
            row = {"uuid": uuid, "nickname": new.nickname, "joined_at": new.joined_at,
                   "stored_at": now, "version": new.version}
            if old is None:
                stmt = insert_ignore(table, dialect).returning(table.c.uuid)
                if conn.execute(stmt, row).scalar() is None:
                    continue  # a concurrent writer stored it first: its styles too
                inserted.append(uuid)
            else:
                updated = conn.execute(update(table).where(
                    table.c.uuid == uuid, table.c.version < new.version).values(
                    nickname=new.nickname, version=new.version, stored_at=now))
                if not updated.rowcount:
                    continue  # a newer version is stored already
                conn.execute(delete(STYLES).where(STYLES.c.uuid == uuid))
            if new.styles:
                conn.execute(insert_ignore(STYLES, dialect),
                             [{"uuid": uuid, "style_id": s} for s in sorted(new.styles)])
    return inserted


def _profile_left(conn: Connection, uuid: str) -> bool:
    """Whether a profile of ``uuid`` is still stored (a newer one a concurrent writer kept)."""
    return any(conn.execute(select(t.c.uuid).where(t.c.uuid == uuid)).first()
               for t in (USERS, PARTNERS))


def _record_skipped(conn: Connection, skipped: Sequence[tuple[MemberEvent, Step]],
                    now: datetime) -> None:
    if skipped:
        conn.execute(insert_ignore(SKIPPED, conn.dialect.name), [
            {"uuid": e.uuid, "version": e.version, "kind": e.kind,
             "reason": (s.reason or "")[:300], "recorded_at": now} for e, s in skipped])


def _minute(p: ProfileInsert, partitions: Sequence[int], i: int) -> MinuteKey:
    return p.role, partitions[i] if partitions else 0, window_start(instant(p.occurred_at))


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


def _stored(conn: Connection, uuids: set[str]) -> dict[str, State]:
    """The stored state of each of ``uuids`` that has one: its profile, or its tombstone.

    Profiles first, then their styles: each statement reads what was committed when it began
    (SQLite before the write lock, PostgreSQL's read committed), so a profile seen has its
    styles committed too. Read the other way round, a concurrent writer's commit in between
    showed its profile without styles: a false conflicting reuse (two writers of one batch).
    """
    found: dict[str, State] = {}
    if not uuids:
        return found
    for row in conn.execute(select(TOMBSTONES).where(TOMBSTONES.c.uuid.in_(uuids))):
        found[row.uuid] = Gone(row.role, row.version)
    profiles: dict[str, tuple[str, Any]] = {}
    for kind, table in (("USER", USERS), ("PARTNER", PARTNERS)):
        for row in conn.execute(select(table).where(table.c.uuid.in_(uuids))):
            profiles[row.uuid] = (kind, row)
    styles: dict[str, set[int]] = {}
    if profiles:
        for row in conn.execute(select(STYLES).where(STYLES.c.uuid.in_(profiles))):
            styles.setdefault(row.uuid, set()).add(row.style_id)
    for uuid, (kind, row) in profiles.items():
        gone = found.get(uuid)
        if gone is None or gone.version < row.version:
            found[uuid] = Profile(kind, row.nickname, frozenset(styles.get(uuid, ())),
                                  instant(row.joined_at), row.version)
    return found
