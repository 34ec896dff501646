"""What the tables here share: each is co-partitioned with the topic that feeds it and split
between the workers of its service by partition.

* Writes go to the changelog partition of the event they come from, and the broker's
  acknowledgement is awaited before the table (and so the offsets) move on.
* Reads answer from the partitions this worker owns now, and ask every other worker holding
  part of the table (Faust's assignor knows them) for theirs (``scope=local``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from faust.tables.table import Table
from faust.types import AppT
from faust.types.tables import CollectionT
from faust.web import Request, Response, View

from signupflow.tables import rocks
from signupflow.web_auth import authorization

if TYPE_CHECKING:
    from signupflow.app import ServiceApp

#: Seconds to wait for the broker to acknowledge a batch's changelog records before sending
#: them again (an outage: the batch waits, its offsets stay uncommitted).
CHANGELOG_ACK_TIMEOUT = 30.0
#: What a worker that does not answer raises.
UNANSWERED = (OSError, RuntimeError, TimeoutError, aiohttp.ClientError)


async def write_acknowledged(table: Table[Any, Any], entries: Sequence[tuple[int, Any, Any]]
                             ) -> None:
    """Write each ``(partition, key, value)`` to the table's changelog in that partition (the
    source event's), wait for the broker's acknowledgement, then set the table.

    ``table[key] = value`` would only queue the changelog record in Faust's producer buffer,
    and Faust's at-least-once commit flushes that buffer best-effort only: a source offset
    could be committed while its changelog record was still unsent, and a kill -9 then lost
    the table entry for good (docs/decisions/changelog-acknowledged.md). It also needs a
    current event for its partition, which a batch handler does not have.

    A value of None deletes the key: its changelog record is a tombstone (a null value, what
    Faust writes for ``del table[key]``), so a worker that recovers the table from the
    changelog does not bring the entry back, and compaction drops it.

    On disk (:class:`~signupflow.tables.rocks.Store`) the entries are written with their
    changelog offsets, atomically: a kill -9 leaves the store behind its changelog, never
    ahead of it.
    """
    sent = await asyncio.wait_for(asyncio.gather(*(
        table.send_changelog(partition, key, value) if value is not None else
        table.send_changelog(partition, key, None, value_serializer="raw")
        for partition, key, value in entries
    )), CHANGELOG_ACK_TIMEOUT)  # a send that failed inside Faust's buffer never resolves
    store = table.data
    if isinstance(store, rocks.Store):  # the entries with their changelog offsets, at once
        store.write([(partition, key, value, meta.offset)
                     for (partition, key, value), meta in zip(entries, sent, strict=True)])
        return
    for _, key, value in entries:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value


def owned_partitions(app: AppT, table: CollectionT) -> set[int]:
    """The table's partitions this worker owns now. After a rebalance a worker still holds
    the entries it wrote for partitions that moved away; answering with those too would count
    them twice, and stale."""
    changelog = table.changelog_topic.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog}


async def ask_others(app: AppT, table_name: str, path: str, params: Mapping[str, str]
                     ) -> tuple[list[dict[str, Any]], int]:
    """The JSON answers to ``GET path?params&scope=local`` of every other worker holding part
    of the table; and how many workers answered in all."""
    me = str(app.conf.canonical_url).rstrip("/")
    others = [url.rstrip("/") for url in app.router.table_metadata(table_name)
              if url.rstrip("/") != me]
    query = urllib.parse.urlencode({**params, "scope": "local"})
    timeout = aiohttp.ClientTimeout(total=5)
    headers = authorization(cast("ServiceApp", app).signupflow_settings.web_token)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:

        async def fetch(url: str) -> dict[str, Any]:
            async with session.get(f"{url}{path}?{query}") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"worker {url} answered {resp.status}")
                answer: dict[str, Any] = json.loads(await resp.text())
                return answer

        answers = await asyncio.gather(*(fetch(url) for url in others))
    return list(answers), 1 + len(others)


class Unavailable(Exception):
    """The whole table cannot be answered for now (503): the message says why."""


def owner(app: AppT, table_name: str, partition: int) -> str | None:
    """The base URL of the worker that owns ``partition`` of the table now (None: nobody has
    it yet)."""
    changelog = app.tables[table_name].changelog_topic.get_topic_name()
    for url, topics in app.router.table_metadata(table_name).items():
        if partition in topics.get(changelog, ()):
            return str(url).rstrip("/")
    return None


async def at_owner(view: View, request: Request, table_name: str, partition: int,
                   here: Callable[[], Response]) -> Response:
    """``here()`` on the worker that owns ``partition`` of the table: this one, or the owner
    asked for the same path (``scope=local``), its answer passed on; 503 in a rebalance, when
    nobody owns it, or when the owner does not answer.

    Not Faust's ``table_route``: it asks its producer for the key's partition, and a producer
    that never wrote to the changelog knows none of its partitions (a 500 on a batch worker
    that had written no summary yet).
    """
    app = view.app
    try:
        settled(app)
        url = owner(app, table_name, partition)
        if url is None:
            raise Unavailable(f"no worker owns partition {partition} of {table_name} yet")
        if request.query.get("scope") == "local" or url == str(
                app.conf.canonical_url).rstrip("/"):
            return here()
        token = cast("ServiceApp", app).signupflow_settings.web_token
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                         headers=authorization(token)) as session, \
                session.get(f"{url}{request.rel_url.path}?scope=local") as resp:
            return view.json(json.loads(await resp.text()), status=resp.status)
    except Unavailable as exc:
        return view.json({"error": str(exc)}, status=503)
    except UNANSWERED as exc:
        return view.json({"error": f"the worker owning partition {partition} did not "
                                   f"answer: {exc}"}, status=503)


def settled(app: AppT) -> None:
    """:class:`Unavailable` during a rebalance: until this worker's recovery from the
    changelog is over, its partitions' entries are missing or stale, and a part of the table
    must not pass for all of it."""
    if app.rebalancing:
        raise Unavailable("rebalancing: this worker's partitions are moving, and its part of "
                          "the table is recovered from the changelog; ask again in a moment")


async def every_worker(app: AppT, table_name: str, path: str, params: Mapping[str, str],
                       local: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every worker's answer to ``path`` over its part of the table (``local``, this one's,
    first), and how many workers there are; :class:`Unavailable` in a rebalance or if a
    worker holding part of the table did not answer."""
    settled(app)
    try:
        others, workers = await ask_others(app, table_name, path, params)
    except UNANSWERED as exc:
        raise Unavailable(f"a worker holding part of the table did not answer: {exc}") from exc
    return [local, *others], workers


async def across_workers(
    view: View, request: Request, table_name: str, params: Mapping[str, str],
    local: dict[str, Any], merge: Callable[[list[dict[str, Any]], int], dict[str, Any]],
) -> Response:
    """The answer of a JSON view over the whole table: ``local`` (this worker's partitions) to
    a ``scope=local`` request, else ``merge`` of every worker's answer and how many workers
    there are; 503 while that cannot be had (:func:`every_worker`)."""
    try:
        settled(view.app)
        if request.query.get("scope") == "local":
            return view.json(local)
        answers, workers = await every_worker(view.app, table_name, request.rel_url.path,
                                              params, local)
    except Unavailable as exc:
        return view.json({"error": str(exc)}, status=503)
    return view.json(merge(answers, workers))


def redirect_without_slash(app: AppT, path: str) -> None:
    """``path`` without its trailing slash redirects to it (308, the query kept): a bare 404
    for ``/partners`` told a user nothing."""

    @app.page(path.rstrip("/"), name=f"{path.strip('/')} without its slash")
    class WithoutSlash(View):
        async def get(self, request: Request) -> Response:
            query = request.rel_url.query_string
            target = f"{path}?{query}" if query else path
            return self.text(f"see {target}\n", status=308, headers={"Location": target})
