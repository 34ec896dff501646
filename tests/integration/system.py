"""A running signupflow for integration tests: a real broker and real worker processes.

Each System has its own broker (fresh KRaft store, free port), data folder and web ports, so
tests never see each other's topics, consumer groups or databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from signupflow import broker
from signupflow.db import make_engine, no_such_table
from signupflow.domain.fake import fake_signups
from signupflow.kafka_client import KafkaAccess
from signupflow.local_security import ADMIN_USER, LocalSecurity, grant_acls
from signupflow.migrations import upgrade
from signupflow.settings import (
    LOCAL_CLIENT_ENV,
    SERVICES,
    Principal,
    load_settings,
    read_env_file,
)
from signupflow.supervisor import start_worker, stop_process, wait_http, worker_env
from signupflow.topics import describe_partitions, ensure_every_topic
from tests.integration.postgres import database_settings

PARTITIONS = 4


class System:
    def __init__(self, root: Path, nodes: int = 1, secure: bool = False):
        self.root = root
        self.nodes = nodes
        #: SASL_SSL, SCRAM users and ACLs (``broker start --secure``); every process connects
        #: as its own principal
        self.secure = secure
        self.data_dir = root / "data"
        self.broker_home = root / "broker"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {s: broker.free_port() for s in SERVICES}
        self.broker_port = 0
        self.bootstrap = ""
        self.env: dict[str, str] = {}
        #: the databases' settings of ``databases()`` while inside it (kept by a broker restart)
        self.database_env: dict[str, str] = {}

    # --- lifecycle -------------------------------------------------------------------------
    def start_broker(self) -> None:
        status = broker.start(self.broker_home, self.broker_port, self.nodes,
                              secure=self.secure)
        self.broker_port = status.port or 0
        self.bootstrap = status.bootstrap
        self.env = {
            **read_env_file(self.broker_home / LOCAL_CLIENT_ENV),  # a secured cluster's users
            **os.environ,
            "SIGNUPFLOW_DATA_DIR": str(self.data_dir),
            "SIGNUPFLOW_BROKER_HOME": str(self.broker_home),
            "SIGNUPFLOW_BROKER_PORT": str(self.broker_port),
            "SIGNUPFLOW_KAFKA_BROKER": status.kafka_url,  # every node
            "SIGNUPFLOW_PARTITIONS": str(PARTITIONS),
            "SIGNUPFLOW_SESSION_TIMEOUT": "6",
            "SIGNUPFLOW_SCRYPT_N": "4096",  # the cheapest allowed cost keeps tests quick
            # every test client posts from 127.0.0.1: no per-address limit (test_flood.py
            # sets one)
            "SIGNUPFLOW_SIGNUP_RATE": "0",
            **{f"SIGNUPFLOW_{s.upper()}_WEB_PORT": str(p) for s, p in self.ports.items()},
            **self.database_env,
        }
        self.migrate()
        settings = load_settings(self.env)
        if self.secure:
            asyncio.run(grant_acls(LocalSecurity(self.broker_home), self.bootstrap, settings))
        asyncio.run(ensure_every_topic(self.access("operator"), settings))

    def access(self, principal: Principal) -> KafkaAccess:
        """How ``principal`` connects (PLAINTEXT on an unsecured cluster)."""
        return broker.status(self.broker_home).access(principal)

    @property
    def admin(self) -> KafkaAccess:
        """A principal that may see and do everything: for the tests' own observations."""
        status = broker.status(self.broker_home)
        if self.secure:
            return LocalSecurity(self.broker_home).access(status.bootstrap, ADMIN_USER)
        return KafkaAccess(status.bootstrap)

    def stop_broker(self, kill: bool = False) -> None:
        """Stop the broker (``kill``: kill -9, no controlled shutdown)."""
        broker.stop(self.broker_home, kill=kill)

    def stop_node(self, node: int, kill: bool = False) -> None:
        """Stop one node of the cluster (``kill``: kill -9)."""
        assert broker.stop(self.broker_home, kill=kill, node=node), f"node {node} not running"

    def start_nodes(self) -> None:
        """Start the nodes that are down again (same ports, same data)."""
        broker.start(self.broker_home, self.broker_port, self.nodes)

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading ``topic[partition]``."""
        rows = asyncio.run(describe_partitions(self.admin))
        return next(r.leader for r in rows if (r.topic, r.partition) == (topic, partition))

    def wait_in_sync(self, timeout: float = 120) -> None:
        """Until every replica of every partition is in sync again."""
        def in_sync() -> bool:
            rows = asyncio.run(describe_partitions(self.admin))
            return bool(rows) and all(set(r.isr) == set(r.replicas) for r in rows)
        self.wait_until(in_sync, timeout, "every replica back in sync")

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log(self, service: str) -> Path:
        return self.root / "log" / f"{service}.log"

    def migrate(self, env: dict[str, str] | None = None) -> None:
        """Upgrade every service's database (of ``env``, default the system's) to the head
        revision, as ``signupflow db upgrade`` does: workers refuse a database that is not."""
        settings = load_settings({**self.env, **(env or {})})
        for service in SERVICES:
            asyncio.run(upgrade(settings.database_url(service), service))

    def start(self, *services: str, **env: str) -> None:
        """Start workers (default: all three), their databases upgraded first; ``env`` adds
        settings for these processes."""
        self.migrate(env)
        for service in services or SERVICES:
            self.procs[service] = start_worker(service, self.log(service),
                                               worker_env(service, {**self.env, **env}))
        for service in services or SERVICES:
            wait_http(self.url(service) + "/", 90, self.procs[service])

    def start_extra(self, name: str, service: str, **env: str) -> None:
        """One more ``service`` worker, known as ``name`` (own web port and log); ``env`` adds
        settings, e.g. another app id. In the same consumer group it shares the partitions.
        Started again, it keeps its port, as a deployed worker does (and so its tables' store,
        whose folder is named after the port)."""
        self.ports.setdefault(name, broker.free_port())
        self.migrate(env)
        self.procs[name] = start_worker(
            service, self.log(name),
            worker_env(service, {**self.env, f"SIGNUPFLOW_{service.upper()}_WEB_PORT":
                                 str(self.ports[name]), **env}))
        wait_http(self.url(name) + "/", 90, self.procs[name])

    @contextmanager
    def databases(self, kind: str) -> Iterator[None]:
        """Workers started inside use ``kind`` databases (see ``database_settings``); they are
        stopped on the way out, before the databases go."""
        with database_settings(kind) as settings:
            self.database_env = dict(settings)
            self.env.update(settings)
            self.migrate()
            try:
                yield
            finally:
                self.stop()
                self.database_env = {}
                for name in settings:
                    self.env.pop(name, None)

    def stop(self, *services: str) -> None:
        for service in services or list(self.procs):
            proc = self.procs.pop(service, None)
            if proc is not None:
                stop_process(proc)

    def kill(self, service: str) -> None:
        """kill -9: no shutdown hooks, no final commit, no producer flush."""
        proc = self.procs.pop(service)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def shutdown(self) -> None:
        self.stop()
        self.stop_broker()

    # --- observation -----------------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = False, timeout: float = 300, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signupflow.cli", *args], env=self.env, capture_output=True,
            text=True, timeout=timeout, check=check, input=stdin,
        )

    def cli_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "signupflow.cli", *args], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def signup(self, count: int, seed: int, *extra: str) -> subprocess.Popen[str]:
        """``signupflow signup`` in the background (for load during faults)."""
        return self.cli_background("signup", "--count", str(count), "--seed", str(seed),
                                   "--url", self.url("auth"), *extra)

    def profiles(self) -> int:
        return self.count("member", "user_profile") + self.count("member", "partner_profile")

    def assert_consistent(self, settle: float = 90) -> str:
        """``signupflow verify`` must report every store consistent (it exits 1 otherwise)."""
        result = self.cli("verify", "--settle", str(settle))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "consistent" in result.stdout
        return result.stdout

    def query(self, service: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` in ``service``'s database: its SQLite file, or the URL it was given."""
        url = self.env.get(f"SIGNUPFLOW_{service.upper()}_DATABASE_URL")
        if url:
            try:
                return asyncio.run(_query_url(url, sql))
            except Exception as exc:
                if no_such_table(exc):
                    return []
                raise
        path = self.data_dir / f"{service}.db"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if no_such_table(exc):
                return []
            raise
        finally:
            conn.close()

    def count(self, service: str, table: str) -> int:
        rows = self.query(service, f"SELECT count(*) FROM {table}")
        return int(rows[0][0]) if rows else 0

    def assert_exactly(self, count: int, seed: int) -> None:
        """Every one of ``count`` signups (``--seed seed``) stored once in every database."""
        self.wait_until(lambda: self.profiles() == count, 180, f"{count} profiles")
        assert self.count("auth", "member") == count
        assert self.count("member", "favorite_style") == sum(
            len(s["favorite_styles"]) for s in fake_signups(count, 0.3, seed))
        partners = self.count("member", "partner_profile")
        self.wait_until(lambda: self.count("batch", "partner_summary") == partners, 120,
                        "one summary per partner")
        self.assert_consistent()

    def per_minute(self, name: str = "member", query: str = "minutes=1440") -> dict[str, Any]:
        """``GET /signups-per-minute/`` of worker ``name`` (a day of minutes by default)."""
        with urllib.request.urlopen(f"{self.url(name)}/signups-per-minute/?{query}",
                                    timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
        assert sum(r["USER"] for r in body["per_minute"]) == body["totals"]["USER"]
        assert sum(r["PARTNER"] for r in body["per_minute"]) == body["totals"]["PARTNER"]
        return body

    def stored_by_role(self) -> dict[str, int]:
        return {"USER": self.count("member", "user_profile"),
                "PARTNER": self.count("member", "partner_profile")}

    def assert_counted_per_minute(self, *names: str, workers: int = 1) -> None:
        """Each member worker's signups-per-minute totals equal member.db's counts exactly."""

        def counted(name: str) -> bool:
            try:
                body = self.per_minute(name)
            except OSError:  # not answering yet, or 503 while a rebalance moves partitions
                return False
            return bool(body["workers"] == workers and body["totals"] == self.stored_by_role())

        self.wait_until(lambda: all(counted(n) for n in names or ("member",)), 60,
                        f"signups per minute {self.stored_by_role()} from {workers} member "
                        "worker(s)")

    def ready(self, *names: str) -> bool:
        """Whether ``/ready`` of each worker ``name`` (default: the three services) says 200."""
        for name in names or SERVICES:
            try:
                with urllib.request.urlopen(self.url(name) + "/ready", timeout=10):
                    pass
            except OSError:  # HTTPError (503) included
                return False
        return True

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.25)
        for proc in self.procs.values():  # each worker logs the stack of every task it runs
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(1)
        logs = "\n".join(f"--- {s} log tail ---\n" + _tail(self.log(s)) for s in SERVICES)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> int:
    """Wait for a background ``signupflow signup``; return how many signups were accepted."""
    out, err = proc.communicate(timeout=timeout)
    match = re.search(r"accepted (\d+)", out)
    assert match, out + err
    return int(match.group(1))


async def _query_url(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
