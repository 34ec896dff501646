"""``signupflow verify``: reconcile the three databases and the partner-summary table.

An operator's tool, not a service: it is the one place allowed to read every service's data.
:func:`reconcile` is pure; :func:`snapshot` does the reading.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from signupflow.db import make_engine, no_such_table
from signupflow.domain.decode import InvalidEvent, decode_member_event
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
from signupflow.models.events import MemberDeleted, MemberEvent
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


#: auth.db's columns of personal data: every one is NULL once the account is deleted.
PERSONAL = ("email", "password_hash", "name", "phone", "birth", "gender")


@dataclass
class Snapshot:
    """What :func:`reconcile` compares. A version missing from a ``*versions`` map is 1 (the
    columns' default, and every event's before members could change)."""

    accounts: dict[str, str]  # uuid -> role, deleted accounts included
    events: dict[str, list[bytes]]  # uuid -> outbox payloads (published ones expire)
    unpublished: set[str]
    users: dict[str, str]  # uuid -> nickname
    partners: dict[str, str]
    styles: dict[str, set[int]]
    summaries: dict[str, Summary]
    table: dict[str, Summary] | None  # None: not checked
    table_error: str | None = None
    #: deleted accounts -> their personal columns that are not NULL (none, once erased)
    deleted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # auth's, per account
    #: auth's public profile, where it has one (accounts made before it kept it have none)
    nicknames: dict[str, str] = field(default_factory=dict)
    favorites: dict[str, set[int]] = field(default_factory=dict)
    profile_versions: dict[str, int] = field(default_factory=dict)  # member's, user or partner
    summary_versions: dict[str, int] = field(default_factory=dict)  # batch.db's
    table_versions: dict[str, int] = field(default_factory=dict)


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


def _decoded(s: Snapshot) -> tuple[dict[str, dict[int, list[MemberEvent]]], set[str]]:
    """The outbox's events of each uuid by version, and the uuids of an unreadable one."""
    by_version: dict[str, dict[int, list[MemberEvent]]] = {}
    unreadable: set[str] = set()
    for uuid, payloads in s.events.items():
        for payload in payloads:
            try:
                event = decode_member_event(uuid.encode(), payload, 2**20)
            except InvalidEvent:
                unreadable.add(uuid)
                continue
            by_version.setdefault(uuid, {}).setdefault(event.version, []).append(event)
    return by_version, unreadable


def _differs(nickname: str, styles: Iterable[int] | int, uuid: str, nicknames: dict[str, str],
             favorites: dict[str, set[int]]) -> bool:
    """Whether a stored profile (its styles, or their count) differs from the public profile
    of ``nicknames`` and ``favorites``, where they have ``uuid``."""
    if uuid in nicknames and nickname != nicknames[uuid]:
        return True
    if uuid not in favorites:
        return False
    if isinstance(styles, int):
        return styles != len(favorites[uuid])
    return set(styles) != favorites[uuid]


@dataclass(frozen=True)
class _Uuids:
    """The sets of uuids every check starts from."""

    profiles: set[str]
    live: set[str]  # accounts not deleted
    gone: set[str]  # deleted accounts whose deletion was published
    settled: set[str]  # live accounts with every event published
    version: dict[str, int]  # auth's, per account
    table: dict[str, Summary]

    @classmethod
    def of(cls, s: Snapshot) -> _Uuids:
        deleted = s.deleted.keys() & s.accounts.keys()
        live = s.accounts.keys() - deleted
        return cls(profiles=s.users.keys() | s.partners.keys(), live=live,
                   gone=deleted - s.unpublished, settled=live - s.unpublished,
                   version={u: s.versions.get(u, 1) for u in s.accounts},
                   table=s.table if s.table is not None else {})


Findings = Iterator[tuple[str, set[str]]]


