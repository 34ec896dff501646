"""The ``partner-summary`` table: one PartnerSummary per partner, backed by a changelog topic.

The table is keyed by partner uuid, as is ``partner-created`` (co-partitioning): each summary
is written to the changelog partition its events arrive on.
"""

from __future__ import annotations

import html
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.web import Request, Response, View

from signupflow.domain.styles import STYLES
from signupflow.models.events import PartnerSummary

TABLE_NAME = "partner-summary"


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
    return [v.asdict() for _, v in sorted(table.items(), key=lambda kv: kv[0])]


def render_html(rows: list[dict[str, Any]]) -> str:
    """A plain server-rendered page (no JavaScript) listing the summaries."""
    body = "\n".join(
        "<tr data-partner-id=\"{id}\"><td>{id}</td><td>{nick}</td><td>{styles}</td>"
        "<td>{joined}</td></tr>".format(
            id=html.escape(r["partner_id"]), nick=html.escape(r["nickname"]),
            styles=r["style_count"], joined=html.escape(r["joined_at"]))
        for r in rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner summaries</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head>
<body><h1>Partner summaries</h1>
<p>Faust table <code>{TABLE_NAME}</code>: <strong id="count">{len(rows)}</strong> partners,
{len(STYLES)} styles in the catalogue.</p>
<table id="summaries"><thead><tr><th>partner id</th><th>nickname</th><th>favourite styles</th>
<th>joined at</th></tr></thead><tbody>
{body}
</tbody></table></body></html>
"""


def register_views(app: faust.App, table: SummaryTable) -> None:
    """JSON at ``/partners/`` and ``/partners/{id}/``, HTML at ``/partners.html``."""

    @app.page("/partners/")
    class PartnerList(View):
        async def get(self, request: Request) -> Response:
            rows = summaries(table)
            return self.json({"count": len(rows), "partners": rows})

    @app.page("/partners/{partner_id}/")
    class PartnerDetail(View):
        # table_route's type forgets the path's arguments (partner_id) that aiohttp passes
        @app.table_route(table=table, match_info="partner_id")  # type: ignore[arg-type]
        async def get(self, request: Request, partner_id: str) -> Response:
            summary = table.get(partner_id)
            if summary is None:
                return self.json({"error": f"no partner {partner_id!r}"}, status=404)
            return self.json(summary.asdict())

    @app.page("/partners.html")
    class PartnerPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(render_html(summaries(table)))
