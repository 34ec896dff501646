"""The member and batch agents under Faust's ``test_context``, on temporary SQLite files.

Each test builds its own stage (app, database, tables) from its settings. Kafka is not involved
here: what the agents publish is recorded instead. The same agents run against a real broker in
tests/integration.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from signupflow.app import create_app
from signupflow.dlq import dead_letter
from signupflow.domain.per_minute import window_start
from signupflow.metrics import REGISTRY
from signupflow.migrations import upgrade
from signupflow.models.events import PartnerChanged, PartnerCreated, PartnerDeleted, ProfileInsert
from signupflow.settings import Settings, get_settings
from signupflow.storage.member import save_profiles
from signupflow.streams.batch import BatchStage
from signupflow.streams.member import MemberStage
from signupflow.streams.stage import Stage
from signupflow.tables import signups_per_minute
from signupflow.topics import PROFILE_INSERT

S = TypeVar("S", bound=Stage[Any, Any])
NOW = "2026-11-26T10:00:00+00:00"


class Recorder:
    """Stands in for ``topic.send``: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(kwargs)
        return acknowledged()

    def send_changelog(self, partition: int, key: Any, value: Any, *_: Any, **__: Any
                       ) -> asyncio.Future[None]:
        """Stands in for ``table.send_changelog``."""
        self.sent.append({"partition": partition, "key": key, "value": value})
        return acknowledged()


