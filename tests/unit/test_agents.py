"""The member and batch agents under Faust's ``test_context``, on temporary SQLite files.

Kafka is not involved here: topics the agents publish to are replaced by recorders. The same
agents run against a real broker in tests/integration.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from signupflow.models.events import PartnerCreated, ProfileInsert
from signupflow.settings import get_settings
from signupflow.streams import batch, member
from signupflow.streams.common import Resources

NOW = "2026-11-26T10:00:00+00:00"


class Recorder:
    """Stands in for ``topic.send``: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(kwargs)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql``, or none while the agent has not created the schema yet."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def profile(role: str = "USER", styles: list[int] | None = None) -> ProfileInsert:
    return ProfileInsert(uuid=str(uuid.uuid4()), role=role, nickname="velvet_fox",
                         favorite_styles=[1, 2] if styles is None else styles, occurred_at=NOW)


async def until(predicate: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
def member_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    db = tmp_path / "member.db"
    settings = replace(get_settings(), database_urls={"member": f"sqlite+aiosqlite:///{db}"})
    monkeypatch.setattr(member, "resources", Resources("member", settings))
    partners, dlq = Recorder(), Recorder()

    async def producer_send(topic: str, key: bytes, value: bytes, *_: Any) -> Any:
        return await partners.send(topic=topic, key=key, value=value)

    monkeypatch.setattr(member.app.producer, "send", producer_send)
    monkeypatch.setattr(member.dead_letters.topic, "send", dlq.send)
    return {"db": db, "partners": partners, "dlq": dlq}


@pytest.fixture
async def member_agent(member_env: dict[str, Any]) -> AsyncIterator[Any]:
    async with member.write_profiles.test_context() as agent:
        yield agent
    await member.resources.close()


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


@pytest.fixture
def batch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    db = tmp_path / "batch.db"
    settings = replace(get_settings(), database_urls={"batch": f"sqlite+aiosqlite:///{db}"})
    monkeypatch.setattr(batch, "resources", Resources("batch", settings))
    dlq, changelog = Recorder(), Recorder()
    monkeypatch.setattr(batch.dead_letters.topic, "send", dlq.send)

    def send_changelog(partition: int, key: Any, value: Any, *_: Any) -> Any:
        changelog.sent.append({"partition": partition, "key": key, "value": value})
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    monkeypatch.setattr(batch.partner_summary, "send_changelog", send_changelog)
    return {"db": db, "dlq": dlq, "changelog": changelog}


async def test_batch_keeps_one_summary_per_partner_in_table_and_db(
    batch_env: dict[str, Any]
) -> None:
    partner = PartnerCreated(partner_id=str(uuid.uuid4()), nickname="amber_owl",
                             style_count=2, occurred_at=NOW)
    async with batch.summarize_partners.test_context() as agent:
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
