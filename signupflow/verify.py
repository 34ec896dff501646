"""``signupflow verify``: reconcile the three databases and the partner-summary table.

An operator's tool, not a service: it is the one place allowed to read every service's data.
:func:`reconcile` is pure; :func:`snapshot` does the reading.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from signupflow.db import make_engine, no_such_table
from signupflow.domain.decode import InvalidEvent, decode_profile_insert
from signupflow.domain.reuse import instant
from signupflow.kafka_client import Secret
from signupflow.models.db import (
    FavoriteStyle,
    Member,
    OutboxEvent,
    PartnerProfile,
    PartnerSummaryRow,
    UserProfile,
    table_of,
)
from signupflow.settings import Settings
from signupflow.web_auth import get_json

Summary = tuple[str, int, datetime]  # nickname, style_count, joined_at (an instant, in UTC)
SAMPLE = 5
#: ``signupflow verify``'s exit statuses: the stores agree, they disagree, or a part could not
#: be read (nothing is known about it: not the same as wrong data).
CONSISTENT, INCONSISTENT, NOT_CHECKED = 0, 1, 2
#: The way out when the table cannot be read.
TABLE_HINT = ("start the batch worker (signupflow up, or make run), or check the databases "
              "alone: signupflow verify --no-table")


@dataclass
class Snapshot:
    accounts: dict[str, str]  # uuid -> role
    events: dict[str, list[bytes]]  # uuid -> outbox payloads (published ones expire)
    unpublished: set[str]
    users: dict[str, str]  # uuid -> nickname
    partners: dict[str, str]
    styles: dict[str, set[int]]
    summaries: dict[str, Summary]
    table: dict[str, Summary] | None  # None: not checked
    table_error: str | None = None


@dataclass
class Report:
    counts: dict[str, int]
    problems: dict[str, list[str]] = field(default_factory=dict)
    in_flight: int = 0
    #: what could not be read, and why
    unchecked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    @property
    def status(self) -> int:
        """The exit status: a disagreement found outweighs a part left unchecked."""
        return INCONSISTENT if not self.ok else NOT_CHECKED if self.unchecked else CONSISTENT

    def add(self, kind: str, ids: list[str] | set[str]) -> None:
        if ids:
            self.problems[kind] = sorted(ids)

    def render(self) -> str:
        lines = ["counts: " + ", ".join(f"{k}={v}" for k, v in self.counts.items())]
        if self.in_flight:
            lines.append(f"in flight (outbox not yet published): {self.in_flight}")
        for kind, ids in self.problems.items():
            sample = ", ".join(ids[:SAMPLE]) + (" ..." if len(ids) > SAMPLE else "")
            lines.append(f"PROBLEM {kind}: {len(ids)} ({sample})")
        for what, why in self.unchecked.items():
            lines.append(f"could not check the {what}: {why}")
            if what == "partner-summary table":
                lines.append(f"  {TABLE_HINT}")
        lines.append({CONSISTENT: "consistent", INCONSISTENT: "INCONSISTENT",
                      NOT_CHECKED: "NOT CHECKED (what was read agrees)"}[self.status])
        return "\n".join(lines)


def reconcile(s: Snapshot) -> Report:
    """Every way the three stores can disagree, by kind, with the uuids concerned."""
    profiles = s.users.keys() | s.partners.keys()
    report = Report(counts={
        "accounts": len(s.accounts), "users": len(s.users), "partners": len(s.partners),
        "favorite_styles": sum(len(v) for v in s.styles.values()),
        "summaries": len(s.summaries),
        **({"table": len(s.table)} if s.table is not None else {}),
    })
    waiting = s.unpublished - profiles
    report.in_flight = len(waiting)
    report.add("account without profile", s.accounts.keys() - profiles - waiting)
    report.add("profile without account", profiles - s.accounts.keys())
    report.add("profile both user and partner", s.users.keys() & s.partners.keys())
    # The relay deletes published events once older than the retention: an account with a
    # profile had its event published, so only one without either has lost its event.
    report.add("account without outbox event", s.accounts.keys() - s.events.keys() - profiles)
    report.add("account with several events", {u for u, e in s.events.items() if len(e) > 1})
    wrong_role, wrong_data = set(), set()
    for uuid, role in s.accounts.items():
        if uuid in profiles and (uuid in s.partners) != (role == "PARTNER"):
            wrong_role.add(uuid)
    for uuid, payloads in s.events.items():
        if uuid not in profiles:
            continue
        try:
            event = decode_profile_insert(uuid.encode(), payloads[0], 2**20)
        except InvalidEvent:
            wrong_data.add(uuid)
            continue
        nickname = s.partners.get(uuid) or s.users.get(uuid)
        if nickname != event.nickname or s.styles.get(uuid, set()) != set(event.favorite_styles):
            wrong_data.add(uuid)
    report.add("profile role differs from account", wrong_role)
    report.add("profile differs from its event", wrong_data)
    report.add("styles without profile", s.styles.keys() - profiles)
    report.add("partner without summary", s.partners.keys() - s.summaries.keys())
    report.add("summary without partner", s.summaries.keys() - s.partners.keys())
    report.add("summary differs from partner", {
        p for p, (nick, count, _) in s.summaries.items()
        if p in s.partners and (nick != s.partners[p] or count != len(s.styles.get(p, ())))})
    if s.table_error:
        report.unchecked["partner-summary table"] = s.table_error
    if s.table is not None:
        report.add("batch.db differs from table", {
            p for p in s.summaries.keys() | s.table.keys() if s.summaries.get(p) != s.table.get(p)})
    return report


async def _read(url: str, *tables: type) -> list[list[Any]]:
    """The rows of ``tables`` of one database, read in one transaction (a consistent view)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN")  # pysqlite does not begin for SELECTs
            else:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            return [list((await conn.execute(select(table_of(t)))).all()) for t in tables]
    except Exception as exc:  # a service that never ran has no tables yet
        if no_such_table(exc):
            return [[] for _ in tables]
        raise
    finally:
        await engine.dispose()


