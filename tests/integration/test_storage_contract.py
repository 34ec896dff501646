"""The storage contract: what every function in ``signupflow/storage/`` and ``signupflow/db.py``
promises, checked on SQLite and on PostgreSQL alike.

Why: the streams only ever see storage through these functions, and decide what to do with a
failed write by the storage layer's own errors (:class:`Retriable`: wait and retry;
:class:`Rejected` / :class:`EmailTaken`: isolate the rows or answer 409), never by a driver's
exception class. A backend that stored something else, refused something else or leaked a raw
driver error would make the pipeline lose events, dead-letter good ones or stall for ever on a
bad one, on one backend only. So, in the manner of eventsourcing's recorder tests (one abstract
case per recorder, run per backend), every test here runs once per backend through the
``database`` fixture, grouped in one class per storage module:

* :class:`TestAuthStorage`: ``register`` (member and outbox row in one transaction, duplicate
  and concurrent duplicate emails), ``publish_pending`` (oldest first, marked only once the
  publish callback returned, concurrent relays), ``delete_published`` (retention: published
  rows only, in batches, concurrent workers) and ``count_members``;
* :class:`TestMemberStorage`: ``save_profiles`` (inserts, redelivery, conflicting uuid reuse,
  signups per minute counted once, also by concurrent writers), ``prune_minutes``;
* :class:`TestBatchStorage`: ``save_summaries`` and ``load_summaries``;
* :class:`TestDb`: ``make_engine``, ``unwritable``, ``migrations.upgrade``, ``insert_ignore``,
  ``upsert``;
* :class:`TestErrorTranslation`: outages and locks raise :class:`Retriable`, values the database
  refuses raise :class:`Rejected`.

One private PostgreSQL server serves the module; every test gets empty databases (fresh SQLite
files, or the PostgreSQL tables dropped and created again). The tests that stop a server get a
server of their own. SQLite lock tests shorten the 10 s busy timeout to 200 ms with an extra
``connect`` listener (the production value is asserted once, in ``TestDb``), so the module stays
well under a minute.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import Table, event, inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from signupflow.db import insert_ignore, make_engine, unwritable, upsert
from signupflow.domain.account import ProfileChange, ProfileUnknown
from signupflow.domain.life import Step
from signupflow.domain.per_minute import MinuteKey, window_start
from signupflow.domain.reuse import instant
from signupflow.domain.signup import Signup, profile_event, validate_signup
from signupflow.migrations import upgrade
from signupflow.models.db import SCHEMAS
from signupflow.models.events import MemberDeleted, PartnerSummary, ProfileChanged, ProfileInsert
from signupflow.storage.auth import (
    ERASED,
    MEMBERS,
    OUTBOX,
    AccountKey,
    PendingEvent,
    change_profile,
    count_members,
    delete_account,
    delete_published,
    find_account,
    publish_pending,
    register,
)
from signupflow.storage.batch import SUMMARIES, deleted_versions, load_summaries, save_summaries
from signupflow.storage.errors import (
    AccountGone,
    EmailTaken,
    Rejected,
    Retriable,
    StorageError,
    translated,
)
from signupflow.storage.member import (
    MINUTES,
    PARTNERS,
    SKIPPED,
    STYLES,
    USERS,
    prune_minutes,
    save_profiles,
)
from signupflow.storage.member import TOMBSTONES as MEMBER_TOMBSTONES
from signupflow.topics import PROFILE_INSERT
from tests.integration.postgres import Postgres

T = TypeVar("T")

SERVICES = ("auth", "member", "batch")
BACKENDS = ["sqlite", "postgresql"]
NOW = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
TODAY = date(2026, 1, 2)
SHORT_WAIT_MS = 200  # busy_timeout (SQLite) / lock_timeout (PostgreSQL) of the lock tests
REUSED = "reused with different content"
CUTOFF = NOW - timedelta(days=7)  # the retention's cutoff in the delete_published tests


# --- the databases ---------------------------------------------------------------------------


@dataclass
class Database:
    """One backend's three service databases, an engine on each, all driven by one loop.

    Engines made with :meth:`engine` are disposed at the end of the test, on the same loop.
    """

    kind: str
    runner: asyncio.Runner
    urls: dict[str, str]
    engines: dict[str, AsyncEngine] = field(default_factory=dict)
    extra: list[AsyncEngine] = field(default_factory=list)

    @property
    def auth(self) -> AsyncEngine:
        return self.engines["auth"]

    @property
    def member(self) -> AsyncEngine:
        return self.engines["member"]

    @property
    def batch(self) -> AsyncEngine:
        return self.engines["batch"]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def engine(self, service: str, short_wait: bool = False) -> AsyncEngine:
        """Another engine on ``service``'s database (other connections, as another worker
        would have). ``short_wait`` gives up on a lock after ``SHORT_WAIT_MS``."""
        engine = make_engine(self.urls[service])
        if short_wait:
            listener = (_short_wait_sqlite if engine.dialect.name == "sqlite"
                        else _short_wait_postgresql)
            event.listen(engine.sync_engine, "connect", listener)
        self.extra.append(engine)
        return engine

    def sqlite_path(self, service: str) -> Path:
        assert self.kind == "sqlite"
        return Path(self.urls[service].removeprefix("sqlite+aiosqlite:///"))

    def dispose(self) -> None:
        for engine in dict.fromkeys([*self.engines.values(), *self.extra]):
            self.run(engine.dispose())


def _short_wait_sqlite(dbapi_conn: Any, _record: Any) -> None:
    """Runs after make_engine's own listener, so it overrides its busy_timeout."""
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SHORT_WAIT_MS}")
    cur.close()


def _short_wait_postgresql(dbapi_conn: Any, _record: Any) -> None:
    """A session setting, sent outside any transaction (so no rollback undoes it)."""
    dbapi_conn.run_async(lambda c: c.execute(f"SET lock_timeout = {SHORT_WAIT_MS}"))


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """The module's private PostgreSQL server, with one database per service."""
    server = Postgres()
    try:
        server.start(list(SERVICES))
        yield server
    finally:
        server.remove()


