"""Faust's table recovery, with a slow step waited for instead of taken for a stop.

At the end of every rebalance Faust's ``Recovery`` seeks the stream partitions to their
committed offsets (``perform_seek``), giving it the broker request timeout (90 s). Its
``_wait`` cannot tell that timeout from a stop: both come back from ``wait_first`` as
"stopped", so a seek still waiting after 90 s raises ``ServiceStopped``, and the recovery task
takes that as its own shutdown and ends, logging nothing above Faust's dev level. The worker
then never becomes ready again: the next rebalance's assignment is never recovered, the
fetcher never starts, and nothing says why. Reproduced (2026-12-07, 3-node local cluster):
the batch worker's group coordinator stopped answering during its first ``perform_seek``
(the broker paused for 30 s, request timeout 20 s), and the worker stayed not ready for good
although the broker answered again and the group rebalanced (issue 21, item 1).

Here a step that outlasts its timeout is waited for (aiokafka retries the offset fetch until
the coordinator answers), with a warning each time the timeout passes; a stop and a new
rebalance still end the wait at once.

Before the offsets recovery starts from are worked out, each table partition kept on disk is
checked against its changelog, and rebuilt from it if the changelog cannot continue from the
store's offset (:meth:`signupflow.tables.rocks.Store.check`): Faust would otherwise stop the
worker on an offset past the changelog's end (``ConsistencyError``) or skip records gone from
it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Mapping
from time import monotonic
from typing import Any, cast

from faust.tables import TableManager as FaustTableManager
from faust.tables import recovery
from faust.types import TP, ConsumerT
from mode.services import WaitArgT
from mode.utils.times import Seconds, want_seconds

from signupflow.metrics import TABLE_RECOVERING, TABLE_RECOVERY_RECORDS, TABLE_RECOVERY_RECORDS_LEFT
from signupflow.tables import rocks


class Recovery(recovery.Recovery):
    async def _build_offsets(self, consumer: ConsumerT, tps: set[TP],
                             destination: Counter[TP], title: str) -> None:
        """Faust's, after rebuilding the stores the changelog cannot continue from."""
        earliest = await consumer.earliest_offsets(*tps)
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            table = self.tp_to_table.get(tp)
            store = getattr(table, "data", None)
            if isinstance(store, rocks.Store) and store.check(tp, earliest.get(tp),
                                                              ends.get(tp)):
                destination[tp] = None  # type: ignore[assignment]  # Faust's "from the start"
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active":
            self.log_plan(destination, ends)

    def log_plan(self, starts: Mapping[TP, int], ends: Mapping[TP, int]) -> None:
        """One line saying what this recovery reads (the tests check that a store on disk
        makes it read only the tail), and the records it set out to read, counted by table."""
        plan = {tp: (starts[tp], ends[tp]) for tp in sorted(starts) if ends.get(tp) is not None}
        if not plan:
            return
        for tp, (start, end) in plan.items():
            TABLE_RECOVERY_RECORDS.labels(self.table_name(tp)).inc(max(0, end - 1 - start))
        self.log.info("table recovery reads: %s", ", ".join(
            f"{tp.topic}[{tp.partition}] {max(0, end - 1 - start)} records (offsets "
            f"{max(start, 0)} to {end - 1})" for tp, (start, end) in plan.items()))

    def table_name(self, tp: TP) -> str:
        table = self.tp_to_table.get(tp)
        return str(getattr(table, "name", tp.topic))

    def progress(self) -> None:
        """The recovery's gauges of ``/metrics``, as they are now."""
        TABLE_RECOVERING.set(1 if self.in_recovery else 0)
        TABLE_RECOVERY_RECORDS_LEFT.clear()
        for kind, left in (("active", self.active_remaining()),
                           ("standby", self.standby_remaining())):
            for tp, records in left.items():
                TABLE_RECOVERY_RECORDS_LEFT.labels(self.table_name(tp), str(tp.partition),
                                                   kind).set(max(0, records))

    async def _wait(
        self, coro: WaitArgT,
        timeout: Seconds | None = None,  # noqa: ASYNC109 - Faust's signature
    ) -> None:
        if timeout is None:
            await super()._wait(coro)
            return
        step = asyncio.ensure_future(cast(Awaitable[Any], coro))
        started = monotonic()
        try:
            while True:
                try:
                    await super()._wait(asyncio.shield(step), timeout=timeout)
                    return
                except recovery.ServiceStopped:
                    if self.should_stop:
                        raise
                self.log.warning("%s still waiting after %.0fs (the broker does not answer "
                                 "yet; Faust's timeout is %.0fs): waiting on",
                                 getattr(coro, "__qualname__", "a recovery step"),
                                 monotonic() - started, want_seconds(timeout))
        finally:
            step.cancel()  # a no-op once done


class TableManager(FaustTableManager):
    """Faust's table manager, with the :class:`Recovery` above."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(Recovery, self._recovery)
