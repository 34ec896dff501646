"""Schema migrations: one Alembic history per service database (auth, member, batch).

Each service owns its database, so each has its own script directory here
(``signupflow/migrations/<service>/versions``), its own revisions and its own ``alembic_version``
table. Alembic is driven from code: no ``alembic.ini``, no ``env.py``. ``signupflow db upgrade``
(run by ``signupflow up``, the tests and docker-compose's ``migrate`` job) brings a database to
the head revision; a worker only checks that its database is there (:func:`require_head`) and
never runs DDL.

Adding a revision (say 0002 of member, after a change to ``signupflow/models/db.py``):

1. Write ``signupflow/migrations/member/versions/r0002_<what>.py`` like ``r0001_initial.py``:
   ``revision = "0002"``, ``down_revision = "0001"``, and an ``upgrade()`` (and
   ``downgrade()``) with explicit ``op.add_column(...)``, ``op.create_table(...)``... Spell the
   columns out: never build them from the models, which will have moved on by the time an old
   database meets the revision. On SQLite, changes that ALTER TABLE cannot make go through
   ``with op.batch_alter_table(...)``.
2. ``pytest tests/unit/test_migrations.py``: it fails while the upgraded database and the
   models differ (autogenerate's ``compare_metadata``), and names the difference.

Databases made by older code (tables created by ``create_all`` at start-up, no
``alembic_version``) are recognised by their tables and stamped at 0001, rows kept, then
upgraded like any other.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.runtime.migration import RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.db import make_engine

HERE = Path(__file__).resolve().parent

#: The tables revision 0001 creates, by service: a database without ``alembic_version`` that
#: has them all was made by the code before migrations (``create_all``) and is stamped 0001.
LEGACY_TABLES: dict[str, frozenset[str]] = {
    "auth": frozenset({"member", "outbox"}),
    "member": frozenset({"user_profile", "partner_profile", "favorite_style", "signup_minute"}),
    "batch": frozenset({"partner_summary"}),
}
#: Nullable columns that code before migrations added to its tables at start-up (table,
#: column): a database last opened by older code may lack them; they are added before it is
#: stamped 0001.
LEGACY_LATE_COLUMNS: dict[str, list[tuple[str, Callable[[], sa.Column[Any]]]]] = {
    "auth": [("outbox", lambda: sa.Column("traceparent", sa.String(length=55), nullable=True))],
}


class NotAtHead(RuntimeError):
    """A database is not at the revision this code needs; the message says what to run."""


@dataclass(frozen=True)
class Upgraded:
    """What an upgrade did: the revision before (None: none) and after, and whether it found a
    database of the code before migrations and stamped it."""

    service: str
    before: str | None
    after: str
    adopted: bool = False

    def describe(self) -> str:
        adopted = " (tables of the code before migrations, stamped 0001)" if self.adopted else ""
        if self.before == self.after:
            return f"{self.service}: at {self.after} (head){adopted}"
        before = self.before or ("unversioned" if self.adopted else "empty")
        return f"{self.service}: {before} -> {self.after}{adopted}"


def scripts(service: str) -> ScriptDirectory:
    """The Alembic script directory of ``service``'s database."""
    if service not in LEGACY_TABLES:
        raise ValueError(f"no migrations for {service!r}")
    return ScriptDirectory(str(HERE / service))


def head(service: str) -> str:
    """The revision the code of ``service`` needs."""
    found = scripts(service).get_current_head()
    if found is None:
        raise RuntimeError(f"{service}: no revision")
    return found