async def _reset(engine: AsyncEngine, service: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(SCHEMAS[service].drop_all)
        await conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    await upgrade(engine, service)


@pytest.fixture(params=BACKENDS)
def database(
    request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path
) -> Iterator[Database]:
    """Empty databases of one backend with their schemas, an engine per service."""
    if request.param == "sqlite":
        urls = {s: f"sqlite+aiosqlite:///{tmp_path / s}.db" for s in SERVICES}
    else:
        server: Postgres = request.getfixturevalue("postgres")
        urls = {s: server.url(s) for s in SERVICES}
    db = Database(request.param, runner, urls)
    try:
        for service in SERVICES:
            db.engines[service] = make_engine(urls[service])
            db.run(_reset(db.engines[service], service))
        yield db
    finally:
        db.dispose()


@pytest.fixture(params=BACKENDS)
def outage(
    request: pytest.FixtureRequest, runner: asyncio.Runner, tmp_path: Path
) -> Iterator[Outage]:
    """Databases that can be made unavailable: a PostgreSQL server of the test's own (stopped
    by :meth:`Outage.go_down`), or SQLite files that another (plain sqlite3) connection locks
    exclusively."""
    server: Postgres | None = None
    if request.param == "sqlite":
        urls = {s: f"sqlite+aiosqlite:///{tmp_path / s}.db" for s in SERVICES}
    else:
        server = Postgres()
        server.start(list(SERVICES))
        urls = {s: server.url(s) for s in SERVICES}
    outage = Outage(Database(request.param, runner, urls), server)
    try:
        for service in SERVICES:
            outage.db.engines[service] = outage.db.engine(service, short_wait=True)
            outage.db.run(upgrade(outage.db.engines[service], service))
        yield outage
    finally:
        outage.up_again()
        outage.db.dispose()
        if server is not None:
            server.remove()


@dataclass
class Outage:
    """Databases of one backend and the means to make them unavailable."""

    db: Database
    server: Postgres | None
    locks: list[sqlite3.Connection] = field(default_factory=list)

    def go_down(self) -> None:
        if self.server is not None:
            self.server.stop()
            return
        for service in SERVICES:
            lock = sqlite3.connect(self.db.sqlite_path(service), isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            self.locks.append(lock)

    def up_again(self) -> None:
        """SQLite only (the PostgreSQL server stays down)."""
        for lock in self.locks:
            lock.rollback()
            lock.close()
        self.locks.clear()


# --- helpers ---------------------------------------------------------------------------------


async def _select_one(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        return (await conn.exec_driver_sql("SELECT 1")).scalar()


def signup(email: str = "ada@example.com", role: str = "USER", nickname: str = "ada_l",
           styles: list[int] | None = None) -> Signup:
    """A signup as the HTTP view gets it from :func:`validate_signup` (normalised)."""
    return validate_signup({
        "email": email, "password": "correct horse battery", "name": "Ada Lovelace",
        "phone": "+44 (20) 7946-0958", "birth": "1990-05-17", "gender": "FEMALE",
        "role": role, "nickname": nickname,
        "favorite_styles": [2, 7] if styles is None else styles,
    }, today=TODAY)


def new_uuid() -> str:
    return str(uuid.uuid4())


async def do_register(engine: AsyncEngine, s: Signup, member_uuid: str | None = None,
                      now: datetime = NOW, traceparent: str | None = None) -> ProfileInsert:
    """Register ``s`` the way the auth view does; returns the event it stored."""
    ev = profile_event(s, member_uuid or new_uuid(), now)
    await register(engine, s, f"scrypt$hash-of-{s.email}", ev, now, traceparent)
    return ev


def normalised(value: Any) -> Any:
    """Datetimes as aware UTC instants (databases give stored UTC back without an offset)."""
    return instant(value) if isinstance(value, datetime) else value


async def table_rows(engine: AsyncEngine, table: Table) -> list[dict[str, Any]]:
    """Every row of ``table`` in primary-key order, datetimes as UTC instants."""
    async with engine.connect() as conn:
        result = await conn.execute(select(table).order_by(*table.primary_key.columns))
        return [{k: normalised(v) for k, v in row._mapping.items()} for row in result]


async def auth_state(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return await table_rows(engine, MEMBERS), await table_rows(engine, OUTBOX)


async def member_state(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    return {t.name: await table_rows(engine, t) for t in (USERS, PARTNERS, STYLES)}


def profile(uid: str, role: str = "USER", nickname: str = "ada_l",
            styles: list[int] | None = None,
            occurred_at: str = "2026-01-02T03:04:05.123456+00:00") -> ProfileInsert:
    return ProfileInsert(uuid=uid, role=role, nickname=nickname,
                         favorite_styles=[2, 7] if styles is None else styles,
                         occurred_at=occurred_at)


def change(uid: str, version: int, nickname: str = "ada_new", styles: tuple[int, ...] = (4,),
           role: str = "USER") -> ProfileChanged:
    return ProfileChanged(kind="changed", uuid=uid, version=version, role=role,
                          nickname=nickname, favorite_styles=list(styles),
                          occurred_at="2026-01-03T00:00:00+00:00")


def deletion(uid: str, version: int, role: str = "USER") -> MemberDeleted:
    return MemberDeleted(kind="deleted", uuid=uid, version=version, role=role,
                         occurred_at="2026-01-04T00:00:00+00:00")


def summary(partner_id: str, nickname: str = "neon_fox", style_count: int = 3,
            joined_at: str = "2026-01-02T03:04:05.123456+00:00",
            summarized_at: str = "2026-01-02T03:04:06+00:00") -> PartnerSummary:
    return PartnerSummary(partner_id=partner_id, nickname=nickname, style_count=style_count,
                          joined_at=joined_at, summarized_at=summarized_at)


async def aged_outbox(engine: AsyncEngine, published: list[datetime | None]) -> list[int]:
    """One outbox row per entry, created 100 days before NOW and published at that entry's
    time (None: still pending); returns their ids, in the same order."""
    for i in range(len(published)):
        await do_register(engine, signup(f"aged{i}@example.com"), now=NOW - timedelta(days=100))
    ids = [row["id"] for row in await table_rows(engine, OUTBOX)]
    async with engine.begin() as conn:
        for row_id, at in zip(ids, published, strict=True):
            await conn.execute(OUTBOX.update().where(OUTBOX.c.id == row_id)
                               .values(published_at=at))
    return ids


async def set_columns(engine: AsyncEngine, member_uuid: str, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(MEMBERS.update().where(MEMBERS.c.uuid == member_uuid).values(**values))


async def outbox_ids(engine: AsyncEngine) -> list[int]:
    return [row["id"] for row in await table_rows(engine, OUTBOX)]


class Recorder:
    """A publish callback that records what it was given, optionally slowly or failing."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None,
                 during: Callable[[], Awaitable[None]] | None = None) -> None:
        self.batches: list[list[PendingEvent]] = []
        self.delay = delay
        self.fail = fail
        self.during = during

    async def __call__(self, pending: list[PendingEvent]) -> None:
        self.batches.append(list(pending))
        if self.during is not None:
            await self.during()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail

    @property
    def ids(self) -> list[int]:
        return [p.id for batch in self.batches for p in batch]


# --- auth ------------------------------------------------------------------------------------


class TestAuthStorage:
    def test_register_stores_the_member_and_one_outbox_row(self, database: Database) -> None:
        s = signup(email="  Ada@Example.COM ", role="PARTNER", styles=[7, 2])
        ev = database.run(do_register(database.auth, s))
        members, outbox = database.run(auth_state(database.auth))
        assert members == [{
            "uuid": ev.uuid, "email": "ada@example.com",
            "password_hash": "scrypt$hash-of-ada@example.com", "name": "Ada Lovelace",
            "phone": "+442079460958",
            "birth": date(1990, 5, 17), "gender": "FEMALE", "role": "PARTNER",
            "created_at": NOW, "nickname": "ada_l", "favorite_styles": "[7,2]", "version": 1,
            "deleted_at": None,
        }]
        assert len(outbox) == 1
        row = outbox[0]
        assert {k: v for k, v in row.items() if k != "id"} == {
            "topic": PROFILE_INSERT, "key": ev.uuid, "payload": ev.dumps(),
            "created_at": NOW, "published_at": None, "traceparent": None,
        }
        assert orjson.loads(row["payload"]) == {
            "uuid": ev.uuid, "role": "PARTNER", "nickname": "ada_l",
            "favorite_styles": [7, 2], "occurred_at": NOW.isoformat(), "kind": "created",
            "version": 1,
        }
        assert database.run(count_members(database.auth)) == 1

    def test_the_request_trace_context_is_stored_and_handed_to_the_relay(
        self, database: Database
    ) -> None:
        context = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        database.run(do_register(database.auth, signup("ada@example.com"),
                                 traceparent=context))
        handed: list[PendingEvent] = []

        async def publish(pending: list[PendingEvent]) -> None:
            handed.extend(pending)

        assert database.run(publish_pending(database.auth, 10, publish)) == 1
        assert [p.traceparent for p in handed] == [context]

    @pytest.mark.parametrize("second", ["ada@example.com", "ADA@Example.COM",
                                        "  Ada@example.com\t"])
    def test_a_taken_email_raises_email_taken_and_adds_nothing(
        self, database: Database, second: str
    ) -> None:
        """validate_signup strips and lower-cases the email, so storage (whose unique index is
        exact) sees one email for every spelling."""
        database.run(do_register(database.auth, signup("ada@example.com")))
        before = database.run(auth_state(database.auth))
        again = signup(second, role="PARTNER", nickname="other")
        assert again.email == "ada@example.com"
        with pytest.raises(EmailTaken) as caught:
            database.run(do_register(database.auth, again))
        assert isinstance(caught.value, Rejected)
        assert str(caught.value) == "ada@example.com"
        assert database.run(auth_state(database.auth)) == before
        assert database.run(count_members(database.auth)) == 1

    def test_concurrent_registers_of_one_email_exactly_one_wins(
        self, database: Database
    ) -> None:
        """Two auth workers (two engines, so two connections) race for each of three emails:
        the unique index lets exactly one win, the other gets EmailTaken, never a driver
        error, and leaves no member or outbox row behind."""
        engines = [database.engine("auth"), database.engine("auth")]
        emails = [f"racer{i}@example.com" for i in range(3)]
        contenders = [(email, engine, new_uuid()) for email in emails for engine in engines]

        async def race() -> list[BaseException | ProfileInsert]:
            return await asyncio.gather(
                *(do_register(engine, signup(email), uid) for email, engine, uid in contenders),
                return_exceptions=True)

        results = database.run(race())
        members, outbox = database.run(auth_state(database.auth))
        winners: dict[str, str] = {}
        for (email, _, uid), result in zip(contenders, results, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, EmailTaken), repr(result)
                assert str(result) == email
            else:
                assert email not in winners, f"{email} registered twice"
                winners[email] = uid
        assert sorted(winners) == emails
        assert sorted((m["email"], m["uuid"]) for m in members) == sorted(
            (e, u) for e, u in winners.items())
        assert sorted(o["key"] for o in outbox) == sorted(winners.values())

    def test_count_members(self, database: Database) -> None:
        assert database.run(count_members(database.auth)) == 0
        for i in range(3):
            database.run(do_register(database.auth, signup(f"m{i}@example.com")))
        assert database.run(count_members(database.auth)) == 3
        with pytest.raises(EmailTaken):
            database.run(do_register(database.auth, signup("M1@example.com")))
        assert database.run(count_members(database.auth)) == 3

    def test_find_account_by_the_stored_email(self, database: Database) -> None:
        ev = database.run(do_register(database.auth, signup("ada@example.com")))
        found = database.run(find_account(database.auth, "ada@example.com"))
        assert found == AccountKey(ev.uuid, "scrypt$hash-of-ada@example.com")
        assert "hash" not in repr(found)
        assert database.run(find_account(database.auth, "bob@example.com")) is None

    def test_change_profile_bumps_the_version_and_stores_the_whole_profile_event(
        self, database: Database
    ) -> None:
        ev = database.run(do_register(database.auth, signup(role="PARTNER", styles=[7, 2])))
        later = NOW + timedelta(minutes=5)
        first = database.run(change_profile(database.auth, ev.uuid,
                                            ProfileChange(nickname="neon"), later, "tp"))
        second = database.run(change_profile(database.auth, ev.uuid,
                                             ProfileChange(favorite_styles=[]), later))
        assert (first.version, first.nickname, first.favorite_styles) == (2, "neon", [7, 2])
        assert (second.version, second.nickname, second.favorite_styles) == (3, "neon", [])
        assert first.role == second.role == "PARTNER"
        members, outbox = database.run(auth_state(database.auth))
        assert {k: members[0][k] for k in ("nickname", "favorite_styles", "version")} == {
            "nickname": "neon", "favorite_styles": "[]", "version": 3}
        assert [(o["key"], o["topic"], o["traceparent"]) for o in outbox] == [
            (ev.uuid, PROFILE_INSERT, None), (ev.uuid, PROFILE_INSERT, "tp"),
            (ev.uuid, PROFILE_INSERT, None)]
        assert [o["payload"] for o in outbox[1:]] == [first.dumps(), second.dumps()]
        assert orjson.loads(outbox[1]["payload"]) == {
            "kind": "changed", "uuid": ev.uuid, "version": 2, "role": "PARTNER",
            "nickname": "neon", "favorite_styles": [7, 2], "occurred_at": later.isoformat()}

    def test_an_account_without_a_stored_profile_takes_only_a_whole_one(
        self, database: Database
    ) -> None:
        """Accounts made before auth kept the profile have None there: a change giving part of
        it is refused with nothing written; one giving all of it is stored."""
        ev = database.run(do_register(database.auth, signup()))
        database.run(set_columns(database.auth, ev.uuid, nickname=None, favorite_styles=None))
        before = database.run(auth_state(database.auth))
        with pytest.raises(ProfileUnknown):
            database.run(change_profile(database.auth, ev.uuid,
                                        ProfileChange(nickname="neon"), NOW))
        assert database.run(auth_state(database.auth)) == before
        changed = database.run(change_profile(database.auth, ev.uuid,
                                              ProfileChange("neon", [3]), NOW))
        assert (changed.version, changed.nickname, changed.favorite_styles) == (2, "neon", [3])

    def test_delete_account_erases_everything_personal_with_its_event(
        self, database: Database
    ) -> None:
        ev = database.run(do_register(database.auth, signup(role="PARTNER")))
        database.run(change_profile(database.auth, ev.uuid, ProfileChange(nickname="x2"), NOW))
        gone_at = NOW + timedelta(hours=1)
        deleted = database.run(delete_account(database.auth, ev.uuid, gone_at, "tp"))
        assert deleted.asdict() == {"kind": "deleted", "uuid": ev.uuid, "version": 3,
                                    "role": "PARTNER", "occurred_at": gone_at.isoformat()}
        members, outbox = database.run(auth_state(database.auth))
        assert members == [{
            "uuid": ev.uuid, "role": "PARTNER", "version": 3, "created_at": NOW,
            "deleted_at": gone_at, **dict.fromkeys(ERASED)}]
        assert set(ERASED) | {"uuid", "role", "version", "created_at", "deleted_at"} == set(
            MEMBERS.c.keys()), "a column of member is neither erased nor meant to stay"
        assert outbox[-1]["payload"] == deleted.dumps()
        assert outbox[-1]["traceparent"] == "tp"
        assert database.run(find_account(database.auth, "ada@example.com")) is None

    def test_a_deleted_account_is_gone_for_every_write_but_a_new_signup(
        self, database: Database
    ) -> None:
        ev = database.run(do_register(database.auth, signup()))
        database.run(delete_account(database.auth, ev.uuid, NOW))
        before = database.run(auth_state(database.auth))
        with pytest.raises(AccountGone):
            database.run(delete_account(database.auth, ev.uuid, NOW))
        with pytest.raises(AccountGone):
            database.run(change_profile(database.auth, ev.uuid, ProfileChange("neon"), NOW))
        with pytest.raises(AccountGone):
            database.run(change_profile(database.auth, new_uuid(), ProfileChange("neon"), NOW))
        with pytest.raises(EmailTaken):  # a replayed signup of the deleted uuid
            database.run(do_register(database.auth, signup("other@example.com"), ev.uuid))
        assert database.run(auth_state(database.auth)) == before
        again = database.run(do_register(database.auth, signup()))  # the email is free
        assert again.uuid != ev.uuid
        assert database.run(find_account(database.auth, "ada@example.com")) == AccountKey(
            again.uuid, "scrypt$hash-of-ada@example.com")

    def test_concurrent_changes_of_one_member_get_consecutive_versions_in_outbox_order(
        self, database: Database
    ) -> None:
        """Ten changes and a deletion from two auth workers (two engines) at once: every write
        gets its own version, 2 to 12, and the member's outbox ids grow with its versions (what
        lets the relay publish in id order)."""
        ev = database.run(do_register(database.auth, signup()))
        engines = [database.engine("auth"), database.engine("auth")]

        async def race() -> list[Any]:
            writes = [change_profile(engines[i % 2], ev.uuid, ProfileChange(f"nick{i}"), NOW)
                      for i in range(10)]
            return await asyncio.gather(*writes, delete_account(engines[1], ev.uuid, NOW),
                                        return_exceptions=True)

        results = database.run(race())
        done = [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, AccountGone) for r in results if r not in done), results
        assert sorted(r.version for r in done) == list(range(2, len(done) + 2))
        assert done[-1].kind == "deleted" or len(done) == 11
        payloads = [orjson.loads(o["payload"])
                    for o in database.run(table_rows(database.auth, OUTBOX))]
        assert [p["version"] for p in payloads] == list(range(1, len(done) + 2))
        assert payloads[-1]["kind"] == "deleted"

    def test_publish_pending_oldest_first_up_to_limit(self, database: Database) -> None:
        events = [database.run(do_register(database.auth, signup(f"p{i}@example.com"),
                                           now=NOW + timedelta(seconds=i)))
                  for i in range(5)]
        outbox = database.run(table_rows(database.auth, OUTBOX))
        ids = [row["id"] for row in outbox]
        assert [row["key"] for row in outbox] == [ev.uuid for ev in events]
        assert ids == sorted(ids)

        publish = Recorder()
        assert database.run(publish_pending(database.auth, 2, publish)) == 2
        assert publish.batches == [[
            PendingEvent(ids[i], PROFILE_INSERT, events[i].uuid.encode(), events[i].dumps())
            for i in (0, 1)]]
        published = [row["published_at"] is not None
                     for row in database.run(table_rows(database.auth, OUTBOX))]
        assert published == [True, True, False, False, False]

        assert database.run(publish_pending(database.auth, 2, publish)) == 2
        assert database.run(publish_pending(database.auth, 2, publish)) == 1
        assert database.run(publish_pending(database.auth, 2, publish)) == 0
        assert [[p.id for p in batch] for batch in publish.batches] == [
            ids[0:2], ids[2:4], ids[4:5]]
        after = database.run(table_rows(database.auth, OUTBOX))
        assert all(row["published_at"] is not None for row in after)
        assert {k: v for k, v in after[0].items() if k != "published_at"} == {
            k: v for k, v in outbox[0].items() if k != "published_at"}

    def test_nothing_pending_returns_zero_without_publishing(self, database: Database) -> None:
        publish = Recorder()
        assert database.run(publish_pending(database.auth, 10, publish)) == 0
        assert publish.batches == []

    def test_rows_are_marked_only_once_publish_returned(self, database: Database) -> None:
        """While the broker is being waited for, the rows are still pending (seen from another
        connection); if publishing fails, nothing is marked and the next call publishes the
        same rows again (at-least-once, never lost)."""
        for i in range(3):
            database.run(do_register(database.auth, signup(f"q{i}@example.com")))
        ids = [row["id"] for row in database.run(table_rows(database.auth, OUTBOX))]
        observer = database.engine("auth")
        seen: list[list[datetime | None]] = []

        async def look() -> None:
            seen.append([r["published_at"] for r in await table_rows(observer, OUTBOX)])

        failing = Recorder(fail=RuntimeError("broker down"), during=look)
        with pytest.raises(RuntimeError, match="broker down"):
            database.run(publish_pending(database.auth, 10, failing))
        assert failing.ids == ids
        assert seen == [[None, None, None]]
        assert [r["published_at"] for r in database.run(table_rows(database.auth, OUTBOX))] == [
            None, None, None]

        working = Recorder(during=look)
        assert database.run(publish_pending(database.auth, 10, working)) == 3
        assert working.batches == failing.batches
        assert seen[1] == [None, None, None]
        marked = [r["published_at"] for r in database.run(table_rows(database.auth, OUTBOX))]
        assert all(m is not None for m in marked), marked
        assert database.run(publish_pending(database.auth, 10, working)) == 0

    def test_concurrent_relays_publish_every_row(self, database: Database) -> None:
        """Two relays on two engines drain one outbox together, each publishing slowly so their
        transactions would overlap. PostgreSQL: the advisory lock lets one relay publish at a
        time (the other gets None: stand by), so every row is published exactly once, in id
        order overall. SQLite has no advisory locks (and pysqlite runs the SELECT outside the
        write transaction): both relays typically publish every row (at-least-once; the
        docstring says each auth worker has its own SQLite file); what holds there is that no
        row is lost and every row ends up marked."""
        count = 12
        for i in range(count):
            database.run(do_register(database.auth, signup(f"r{i}@example.com")))
        ids = [row["id"] for row in database.run(table_rows(database.auth, OUTBOX))]
        relays = [Recorder(delay=0.05), Recorder(delay=0.05)]
        stood_by = [0, 0]
        arrived: list[int] = []

        async def drain(engine: AsyncEngine, publish: Recorder, me: int) -> int:
            total = 0
            while (n := await publish_pending(engine, 2, publish)) != 0:
                if n is None:
                    stood_by[me] += 1
                    await asyncio.sleep(0.01)
                    continue
                arrived.extend(publish.ids[-n:])
                total += n
            return total

        async def both() -> list[int]:
            return list(await asyncio.gather(
                *(drain(database.engine("auth"), relay, i) for i, relay in enumerate(relays))))

        totals = database.run(both())
        published = relays[0].ids + relays[1].ids
        assert totals == [len(relays[0].ids), len(relays[1].ids)]
        assert set(published) == set(ids), "a pending row was never published"
        marked = [r["published_at"] for r in database.run(table_rows(database.auth, OUTBOX))]
        assert all(m is not None for m in marked), marked
        assert database.run(publish_pending(database.auth, 100, Recorder())) == 0
        for relay in relays:
            assert relay.ids == sorted(relay.ids), "each relay publishes oldest first"
        if database.kind == "postgresql":
            assert arrived == ids, "rows published twice, or out of order across the relays"
            assert sum(stood_by) > 0, "the relays never met: nothing was tested"
        else:
            assert len(published) >= count

    def test_delete_published_deletes_expired_rows_in_batches_of_limit(
        self, database: Database
    ) -> None:
        """Published before the cutoff: deleted, the longest published first, at most ``limit``
        per call. Published at or after it: kept. Pending: kept, though created long before."""
        expired = [CUTOFF - timedelta(days=d) for d in (1, 30, 2, 0.001, 10)]
        kept = [CUTOFF, CUTOFF + timedelta(microseconds=1), NOW, None, None]
        ids = database.run(aged_outbox(database.auth, [*expired, *kept]))
        by_age = [ids[i] for i in sorted(range(len(expired)), key=lambda i: expired[i])]
        left = list(ids)
        for deleted in ([by_age[0], by_age[1]], [by_age[2], by_age[3]], [by_age[4]], []):
            assert database.run(delete_published(database.auth, CUTOFF, 2)) == len(deleted)
            left = [i for i in left if i not in deleted]
            assert database.run(outbox_ids(database.auth)) == left
        assert left == ids[len(expired):]
        rows = database.run(table_rows(database.auth, OUTBOX))
        assert [r["published_at"] for r in rows] == kept
        assert database.run(count_members(database.auth)) == len(ids), "accounts are kept"

    def test_delete_published_never_deletes_pending_rows(self, database: Database) -> None:
        ids = database.run(aged_outbox(database.auth, [None, None, None]))
        assert database.run(delete_published(database.auth, NOW + timedelta(days=365), 10)) == 0
        assert database.run(outbox_ids(database.auth)) == ids

    def test_concurrent_deleters_delete_and_count_each_row_once(
        self, database: Database
    ) -> None:
        """Two auth workers clean one outbox at once: every expired row goes, and their counts
        add up to the rows deleted (what ``signupflow_outbox_deleted_total`` sums)."""
        count = 12
        ids = database.run(aged_outbox(database.auth, [CUTOFF - timedelta(hours=1)] * count
                                       + [None]))

        async def drain(engine: AsyncEngine) -> int:
            counts: list[int] = []  # bounded: a count that never drops to 0 fails, not hangs
            while len(counts) < count and (n := await delete_published(engine, CUTOFF, 2)):
                counts.append(n)
                await asyncio.sleep(0)
            return sum(counts)

        async def both() -> list[int]:
            return list(await asyncio.gather(drain(database.engine("auth")),
                                             drain(database.engine("auth"))))

        assert sum(database.run(both())) == count
        assert database.run(outbox_ids(database.auth)) == ids[count:]

    # PostgreSQL only: SQLite has no row locks (each worker has its own file)
    @pytest.mark.parametrize("database", ["postgresql"], indirect=True)
    def test_delete_published_skips_rows_another_worker_locked(
        self, database: Database
    ) -> None:
        """Rows another worker holds locked are skipped, not waited for (the deleter gives up
        on a lock after SHORT_WAIT_MS, so waiting would raise Retriable), and deleted by a
        later call."""
        ids = database.run(aged_outbox(database.auth, [CUTOFF - timedelta(days=1)] * 4))
        deleter = database.engine("auth", short_wait=True)

        async def while_locked() -> int:
            async with database.engine("auth").begin() as other:
                await other.execute(select(OUTBOX.c.id).where(OUTBOX.c.id.in_(ids[:2]))
                                    .with_for_update())
                return await delete_published(deleter, CUTOFF, 10)

        assert database.run(while_locked()) == 2
        assert database.run(outbox_ids(database.auth)) == ids[:2]
        assert database.run(delete_published(deleter, CUTOFF, 10)) == 2
        assert database.run(outbox_ids(database.auth)) == []


# --- member ----------------------------------------------------------------------------------


class TestMemberStorage:
    def test_save_profiles_inserts_users_partners_and_styles(self, database: Database) -> None:
        uids = sorted(new_uuid() for _ in range(3))
        batch = [
            profile(uids[0], "USER", "ada_l", [11, 3], "2026-01-02T05:04:05.123456+02:00"),
            profile(uids[1], "PARTNER", "neon_fox", [], "2026-01-02T03:04:06+00:00"),
            profile(uids[2], "PARTNER", "quiet_owl", [5], "2025-12-31T23:30:00-05:00"),
        ]
        before = datetime.now(UTC)
        assert database.run(save_profiles(database.member, batch)) == {}
        after = datetime.now(UTC)
        state = database.run(member_state(database.member))
        stored_at = {row["uuid"]: row.pop("stored_at")
                     for rows in (state["user_profile"], state["partner_profile"])
                     for row in rows}
        assert state == {
            "user_profile": [{"uuid": uids[0], "nickname": "ada_l",
                              "joined_at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                              "version": 1}],
            "partner_profile": [
                {"uuid": uids[1], "nickname": "neon_fox",
                 "joined_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC), "version": 1},
                {"uuid": uids[2], "nickname": "quiet_owl",
                 "joined_at": datetime(2026, 1, 1, 4, 30, tzinfo=UTC), "version": 1},
            ],
            "favorite_style": [{"uuid": uids[0], "style_id": 3},
                               {"uuid": uids[0], "style_id": 11},
                               {"uuid": uids[2], "style_id": 5}],
        }
        joined = {r["uuid"]: r["joined_at"]
                  for r in state["user_profile"] + state["partner_profile"]}
        assert joined == {p.uuid: instant(p.occurred_at) for p in batch}
        assert len(set(stored_at.values())) == 1, "one batch, one stored_at"
        assert before - timedelta(seconds=1) <= stored_at[uids[0]] <= after

    def test_an_older_change_is_ignored_and_a_newer_one_replaces_the_profile(
        self, database: Database
    ) -> None:
        uid = new_uuid()
        steps: list[Step] = []
        assert database.run(save_profiles(database.member, [profile(uid), change(uid, 3)],
                                          steps=steps)) == {}
        assert database.run(save_profiles(database.member, [change(uid, 2, "older", (9,))],
                                          steps=steps)) == {}
        assert [s.verdict for s in steps] == ["applied", "applied", "stale"]
        state = database.run(member_state(database.member))
        assert [(r["nickname"], r["version"]) for r in state["user_profile"]] == [("ada_new", 3)]
        assert [r["style_id"] for r in state["favorite_style"]] == [4]

    def test_a_deleted_member_stays_deleted_under_a_late_insert(
        self, database: Database
    ) -> None:
        """The delete comes first (its insert was on its way again): the tombstone stops the
        insert and any older change; the profile and styles are gone."""
        uid, kept = new_uuid(), new_uuid()
        assert database.run(save_profiles(database.member, [
            profile(uid, styles=[1]), profile(kept), deletion(uid, 2)])) == {}
        steps: list[Step] = []
        assert database.run(save_profiles(database.member, [
            profile(uid, styles=[1]), change(uid, 2)], steps=steps)) == {}
        assert [s.verdict for s in steps] == ["stale", "stale"]
        state = database.run(member_state(database.member))
        assert [r["uuid"] for r in state["user_profile"]] == [kept]
        assert {r["uuid"] for r in state["favorite_style"]} == {kept}
        assert [(r["uuid"], r["version"]) for r in database.run(
            table_rows(database.member, MEMBER_TOMBSTONES))] == [(uid, 2)]

    def test_a_change_of_an_unknown_member_is_recorded_once_and_skipped(
        self, database: Database
    ) -> None:
        uid = new_uuid()
        for _ in range(2):  # a redelivery records nothing more
            steps: list[Step] = []
            assert database.run(save_profiles(database.member, [change(uid, 2)],
                                              steps=steps)) == {}
            assert [s.verdict for s in steps] == ["skipped"]
        rows = database.run(table_rows(database.member, SKIPPED))
        assert [(r["uuid"], r["version"], r["kind"]) for r in rows] == [(uid, 2, "changed")]
        assert "never stored" in rows[0]["reason"]
        assert database.run(member_state(database.member))["user_profile"] == []

    def test_redelivery_changes_nothing(self, database: Database) -> None:
        uids = [new_uuid(), new_uuid()]
        batch = [profile(uids[0], "USER"), profile(uids[1], "PARTNER", "neon_fox", [4])]
        assert database.run(save_profiles(database.member, batch)) == {}
        stored = database.run(member_state(database.member))
        assert database.run(save_profiles(database.member, batch)) == {}
        assert database.run(save_profiles(database.member, [batch[1], batch[0]])) == {}
        assert database.run(member_state(database.member)) == stored

    def test_a_duplicate_within_one_batch_is_stored_once(self, database: Database) -> None:
        p = profile(new_uuid(), "PARTNER", styles=[1, 2])
        assert database.run(save_profiles(database.member, [p, p, p])) == {}
        state = database.run(member_state(database.member))
        assert [r["uuid"] for r in state["partner_profile"]] == [p.uuid]
        assert state["user_profile"] == []
        assert [(r["uuid"], r["style_id"]) for r in state["favorite_style"]] == [
            (p.uuid, 1), (p.uuid, 2)]

    def test_the_same_content_in_another_form_is_a_redelivery(self, database: Database) -> None:
        """Styles in another order and the same instant at another offset say the same."""
        p = profile(new_uuid(), styles=[2, 7], occurred_at="2026-01-02T03:04:05+00:00")
        same = profile(p.uuid, styles=[7, 2], occurred_at="2026-01-02T05:04:05+02:00")
        assert database.run(save_profiles(database.member, [p])) == {}
        stored = database.run(member_state(database.member))
        assert database.run(save_profiles(database.member, [same])) == {}
        assert database.run(member_state(database.member)) == stored

    @pytest.mark.parametrize(("change", "difference"), [
        ({"role": "PARTNER"}, "role 'USER' != 'PARTNER'"),
        ({"nickname": "ada_m"}, "nickname 'ada_l' != 'ada_m'"),
        ({"styles": [2, 8]}, "styles [2, 7] != [2, 8]"),
        ({"styles": []}, "styles [2, 7] != []"),
        ({"occurred_at": "2026-01-02T03:04:05.123457+00:00"},
         "occurred_at '2026-01-02T03:04:05.123456+00:00' != '2026-01-02T03:04:05.123457+00:00'"),
    ])
    def test_conflicting_uuid_reuse_is_refused_naming_the_field(
        self, database: Database, change: dict[str, Any], difference: str
    ) -> None:
        """Across batches (against the table) and within one batch (against an earlier
        profile): the reuse is refused by its index with a reason naming exactly the field
        that differs; the rest of the batch is stored and the first profile is kept."""
        across, within, bystander = new_uuid(), new_uuid(), new_uuid()
        assert database.run(save_profiles(database.member, [profile(across)])) == {}
        refused = database.run(save_profiles(database.member, [
            profile(bystander, "PARTNER", "bystander", [9]),
            profile(across, **change),
            profile(within),
            profile(within, **change),
        ]))
        assert refused == {
            1: f"uuid {across} {REUSED} (stored vs event): {difference}",
            3: f"uuid {within} {REUSED} (stored vs event): {difference}",
        }
        state = database.run(member_state(database.member))
        joined = instant("2026-01-02T03:04:05.123456+00:00")
        assert [{k: v for k, v in r.items() if k != "stored_at"}
                for r in state["user_profile"]] == sorted(
            [{"uuid": u, "nickname": "ada_l", "joined_at": joined, "version": 1}
             for u in (across, within)],
            key=lambda r: str(r["uuid"]))
        assert [(r["uuid"], r["nickname"]) for r in state["partner_profile"]] == [
            (bystander, "bystander")]
        assert sorted((r["uuid"], r["style_id"]) for r in state["favorite_style"]) == sorted(
            [(across, 2), (across, 7), (within, 2), (within, 7), (bystander, 9)])

    def test_signups_per_minute_count_first_inserts_only(self, database: Database) -> None:
        """Each profile its transaction inserts adds one to its minute (role, source
        partition, minute of occurred_at in UTC); a redelivery or a refused reuse adds nothing.
        The counts of every minute the stored profiles fall in, redeliveries' too, are read
        back after the commit."""
        u = [new_uuid() for _ in range(5)]
        m4 = window_start("2026-01-02T03:04:00+00:00")
        batch = [profile(u[0], "USER", occurred_at="2026-01-02T03:04:00+00:00"),
                 profile(u[1], "USER", occurred_at="2026-01-02T03:04:59.999999+00:00"),
                 profile(u[2], "PARTNER", occurred_at="2026-01-02T05:05:00+02:00"),
                 profile(u[3], "USER", occurred_at="2026-01-02T03:04:30+00:00")]
        counts: dict[MinuteKey, int] = {}
        assert database.run(save_profiles(database.member, [*batch, batch[0]], [1, 1, 1, 2, 1],
                                          counts)) == {}
        first = {("USER", 1, m4): 2, ("PARTNER", 1, m4 + 60): 1, ("USER", 2, m4): 1}
        assert counts == first
        again: dict[MinuteKey, int] = {}
        refused = database.run(save_profiles(database.member, [
            batch[0], profile(u[2], "USER"), profile(u[4], occurred_at=batch[0].occurred_at),
        ], [1, 1, 1], again))
        assert list(refused) == [1]
        assert again == {("USER", 1, m4): 3}
        rows = database.run(table_rows(database.member, MINUTES))
        assert {(r["role"], r["source_partition"], r["window_start"]): r["signups"]
                for r in rows} == {**first, ("USER", 1, m4): 3}
        assert database.run(save_profiles(database.member, [profile(new_uuid())])) == {}
        assert ("USER", 0, window_start(profile("x").occurred_at)) in {
            (r["role"], r["source_partition"], r["window_start"])
            for r in database.run(table_rows(database.member, MINUTES))}  # no partition: 0

    def test_concurrent_writers_of_one_profile_count_it_once(self, database: Database) -> None:
        """Two member workers (two engines) store the same 20 profiles at once, as after a
        rebalance: each profile is inserted by one of them and counted once, and the writer
        that commits last reads the final count."""
        engines = [database.engine("member"), database.engine("member")]
        batch = [profile(new_uuid(), occurred_at="2026-01-02T03:04:05+00:00")
                 for _ in range(20)]
        seen: list[dict[MinuteKey, int]] = [{}, {}]

        async def race() -> list[dict[int, str]]:
            return await asyncio.gather(*(save_profiles(e, batch, [0] * 20, c)
                                          for e, c in zip(engines, seen, strict=True)))

        assert database.run(race()) == [{}, {}]
        key = ("USER", 0, window_start("2026-01-02T03:04:00+00:00"))
        rows = database.run(table_rows(database.member, MINUTES))
        assert [(r["role"], r["source_partition"], r["window_start"], r["signups"])
                for r in rows] == [(*key, 20)]
        assert max(c[key] for c in seen) == 20 and all(list(c) == [key] for c in seen)
        assert len(database.run(table_rows(database.member, USERS))) == 20

    def test_prune_minutes_deletes_the_windows_before_a_start(self, database: Database) -> None:
        times = ["2026-01-02T03:03:59+00:00", "2026-01-02T03:04:00+00:00",
                 "2026-01-02T03:05:00+00:00"]
        assert database.run(save_profiles(database.member, [
            profile(new_uuid(), occurred_at=t) for t in times])) == {}
        assert database.run(prune_minutes(database.member, window_start(times[1]))) == 1
        assert [r["window_start"] for r in database.run(table_rows(database.member, MINUTES))
                ] == [window_start(t) for t in times[1:]]
        assert database.run(prune_minutes(database.member, 0)) == 0


# --- batch -----------------------------------------------------------------------------------


class TestBatchStorage:
    def test_save_and_load_sorted_by_partner_id(self, database: Database) -> None:
        ids = [new_uuid() for _ in range(4)]
        summaries = [summary(pid, f"nick{i}", i, f"2026-01-0{i + 1}T00:00:00+00:00",
                             f"2026-02-0{i + 1}T12:00:00.5+00:00")
                     for i, pid in enumerate(ids)]
        assert database.run(save_summaries(database.batch, summaries)) == {}
        loaded = database.run(load_summaries(database.batch))
        expected = sorted(
            ({"partner_id": s.partner_id, "nickname": s.nickname, "style_count": s.style_count,
              "joined_at": instant(s.joined_at), "summarized_at": instant(s.summarized_at),
              "version": 1} for s in summaries), key=lambda r: str(r["partner_id"]))
        assert [{k: normalised(v) for k, v in row.model_dump().items()}
                for row in loaded] == expected

    def test_a_newer_summary_replaces_it_an_older_or_equal_one_does_not(
        self, database: Database
    ) -> None:
        pid, other = new_uuid(), new_uuid()
        first = summary(pid)
        assert database.run(save_summaries(database.batch, [first, summary(other)])) == {}
        assert database.run(save_summaries(database.batch, [first])) == {}
        unchanged = database.run(table_rows(database.batch, SUMMARIES))
        assert len(unchanged) == 2
        second = summary(pid, "renamed", 7, "2026-03-01T00:00:00+00:00",
                         "2026-03-01T00:00:01+00:00")
        assert database.run(save_summaries(database.batch, [second])) == {}
        assert database.run(table_rows(database.batch, SUMMARIES)) == unchanged
        newer = PartnerSummary(**{**second.asdict(), "version": 3})
        assert database.run(save_summaries(database.batch, [newer])) == {}
        assert database.run(save_summaries(database.batch, [
            PartnerSummary(**{**first.asdict(), "version": 2})])) == {}
        rows = {r["partner_id"]: r for r in database.run(table_rows(database.batch, SUMMARIES))}
        assert rows == {
            pid: {"partner_id": pid, "nickname": "renamed", "style_count": 7,
                  "joined_at": datetime(2026, 3, 1, tzinfo=UTC),
                  "summarized_at": datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC), "version": 3},
            other: next(r for r in unchanged if r["partner_id"] == other),
        }

    def test_a_deletion_removes_the_row_and_keeps_its_version(self, database: Database) -> None:
        pid, other = new_uuid(), new_uuid()
        assert database.run(save_summaries(database.batch, [summary(pid), summary(other)])) == {}
        assert database.run(save_summaries(database.batch, [(pid, 2), (new_uuid(), 4)])) == {}
        assert [r["partner_id"] for r in database.run(table_rows(database.batch, SUMMARIES))
                ] == [other]
        assert database.run(deleted_versions(database.batch, [pid, other])) == {pid: 2}
        # an older summary (a redelivery) does not bring it back: batch asks first
        assert database.run(save_summaries(database.batch, [(pid, 1)])) == {}
        assert database.run(deleted_versions(database.batch, [pid])) == {pid: 2}

    def test_empty_input_returns_nothing_refused_and_writes_nothing(
        self, database: Database
    ) -> None:
        assert database.run(save_summaries(database.batch, [])) == {}
        assert database.run(load_summaries(database.batch)) == []


# --- db --------------------------------------------------------------------------------------


async def _pragmas(engine: AsyncEngine) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        return tuple([(await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                      for name in ("journal_mode", "busy_timeout", "foreign_keys",
                                   "synchronous")])


class TestDb:
    def test_make_engine(self, database: Database, tmp_path: Path) -> None:
        """SQLite: the folder is created and every connection gets WAL, a 10 s busy timeout,
        foreign keys and synchronous=NORMAL. PostgreSQL: the URL's asyncpg engine as is."""
        if database.kind == "sqlite":
            nested = tmp_path / "not" / "yet" / "there.db"
            engine = make_engine(f"sqlite+aiosqlite:///{nested}")
            try:
                assert nested.parent.is_dir()
                assert database.run(_pragmas(engine)) == ("wal", 10000, 1, 1)
            finally:
                database.run(engine.dispose())
        else:
            engine = database.engine("auth")
            assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "asyncpg")
            assert engine.url.render_as_string() == database.urls["auth"]

    def test_a_live_database_is_writable(self, database: Database) -> None:
        for service in SERVICES:
            assert database.run(unwritable(database.engines[service])) is None
            assert database.run(unwritable(database.engine(service))) is None

    def test_unwritable_says_why_when_the_database_cannot_be_written(
            self, outage: Outage) -> None:
        """PostgreSQL: the server is stopped. SQLite: another process holds the write lock, so
        the file still answers a read (WAL) but takes no write: the probe asks for the lock
        and gives up after its own short wait, not the 10 s busy timeout."""
        db = outage.db
        assert db.run(unwritable(db.auth)) is None
        outage.go_down()
        for service in SERVICES:
            started = time.monotonic()
            problem = db.run(unwritable(db.engines[service], lock_wait=0.2))
            assert problem, service
            if db.kind == "sqlite":
                assert "database is locked" in problem
                assert time.monotonic() - started < 1.5
                assert db.run(_select_one(db.engines[service])) == 1  # it still reads
        if db.kind == "sqlite":
            outage.up_again()
            assert db.run(unwritable(db.auth)) is None

    def test_upgrade_is_idempotent_and_creates_own_tables_only(
        self, database: Database
    ) -> None:
        ev = database.run(do_register(database.auth, signup()))
        database.run(save_profiles(database.member, [
            profile(ev.uuid), profile(new_uuid(), "PARTNER", "neon_fox"),
            deletion(new_uuid(), 2), change(new_uuid(), 2)]))
        database.run(save_summaries(database.batch, [summary(ev.uuid), (new_uuid(), 2)]))
        before = {s: {t.name: database.run(table_rows(database.engines[s], t))
                      for t in SCHEMAS[s].sorted_tables} for s in SERVICES}

        async def tables(engine: AsyncEngine) -> set[str]:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))

        for service in SERVICES:
            engine = database.engines[service]
            database.run(upgrade(engine, service))
            database.run(upgrade(database.engine(service), service))
            assert database.run(tables(engine)) == {*SCHEMAS[service].tables, "alembic_version"}
        assert {s: {t.name: database.run(table_rows(database.engines[s], t))
                    for t in SCHEMAS[s].sorted_tables} for s in SERVICES} == before
        assert all(rows for tables_ in before.values() for rows in tables_.values())

    def test_insert_ignore_and_upsert(self, database: Database) -> None:
        engine = database.batch
        dialect = engine.dialect.name
        pid = new_uuid()
        row = {"partner_id": pid, "nickname": "first", "style_count": 1,
               "joined_at": NOW, "summarized_at": NOW, "version": 1}

        async def write(stmt: Any, values: dict[str, Any]) -> None:
            async with engine.begin() as conn:
                await conn.execute(stmt, [values])

        database.run(write(insert_ignore(SUMMARIES, dialect), row))
        database.run(write(insert_ignore(SUMMARIES, dialect), {**row, "nickname": "ignored"}))
        assert database.run(table_rows(engine, SUMMARIES)) == [row]
        later = NOW + timedelta(hours=1)
        database.run(write(upsert(SUMMARIES, dialect, ["partner_id"]),
                           {**row, "nickname": "second", "style_count": 2,
                            "summarized_at": later}))
        assert database.run(table_rows(engine, SUMMARIES)) == [
            {**row, "nickname": "second", "style_count": 2, "summarized_at": later}]

    @pytest.mark.parametrize("dialect", ["mysql", ""])
    def test_insert_ignore_and_upsert_refuse_other_dialects(
        self, database: Database, dialect: str
    ) -> None:
        with pytest.raises(ValueError, match=f"no upsert support for the {dialect!r} database"):
            insert_ignore(SUMMARIES, dialect)
        with pytest.raises(ValueError, match=f"no upsert support for the {dialect!r} database"):
            upsert(SUMMARIES, dialect, ["partner_id"])
        own = database.batch.dialect
        assert "ON CONFLICT DO NOTHING" in str(insert_ignore(SUMMARIES, own.name).compile(
            dialect=own))
        assert "ON CONFLICT (partner_id) DO UPDATE" in str(
            upsert(SUMMARIES, own.name, ["partner_id"]).compile(dialect=own))


# --- errors ----------------------------------------------------------------------------------


@asynccontextmanager
async def locked(db: Database, service: str) -> AsyncIterator[None]:
    """Another session holds ``service``'s database (SQLite) or all its tables (PostgreSQL)
    exclusively until the block ends."""
    if db.kind == "sqlite":
        lock = sqlite3.connect(db.sqlite_path(service), isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            lock.rollback()
            lock.close()
        return
    async with AsyncExitStack() as stack:
        conn: AsyncConnection = await stack.enter_async_context(db.engine(service).connect())
        await conn.begin()
        names = ", ".join(SCHEMAS[service].tables)
        await conn.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        yield
        await conn.rollback()


class TestErrorTranslation:
    def test_errors_are_storage_errors(self, database: Database) -> None:
        assert issubclass(Retriable, StorageError) and issubclass(Rejected, StorageError)
        assert issubclass(EmailTaken, Rejected) and not issubclass(Retriable, Rejected)

        async def duplicate_key() -> None:
            with translated():
                async with database.batch.begin() as conn:
                    row = {"partner_id": "p", "nickname": "n", "style_count": 0,
                           "joined_at": NOW, "summarized_at": NOW}
                    await conn.execute(SUMMARIES.insert(), [row])
                    await conn.execute(SUMMARIES.insert(), [row])

        with pytest.raises(Rejected) as caught:
            database.run(duplicate_key())
        assert type(caught.value) is Rejected
        assert "IntegrityError" in str(caught.value) or "UniqueViolation" in str(caught.value)
        assert database.run(table_rows(database.batch, SUMMARIES)) == []

    def test_writes_to_a_stopped_or_locked_database_raise_retriable(
        self, outage: Outage
    ) -> None:
        """Never a raw driver error: the streams wait and retry. PostgreSQL: the server is
        stopped under a pooled connection, then refuses new ones. SQLite: another connection
        holds the write lock past the busy timeout (reads still work in WAL mode)."""
        db = outage.db
        assert db.run(count_members(db.auth)) == 0  # pools a live connection
        assert db.run(save_profiles(db.member, [profile(new_uuid())])) == {}
        assert db.run(save_summaries(db.batch, [summary(new_uuid())])) == {}
        outage.go_down()
        writes: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: do_register(db.auth, signup("down@example.com")),
            lambda: do_register(db.auth, signup("down2@example.com")),
            lambda: save_profiles(db.member, [profile(new_uuid())]),
            lambda: save_summaries(db.batch, [summary(new_uuid())]),
        ]
        for write in writes:
            with pytest.raises(Retriable) as caught:
                db.run(write())
            assert caught.value.__cause__ is not None
            assert not isinstance(caught.value, Rejected)
        if db.kind == "postgresql":
            with pytest.raises(Retriable):
                db.run(publish_pending(db.auth, 10, Recorder()))
            with pytest.raises(Retriable):
                db.run(count_members(db.auth))
        else:
            assert db.run(count_members(db.auth)) == 0
            assert db.run(publish_pending(db.auth, 10, Recorder())) == 0
            outage.up_again()
            assert db.run(count_members(db.auth)) == 0, "the refused writes left nothing"
            assert len(db.run(table_rows(db.member, USERS))) == 1
            assert len(db.run(table_rows(db.batch, SUMMARIES))) == 1

    def test_a_write_waiting_on_a_lock_raises_retriable(self, database: Database) -> None:
        """SQLite: the busy timeout runs out ("database is locked"). PostgreSQL: the lock
        timeout runs out (SQLSTATE 55P03). Nothing is written."""
        auth = database.engine("auth", short_wait=True)
        member = database.engine("member", short_wait=True)
        batch = database.engine("batch", short_wait=True)

        async def attempt(service: str, write: Coroutine[Any, Any, Any]) -> None:
            async with locked(database, service):
                with pytest.raises(Retriable):
                    await write

        database.run(attempt("auth", do_register(auth, signup())))
        database.run(attempt("member", save_profiles(member, [profile(new_uuid())])))
        database.run(attempt("batch", save_summaries(batch, [summary(new_uuid())])))
        assert database.run(count_members(auth)) == 0
        assert database.run(member_state(member)) == {
            "user_profile": [], "partner_profile": [], "favorite_style": []}
        assert database.run(load_summaries(batch)) == []

    @pytest.mark.parametrize("nickname", ["x" * 31, "nul\x00here"])
    def test_values_postgresql_refuses_are_rejected(
        self, database: Database, nickname: str
    ) -> None:
        """A nickname longer than its column (SQLSTATE 22001) or with NUL (22021) can never be
        stored on PostgreSQL: Rejected, and the whole batch is rolled back. SQLite stores
        both exactly as given."""
        good, bad = new_uuid(), new_uuid()
        profiles = [profile(good), profile(bad, nickname=nickname)]
        summaries = [summary(good), summary(bad, nickname=nickname)]
        if database.kind == "sqlite":
            assert database.run(save_profiles(database.member, profiles)) == {}
            assert database.run(save_summaries(database.batch, summaries)) == {}
            users = database.run(table_rows(database.member, USERS))
            assert {r["uuid"]: r["nickname"] for r in users} == {good: "ada_l", bad: nickname}
            loaded = database.run(load_summaries(database.batch))
            assert {r.partner_id: r.nickname for r in loaded} == {
                good: "neon_fox", bad: nickname}
            return
        with pytest.raises(Rejected) as caught:
            database.run(save_profiles(database.member, profiles))
        assert not isinstance(caught.value, (Retriable, EmailTaken))
        with pytest.raises(Rejected):
            database.run(save_summaries(database.batch, summaries))
        assert database.run(member_state(database.member)) == {
            "user_profile": [], "partner_profile": [], "favorite_style": []}
        assert database.run(load_summaries(database.batch)) == []

    def test_an_unstorable_account_is_rejected_not_email_taken(
        self, database: Database
    ) -> None:
        """register only turns integrity errors into EmailTaken: a name longer than its column
        (bypassing validation) is Rejected on PostgreSQL and stored as is on SQLite."""
        long_name = Signup(**{**signup().__dict__, "name": "n" * 101})
        if database.kind == "sqlite":
            ev = database.run(do_register(database.auth, long_name))
            members, outbox = database.run(auth_state(database.auth))
            assert [(m["uuid"], m["name"]) for m in members] == [(ev.uuid, "n" * 101)]
            assert [o["key"] for o in outbox] == [ev.uuid]
            return
        with pytest.raises(Rejected) as caught:
            database.run(do_register(database.auth, long_name))
        assert not isinstance(caught.value, EmailTaken)
        assert database.run(auth_state(database.auth)) == ([], [])

    @pytest.mark.parametrize("table", ["favorite_style", "partner_summary"])
    def test_a_value_the_driver_cannot_bind_is_rejected(
        self, database: Database, request: pytest.FixtureRequest, table: str
    ) -> None:
        """An integer beyond 64 bits (a style id, a style count): deterministic on both
        backends, so Rejected (errors.py: "a value the driver could not bind (overflow)")."""
        if table == "favorite_style":
            with pytest.raises(Rejected):
                database.run(save_profiles(database.member,
                                           [profile(new_uuid(), styles=[2**63])]))
        else:
            with pytest.raises(Rejected):
                database.run(save_summaries(database.batch,
                                            [summary(new_uuid(), style_count=2**63)]))
        assert database.run(member_state(database.member)) == {
            "user_profile": [], "partner_profile": [], "favorite_style": []}
        assert database.run(load_summaries(database.batch)) == []

    def test_load_summaries_from_an_unavailable_database_raises_retriable(
        self, outage: Outage, request: pytest.FixtureRequest
    ) -> None:
        """PostgreSQL: reading from a stopped server is Retriable like every other storage
        call. SQLite: a write lock held elsewhere does not stop WAL readers."""
        db = outage.db
        pid = new_uuid()
        assert db.run(save_summaries(db.batch, [summary(pid)])) == {}
        assert [r.partner_id for r in db.run(load_summaries(db.batch))] == [pid]
        outage.go_down()
        if db.kind == "sqlite":
            assert [r.partner_id for r in db.run(load_summaries(db.batch))] == [pid]
            return
        for _ in range(2):  # the pooled connection is dead, then no new one is accepted
            with pytest.raises(Retriable):
                db.run(load_summaries(db.batch))
