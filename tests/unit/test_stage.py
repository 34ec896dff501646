"""A stage built from explicit settings, its ``handle`` run on events of the test's own: no
broker, no agent, nothing patched (what it publishes goes to the sinks it was built with)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import text

from signupflow.app import create_app
from signupflow.metrics import REGISTRY
from signupflow.migrations import upgrade
from signupflow.models.events import MemberDeleted, PartnerCreated, ProfileChanged, ProfileInsert
from signupflow.settings import Settings, get_settings
from signupflow.streams.common import RawEvent
from signupflow.streams.member import MemberStage, Partner
from signupflow.topics import PROFILE_INSERT

#: Days ago: its minute has expired, so the signups-per-minute table is left alone.
LONG_AGO = "2026-11-26T10:00:00+00:00"


def raw(key: bytes, value: bytes, offset: int, partition: int = 0) -> RawEvent:
    """A raw profile-insert event as Faust hands it to an agent (what a stage reads of it)."""
    message = SimpleNamespace(key=key, value=value, topic=PROFILE_INSERT, partition=partition,
                              offset=offset, headers=[])
    return cast(RawEvent, SimpleNamespace(message=message, key=key, value=value))


def acknowledged() -> asyncio.Future[None]:
    """What a send returns: the broker's acknowledgement, here at once."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def upgraded(tmp_path: Path) -> Settings:
    """Settings of a member database of its own under ``tmp_path``, at the head revision."""
    settings = replace(get_settings(), data_dir=tmp_path,
                       database_urls={"member": f"sqlite+aiosqlite:///{tmp_path / 'member.db'}"})
    await upgrade(settings.database_url("member"), "member")
    return settings


def processed(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("signupflow_events_total",
                                     {"service": "member", "kind": kind, "outcome": outcome}
                                     ) or 0.0


async def test_a_member_stage_built_from_settings_handles_a_batch(tmp_path: Path) -> None:
    settings = await upgraded(tmp_path)
    letters: list[dict[str, Any]] = []
    published: list[Partner] = []

    async def send_letter(**record: Any) -> Any:
        letters.append(record)
        return acknowledged()

    async def publish_partners(partners: Sequence[Partner]) -> None:
        published.extend(partners)

    stage = MemberStage.build(create_app("member", settings), settings,
                              send_letter=send_letter, publish_partners=publish_partners)
    user, partner = (ProfileInsert(uuid=str(uuid.uuid4()), role=role, nickname="velvet_fox",
                                   favorite_styles=styles, occurred_at=LONG_AGO)
                     for role, styles in (("USER", [3]), ("PARTNER", [1, 5])))
    before = processed("created", "applied"), processed("unknown", "dead_lettered")
    try:
        stored = await stage.handle([raw(user.uuid.encode(), user.dumps(), 0),
                                     raw(b"k", b"{not json", 1),
                                     raw(partner.uuid.encode(), partner.dumps(), 2)])
        async with (await stage.resources.engine()).connect() as conn:
            styles = (await conn.execute(text(
                "SELECT uuid, style_id FROM favorite_style ORDER BY uuid, style_id"))).all()
    finally:
        await stage.resources.close()
    assert [p.uuid for p, _, _ in stored.profiles] == [user.uuid, partner.uuid]
    assert sorted(styles) == sorted([(user.uuid, 3), (partner.uuid, 1), (partner.uuid, 5)])
    assert published == [(PartnerCreated(
        partner_id=partner.uuid, nickname="velvet_fox", style_count=2,
        occurred_at=LONG_AGO), None)]
    assert [letter["key"] for letter in letters] == [b"k"]
    assert "not valid UTF-8 JSON" in dict(letters[0]["headers"])["dlq.error"].decode()
    assert (processed("created", "applied") - before[0],
            processed("unknown", "dead_lettered") - before[1]) == (2, 1)


async def test_a_member_stage_applies_a_partners_life_by_version(tmp_path: Path) -> None:
    """Created, changed, deleted: the partner's events follow in order; a redelivered older
    change and the created event after the deletion change nothing and publish nothing."""
    settings = await upgraded(tmp_path)
    published: list[Partner] = []

    async def publish_partners(partners: Sequence[Partner]) -> None:
        published.extend(partners)

    async def send_letter(**record: Any) -> Any:
        raise AssertionError(f"nothing is dead-lettered here: {record}")

    stage = MemberStage.build(create_app("member", settings), settings,
                              send_letter=send_letter, publish_partners=publish_partners)
    uid = str(uuid.uuid4())
    created = ProfileInsert(uuid=uid, role="PARTNER", nickname="velvet_fox",
                            favorite_styles=[1], occurred_at=LONG_AGO)
    changed = ProfileChanged(kind="changed", uuid=uid, version=2, role="PARTNER",
                             nickname="linen_fox", favorite_styles=[1, 2, 3],
                             occurred_at=LONG_AGO)
    deleted = MemberDeleted(kind="deleted", uuid=uid, version=3, role="PARTNER",
                            occurred_at=LONG_AGO)
    try:
        first = await stage.handle([raw(uid.encode(), e.dumps(), n)
                                    for n, e in enumerate((created, changed))])
        second = await stage.handle([raw(uid.encode(), e.dumps(), n)
                                     for n, e in enumerate((deleted, changed, created), 2)])
        async with (await stage.resources.engine()).connect() as conn:
            rows = {t: (await conn.execute(text(f"SELECT * FROM {t}"))).all()
                    for t in ("partner_profile", "favorite_style", "member_tombstone")}
    finally:
        await stage.resources.close()
    assert [s.verdict for _, _, s in first.profiles + second.profiles] == [
        "applied", "applied", "applied", "stale", "stale"]
    assert [(type(e).__name__, e.version) for e, _ in published] == [
        ("PartnerCreated", 1), ("PartnerChanged", 2), ("PartnerDeleted", 3)]
    assert rows["partner_profile"] == [] and rows["favorite_style"] == []
    assert [(r.uuid, r.version) for r in rows["member_tombstone"]] == [(uid, 3)]
