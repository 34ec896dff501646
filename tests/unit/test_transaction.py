"""db.transaction on a SQLite file: a batch's whole transaction is one hop to a worker thread
(aiosqlite took one per driver call), on a twin engine that has the engine's connect listeners
and is disposed with it. What the writes store is the storage contract's business
(tests/integration/test_storage_contract.py); here only how they reach the database.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import make_engine, transaction
from signupflow.domain.per_minute import window_start
from signupflow.migrations import upgrade
from signupflow.models.events import PartnerSummary, ProfileInsert
from signupflow.settings import get_settings
from signupflow.storage.batch import SUMMARIES, save_summaries
from signupflow.storage.member import STYLES, USERS, save_profiles
from signupflow.streams.common import Resources

NOW = "2026-01-02T03:04:05+00:00"


@dataclass
class Hops:
    """What the loop was asked from other threads: jobs handed to an executor, and wake-ups
    (every result a thread hands back to the loop is one ``call_soon_threadsafe``)."""

    executor: int = 0
    wakeups: int = 0


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hops]:
    loop = asyncio.get_running_loop()
    hops = Hops()
    run_in_executor, call_soon_threadsafe = loop.run_in_executor, loop.call_soon_threadsafe

    def executor(*args: Any) -> Any:
        hops.executor += 1
        return run_in_executor(*args)

    def wakeup(*args: Any, **kwargs: Any) -> Any:
        hops.wakeups += 1
        return call_soon_threadsafe(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "run_in_executor", executor)
        patch.setattr(loop, "call_soon_threadsafe", wakeup)
        yield hops


def profiles(n: int) -> list[ProfileInsert]:
    return [ProfileInsert(uuid=str(uuid.uuid4()), role="PARTNER" if i % 3 else "USER",
                          nickname=f"nick{i}", favorite_styles=[1, i % 7 + 2],
                          occurred_at=NOW) for i in range(n)]


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@pytest.fixture
async def member(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'member.db'}")
    await upgrade(engine, "member")
    yield engine
    await engine.dispose()


async def test_a_batch_of_profiles_is_one_hop_to_a_thread(
    member: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 profiles (users and partners, styles, their minutes counted): one job for a thread
    and one wake-up of the loop, for the read, three inserts, the count and the commit."""
    batch = profiles(50)
    counts: dict[Any, int] = {}
    for attempt in ("first", "redelivery"):
        with counting(monkeypatch) as hops:
            assert await save_profiles(member, batch, [0] * 50, counts) == {}
        assert (hops.executor, hops.wakeups) == (1, 1), attempt
    assert await count(member, USERS) + 33 == 50
    assert await count(member, STYLES) == 100
    minute = window_start(NOW)
    assert counts == {("USER", 0, minute): 17, ("PARTNER", 0, minute): 33}


async def test_a_batch_of_summaries_is_one_hop_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}")
    try:
        await upgrade(engine, "batch")
        summaries = [PartnerSummary(partner_id=str(uuid.uuid4()), nickname=f"n{i}",
                                    style_count=i, joined_at=NOW, summarized_at=NOW)
                     for i in range(50)]
        with counting(monkeypatch) as hops:
            assert await save_summaries(engine, summaries) == {}
        assert (hops.executor, hops.wakeups) == (1, 1)
        assert await count(engine, SUMMARIES) == 50
    finally:
        await engine.dispose()


async def test_the_twin_gets_the_engines_connect_listeners_in_order(
    member: AsyncEngine,
) -> None:
    """make_engine's PRAGMAs, then a listener added afterwards (as the contract tests shorten
    the busy timeout), run on the twin's sqlite3 connections too."""
    seen: list[Any] = []

    def short_wait(dbapi_conn: Any, _record: Any) -> None:
        seen.append(dbapi_conn)
        dbapi_conn.execute("PRAGMA busy_timeout=123")

    event.listen(member.sync_engine, "connect", short_wait)

    def pragmas(conn: Connection) -> tuple[Any, ...]:
        return tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                     for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous"))

    assert await transaction(member, pragmas) == ("wal", 123, 1, 1)
    assert [type(c) for c in seen] == [sqlite3.Connection]


async def test_resources_close_disposes_the_twin(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    await upgrade(url, "member")
    resources = Resources("member", replace(get_settings(), database_urls={"member": url}))
    engine = await resources.engine()
    twins: list[sqlite3.Connection] = []

    def record(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):  # not aiosqlite's adapter
            twins.append(dbapi_conn)

    event.listen(engine.sync_engine, "connect", record)
    assert await save_profiles(engine, profiles(3)) == {}
    assert len(twins) == 1
    twins[0].execute("SELECT 1")  # pooled, open
    await resources.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        twins[0].execute("SELECT 1")


@pytest.mark.parametrize("make", [
    lambda _path: make_engine("sqlite+aiosqlite:///:memory:"),
    lambda path: make_engine(f"sqlite+aiosqlite:///file:{path}?uri=true"),
])
async def test_other_sqlite_databases_stay_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], AsyncEngine]
) -> None:
    """In memory (each connection its own database) or a URI: no twin, ``run_sync``."""
    engine = make(tmp_path / "uri.db")
    try:
        await upgrade(engine, "member")
        with counting(monkeypatch) as hops:
            assert await save_profiles(engine, profiles(5)) == {}
        assert hops.executor == 0 and hops.wakeups > 1
        assert await count(engine, USERS) == 2
    finally:
        await engine.dispose()
