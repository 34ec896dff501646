"""stop_pids (``signupflow down``): it returns only when every process is gone, so the broker
is never stopped under a worker that still runs (finding: a hung worker outlived `down`)."""

from __future__ import annotations

import subprocess
import sys
import time

from signupflow.supervisor import _alive, stop_pids

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
POLITE = "import time; time.sleep(60)"


def spawn(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)  # let it install its signal handler
    return proc


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    stubborn, polite = spawn(STUBBORN), spawn(POLITE)
    started = time.monotonic()
    outcome = stop_pids({"stubborn": stubborn.pid, "polite": polite.pid}, timeout=1.0)
    assert outcome["polite"] == "stopped"
    assert outcome["stubborn"].startswith("killed")
    assert 1.0 <= time.monotonic() - started < 5
    assert not _alive(stubborn.pid) and not _alive(polite.pid)
    stubborn.wait(1)  # reaped already; lets Popen know
    polite.wait(1)


def test_a_pid_that_is_gone_is_reported_as_such() -> None:
    proc = spawn(POLITE)
    proc.kill()
    proc.wait()
    assert stop_pids({"gone": proc.pid}, timeout=1.0) == {"gone": "was not running"}
