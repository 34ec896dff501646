"""SIGTERM stops a worker within SIGNUPFLOW_SHUTDOWN_TIMEOUT in every state, and loses nothing.

Finding: a worker retrying a batch ignored SIGTERM (`Signal received: 15`, then still retrying
26 s later), and a restarted batch worker hung at `Wait for streams...`; `signupflow down` then
stopped the broker under it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

from signupflow.supervisor import start_worker
from tests.integration.system import System, finish

TIMEOUT = 10.0  # SIGNUPFLOW_SHUTDOWN_TIMEOUT for these workers
SLACK = 3.0  # interpreter exit, log flushing


def sigterm_and_time(proc: subprocess.Popen[bytes]) -> float:
    """Seconds from SIGTERM to the process's exit (at most TIMEOUT + 30: then it failed)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TIMEOUT + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - started


def test_sigterm_stops_member_stuck_in_a_database_outage(tmp_system: System) -> None:
    tmp_system.env["SIGNUPFLOW_SHUTDOWN_TIMEOUT"] = str(TIMEOUT)
    tmp_system.start()
    assert finish(tmp_system.signup(50, seed=41)) == 50
    tmp_system.wait_until(lambda: tmp_system.profiles() == 50, 60, "the first 50 profiles")
    lock = sqlite3.connect(tmp_system.data_dir / "member.db", isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # member.db is unavailable for writing: an outage
        assert finish(tmp_system.signup(50, seed=42)) == 50
        tmp_system.wait_until(
            lambda: "database unavailable" in tmp_system.log("member").read_text(), 90,
            "member to wait out the outage")
        elapsed = sigterm_and_time(tmp_system.procs.pop("member"))
    finally:
        lock.close()
    assert elapsed < TIMEOUT + SLACK, f"member took {elapsed:.1f}s to stop"
    tmp_system.start("member")  # the abandoned batch was not acknowledged: it comes again
    tmp_system.wait_until(lambda: tmp_system.profiles() == 100, 90, "all 100 profiles")
    tmp_system.assert_consistent()


def test_sigterm_while_batch_starts_and_recovers_its_table(tmp_system: System) -> None:
    tmp_system.env["SIGNUPFLOW_SHUTDOWN_TIMEOUT"] = str(TIMEOUT)
    tmp_system.start()
    assert finish(tmp_system.signup(400, seed=43)) == 400
    tmp_system.assert_exactly(400, seed=43)
    tmp_system.stop("batch")
    for delay in (0.5, 1.5, 3.0, 5.0):  # before, while and after the changelog is read
        proc = start_worker("batch", tmp_system.log("batch"), tmp_system.env)
        time.sleep(delay)
        elapsed = sigterm_and_time(proc)
        assert elapsed < TIMEOUT + SLACK, f"batch took {elapsed:.1f}s to stop ({delay}s in)"
    tmp_system.start("batch")
    tmp_system.assert_exactly(400, seed=43)