def read_table(batch_url: str, token: Secret | None = None) -> dict[str, Summary]:
    """The whole partner-summary table as served by the batch web view, page by page, from
    every worker that holds part of it (raises OSError)."""
    found: dict[str, Summary] = {}
    after = ""
    while True:
        query = urllib.parse.urlencode({"limit": 1000, "after": after})
        data = get_json(f"{batch_url.rstrip('/')}/partners/?{query}", token)
        for p in data["partners"]:
            found[p["partner_id"]] = (p["nickname"], p["style_count"], instant(p["joined_at"]))
        if not data.get("next"):
            return found
        after = data["next"]


async def snapshot(settings: Settings, with_table: bool = True) -> Snapshot:
    """Read downstream before upstream (batch, member, then auth): data only flows downstream,
    so an event in flight can look missing downstream (``--settle`` waits for it) but can never
    look like an orphan without its upstream record."""
    (summary_rows,) = await _read(settings.database_url("batch"), PartnerSummaryRow)
    table, table_error = None, None
    if with_table:
        try:
            table = read_table(settings.web_url("batch"), settings.web_token)
        except OSError as exc:
            table_error = f"batch web view at {settings.web_url('batch')}: {exc}"
    user_rows, partner_rows, style_rows = await _read(
        settings.database_url("member"), UserProfile, PartnerProfile, FavoriteStyle)
    member_rows, outbox_rows = await _read(settings.database_url("auth"), Member, OutboxEvent)
    events: dict[str, list[bytes]] = {}
    unpublished: set[str] = set()
    for row in outbox_rows:
        events.setdefault(row.key, []).append(row.payload)
        if row.published_at is None:
            unpublished.add(row.key)
    styles: dict[str, set[int]] = {}
    for row in style_rows:
        styles.setdefault(row.uuid, set()).add(row.style_id)
    return Snapshot(
        accounts={r.uuid: r.role for r in member_rows},
        events=events, unpublished=unpublished,
        users={r.uuid: r.nickname for r in user_rows},
        partners={r.uuid: r.nickname for r in partner_rows},
        styles=styles,
        summaries={r.partner_id: (r.nickname, r.style_count, instant(r.joined_at))
                   for r in summary_rows},
        table=table, table_error=table_error,
    )
