"""The ``signups-per-minute`` table (member service): signups per minute by role, in tumbling
one-minute windows of the signup's own time, expiring after a day.

**Keys.** A Faust windowed key, ``((role, source partition), (start, end))``, written to the
changelog partition of the ``profile-insert`` partition its events come from: each changelog
partition owns its own counts (keyed by role alone, several partitions would overwrite one
key), and the views add up the partitions.

**Exact under at-least-once.** The counts live in member.db first (``signup_minute``,
counted in the transaction that stores the profiles, and only for the rows that transaction
inserts: a redelivered event adds nothing). The table takes the count that transaction read
back, a value, not an increment: writing it twice changes nothing, and every minute a batch
touches is written, its redeliveries' too. A crash after the database commit but before the
changelog acknowledgement therefore loses nothing: the events are redelivered (their offsets
are acknowledged only after the changelog records are, as in batch.py) and their minutes
are written again. What stays approximate: a worker that lost its partitions but still runs
(a long pause past the session timeout) can write a minute's older count after its
successor's newer one; the next signup of that minute puts it right. A profile stored before
this table existed, or more than a day late, is not counted.

**Not Faust's windowed writes.** ``table[key] += 1`` needs a current event (for the changelog
partition and for ``relative_to_field``'s timestamp), does not wait for the changelog, and is
an increment: a batch handler has no current event, and an increment is counted again on
redelivery. So the window (``.tumbling(60, expires=1 day)``) gives the key shape, the window
arithmetic and the changelog's retention; values are written with
:func:`~signupflow.tables.partitioned.write_acknowledged`. Faust also expires only the keys
it wrote itself, not those recovered from the changelog, so :func:`prune` expires every key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.types.tables import WindowWrapperT
from faust.types.windows import WindowT
from faust.web import Request, Response, View

from signupflow.domain.per_minute import (
    EXPIRES,
    WINDOW_SECONDS,
    MinuteKey,
    MinutesQuery,
    add,
    answer,
    expired,
    series,
)
from signupflow.tables.partitioned import (
    across_workers,
    owned_partitions,
    redirect_without_slash,
    write_acknowledged,
)
from signupflow.topics import SIGNUPS_PER_MINUTE

TABLE_NAME = SIGNUPS_PER_MINUTE
#: The changelog's segments roll hourly, so that its one-day retention drops old records
#: within the hour (Kafka deletes whole segments only; the default rolls weekly).
SEGMENT_MS = 3_600_000

#: A key of the table: ((role, source partition), (window start, window end)).
WindowKey = tuple[tuple[str, int], tuple[float, float]]


def define_table(app: faust.App, partitions: int) -> WindowWrapperT:
    table = app.Table(
        TABLE_NAME,
        default=None,
        value_type=int,
        partitions=partitions,
        extra_topic_configs={"segment.ms": str(SEGMENT_MS)},
        help="Signups per minute of occurred_at, by role and source partition",
    )
    return table.tumbling(WINDOW_SECONDS, expires=EXPIRES)


def _table(windows: WindowWrapperT) -> Table[WindowKey, int]:
    return cast("Table[WindowKey, int]", windows.table)


def window_key(window: WindowT, key: MinuteKey) -> WindowKey:
    role, partition, start = key
    return (role, partition), window.current(start)


def minute_key(key: WindowKey) -> MinuteKey:
    (role, partition), (start, _end) = key
    return role, partition, int(start)


async def record(windows: WindowWrapperT, counts: Mapping[MinuteKey, int], now: float) -> None:
    """Write each minute's count (from member.db) to the changelog partition of its source
    partition and wait for the acknowledgements, before the batch's events are acknowledged.
    Minutes already expired, or whose count the table holds already, are skipped."""
    table = _table(windows)
    window = cast(WindowT, table.window)
    entries = [(key[1], k, n) for key, n in sorted(counts.items())
               if not expired(key[2], now) and table.data.get(k := window_key(window, key)) != n]
    await write_acknowledged(table, entries)


def prune(windows: WindowWrapperT, now: float) -> int:
    """Drop the expired minutes from this worker's memory; returns how many. (The changelog
    drops them by itself: its retention is the window's expiry.)"""
    data = _table(windows).data
    old = [k for k in list(data.keys()) if expired(minute_key(k)[2], now)]
    for key in old:
        data.pop(key, None)
    return len(old)


def owned_counts(app: faust.App, windows: WindowWrapperT) -> list[tuple[MinuteKey, int]]:
    """The counts of the partitions this worker owns now."""
    table = _table(windows)
    mine = owned_partitions(app, table)
    return [(m, n) for k, n in list(table.data.items()) if (m := minute_key(k))[1] in mine]


def register_views(app: faust.App, windows: WindowWrapperT) -> None:
    """JSON at ``/signups-per-minute/?minutes=N``: every worker's counts, minute by minute."""

    redirect_without_slash(app, "/signups-per-minute/")

    @app.page("/signups-per-minute/")
    class SignupsPerMinute(View):
        async def get(self, request: Request) -> Response:
            try:
                query = MinutesQuery.parse(request.query).pinned(time.time())
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            starts = query.starts(0)  # pinned: the clock is not read again

            def merge(answers: list[dict[str, Any]], workers: int) -> dict[str, Any]:
                return answer(add(*(a["per_minute"] for a in answers)), workers)

            local = answer(series(owned_counts(app, windows), starts), 1)
            return await across_workers(self, request, TABLE_NAME, query.params(), local,
                                        merge)
