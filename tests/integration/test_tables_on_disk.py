"""Tables on disk (RocksDB, the default store) on the real broker and worker processes: a
restart reads only the changelog's tail, a kill -9 loses nothing, a store that is gone,
damaged or foreign is rebuilt, and a standby takes over a dead worker's partitions at once.

What a recovery read is taken from the worker's own log line (``table recovery reads: ...``,
signupflow/recovery.py), not from the clock.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import rocksdict

from signupflow.tables.on_disk import Identity
from tests.integration.system import System, finish

LOAD = 2000
CHANGELOG = "signupflow-batch-partner-summary-changelog"
#: partition -> (records read, first offset, last offset) of one recovery
Plan = dict[int, tuple[int, int, int]]


def plans(log: Path, since: int) -> list[Plan]:
    """The partner-summary recoveries the worker logged after byte ``since`` of its log."""
    found = []
    for line in log.read_bytes()[since:].decode(errors="replace").splitlines():
        if "table recovery reads:" in line and CHANGELOG in line:
            found.append({int(p): (int(n), int(a), int(b)) for p, n, a, b in re.findall(
                rf"{CHANGELOG}\[(\d+)\] (\d+) records \(offsets (-?\d+) to (-?\d+)\)", line)})
    return found


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def store_folder(system: System, name: str = "batch") -> Path:
    return system.data_dir / "tables" / f"signupflow-batch-{system.ports[name]}"


def served(system: System, name: str) -> int | None:
    """How many partners ``GET /partners/`` of worker ``name`` lists (None: no answer)."""
    try:
        with urllib.request.urlopen(f"{system.url(name)}/partners/?limit=1000",
                                    timeout=5) as resp:
            return int(json.loads(resp.read())["count"])
    except (OSError, urllib.error.HTTPError):
        return None


def two_batch_workers_serving(system: System, seed: int) -> int:
    """The system with a second batch worker, 600 signups stored, both workers serving every
    partner; returns how many partners."""
    system.start()
    system.start_extra("batch-2", "batch")
    assert finish(system.signup(600, seed=seed)) == 600
    system.assert_exactly(600, seed=seed)
    partners = system.count("batch", "partner_summary")
    system.wait_until(lambda: served(system, "batch-2") == partners, 60, "both workers serving")
    return partners


def test_batch_killed_mid_load_loses_nothing_and_its_restarts_read_only_the_tail(
        tmp_system: System) -> None:
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=41)
    tmp_system.wait_until(lambda: tmp_system.count("batch", "partner_summary") >= 200, 120,
                          "batch under load")
    log = tmp_system.log("batch")
    tmp_system.kill("batch")
    since = size(log)
    tmp_system.start("batch")
    assert finish(load) == LOAD
    tmp_system.assert_exactly(LOAD, seed=41)

    first = plans(log, since)[0]  # the restarted worker's recovery, after the kill -9
    assert set(first) == {0, 1, 2, 3}, first
    assert all(start > 0 for _, start, _ in first.values()), first  # from the store's offset
    assert sum(n for n, _, _ in first.values()) < sum(end + 1 for _, _, end in first.values())

    since = size(log)
    tmp_system.stop("batch")  # SIGTERM: everything written is on disk; nothing to read
    tmp_system.start("batch")
    tmp_system.assert_consistent()
    again = plans(log, since)[0]
    assert set(again) == {0, 1, 2, 3} and all(n == 0 for n, _, _ in again.values()), again


def test_a_store_deleted_truncated_or_from_another_cluster_is_rebuilt_exactly(
        tmp_system: System) -> None:
    tmp_system.start()
    assert finish(tmp_system.signup(400, seed=42)) == 400
    tmp_system.assert_exactly(400, seed=42)
    tmp_system.stop("batch")
    folder = store_folder(tmp_system)
    shutil.rmtree(folder / "partner-summary-0.db")  # deleted
    for path in (folder / "partner-summary-1.db").iterdir():  # truncated
        if path.is_file():
            path.write_bytes(path.read_bytes()[:7])
    foreign = rocksdict.Rdict(str(folder / "partner-summary-2.db"),
                              options=rocksdict.Options(raw_mode=True))
    foreign[b"__signupflow\0identity__"] = Identity("another-cluster", CHANGELOG, 2).encode()
    foreign.close()

    log = tmp_system.log("batch")
    since = size(log)
    tmp_system.start("batch")
    tmp_system.assert_consistent()  # the table served equals batch.db again
    partners = tmp_system.count("batch", "partner_summary")
    tmp_system.wait_until(lambda: served(tmp_system, "batch") == partners, 60,
                          f"{partners} partners listed")
    text = log.read_bytes()[since:].decode(errors="replace")
    warnings = [line for line in text.splitlines() if "is not usable" in line]
    assert len(warnings) == 2, warnings  # once each
    assert "partition 1:" in warnings[0] + warnings[1]
    assert "cluster another-cluster" in "".join(warnings)
    plan = plans(log, since)[0]
    assert all(plan[p][1] <= 0 for p in (0, 1, 2)), plan  # rebuilt from the first record
    assert plan[3][1] > 0, plan  # the intact store read only its tail
    assert len(list(folder.glob("*.moved-*"))) == 2


def test_a_standby_serves_a_killed_workers_partitions_within_the_session_timeout(
        tmp_system: System) -> None:
    session_timeout = float(tmp_system.env["SIGNUPFLOW_SESSION_TIMEOUT"])
    partners = two_batch_workers_serving(tmp_system, seed=43)
    log = tmp_system.log("batch-2")
    since = size(log)
    killed = time.monotonic()
    tmp_system.kill("batch")
    tmp_system.wait_until(lambda: served(tmp_system, "batch-2") == partners
                          and bool(plans(log, since)), session_timeout + 30,
                          "batch-2 serving every partner alone")
    took = time.monotonic() - killed
    assert took < session_timeout + 5, f"{took:.1f}s"
    taken_over = plans(log, since)[0]
    assert set(taken_over) == {0, 1, 2, 3}, taken_over
    # its standby copies were warm: it read (nearly) nothing of the partitions it took over
    assert sum(n for n, _, _ in taken_over.values()) <= 4, taken_over


def test_a_worker_given_back_the_partitions_it_held_reads_only_what_it_missed(
        tmp_system: System) -> None:
    """Two batch workers; one stops (SIGTERM), the other takes its partitions and summarises
    more partners; the first comes back: for the partitions it gets again it reuses its store
    and reads only the changelog written while it was away (not from the first record)."""
    partners = two_batch_workers_serving(tmp_system, seed=44)
    tmp_system.stop("batch-2")
    assert finish(tmp_system.signup(600, seed=45)) == 600  # while batch-2 is away
    tmp_system.wait_until(lambda: tmp_system.profiles() == 1200, 180, "1200 profiles")
    partners = tmp_system.count("member", "partner_profile")
    tmp_system.wait_until(lambda: tmp_system.count("batch", "partner_summary") == partners,
                          120, "one summary per partner")
    log = tmp_system.log("batch-2")
    since = size(log)
    tmp_system.start_extra("batch-2", "batch")
    tmp_system.wait_until(lambda: served(tmp_system, "batch-2") == partners
                          and bool(plans(log, since)), 90, "batch-2 back and serving")
    back = plans(log, since)[0]  # its recovery of what it was given on its return
    assert back, back
    assert all(start > 0 for _, start, _ in back.values()), back  # from its store's offset
    assert sum(n for n, _, _ in back.values()) < sum(end + 1 for _, _, end in back.values())
    assert sum(n for n, _, _ in back.values()) > 0, back  # it had missed some: it read them
    tmp_system.assert_consistent()
