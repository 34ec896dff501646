"""write_isolating: an outage waits, a deterministic failure is pinned to its own events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import pytest

from signupflow.outages import Outage
from signupflow.storage.errors import Rejected, Retriable
from signupflow.streams import retry
from signupflow.streams.retry import Backoff, until_done, write_isolating


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY", 0.0)
    monkeypatch.setattr(retry, "MAX_DELAY", 0.0)


class Store:
    """A fake database: fails any write that contains a poisoned record."""

    def __init__(self, poison: set[int], error: Exception | None = None,
                 refuse: Mapping[int, str] | None = None):
        self.poison, self.error, self.refuse = poison, error or Rejected("bad row"), refuse or {}
        self.rows: list[int] = []
        self.calls = 0

    async def write(self, records: Sequence[int]) -> Mapping[int, str]:
        self.calls += 1
        if self.poison & set(records):
            raise self.error
        refused = {i: self.refuse[r] for i, r in enumerate(records) if r in self.refuse}
        self.rows.extend(r for i, r in enumerate(records) if i not in refused)
        return refused


class Database:
    """A fake database's availability: its first ``down`` probes find it unwritable."""

    def __init__(self, down: int = 0, probe_seconds: float = 0.0) -> None:
        self.outage = Outage("t: database")
        self.down, self.probe_seconds = down, probe_seconds
        self.probes = 0

    async def unwritable(self) -> str | None:
        self.probes += 1
        await asyncio.sleep(self.probe_seconds)
        return "locked" if self.probes <= self.down else None


healthy = Database()


async def test_a_clean_batch_is_one_write() -> None:
    store = Store(set())
    assert await write_isolating(list(range(100)), store.write, healthy, "t") == {}
    assert store.rows == list(range(100)) and store.calls == 1


@pytest.mark.parametrize("poison", [{0}, {57}, {99}, {3, 4}, {0, 50, 99}])
async def test_only_the_events_that_fail_on_their_own_are_refused(poison: set[int]) -> None:
    store = Store(poison)
    refused = await write_isolating(list(range(100)), store.write, healthy, "t")
    assert set(refused) == poison
    assert all(reason == "database rejected: bad row" for reason in refused.values())
    assert store.rows == [i for i in range(100) if i not in poison]  # all others, in order
    assert store.calls <= 1 + 2 * len(poison) * 8  # bisection, not one write per event


async def test_an_unknown_error_is_deterministic_after_bounded_attempts() -> None:
    store = Store({7}, error=OverflowError("date value out of range"))
    refused = await write_isolating(list(range(10)), store.write, healthy, "t")
    assert refused == {7: "unexpected error: OverflowError: date value out of range"}
    assert sorted(store.rows) == [i for i in range(10) if i != 7]


async def test_a_retriable_error_on_a_healthy_database_is_bounded_too() -> None:
    store = Store({2}, error=Retriable("too many SQL variables"))
    refused = await write_isolating(list(range(4)), store.write, healthy, "t")
    assert refused == {2: "database error: too many SQL variables"}


async def test_an_outage_is_waited_out_refuses_nothing_and_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    store = Store(set())
    database = Database(down=19)

    async def write(records: Sequence[int]) -> Mapping[int, str]:
        if database.probes < database.down:
            raise Retriable("connection refused")
        return await store.write(records)

    with caplog.at_level(logging.INFO):
        assert await write_isolating(list(range(5)), write, database, "t") == {}
    assert store.rows == list(range(5))
    assert database.probes == 19  # far past MAX_ATTEMPTS: an outage is not counted
    told = [r.getMessage() for r in caplog.records]
    assert told[0] == "t: database unavailable (connection refused); waiting"
    assert told[1].startswith("t: database back after ") and len(told) == 2


async def test_records_the_store_refuses_itself_are_returned_with_their_reason() -> None:
    store = Store(set(), refuse={3: "uuid reused"})
    assert await write_isolating([1, 2, 3], store.write, healthy, "t") == {2: "uuid reused"}
    assert store.rows == [1, 2]


async def test_a_retry_loop_ends_at_once_when_cancelled() -> None:
    """Shutdown must never wait for an outage to end."""
    async def never(records: Sequence[int]) -> Mapping[int, str]:
        raise Retriable("down")

    down = Database(down=10**9, probe_seconds=0.01)
    task = asyncio.create_task(write_isolating([1], never, down, "t"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)


async def test_until_done_retries_until_success() -> None:
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("broker away")
        return "sent"

    assert await until_done("send", flaky) == "sent" and len(attempts) == 3


async def test_until_done_tells_an_outage_once_and_its_end(
        caplog: pytest.LogCaptureFixture) -> None:
    attempts = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 50:
            raise ConnectionError("broker away")

    with caplog.at_level(logging.INFO):
        await until_done("member publish partner-created", flaky)
    told = [r.getMessage() for r in caplog.records]
    assert told[0] == ("member publish partner-created failing (ConnectionError('broker away'))"
                       "; waiting")
    assert told[1].startswith("member publish partner-created back after ")
    assert len(told) == 2


async def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(0.001, 0.004)
    delays = []
    for _ in range(4):
        delays.append(backoff.delay)
        await backoff.sleep()
    assert delays == [0.001, 0.002, 0.004, 0.004]
