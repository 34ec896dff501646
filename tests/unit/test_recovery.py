"""Table recovery waits out a slow step instead of ending itself (the batch worker that stayed
wedged, issue 21 item 1).

Faust's ``Recovery._wait`` gives a step such as the final ``perform_seek`` the broker request
timeout (90 s) and reads "no answer yet" as "the service was stopped": the recovery task then
ends for good, quietly, and the worker never becomes ready again, whatever the broker does
later. Here a step that outlasts its timeout is waited for; a stop and a new rebalance still
end the wait as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from faust.tables.recovery import RebalanceAgain, ServiceStopped
from faust.types import TP, ConsumerT

from signupflow.app import create_app
from signupflow.metrics import REGISTRY
from signupflow.probes import consumer_checks
from signupflow.recovery import Recovery, TableManager
from signupflow.settings import load_settings
from signupflow.tables import rocks, signups_per_minute

if TYPE_CHECKING:
    from signupflow.app import ServiceApp


@pytest.fixture
async def recovery(tmp_path: Path) -> Recovery:
    """The recovery service of a member app made on the test's loop (never started)."""
    app = create_app("member", load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)}))
    recovery = cast(TableManager, app.tables).recovery
    assert isinstance(recovery, Recovery)
    return recovery


async def test_a_step_slower_than_its_timeout_is_waited_for(recovery: Recovery) -> None:
    finished: list[bool] = []

    async def slow_seek() -> None:
        await asyncio.sleep(0.3)
        finished.append(True)

    await recovery._wait(slow_seek(), timeout=0.05)
    assert finished == [True]


async def test_a_failing_step_still_raises(recovery: Recovery) -> None:
    async def failing() -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("seek failed")

    with pytest.raises(RuntimeError, match="seek failed"):
        await recovery._wait(failing(), timeout=0.05)


@pytest.mark.parametrize(("ending", "error"), [("rebalance", RebalanceAgain),
                                               ("stop", ServiceStopped)])
async def test_a_new_rebalance_or_a_stop_ends_the_wait_at_once(
        recovery: Recovery, ending: str, error: type[Exception]) -> None:
    never = asyncio.get_running_loop().create_future()
    end = {"rebalance": recovery.signal_recovery_start.set, "stop": recovery._stopped.set}
    asyncio.get_running_loop().call_later(0.2, end[ending])
    with pytest.raises(error):
        await recovery._wait(never, timeout=0.05)
    assert never.cancelled()


class Consumer:
    """Stands in for Faust's consumer: what the broker says of the changelog partitions."""

    def __init__(self, earliest: dict[TP, int], ends: dict[TP, int]) -> None:
        self.earliest, self.ends = earliest, ends

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}


@pytest.fixture
def on_disk(tmp_path: Path) -> tuple[Recovery, rocks.Store, str]:
    """The recovery of a member app whose table is kept on disk (the default store)."""
    app = create_app("member", load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)}))
    table = signups_per_minute.define_table(app, 4).table
    store = table.data
    assert isinstance(store, rocks.Store)
    recovery = cast(TableManager, app.tables).recovery
    topic = table.changelog_topic.get_topic_name()
    for partition in (0, 1):
        recovery.tp_to_table[TP(topic, partition)] = table
    return recovery, store, topic


async def test_recovery_reads_only_the_tail_a_store_on_disk_lacks(
        on_disk: tuple[Recovery, rocks.Store, str], caplog: pytest.LogCaptureFixture) -> None:
    recovery, store, topic = on_disk
    p0, p1 = TP(topic, 0), TP(topic, 1)
    store.write([(0, "k", 1, 9), (1, "k", 1, 40)])  # partition 1: the changelog ends at 30
    starts = Counter({p0: store.persisted_offset(p0), p1: store.persisted_offset(p1)})
    consumer = Consumer({p0: 0, p1: 0}, {p0: 12, p1: 30})
    with caplog.at_level(logging.INFO):
        await recovery._build_offsets(cast(ConsumerT, consumer), {p0, p1}, starts, "active")
    assert starts == {p0: 9, p1: -1}  # 1 rebuilt: read from the start
    plan = [r.getMessage().split("]: ", 1)[-1] for r in caplog.records
            if "table recovery reads" in r.getMessage()]
    assert plan == [f"table recovery reads: {topic}[0] 2 records (offsets 9 to 11), "
                    f"{topic}[1] 30 records (offsets 0 to 29)"]
    assert store.persisted_offset(p1) is None


async def test_ready_says_tables_recovering_in_every_recovery_with_the_records_left(
        on_disk: tuple[Recovery, rocks.Store, str]) -> None:
    recovery, _, topic = on_disk
    app = cast("ServiceApp", recovery.app)
    consumer = next(c for c in consumer_checks(app) if c.name == "consumer")
    recovery.active_highwaters.update({TP(topic, 0): 500, TP(topic, 1): 80})
    recovery.active_offsets.update({TP(topic, 0): 100, TP(topic, 1): 79})
    recovery._set_recovery_started()
    assert not app.rebalancing  # a recovery after the first: the reason is still given
    assert await consumer.probe() == "tables recovering from their changelogs (401 records left)"

    recovery.progress()
    name = signups_per_minute.TABLE_NAME
    assert REGISTRY.get_sample_value("signupflow_table_recovering") == 1
    assert REGISTRY.get_sample_value("signupflow_table_recovery_records_left", {
        "table": name, "partition": "0", "kind": "active"}) == 400
    recovery._set_recovery_ended()
    recovery.progress()
    assert REGISTRY.get_sample_value("signupflow_table_recovering") == 0
