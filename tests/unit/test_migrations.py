"""Schema migrations on SQLite files (signupflow/migrations): the upgraded database is the
models' schema, a database of the code before migrations is adopted with every row, and a
worker refuses a database that is not at the code's revision. (PostgreSQL, and upgrades run at
once from several processes: tests/integration/test_migrations.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from signupflow.app import EXIT_SCHEMA_BEHIND
from signupflow.cli import main
from signupflow.db import make_engine
from signupflow.migrations import NotAtHead, current, head, require_head, upgrade
from signupflow.models.db import SCHEMAS
from signupflow.settings import SERVICES, get_settings
from signupflow.streams.common import Resources, check_schema
from tests.legacy_schema import AUTH_BEFORE_TRACEPARENT, LEGACY, ROWS, create_legacy, every_row


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[Callable[[str], AsyncEngine]]:
    """An engine on a fresh SQLite file per name (``<name>.db``), disposed at the end."""
    made: list[AsyncEngine] = []

    def engine(name: str) -> AsyncEngine:
        made.append(make_engine(f"sqlite+aiosqlite:///{tmp_path / name}.db"))
        return made[-1]

    yield engine
    for e in made:
        await e.dispose()


async def differences(engine: AsyncEngine, metadata: MetaData) -> list[Any]:
    """What autogenerate would change to make the database ``metadata`` (types too)."""
    def compare(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def run(engine: AsyncEngine, work: Callable[[Connection], Any]) -> Any:
    async with engine.begin() as conn:
        return await conn.run_sync(work)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_fresh_database_upgraded_to_head_is_the_models_schema(
        engines: Callable[[str], AsyncEngine], service: str) -> None:
    """The guard of every model change: one without its revision fails here, saying what
    differs (write the revision: signupflow/migrations/__init__.py says how)."""
    engine = engines(service)
    done = await upgrade(engine, service)
    assert (done.before, done.after, done.adopted) == (None, head(service), False)
    assert await differences(engine, SCHEMAS[service]) == []
    assert await current(engine) == head(service)


async def test_the_guard_sees_a_model_change_without_its_revision(
        engines: Callable[[str], AsyncEngine]) -> None:
    engine = engines("member")
    await upgrade(engine, "member")
    changed = MetaData()
    for table in SCHEMAS["member"].sorted_tables:
        table.to_metadata(changed)
    sa.Table("user_profile", changed, sa.Column("bio", sa.String(200), nullable=True),
             extend_existing=True)
    diff = await differences(engine, changed)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "user_profile", "bio")]


@pytest.mark.parametrize("service", SERVICES)
async def test_revision_0001_is_the_schema_the_code_before_migrations_made(
        engines: Callable[[str], AsyncEngine], service: str) -> None:
    engine = engines(service)
    await upgrade(engine, service, "0001")
    assert await current(engine) == "0001"
    assert await differences(engine, LEGACY[service]) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_of_the_code_before_migrations_is_stamped_and_keeps_every_row(
        engines: Callable[[str], AsyncEngine], service: str) -> None:
    engine = engines(service)
    await run(engine, lambda conn: create_legacy(conn, LEGACY[service], service))
    before = await run(engine, lambda conn: every_row(conn, service))
    assert {name: len(rows) for name, rows in before.items()} == {
        name: len(rows) for name, rows in ROWS[service].items()}

    done = await upgrade(engine, service)
    assert (done.before, done.after, done.adopted) == (None, head(service), True)
    assert await run(engine, lambda conn: every_row(conn, service)) == before
    assert await differences(engine, SCHEMAS[service]) == []
    again = await upgrade(engine, service)
    assert (again.before, again.after, again.adopted) == (head(service), head(service), False)


async def test_an_outbox_from_before_traceparent_gets_the_column_when_adopted(
        engines: Callable[[str], AsyncEngine]) -> None:
    """The one column the code before migrations added to its tables at start-up."""
    engine = engines("auth")
    await run(engine, lambda conn: create_legacy(conn, AUTH_BEFORE_TRACEPARENT, "auth"))
    before = await run(engine, lambda conn: every_row(conn, "auth"))
    assert (await upgrade(engine, "auth")).adopted
    after = await run(engine, lambda conn: every_row(conn, "auth"))
    assert after["member"] == before["member"]
    assert after["outbox"] == [(*row, None) for row in before["outbox"]]  # traceparent NULL
    assert await differences(engine, SCHEMAS["auth"]) == []


async def test_a_database_with_only_some_of_the_tables_is_refused(
        engines: Callable[[str], AsyncEngine]) -> None:
    engine = engines("member")
    await run(engine, LEGACY["member"].tables["user_profile"].create)
    with pytest.raises(RuntimeError, match=r"\['user_profile'\] but not .*refusing to guess"):
        await upgrade(engine, "member")
    assert await current(engine) is None


class RefusingApp:
    """What check_schema needs of a ServiceApp: refuse()."""

    def __init__(self) -> None:
        self.refusals: list[tuple[str, int]] = []

    def refuse(self, reason: str, status: int) -> None:
        self.refusals.append((reason, status))


async def test_a_worker_refuses_a_database_not_upgraded_and_says_what_to_run(
        tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'member.db'}"
    resources = Resources("member", replace(get_settings(), database_urls={"member": url}))
    needed = (f"member.db is at revision none, the code needs {head('member')}: "
              "run `signupflow db upgrade member`")
    with pytest.raises(NotAtHead) as refused:
        await resources.engine()
    assert str(refused.value) == needed
    assert await resources.unwritable() == needed  # what /ready says
    app = RefusingApp()
    await check_schema(app, resources)  # type: ignore[arg-type]  # a stand-in app
    assert app.refusals == [(needed, EXIT_SCHEMA_BEHIND)]
    assert await current(url) is None  # no DDL ran

    await upgrade(url, "member")
    app = RefusingApp()
    await check_schema(app, resources)  # type: ignore[arg-type]
    assert app.refusals == []
    assert await resources.unwritable() is None
    await resources.close()


async def test_a_database_upgraded_by_newer_code_is_refused_too(
        engines: Callable[[str], AsyncEngine]) -> None:
    engine = engines("batch")
    await upgrade(engine, "batch")
    await run(engine, lambda conn: conn.exec_driver_sql(
        "UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(NotAtHead, match=r"^batch.db is at revision 9999, the code needs "
                                        rf"{head('batch')}: it was upgraded by newer code"):
        await require_head(engine, "batch")


def test_db_current_and_upgrade_on_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNUPFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        behind = runner.invoke(main, ["db", "current", "member"])
        assert behind.exit_code == 1
        assert behind.stdout == (f"member: member.db is at revision none, the code needs "
                                 f"{head('member')}: run `signupflow db upgrade member`\n")
        up = runner.invoke(main, ["db", "upgrade"])
        assert up.exit_code == 0, up.output
        assert up.stdout.splitlines() == [f"database {s}: empty -> {head(s)}" for s in SERVICES]
        assert runner.invoke(main, ["db", "upgrade", "batch"]).stdout == \
            f"database batch: at {head('batch')} (head)\n"
        now = runner.invoke(main, ["db", "current"])
        assert now.exit_code == 0
        assert now.stdout.splitlines() == [f"{s}: {head(s)} (head)" for s in SERVICES]
    finally:
        get_settings.cache_clear()


async def test_several_upgrades_at_once_on_one_sqlite_file(
        engines: Callable[[str], AsyncEngine]) -> None:
    """Each engine its own connection (aiosqlite: its own thread): BEGIN IMMEDIATE makes them
    take turns; one upgrades, the others find the database at the head."""
    done = await asyncio.wait_for(asyncio.gather(
        *(upgrade(engines("member"), "member") for _ in range(4))), 60)  # unlocked: deadlock
    assert sorted(d.describe() for d in done) == [f"member: at {head('member')} (head)"] * 3 + [
        f"member: empty -> {head('member')}"]
