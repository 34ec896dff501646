"""``signupflow bench``'s recovery phase: how long a restarted batch worker is without its
table, and what it then holds in memory, with the table in memory and on disk side by side.

A batch worker (its own app id, consumer group, changelog and database) summarises N
partner-created events with its table on disk and is stopped (SIGTERM); it is then started
again on each store (``SIGNUPFLOW_TABLE_STORE``) in turn, on that same changelog: the figures
are from the launch of the new process to the first key it serves (``GET /partners/<id>/``
200, which needs every partition recovered), and its resident memory (``VmRSS``) then. In
memory, the restart replays the whole changelog; on disk, only what was written since the
store's last offset (nothing, after a SIGTERM).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signupflow.domain.fake import WORDS
from signupflow.migrations import upgrade
from signupflow.models.events import PartnerCreated
from signupflow.settings import TABLE_STORES, TableStore
from signupflow.supervisor import start_worker, stop_process, wait_http

if TYPE_CHECKING:
    from signupflow.bench import Env

#: Seconds a phase may take at most (summarising a million partners takes minutes).
LIMIT = 3600.0


def partner_events(count: int, seed: int = 7) -> list[tuple[bytes, bytes, bool]]:
    """``count`` PartnerCreated events (key, value, True), as member publishes them for new
    partners. Built directly (not from signups through member's rules, five times slower): a
    million of them is part of the phase's set-up."""
    rng = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    out = []
    for i in range(count):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        event = PartnerCreated(partner_id=pid, style_count=rng.randint(0, 3), occurred_at=now,
                               nickname=f"{rng.choice(WORDS)}_{rng.choice(WORDS)}{i % 1000}")
        out.append((pid.encode(), event.dumps(), True))
    return out


async def until(predicate: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
                every: float = 0.02) -> float:
    """Poll ``predicate`` (in a thread: it may block) until true; returns the perf_counter
    time it was. Fails if ``proc`` exits or after :data:`LIMIT`."""
    deadline = time.perf_counter() + LIMIT
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(predicate):
            return time.perf_counter()
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark: {what}: the batch worker exited with "
                               f"{proc.returncode} (its log is in the run's log folder)")
        await asyncio.sleep(every)
    raise TimeoutError(f"benchmark: {what} not reached within {LIMIT:.0f}s")


def count_rows(db: Path, table: str) -> int:
    """Rows of ``table`` in SQLite file ``db``; 0 until the worker has created it."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid`` (Linux ``/proc``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (OSError, urllib.error.HTTPError):
        return False


async def recovery(env: Env, entries: int) -> dict[str, Any]:
    """The recovery figures of both stores for one table of ``entries`` partners."""
    from signupflow.bench import produce
    from signupflow.topics import PARTNER_CREATED

    events = partner_events(entries)
    await produce(env.kafka, PARTNER_CREATED, events)
    db = env.root / "data" / "batch-recovery.db"
    worker_env = {**env.env, "SIGNUPFLOW_BATCH_APP_ID": "bench-batch-recovery",
                  "SIGNUPFLOW_BATCH_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    await upgrade(worker_env["SIGNUPFLOW_BATCH_DATABASE_URL"], "batch")  # its own database
    log, url = env.log("batch-recovery"), env.url("batch")

    proc = await asyncio.to_thread(start_worker, "batch", log, worker_env, "warn")
    try:  # summarised once, by the default store: the same changelog for both restarts
        await asyncio.to_thread(wait_http, url + "/", 90, proc)
        await until(lambda: count_rows(db, "partner_summary") >= entries,
                    f"{entries} summaries", proc, every=0.5)
    finally:
        await asyncio.to_thread(stop_process, proc)
    probe = url + f"/partners/{events[-1][0].decode()}/"
    results: dict[str, Any] = {"recovery_entries": entries}
    for store in TABLE_STORES:
        results.update(await restart({**worker_env, "SIGNUPFLOW_TABLE_STORE": store}, store,
                                     log, probe))
    return results


async def restart(worker_env: dict[str, str], store: TableStore, log: Path, probe: str
                  ) -> dict[str, float]:
    """One store's figures: the batch worker started again on it, until ``probe`` answers."""
    launched = time.perf_counter()
    proc = await asyncio.to_thread(start_worker, "batch", log, worker_env, "warn")
    try:
        served = await until(lambda: serves(probe),
                             f"a key served after the restart ({store})", proc)
        rss = rss_mib(proc.pid)
    finally:
        await asyncio.to_thread(stop_process, proc)
    return {f"recovery_{store}_first_key_s": served - launched,
            f"recovery_{store}_rss_mib": rss}


def render(r: dict[str, Any]) -> list[str]:
    """The phase's lines of the bench's table (none if it did not run)."""
    if "recovery_entries" not in r:
        return []
    return [f"  recovery  batch restarted, {r['recovery_entries']:,} table entries: "
            "first key served, resident memory",
            *(f"            {store:<8} {r[f'recovery_{store}_first_key_s']:>7.1f} s "
              f"{r[f'recovery_{store}_rss_mib']:>7.0f} MiB" for store in TABLE_STORES)]