def _existence(s: Snapshot, u: _Uuids) -> Findings:
    """Exactly one profile, of the account's role, for every live account."""
    yield "account without profile", u.settled - u.profiles
    yield "profile without account", u.profiles - s.accounts.keys()
    yield "profile both user and partner", s.users.keys() & s.partners.keys()
    # The relay deletes published events once older than the retention: an account with a
    # profile had its event published, so only one without either has lost its event.
    yield "account without outbox event", u.live - s.events.keys() - u.profiles


def _outbox(s: Snapshot, u: _Uuids) -> Findings:
    """Every outbox event readable, one per version, and each profile equal to the event of
    its version (while the outbox keeps it)."""
    by_version, unreadable = _decoded(s)
    yield "outbox event unreadable", unreadable
    yield "account with several events of one version", {
        uuid for uuid, versions in by_version.items() if any(len(e) > 1
                                                             for e in versions.values())}
    yield "profile role differs from account", {
        uuid for uuid, role in s.accounts.items()
        if uuid in u.profiles and (uuid in s.partners) != (role == "PARTNER")}
    wrong: set[str] = set()
    for uuid in u.profiles & by_version.keys():
        nickname = s.partners.get(uuid) or s.users.get(uuid, "")
        found = by_version[uuid].get(s.profile_versions.get(uuid, 1), [])
        if any(not isinstance(e, MemberDeleted) and (
                nickname != e.nickname or s.styles.get(uuid, set()) != set(e.favorite_styles))
               for e in found):
            wrong.add(uuid)
    yield "profile differs from its event", wrong


def _latest(s: Snapshot, u: _Uuids) -> Findings:
    """Every live profile and summary at the account's version, equal to auth's public
    profile."""
    current = {p for p in u.settled & u.profiles
               if s.profile_versions.get(p, 1) == u.version[p]}
    yield "profile version differs from account", u.settled & u.profiles - current
    yield "profile differs from account", {
        p for p in current
        if _differs(s.partners.get(p) or s.users.get(p, ""), s.styles.get(p, set()), p,
                    s.nicknames, s.favorites)}
    yield "styles without profile", s.styles.keys() - u.profiles - u.gone
    yield "partner without summary", s.partners.keys() - s.summaries.keys() - u.gone
    yield "summary without partner", s.summaries.keys() - s.partners.keys() - u.gone
    yield "summary differs from partner", {
        p for p, (nick, count, _) in s.summaries.items()
        if p in s.partners and (nick != s.partners[p] or count != len(s.styles.get(p, ())))}
    summarised = u.settled & s.summaries.keys()
    yield "summary version differs from account", {
        p for p in summarised if s.summary_versions.get(p, 1) != u.version[p]}
    yield "summary differs from account", {
        p for p in summarised if s.summary_versions.get(p, 1) == u.version[p]
        and _differs(s.summaries[p][0], s.summaries[p][1], p, s.nicknames, s.favorites)}


def _erased(s: Snapshot, u: _Uuids) -> Findings:
    """A deleted account: nothing of it downstream, nothing personal left in auth.db."""
    yield "profile of a deleted account", u.profiles & u.gone
    yield "styles of a deleted account", s.styles.keys() & u.gone
    yield "summary of a deleted account", s.summaries.keys() & u.gone
    yield "table entry of a deleted account", u.table.keys() & u.gone
    yield "personal data of a deleted account", {uuid for uuid, left in s.deleted.items()
                                                 if left}


def _table(s: Snapshot, u: _Uuids) -> Findings:
    if s.table is not None:
        yield "batch.db differs from table", {
            p for p in s.summaries.keys() | u.table.keys()
            if s.summaries.get(p) != u.table.get(p)
            or s.summary_versions.get(p, 1) != s.table_versions.get(p, 1)}


