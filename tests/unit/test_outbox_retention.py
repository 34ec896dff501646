"""The relay's outbox clean-up: when it runs, how it batches, and that it never stops the relay.

On a temporary SQLite auth.db and without Kafka (the producer and the publishing are stubbed);
what ``delete_published`` deletes is the storage contract's business
(tests/integration/test_storage_contract.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.metrics import REGISTRY
from signupflow.migrations import upgrade
from signupflow.settings import get_settings
from signupflow.storage.auth import OUTBOX, delete_published
from signupflow.storage.errors import Retriable
from signupflow.streams import auth
from signupflow.streams.common import Resources

BATCH = 2
EXPIRED = 5  # rows published longer than the retention ago: three batches, 2 + 2 + 1


@pytest.mark.parametrize(("last_run", "now", "expected"), [
    (None, 0.0, True),  # never ran: at once
    (100.0, 159.9, False),
    (100.0, 160.0, True),
    (100.0, 1000.0, True),
])
def test_due(last_run: float | None, now: float, expected: bool) -> None:
    assert auth.due(last_run, now, 60.0) is expected


def deleted_total() -> float:
    return REGISTRY.get_sample_value("signupflow_outbox_deleted_total") or 0.0


@dataclass
class Outbox:
    engine: AsyncEngine
    #: what each call of delete_published returned
    calls: list[int] = field(default_factory=list)

    async def keys(self) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(
                select(OUTBOX.c.key).order_by(OUTBOX.c.id))).scalars())


@pytest.fixture
async def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Outbox]:
    """auth.db with EXPIRED expired rows, one published within the retention and one pending
    since long before it; batches of BATCH rows."""
    settings = replace(get_settings(), outbox_retention=7 * 86400.0,
                       database_urls={"auth": f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"})
    await upgrade(settings.database_url("auth"), "auth")
    resources = Resources("auth", settings)
    monkeypatch.setattr(auth, "resources", resources)
    monkeypatch.setattr(auth, "settings", settings)
    monkeypatch.setattr(auth, "RETENTION_BATCH", BATCH)
    monkeypatch.setattr(auth, "relay_wakeup", asyncio.Event())  # bound to this test's loop
    found = Outbox(await resources.engine())

    async def recorded(engine: AsyncEngine, older_than: datetime, limit: int) -> int:
        found.calls.append(await delete_published(engine, older_than, limit))
        return found.calls[-1]

    monkeypatch.setattr(auth, "delete_published", recorded)
    now = datetime.now(UTC)
    published = [now - timedelta(days=8)] * EXPIRED + [now - timedelta(days=6), None]
    async with found.engine.begin() as conn:
        await conn.execute(OUTBOX.insert(), [
            {"topic": "profile-insert", "key": f"k{i}", "payload": b"{}",
             "created_at": now - timedelta(days=100), "published_at": at}
            for i, at in enumerate(published)])
    yield found
    await resources.close()


async def test_a_round_deletes_batch_by_batch_until_a_batch_is_short(
    outbox: Outbox,
) -> None:
    before = deleted_total()
    assert await auth.retention_round(None) is not None
    assert outbox.calls == [2, 2, 1]
    assert await outbox.keys() == [f"k{EXPIRED}", f"k{EXPIRED + 1}"], "recent and pending kept"
    assert deleted_total() - before == EXPIRED


async def test_a_round_runs_once_per_interval(outbox: Outbox) -> None:
    just_now = time.monotonic()
    assert await auth.retention_round(just_now) == just_now
    assert outbox.calls == []
    long_ago = time.monotonic() - auth.RETENTION_INTERVAL
    cleaned = await auth.retention_round(long_ago)
    assert cleaned is not None and cleaned > long_ago
    assert outbox.calls == [2, 2, 1]


async def test_a_woken_relay_publishes_before_the_clean_up_goes_on(
    outbox: Outbox,
) -> None:
    """A signup waiting (wake-up set) stops the clean-up after a full batch; it stays due, so
    the next round carries on."""
    auth.relay_wakeup.set()
    assert await auth.retention_round(None) is None
    assert outbox.calls == [2]
    auth.relay_wakeup.clear()
    assert await auth.retention_round(None) is not None
    assert outbox.calls == [2, 2, 1]
    assert len(await outbox.keys()) == 2


async def test_a_failed_clean_up_is_logged_and_tried_again_an_interval_later(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    async def locked(*_: Any) -> int:
        raise Retriable("OperationalError: database is locked")

    monkeypatch.setattr(auth, "delete_published", locked)
    start = time.monotonic()
    with caplog.at_level(logging.ERROR, logger=auth.log.name):
        cleaned = await auth.retention_round(None)
    assert cleaned is not None and cleaned >= start, "not due again at once"
    assert "outbox clean-up failed" in caplog.text and "database is locked" in caplog.text
    assert len(await outbox.keys()) == EXPIRED + 2


class Producer:
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_the_relay_cleans_up_after_publishing_and_goes_on_when_that_fails(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Wiring: each relay round runs the clean-up once it has published; a clean-up that
    fails leaves the relay publishing."""
    steps: list[str] = []

    async def relay_once(_producer: Any) -> int:
        steps.append("publish")
        return 0

    async def failing(*_: Any) -> int:
        steps.append("clean")
        raise Retriable("connection refused")

    monkeypatch.setattr(auth, "durable_producer", lambda *_, **__: Producer())
    monkeypatch.setattr(auth, "relay_once", relay_once)
    monkeypatch.setattr(auth, "delete_published", failing)
    monkeypatch.setattr(auth, "RELAY_POLL_INTERVAL", 0.01)
    monkeypatch.setattr(auth, "RETENTION_INTERVAL", 0.05)
    relay = asyncio.create_task(auth.outbox_relay())
    for _ in range(500):
        if steps.count("clean") >= 2 or relay.done():
            break
        await asyncio.sleep(0.01)
    assert not relay.done(), "the relay stopped"
    relay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relay
    assert steps[:2] == ["publish", "clean"]
    assert steps.count("clean") >= 2, "the clean-up was not tried again"
    assert "publish" in steps[steps.index("clean") + 1:], "no publishing after the failure"
    assert "outbox clean-up failed" in caplog.text
