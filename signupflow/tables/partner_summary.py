"""The ``partner-summary`` table: one PartnerSummary per partner, backed by a changelog topic.

The table is keyed by partner uuid, as is ``partner-created`` (co-partitioning): each summary
is written to the changelog partition its events arrive on.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.web import Request, Response, View

from signupflow.domain.styles import STYLES
from signupflow.models.events import PartnerSummary
from signupflow.tables import rocks
from signupflow.tables.partitioned import (
    Unavailable,
    across_workers,
    at_owner,
    every_worker,
    owned_partitions,
    redirect_without_slash,
)
from signupflow.topics import PARTNER_SUMMARY, partition_for

TABLE_NAME = PARTNER_SUMMARY
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


#: The table type: partner uuid -> summary (None for a partner not summarised yet).
SummaryTable = Table[str, PartnerSummary | None]


def define_table(app: faust.App, partitions: int) -> SummaryTable:
    return cast(SummaryTable, app.Table(
        TABLE_NAME,
        default=None,
        key_type=str,
        value_type=PartnerSummary,
        partitions=partitions,
        help="One summary per partner (its one PartnerCreated; a contradicting one is a dead "
             "letter)",
    ))


def summaries(table: SummaryTable) -> list[dict[str, Any]]:
    """The table's local entries as JSON-ready dicts, sorted by partner id."""
    return [v.asdict() for _, v in sorted(table.items(), key=lambda kv: kv[0]) if v is not None]


@dataclass(frozen=True)
class PageQuery:
    """``?limit=&after=&q=`` of a list: keyset paging by partner id, search on nickname."""

    limit: int = DEFAULT_LIMIT
    after: str = ""
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> PageQuery:
        """The query of a request, or ValueError saying what is wrong with it."""
        raw = query.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
        q = query.get("q", "")
        if len(q) > 30:
            raise ValueError("q must be at most 30 characters (a nickname is)")
        return cls(int(raw), query.get("after", ""), q)

    def params(self) -> dict[str, str]:
        return {"limit": str(self.limit), "after": self.after, "q": self.q}

    def page_in_order(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`page` of rows that come by partner id, one each: read only as far as the
        page needs."""
        wanted = self.q.casefold()
        return list(islice((dict(r) for r in rows if r["partner_id"] > self.after
                            and wanted in r["nickname"].casefold()), self.limit))

    def page(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The rows after ``after`` whose nickname contains ``q``, by partner id, at most
        ``limit`` (one per partner id)."""
        wanted = self.q.casefold()
        chosen = {r["partner_id"]: dict(r) for r in rows if r["partner_id"] > self.after
                  and wanted in r["nickname"].casefold()}
        return [chosen[k] for k in sorted(chosen)][:self.limit]


def listing(rows: list[dict[str, Any]], query: PageQuery, workers: int) -> dict[str, Any]:
    """The JSON of one page; ``next`` is the ``after`` of the next page (None on the last)."""
    return {"count": len(rows), "partners": rows, "workers": workers,
            "next": rows[-1]["partner_id"] if len(rows) == query.limit else None}


def render_html(page: Mapping[str, Any], query: PageQuery) -> str:
    """A plain server-rendered page (no JavaScript) of one page of summaries, every worker's,
    with a link to the next page. Every value is escaped."""
    body = "\n".join(
        "<tr data-partner-id=\"{id}\"><td>{id}</td><td>{nick}</td><td>{styles}</td>"
        "<td>{joined}</td></tr>".format(
            id=html.escape(r["partner_id"]), nick=html.escape(r["nickname"]),
            styles=r["style_count"], joined=html.escape(r["joined_at"]))
        for r in page["partners"]
    )
    more = ""
    if page["next"]:
        href = "/partners.html?" + urllib.parse.urlencode(
            {**query.params(), "after": page["next"]})
        more = f'<p><a id="next" href="{html.escape(href)}">next page</a></p>'
    search = f" whose nickname contains <q>{html.escape(query.q)}</q>" if query.q else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner summaries</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head>
<body><h1>Partner summaries</h1>
<p>Faust table <code>{TABLE_NAME}</code>, from {page["workers"]} worker(s):
<strong id="count">{page["count"]}</strong> partners on this page{search}, by partner id;
{len(STYLES)} styles in the catalogue.</p>
<table id="summaries"><thead><tr><th>partner id</th><th>nickname</th><th>favourite styles</th>
<th>joined at</th></tr></thead><tbody>
{body}
</tbody></table>
{more}</body></html>
"""


def error_html(status: int, message: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}"
            f"</title></head><body><p>{html.escape(message)}</p></body></html>\n")


def merged(pages: list[dict[str, Any]], workers: int, query: PageQuery) -> dict[str, Any]:
    """One page of the whole table, from every worker's page."""
    return listing(query.page(row for page in pages for row in page["partners"]), query,
                   workers)


def owned(app: faust.App, table: SummaryTable) -> list[dict[str, Any]]:
    """The local entries of the partitions this worker owns now."""
    mine = owned_partitions(app, table)
    partitions = table.partitions or app.conf.topic_partitions
    return [row for row in summaries(table)
            if partition_for(row["partner_id"], partitions) in mine]


def local_page(app: faust.App, table: SummaryTable, query: PageQuery) -> dict[str, Any]:
    """This worker's page: on disk read in key order from ``after`` on (the rest of the
    table is not read), in memory from every entry."""
    store = table.data
    if isinstance(store, rocks.Store):
        rows = (v.asdict() for _, v in store.items_after(query.after or None) if v is not None)
        return listing(query.page_in_order(rows), query, 1)
    return listing(query.page(owned(app, table)), query, 1)


def register_views(app: faust.App, table: SummaryTable) -> None:
    """JSON at ``/partners/`` (paged, searchable, every worker's entries) and
    ``/partners/{id}/``, HTML at ``/partners.html`` (the same pages)."""

    redirect_without_slash(app, "/partners/")

    @app.page("/partners/")
    class PartnerList(View):
        async def get(self, request: Request) -> Response:
            try:
                query = PageQuery.parse(request.query)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            local = local_page(app, table, query)
            return await across_workers(self, request, TABLE_NAME, query.params(), local,
                                        partial(merged, query=query))

    @app.page("/partners/{partner_id}/")
    class PartnerDetail(View):
        async def get(self, request: Request, partner_id: str) -> Response:

            def here() -> Response:
                summary = table.get(partner_id)
                if summary is None:
                    return self.json({"error": f"no partner {partner_id!r}"}, status=404)
                return self.json(summary.asdict())

            partitions = table.partitions or app.conf.topic_partitions
            return await at_owner(self, request, TABLE_NAME,
                                  partition_for(partner_id, partitions), here)

    @app.page("/partners.html")
    class PartnerPage(View):
        async def get(self, request: Request) -> Response:
            try:
                query = PageQuery.parse(request.query)
            except ValueError as exc:
                return self.html(error_html(400, str(exc)), status=400)
            local = local_page(app, table, query)
            try:  # the other workers' parts, as /partners/ has them
                pages, workers = await every_worker(app, TABLE_NAME, "/partners/",
                                                    query.params(), local)
            except Unavailable as exc:
                return self.html(error_html(503, str(exc)), status=503)
            return self.html(render_html(merged(pages, workers, query), query))