def reconcile(s: Snapshot) -> Report:
    """Every way the three stores can disagree, by kind, with the uuids concerned.

    A uuid with an event still in the outbox is in flight: what its event will do downstream
    is not asked of member or batch yet (nor, for a deleted account, the erasure of its
    profile and summary; auth's own erasure is in the deletion's transaction, so always)."""
    report = Report(counts={
        "accounts": len(s.accounts), **({"deleted": len(s.deleted)} if s.deleted else {}),
        "users": len(s.users), "partners": len(s.partners),
        "favorite_styles": sum(len(v) for v in s.styles.values()),
        "summaries": len(s.summaries),
        **({"table": len(s.table)} if s.table is not None else {}),
    })
    report.in_flight = len(s.unpublished)
    uuids = _Uuids.of(s)
    for check in (_existence, _outbox, _latest, _erased, _table):
        for kind, ids in check(s, uuids):
            report.add(kind, ids)
    if s.table_error:
        report.unchecked["partner-summary table"] = s.table_error
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


def read_table(batch_url: str, token: Secret | None = None
               ) -> tuple[dict[str, Summary], dict[str, int]]:
    """The whole partner-summary table as served by the batch web view, page by page, from
    every worker that holds part of it, and each entry's version (raises OSError)."""
    found: dict[str, Summary] = {}
    versions: dict[str, int] = {}
    after = ""
    while True:
        query = urllib.parse.urlencode({"limit": 1000, "after": after})
        data = get_json(f"{batch_url.rstrip('/')}/partners/?{query}", token)
        for p in data["partners"]:
            found[p["partner_id"]] = (p["nickname"], p["style_count"], instant(p["joined_at"]))
            versions[p["partner_id"]] = p.get("version") or 1
        if not data.get("next"):
            return found, versions
        after = data["next"]


def _account(row: Any, s: Snapshot) -> None:
    """One auth.db account into ``s``."""
    s.accounts[row.uuid] = row.role
    s.versions[row.uuid] = row.version
    if row.deleted_at is not None:
        s.deleted[row.uuid] = tuple(c for c in PERSONAL if getattr(row, c) is not None)
    if row.nickname is not None:
        s.nicknames[row.uuid] = row.nickname
    if row.favorite_styles is not None:
        s.favorites[row.uuid] = set(json.loads(row.favorite_styles))


async def snapshot(settings: Settings, with_table: bool = True) -> Snapshot:
    """Read downstream before upstream (batch, member, then auth): data only flows downstream,
    so an event in flight can look missing downstream (``--settle`` waits for it) but can never
    look like an orphan without its upstream record."""
    (summary_rows,) = await _read(settings.database_url("batch"), PartnerSummaryRow)
    table, table_error = None, None
    table_versions: dict[str, int] = {}
    if with_table:
        try:
            table, table_versions = read_table(settings.web_url("batch"), settings.web_token)
        except OSError as exc:
            table_error = f"batch web view at {settings.web_url('batch')}: {exc}"
    user_rows, partner_rows, style_rows = await _read(
        settings.database_url("member"), UserProfile, PartnerProfile, FavoriteStyle)
    member_rows, outbox_rows = await _read(settings.database_url("auth"), Member, OutboxEvent)
    s = Snapshot(
        accounts={}, events={}, unpublished=set(),
        users={r.uuid: r.nickname for r in user_rows},
        partners={r.uuid: r.nickname for r in partner_rows},
        styles={},
        summaries={r.partner_id: (r.nickname, r.style_count, instant(r.joined_at))
                   for r in summary_rows},
        table=table, table_error=table_error,
        profile_versions={r.uuid: r.version for r in [*user_rows, *partner_rows]},
        summary_versions={r.partner_id: r.version for r in summary_rows},
        table_versions=table_versions,
    )
    for row in outbox_rows:
        s.events.setdefault(row.key, []).append(row.payload)
        if row.published_at is None:
            s.unpublished.add(row.key)
    for row in style_rows:
        s.styles.setdefault(row.uuid, set()).add(row.style_id)
    for row in member_rows:
        _account(row, s)
    return s