def acknowledged() -> asyncio.Future[None]:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql``, or none while the agent has not created the schema yet (or holds a
    lock: this read runs on the event loop, so it must not wait for the agent's writer)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=0.05)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc) or "locked" in str(exc):
            return []
        raise
    finally:
        conn.close()


def profile(role: str = "USER", styles: list[int] | None = None) -> ProfileInsert:
    return ProfileInsert(uuid=str(uuid.uuid4()), role=role, nickname="velvet_fox",
                         favorite_styles=[1, 2] if styles is None else styles, occurred_at=NOW)


async def until(predicate: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def service_settings(tmp_path: Path, service: str, db: Path) -> Settings:
    """Settings whose ``service`` database is ``db`` (a SQLite file), and data under tmp_path;
    tables in memory, which these tests look into (the store on disk has tests of its own:
    test_table_store.py)."""
    return replace(get_settings(), data_dir=tmp_path / "data",
                   database_urls={service: f"sqlite+aiosqlite:///{db}"}, table_store="memory")


@asynccontextmanager
async def stage_of(stage: S) -> AsyncIterator[S]:
    """``stage`` until the test is done; then its database is closed, and so is the loop its
    app's consumer thread made (the app is never started, so it never closes that loop)."""
    try:
        yield stage
    finally:
        await stage.resources.close()
        consumer: Any = stage.app._consumer
        if consumer is not None:
            consumer._thread.thread_loop.close()


@asynccontextmanager
async def member_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       stage_type: type[MemberStage] = MemberStage
                       ) -> AsyncIterator[dict[str, Any]]:
    """A member stage of its own on ``member.db`` under ``tmp_path``; its dead letters,
    partner-created events (through the app's producer) and changelog records are recorded."""
    db = tmp_path / "member.db"
    settings = service_settings(tmp_path, "member", db)
    partners, dlq, changelog = Recorder(), Recorder(), Recorder()
    await upgrade(settings.database_url("member"), "member")
    app = create_app("member", settings)

    async def producer_send(topic: str, key: bytes, value: bytes, *_: Any) -> Any:
        return await partners.send(topic=topic, key=key, value=value)

    monkeypatch.setattr(app.producer, "send", producer_send)
    async with stage_of(stage_type.build(app, settings, send_letter=dlq.send)) as stage:
        monkeypatch.setattr(stage.signups.table, "send_changelog", changelog.send_changelog)
        yield {"db": db, "stage": stage, "partners": partners, "dlq": dlq,
               "changelog": changelog}


@pytest.fixture
async def member_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> AsyncIterator[dict[str, Any]]:
    async with member_stage(tmp_path, monkeypatch) as env:
        yield env


@pytest.fixture
async def member_agent(member_env: dict[str, Any]) -> AsyncIterator[Any]:
    stage: MemberStage = member_env["stage"]
    async with stage.agent.test_context() as agent:
        yield agent


async def test_member_writes_profiles_styles_and_publishes_partners(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    user, partner = profile("USER", [3]), profile("PARTNER", [1, 5, 7])
    for event in (user, partner):
        await member_agent.put(event.dumps(), key=event.uuid.encode())
    db = member_env["db"]
    await until(lambda: len(rows(db, "SELECT * FROM partner_profile")) == 1)
    assert rows(db, "SELECT uuid, nickname FROM user_profile") == [(user.uuid, "velvet_fox")]
    assert rows(db, "SELECT uuid FROM partner_profile") == [(partner.uuid,)]
    assert sorted(rows(db, "SELECT uuid, style_id FROM favorite_style")) == sorted(
        [(user.uuid, 3), (partner.uuid, 1), (partner.uuid, 5), (partner.uuid, 7)])
    await until(lambda: len(member_env["partners"].sent) == 1)
    sent = member_env["partners"].sent[0]
    assert (sent["topic"], sent["key"]) == ("partner-created", partner.uuid.encode())
    assert orjson.loads(sent["value"]) == PartnerCreated(
        partner_id=partner.uuid, nickname="velvet_fox", style_count=3, occurred_at=NOW).asdict()


async def test_member_redelivery_changes_nothing(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    event = profile("USER", [2, 4])
    for _ in range(3):
        await member_agent.put(event.dumps(), key=event.uuid.encode())
    db = member_env["db"]
    await until(lambda: len(rows(db, "SELECT * FROM user_profile")) == 1)
    await asyncio.sleep(0.2)
    assert len(rows(db, "SELECT * FROM user_profile")) == 1
    assert len(rows(db, "SELECT * FROM favorite_style")) == 2


async def test_member_dead_letters_bad_events_and_keeps_going(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    good = profile("USER")
    await member_agent.put(b"{not json", key=b"k1")
    await member_agent.put(profile("ADMIN").dumps(), key=b"k2")
    await member_agent.put(good.dumps(), key=good.uuid.encode())
    db = member_env["db"]
    await until(lambda: len(rows(db, "SELECT * FROM user_profile")) == 1)
    await until(lambda: len(member_env["dlq"].sent) == 2)
    letters = member_env["dlq"].sent
    assert [letter["key"] for letter in letters] == [b"k1", b"k2"]
    assert letters[0]["value"] == b"{not json"
    reasons = [dict(letter["headers"])["dlq.error"].decode() for letter in letters]
    assert "not valid UTF-8 JSON" in reasons[0] and "role must be one of" in reasons[1]


@asynccontextmanager
async def batch_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      stage_type: type[BatchStage] = BatchStage
                      ) -> AsyncIterator[dict[str, Any]]:
    """A batch stage of its own on ``batch.db`` under ``tmp_path``; its dead letters and
    changelog records are recorded."""
    db = tmp_path / "batch.db"
    settings = service_settings(tmp_path, "batch", db)
    await upgrade(settings.database_url("batch"), "batch")
    dlq, changelog = Recorder(), Recorder()
    async with stage_of(stage_type.build(create_app("batch", settings), settings,
                                         send_letter=dlq.send)) as stage:
        monkeypatch.setattr(stage.partner_summary, "send_changelog", changelog.send_changelog)
        yield {"db": db, "stage": stage, "dlq": dlq, "changelog": changelog}


@pytest.fixture
async def batch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[dict[str, Any]]:
    async with batch_stage(tmp_path, monkeypatch) as env:
        yield env


async def test_batch_keeps_one_summary_per_partner_in_table_and_db(
    batch_env: dict[str, Any]
) -> None:
    batch: BatchStage = batch_env["stage"]
    partner = PartnerCreated(partner_id=str(uuid.uuid4()), nickname="amber_owl",
                             style_count=2, occurred_at=NOW)
    async with batch.agent.test_context() as agent:
        for _ in range(2):  # the second is a redelivery
            await agent.put(partner.dumps(), key=partner.partner_id.encode())
        await agent.put(b'{"partner_id": 1}', key=b"x")
        db = batch_env["db"]
        await until(lambda: len(rows(db, "SELECT * FROM partner_summary")) == 1)
        await until(lambda: len(batch_env["dlq"].sent) == 1)
    await batch.resources.close()
    summary = batch.partner_summary[partner.partner_id]
    assert (summary.nickname, summary.style_count, summary.joined_at) == ("amber_owl", 2, NOW)
    assert rows(db, "SELECT partner_id, nickname, style_count FROM partner_summary") == [
        (partner.partner_id, "amber_owl", 2)]
    changelog = batch_env["changelog"].sent
    assert len(changelog) == 1  # the redelivery wrote nothing
    assert changelog[0]["key"] == partner.partner_id
    assert changelog[0]["partition"] == 0  # the partition of the event (test_context uses 0)
    assert "partner_id must be a UUID string" in dict(
        batch_env["dlq"].sent[0]["headers"])["dlq.error"].decode()


async def test_batch_follows_a_partners_life_and_nothing_older_brings_it_back(
    batch_env: dict[str, Any]
) -> None:
    """Changed then deleted: the entry follows, then goes (a tombstone on the changelog, the
    batch.db row removed, its version kept); the created event again after that is stale."""
    batch: BatchStage = batch_env["stage"]
    pid = str(uuid.uuid4())
    life = [PartnerCreated(partner_id=pid, nickname="amber_owl", style_count=2, occurred_at=NOW),
            PartnerChanged(kind="changed", partner_id=pid, version=2, nickname="olive_owl",
                           style_count=4, occurred_at=NOW),
            PartnerDeleted(kind="deleted", partner_id=pid, version=3, occurred_at=NOW)]
    db = batch_env["db"]
    async with batch.agent.test_context() as agent:
        for event in life[:2]:
            await agent.put(event.dumps(), key=pid.encode())
        await until(lambda: rows(db, "SELECT nickname, version FROM partner_summary") == [
            ("olive_owl", 2)])
        await until(lambda: pid in batch.partner_summary.data
                    and batch.partner_summary.data[pid].version == 2)
        assert batch.partner_summary.data[pid].style_count == 4
        for event in (life[2], life[0], life[1]):  # deleted, then an older prefix again
            await agent.put(event.dumps(), key=pid.encode())
        await until(lambda: rows(db, "SELECT partner_id, version FROM partner_tombstone") == [
            (pid, 3)])
        await asyncio.sleep(0.2)
    await batch.resources.close()
    assert rows(db, "SELECT * FROM partner_summary") == []
    assert pid not in batch.partner_summary.data
    assert [(c["key"], c["value"] is None) for c in batch_env["changelog"].sent][-1] == (
        pid, True)
    assert batch_env["dlq"].sent == []


def letters_of(recorder: Recorder) -> list[tuple[bytes, str]]:
    return [(letter["key"], dict(letter["headers"])["dlq.error"].decode())
            for letter in recorder.sent]


async def test_member_refuses_a_uuid_reused_with_other_content(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    """Finding: the same uuid re-sent as PARTNER made a user a partner too, and a new nickname
    was dropped silently. Identical redeliveries stay silent no-ops."""
    user = profile("USER", [2])
    as_partner = ProfileInsert(**{**user.asdict(), "role": "PARTNER"})
    renamed = ProfileInsert(**{**user.asdict(), "nickname": "other_name"})
    for event in (user, user, as_partner, renamed, user):
        await member_agent.put(event.dumps(), key=user.uuid.encode())
    await until(lambda: len(member_env["dlq"].sent) == 2)
    await asyncio.sleep(0.2)
    db = member_env["db"]
    assert rows(db, "SELECT uuid, nickname FROM user_profile") == [(user.uuid, "velvet_fox")]
    assert rows(db, "SELECT * FROM partner_profile") == []
    assert member_env["partners"].sent == []  # no PartnerCreated for a user
    (k1, why1), (k2, why2) = letters_of(member_env["dlq"])
    assert k1 == k2 == user.uuid.encode()
    assert f"uuid {user.uuid} reused with different content" in why1
    assert "role 'USER' != 'PARTNER'" in why1
    assert "nickname 'velvet_fox' != 'other_name'" in why2


async def test_member_isolates_an_event_the_database_fails_on_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: one event the database could not bind retried its batch forever, stalled every
    partition, and re-sent the batch's dead letters on every retry."""
    from signupflow.streams import retry

    monkeypatch.setattr(retry, "FIRST_DELAY", 0.0)
    poison = profile("USER")

    class Poisoned(MemberStage):
        """A member stage whose database cannot take ``poison``."""

        async def save(self, engine: Any, profiles: Sequence[ProfileInsert], *rest: Any
                       ) -> dict[int, str]:
            if any(p.uuid == poison.uuid for p in profiles):
                raise OverflowError("date value out of range")
            return await super().save(engine, profiles, *rest)

    good = [profile("PARTNER", [1]) for _ in range(20)]
    async with member_stage(tmp_path, monkeypatch, Poisoned) as env, \
            env["stage"].agent.test_context() as agent:
        await agent.put(b"{not json", key=b"k0")
        for event in [*good[:10], poison, *good[10:]]:
            await agent.put(event.dumps(), key=event.uuid.encode())
        db = env["db"]
        await until(lambda: len(rows(db, "SELECT * FROM partner_profile")) == 20)
        await until(lambda: len(env["partners"].sent) == 20)
        await asyncio.sleep(0.3)
    letters = letters_of(env["dlq"])
    assert [key for key, _ in letters] == [b"k0", poison.uuid.encode()]  # each exactly once
    assert "OverflowError: date value out of range" in letters[1][1]
    assert rows(db, "SELECT * FROM user_profile") == []


async def test_dead_letters_are_sent_once_however_often_a_batch_is_retried(
    member_env: dict[str, Any]
) -> None:
    member: MemberStage = member_env["stage"]
    async with member.agent.test_context() as agent:
        await agent.put(b"{not json", key=b"k1")
        await until(lambda: len(member_env["dlq"].sent) == 1)
        # the same source position again, as a retried batch would send it
        again = dead_letter(b"k1", b"{not json", "x", PROFILE_INSERT, 0, 0, "member")
        await member.dead_letters.send([again, again])
    await member.resources.close()
    assert len(member_env["dlq"].sent) == 1


async def test_batch_refuses_a_partner_created_that_contradicts_the_summary(
    batch_env: dict[str, Any]
) -> None:
    batch: BatchStage = batch_env["stage"]
    partner = PartnerCreated(partner_id=str(uuid.uuid4()), nickname="amber_owl",
                             style_count=2, occurred_at=NOW)
    other = PartnerCreated(**{**partner.asdict(), "nickname": "another"})
    async with batch.agent.test_context() as agent:
        for event in (partner, other, partner):
            await agent.put(event.dumps(), key=partner.partner_id.encode())
        await until(lambda: len(batch_env["dlq"].sent) == 1)
        await asyncio.sleep(0.2)
    await batch.resources.close()
    assert batch.partner_summary[partner.partner_id].nickname == "amber_owl"
    assert len(batch_env["changelog"].sent) == 1
    assert "nickname 'amber_owl' != 'another'" in letters_of(batch_env["dlq"])[0][1]


async def test_batch_acknowledges_an_event_only_after_its_changelog_record_is_acknowledged(
    batch_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: a table entry was lost for good when a kill -9 came after the event's offset was
    committed but before its changelog record had left Faust's producer buffer."""
    batch: BatchStage = batch_env["stage"]
    broker_acks: list[asyncio.Future[None]] = []

    def send_changelog(partition: int, key: Any, value: Any, *_: Any) -> Any:
        broker_acks.append(asyncio.get_running_loop().create_future())
        return broker_acks[-1]

    monkeypatch.setattr(batch.partner_summary, "send_changelog", send_changelog)
    partner = PartnerCreated(partner_id=str(uuid.uuid4()), nickname="amber_owl",
                             style_count=2, occurred_at=NOW)
    async with batch.agent.test_context() as agent:
        event = await agent.put(partner.dumps(), key=partner.partner_id.encode(), wait=False)
        await until(lambda: len(broker_acks) == 1)
        await asyncio.sleep(0.2)
        assert not event.message.acked  # its offset cannot be committed yet
        assert partner.partner_id not in batch.partner_summary.data
        broker_acks[0].set_result(None)
        await until(lambda: event.message.acked)
        assert batch.partner_summary.data[partner.partner_id].nickname == "amber_owl"
    await batch.resources.close()


def minute_now() -> tuple[str, tuple[float, float]]:
    """An ``occurred_at`` of now, and the table window it falls in."""
    at = datetime.now(UTC)
    start = window_start(at)
    return at.isoformat(), (float(start), start + 59.9)


async def test_member_counts_signups_per_minute_once_in_the_events_partition(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    member: MemberStage = member_env["stage"]
    at, window = minute_now()
    users = [ProfileInsert(**{**profile("USER").asdict(), "occurred_at": at}) for _ in range(2)]
    partner = ProfileInsert(**{**profile("PARTNER").asdict(), "occurred_at": at})
    for event in (*users, partner, users[0], partner):  # the last two are redeliveries
        await member_agent.put(event.dumps(), key=event.uuid.encode())
    await until(lambda: len(rows(member_env["db"], "SELECT * FROM user_profile")) == 2)
    await until(lambda: member.signups.table.data.get((("PARTNER", 0), window)) == 1)
    await until(lambda: member.signups.table.data.get((("USER", 0), window)) == 2)
    await asyncio.sleep(0.2)
    sent = member_env["changelog"].sent
    # test_context puts every event on partition 0: so is each changelog record written
    assert {r["partition"] for r in sent} == {0}
    assert [r["value"] for r in sent if r["key"] == (("USER", 0), window)] in ([1, 2], [2])
    assert [r["value"] for r in sent if r["key"] == (("PARTNER", 0), window)] == [1]
    assert dict(member.signups.table.data) == {
        (("USER", 0), window): 2, (("PARTNER", 0), window): 1}


async def test_member_rewrites_a_count_lost_after_the_commit_when_its_event_comes_back(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    """As after a kill -9 between member.db's commit and the changelog's acknowledgement:
    the profile is stored and counted, the table has nothing, the event is redelivered."""
    member: MemberStage = member_env["stage"]
    at, window = minute_now()
    event = ProfileInsert(**{**profile("PARTNER").asdict(), "occurred_at": at})
    await save_profiles(await member.resources.engine(), [event], [0])
    assert dict(member.signups.table.data) == {}
    await member_agent.put(event.dumps(), key=event.uuid.encode())
    await until(lambda: member.signups.table.data.get((("PARTNER", 0), window)) == 1)
    assert member_env["changelog"].sent == [
        {"partition": 0, "key": (("PARTNER", 0), window), "value": 1}]


async def test_member_leaves_minutes_past_their_expiry_out_of_the_table(
    member_agent: Any, member_env: dict[str, Any]
) -> None:
    member: MemberStage = member_env["stage"]
    old = profile("USER")  # occurred_at NOW, days ago
    await member_agent.put(old.dumps(), key=old.uuid.encode())
    await until(lambda: len(rows(member_env["db"], "SELECT * FROM user_profile")) == 1)
    await asyncio.sleep(0.2)
    assert rows(member_env["db"], "SELECT role, signups FROM signup_minute") == [("USER", 1)]
    assert member_env["changelog"].sent == [] and dict(member.signups.table.data) == {}


async def test_member_acknowledges_an_event_only_after_its_minute_is_in_the_changelog(
    member_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    member: MemberStage = member_env["stage"]
    broker_acks: list[asyncio.Future[None]] = []

    def send_changelog(partition: int, key: Any, value: Any, *_: Any) -> Any:
        broker_acks.append(asyncio.get_running_loop().create_future())
        return broker_acks[-1]

    monkeypatch.setattr(member.signups.table, "send_changelog", send_changelog)
    at, window = minute_now()
    user = ProfileInsert(**{**profile("USER").asdict(), "occurred_at": at})
    async with member.agent.test_context() as agent:
        event = await agent.put(user.dumps(), key=user.uuid.encode(), wait=False)
        await until(lambda: len(broker_acks) == 1)
        await asyncio.sleep(0.2)
        assert not event.message.acked  # its offset cannot be committed yet
        assert (("USER", 0), window) not in member.signups.table.data
        broker_acks[0].set_result(None)
        await until(lambda: event.message.acked)
        assert member.signups.table.data[(("USER", 0), window)] == 1
    await member.resources.close()


def test_expired_minutes_are_pruned_from_memory(member_env: dict[str, Any]) -> None:
    member: MemberStage = member_env["stage"]
    now = datetime.now(UTC).timestamp()
    data = member.signups.table.data
    fresh, stale = window_start(now - 86_000), window_start(now - 86_400 - 60)
    data[(("USER", 1), (float(fresh), fresh + 59.9))] = 3
    data[(("USER", 1), (float(stale), stale + 59.9))] = 4
    data[(("PARTNER", 2), (float(stale), stale + 59.9))] = 5
    assert signups_per_minute.prune(member.signups, now) == 2
    assert dict(data) == {(("USER", 1), (float(fresh), fresh + 59.9)): 3}


def batch_processed(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("signupflow_events_total",
                                     {"service": "batch", "kind": kind, "outcome": outcome}
                                     ) or 0.0


async def test_batch_counts_a_summary_the_database_refuses_as_a_dead_letter_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: an event whose summary the database refused was dead-lettered and counted as
    applied too (its outcome was counted before the write)."""
    from signupflow.streams import retry

    monkeypatch.setattr(retry, "FIRST_DELAY", 0.0)
    poison, good = (PartnerCreated(partner_id=str(uuid.uuid4()), nickname="amber_owl",
                                   style_count=n, occurred_at=NOW) for n in (1, 2))

    class Poisoned(BatchStage):
        """A batch stage whose database cannot take ``poison``'s summary."""

        async def save(self, engine: Any, writes: Sequence[Any]) -> dict[int, str]:
            if any(getattr(w, "partner_id", None) == poison.partner_id for w in writes):
                raise OverflowError("date value out of range")
            return await super().save(engine, writes)

    before = batch_processed("created", "applied"), batch_processed("created", "dead_lettered")
    async with batch_stage(tmp_path, monkeypatch, Poisoned) as env, \
            env["stage"].agent.test_context() as agent:
        for event in (poison, good):
            await agent.put(event.dumps(), key=event.partner_id.encode())
        db = env["db"]
        await until(lambda: len(rows(db, "SELECT * FROM partner_summary")) == 1)
        await until(lambda: len(env["dlq"].sent) == 1)
        await asyncio.sleep(0.2)
        table = dict(env["stage"].partner_summary.data)
    assert [key for key, _ in letters_of(env["dlq"])] == [poison.partner_id.encode()]
    assert list(table) == [good.partner_id]
    assert (batch_processed("created", "applied") - before[0],
            batch_processed("created", "dead_lettered") - before[1]) == (1, 1)
