"""Async database engines (SQLite by default, any SQLAlchemy async URL works), transactions
run as one synchronous function, and upserts."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        return Path(url[len(prefix):])
    return None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the web views and `signupflow verify` read while the worker writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> AsyncEngine:
    """The engine of ``url``. A SQLite file also gets a synchronous twin (see :func:`transaction`),
    disposed whenever the engine is."""
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        builtin = tuple(engine.sync_engine.pool.dispatch.connect)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if _file_database(engine.url):
            _twins[engine.sync_engine] = _twin_of(engine.sync_engine, builtin)
    return engine


R = TypeVar("R")


async def transaction(engine: AsyncEngine, work: Callable[[Connection], R]) -> R:
    """Run ``work`` on a synchronous connection in one transaction: committed once it returned,
    rolled back if it raised (the driver's errors come out as SQLAlchemy's, as ever).

    On a SQLite file (an engine from :func:`make_engine`) the whole transaction is one call to
    a worker thread, on the engine's pysqlite twin: aiosqlite hops to its thread and back to
    the loop for every driver call (execute, fetch, cursor close, commit: 25 for a batch of
    profiles). Elsewhere (PostgreSQL, in-memory SQLite) it runs on the loop, through
    ``run_sync``.

    Cancelling the caller does not stop the thread: its transaction still commits or rolls back
    on its own (the writes are idempotent: a batch not acknowledged comes back as redelivery).
    """
    twin = _twins.get(engine.sync_engine)
    if twin is None:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    return await asyncio.to_thread(_in_transaction, twin, work)


def _in_transaction(engine: Engine, work: Callable[[Connection], R]) -> R:
    with engine.begin() as conn:
        return work(conn)


def _file_database(url: URL) -> bool:
    """Whether ``url`` names a SQLite file: another connection to it sees the same database
    (not so ``:memory:`` nor, to be safe, any ``file:`` URI)."""
    return (url.database or ":memory:") != ":memory:" and not url.query.get("uri")


def _twin_of(source: Engine, builtin: tuple[Any, ...]) -> Engine:
    """The synchronous twin of an async SQLite engine: the same file through the pysqlite driver
    (which turns ``check_same_thread`` off for a file: pooled connections move between worker
    threads), disposed whenever ``source`` is.

    Its connections get the ``connect`` listeners of the async engine that are not
    SQLAlchemy's own (``builtin``), the ones registered later too, in their order:
    :func:`_sqlite_pragmas`, and any a caller added (a shorter busy timeout...).
    """
    twin = create_engine(source.url.set(drivername="sqlite"))
    owner = weakref.ref(source)  # the twin must not keep its engine alive

    def connect(dbapi_conn: Any, record: Any) -> None:
        engine = owner()
        if engine is None:
            return
        for listener in engine.pool.dispatch.connect:  # the current pool's, after dispose
            if all(listener is not b for b in builtin):
                listener(dbapi_conn, record)

    event.listen(twin, "connect", connect)
    event.listen(source, "engine_disposed", lambda _engine: twin.dispose())
    return twin


#: The twin of each async SQLite file engine's sync_engine (gone with the engine).
_twins: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def no_such_table(error: BaseException) -> bool:
    """Whether ``error`` says a table does not exist (a service that never ran has none yet):
    SQLite's "no such table", PostgreSQL's undefined_table (SQLSTATE 42P01)."""
    cause = getattr(error, "orig", None) or error
    state = getattr(cause, "sqlstate", None) or getattr(getattr(cause, "__cause__", None),
                                                        "sqlstate", None)
    return "no such table" in str(error) or state == "42P01"


async def unwritable(engine: AsyncEngine, lock_wait: float = 1.0) -> str | None:
    """Why the database would not take a write now; None if it would.

    On a SQLite file the write lock is asked for (``BEGIN IMMEDIATE``, then rolled back) on a
    connection of its own that waits at most ``lock_wait`` seconds: a file another process
    holds locked reads as unwritable (a ``SELECT 1`` still answers then: WAL lets it read),
    while this worker's own transactions, milliseconds long, are waited for. Elsewhere the
    database must answer ``SELECT 1``.
    """
    try:
        if engine.sync_engine in _twins:
            await asyncio.to_thread(_lock_and_release, str(engine.url.database), lock_wait)
        else:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        return describe(exc)
    return None


def describe(error: BaseException) -> str:
    """An error in one short line, for a log or a readiness reason."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def _lock_and_release(path: str, lock_wait: float) -> None:
    conn = sqlite3.connect(path, timeout=lock_wait, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _insert(table: Table, dialect: str) -> postgresql.Insert | sqlite.Insert:
    module = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect)
    if module is None:
        raise ValueError(f"no upsert support for the {dialect!r} database")
    stmt: postgresql.Insert | sqlite.Insert = module.insert(table)
    return stmt


def insert_ignore(table: Table, dialect: str) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: replays of an event insert nothing."""
    stmt: Insert = _insert(table, dialect).on_conflict_do_nothing()
    return stmt


def upsert(table: Table, dialect: str, key: Sequence[str], add: Sequence[str] = (),
           newer: str | None = None) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` setting every other column, or adding the
    new value to the stored one for the columns in ``add`` (counters); with ``newer`` (a
    column), only where the new row's value of it is greater than the stored one's."""
    stmt = _insert(table, dialect)
    updates = {c.name: c + stmt.excluded[c.name] if c.name in add else stmt.excluded[c.name]
               for c in table.columns if c.name not in key}
    where = None if newer is None else table.c[newer] < stmt.excluded[newer]
    upserting: Insert = stmt.on_conflict_do_update(index_elements=list(key), set_=updates,
                                                   where=where)
    return upserting