def database_label(url: str, service: str) -> str:
    """How messages name a database: its file (``member.db``) or ``the member database``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(str(parsed.database)).name
    return f"the {service} database"


def current_on(conn: Connection) -> str | None:
    """The revision stamped in the database of ``conn`` (None: not stamped)."""
    return MigrationContext.configure(conn).get_current_revision()


def _legacy(conn: Connection, service: str) -> bool:
    """Whether the database has no ``alembic_version`` but 0001's tables (a database of the code
    before migrations). Some of them only: neither empty nor that code's, so refused."""
    found = set(inspect(conn).get_table_names())
    if "alembic_version" in found:
        return False
    present = LEGACY_TABLES[service] & found
    if present and present != LEGACY_TABLES[service]:
        raise RuntimeError(f"{service}: the database has {sorted(present)} but not "
                           f"{sorted(LEGACY_TABLES[service] - present)} and no alembic_version: "
                           "neither empty nor made by signupflow; refusing to guess")
    return bool(present)


def _adopt(conn: Connection, service: str, ctx: MigrationContext) -> None:
    operations = Operations(ctx)
    inspector = inspect(conn)
    for table, column in LEGACY_LATE_COLUMNS.get(service, []):
        late = column()
        if late.name not in {c["name"] for c in inspector.get_columns(table)}:
            operations.add_column(table, late)
    ctx.stamp(scripts(service), "0001")


def _lock(conn: Connection, service: str) -> None:
    """Serialise upgrades of one database until the end of the transaction: on PostgreSQL an
    advisory lock, on SQLite the write lock (``BEGIN IMMEDIATE``: the transaction is not begun
    yet on the driver, pysqlite begins it only at the first write)."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"signupflow migrations {service}".encode())
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade_on(conn: Connection, service: str, target: str = "heads") -> Upgraded:
    """Upgrade the database of ``conn`` (in its transaction, locked against other upgraders) to
    ``target``, stamping a database of the code before migrations at 0001 first."""
    _lock(conn, service)
    script = scripts(service)
    before = current_on(conn)
    adopted = before is None and _legacy(conn, service)

    def steps(revision: str, _ctx: MigrationContext) -> Iterable[RevisionStep]:
        return script._upgrade_revs(target, revision)  # what `alembic upgrade` runs

    ctx = MigrationContext.configure(conn, opts={"fn": steps, "script": script})
    if adopted:
        _adopt(conn, service, ctx)
    with Operations.context(ctx):
        ctx.run_migrations()
    after = current_on(conn)
    if after is None:
        raise RuntimeError(f"{service}: no revision stamped after the upgrade to {target}")
    return Upgraded(service, before, after, adopted)


async def upgrade(database: AsyncEngine | str, service: str, target: str = "heads") -> Upgraded:
    """Upgrade ``service``'s database (an engine, or a URL: an engine made and disposed here)
    to ``target`` (default: the head revision), in one transaction. Safe to run from several
    processes at once."""
    engine = make_engine(database) if isinstance(database, str) else database
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(upgrade_on, service, target)
    finally:
        if isinstance(database, str):
            await engine.dispose()


async def current(database: AsyncEngine | str) -> str | None:
    """The revision of a database (None: never upgraded)."""
    engine = make_engine(database) if isinstance(database, str) else database
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(current_on)
    finally:
        if isinstance(database, str):
            await engine.dispose()


def behind(service: str, label: str, found: str | None) -> str | None:
    """Why a database at revision ``found`` does not fit the code (None: it does)."""
    needed = head(service)
    if found == needed:
        return None
    hint = (f"run `signupflow db upgrade {service}`" if found is None or
            _known(service, found) else "it was upgraded by newer code: run that code")
    return f"{label} is at revision {found or 'none'}, the code needs {needed}: {hint}"


def _known(service: str, revision: str) -> bool:
    try:
        return scripts(service).get_revision(revision) is not None
    except Exception:  # alembic's CommandError / ResolutionError for an unknown revision
        return False


async def require_head(engine: AsyncEngine, service: str) -> None:
    """Raise :class:`NotAtHead` unless ``engine``'s database is at the head revision (what a
    worker checks before it uses its database; it never upgrades it)."""
    problem = behind(service, database_label(str(engine.url), service), await current(engine))
    if problem is not None:
        raise NotAtHead(problem)
