"""Every process the tests start is reaped (finding: 11 `[java] <defunct>` children of pytest
in one CI run). A broker JVM that is gone before `broker.stop` looks at it (crashed, killed,
or exiting: its command line reads empty before it is a zombie) was never collected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from signupflow import broker
from tests.conftest import zombie_children

#: A stand-in for a broker JVM: ``broker._is_our_broker`` knows one by this in its command line.
FAKE_BROKER = [sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka"]


def fake_broker(home: Path) -> subprocess.Popen[bytes]:
    """A process `broker.start` could have launched: tracked by its PID file and `_running`."""
    proc = subprocess.Popen(FAKE_BROKER, start_new_session=True)
    broker._running[proc.pid] = proc
    home.mkdir(parents=True, exist_ok=True)
    (home / "broker.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 10
    while not broker._is_our_broker(proc.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_a_broker_killed_before_stop_is_reaped_by_stop(tmp_path: Path) -> None:
    proc = fake_broker(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    while proc.pid not in zombie_children():  # dead, not yet collected
        time.sleep(0.05)
    broker.stop(tmp_path)
    assert proc.pid not in zombie_children()
    assert proc.pid not in broker._running


def test_stop_reaps_a_running_broker(tmp_path: Path) -> None:
    proc = fake_broker(tmp_path)
    assert broker.stop(tmp_path)
    assert proc.returncode == -signal.SIGTERM
    assert proc.pid not in zombie_children() and proc.pid not in broker._running


def test_a_broker_that_died_on_its_own_is_reaped_at_the_next_start_or_status(
        tmp_path: Path) -> None:
    proc = fake_broker(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    while proc.pid not in zombie_children():
        time.sleep(0.05)
    assert not broker.status(tmp_path).running
    assert proc.pid not in zombie_children() and proc.pid not in broker._running
