"""Schema migrations on PostgreSQL, and a worker on a database not upgraded.

Finding (issue 20): two auth workers starting on a fresh PostgreSQL database raced on `CREATE
TABLE member`, and one valid signup got HTTP 500 (`UniqueViolationError` on
`pg_type_typname_nsp_index`). Workers now run no DDL; `signupflow db upgrade` does, under an
advisory lock, and may be run by several processes at once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from signupflow.app import EXIT_SCHEMA_BEHIND
from signupflow.db import make_engine
from signupflow.migrations import current, head, upgrade
from signupflow.models.db import SCHEMAS
from signupflow.settings import SERVICES
from signupflow.supervisor import start_worker, stop_process, worker_env
from tests.integration.postgres import Postgres
from tests.integration.system import System
from tests.legacy_schema import LEGACY, ROWS, create_legacy, every_row

UPGRADERS = 6


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start([*SERVICES, *(f"legacy_{s}" for s in SERVICES)])
        yield server
    finally:
        server.remove()


def test_several_upgrades_at_once_on_a_fresh_postgresql_database(postgres: Postgres) -> None:
    env = {**os.environ, **{f"SIGNUPFLOW_{s.upper()}_DATABASE_URL": postgres.url(s)
                            for s in SERVICES}}
    procs = [subprocess.Popen([sys.executable, "-m", "signupflow.cli", "db", "upgrade"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(UPGRADERS)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * UPGRADERS, outputs
    lines = [line for out, _ in outputs for line in out.splitlines()]
    for service in SERVICES:  # one process upgraded each database; the others found it done
        assert sorted(line for line in lines if line.startswith(f"database {service}:")) == [
            f"database {service}: at {head(service)} (head)"] * (UPGRADERS - 1) + [
            f"database {service}: empty -> {head(service)}"]
        assert asyncio.run(current(postgres.url(service))) == head(service)


@pytest.mark.parametrize("service", SERVICES)
def test_an_upgrade_from_the_schema_before_migrations_keeps_every_row_on_postgresql(
        postgres: Postgres, service: str) -> None:
    async def scenario() -> tuple[Any, ...]:
        engine = make_engine(postgres.url(f"legacy_{service}"))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(create_legacy, LEGACY[service], service)
            async with engine.connect() as conn:
                before = await conn.run_sync(every_row, service)
            done = await upgrade(engine, service)
            async with engine.connect() as conn:
                after = await conn.run_sync(every_row, service)
                diff = await conn.run_sync(differences, service)
            return before, done, after, diff
        finally:
            await engine.dispose()

    before, done, after, diff = asyncio.run(scenario())
    assert {name: len(rows) for name, rows in before.items()} == {
        name: len(rows) for name, rows in ROWS[service].items()}
    assert (done.before, done.after, done.adopted) == (None, head(service), True)
    assert after == before
    assert diff == []


def differences(conn: Connection, service: str) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, SCHEMAS[service]))


def test_a_worker_on_a_database_not_upgraded_refuses_to_run(tmp_system: System) -> None:
    """It says what to run, in its log, and exits with its own status, for its supervisor."""
    fresh = f"sqlite+aiosqlite:///{tmp_system.root / 'fresh-batch.db'}"
    proc = start_worker("batch", tmp_system.log("batch"), worker_env(
        "batch", {**tmp_system.env, "SIGNUPFLOW_BATCH_DATABASE_URL": fresh}))
    try:
        assert proc.wait(timeout=90) == EXIT_SCHEMA_BEHIND
    finally:
        stop_process(proc)
    log = tmp_system.log("batch").read_text()
    assert (f"refusing to run: fresh-batch.db is at revision none, the code needs "
            f"{head('batch')}: run `signupflow db upgrade batch`") in log
    assert asyncio.run(current(fresh)) is None  # the worker ran no DDL
