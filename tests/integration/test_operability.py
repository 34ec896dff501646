"""What an operator relies on at 3 a.m. (issue 21): readiness that reflects whether a worker
can write, outages told in a few lines, a relay that publishes right after a restart, and a
wedged worker that exits instead of staying up and useless.

Each test has its own broker and workers (``tmp_system``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from signupflow.broker import free_port
from signupflow.liveness import EXIT_WEDGED
from signupflow.outages import REMINDER_EVERY
from signupflow.settings import SERVICES
from signupflow.supervisor import start_process, wait_http
from tests.integration.system import System, finish


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ready(system: System, *names: str) -> bool:
    return system.ready(*names)


def log_from(path: Path, offset: int) -> list[str]:
    """The lines ``path`` got past byte ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def test_ready_says_the_database_cannot_be_written_while_another_process_locks_it(
        tmp_system: System) -> None:
    """member.db held by ``BEGIN EXCLUSIVE`` for 15 s under 100 signups: member cannot write
    for the whole time, so it is not ready for the whole time (reads still work: WAL), and its
    log says once that it waits, and once that the database is back."""
    tmp_system.start()
    tmp_system.wait_until(lambda: ready(tmp_system), 60, "every worker ready")
    log = tmp_system.log("member")
    before = log.stat().st_size
    load = tmp_system.signup(100, seed=71)
    lock = sqlite3.connect(tmp_system.data_dir / "member.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    locked_at = time.monotonic()
    answers: list[tuple[float, int, Any]] = []
    try:
        while (elapsed := time.monotonic() - locked_at) < 15:
            answers.append((elapsed, *get(tmp_system.url("member") + "/ready")))
            time.sleep(0.5)
    finally:
        lock.close()
    settled = [(t, status, body) for t, status, body in answers if t >= 3]  # found out by then
    assert len(settled) >= 6  # each takes a second: the probe waits that long for the lock
    for t, status, body in settled:
        assert status == 503, (t, body)
        assert any("database of member cannot be written" in r and "locked" in r
                   for r in body["reasons"]), (t, body)
    tmp_system.wait_until(lambda: ready(tmp_system, "member"), 30, "member ready again")
    assert finish(load) == 100
    tmp_system.wait_until(lambda: tmp_system.profiles() == 100, 60, "all 100 profiles")
    tmp_system.assert_consistent()
    told = log_from(log, before)
    assert sum("member: database unavailable (" in line for line in told) == 1, told
    assert sum("member: database back after " in line for line in told) == 1, told


def test_the_relay_publishes_at_once_after_auth_is_killed_and_restarted(
        tmp_system: System) -> None:
    """The relay consumes nothing, so it starts with the worker: the new auth worker's Faust
    consumer waits out the dead one's session timeout (20 s here) in its group's rebalance,
    and the relay used to wait for that too (events sat in the outbox up to 24 s)."""
    slow_rebalance = {"SIGNUPFLOW_SESSION_TIMEOUT": "20"}
    tmp_system.start(**slow_rebalance)
    tmp_system.wait_until(lambda: ready(tmp_system), 60, "every worker ready")
    tmp_system.kill("auth")
    tmp_system.start("auth", **slow_rebalance)
    assert finish(tmp_system.signup(30, seed=72)) == 30
    tmp_system.wait_until(lambda: tmp_system.query(
        "auth", "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)], 60,
        "every event published")
    [(slowest,)] = tmp_system.query("auth", "SELECT max((julianday(published_at) - "
                                            "julianday(created_at)) * 86400) FROM outbox")
    assert slowest < 3.0, f"an event waited {slowest:.1f}s in the outbox"
    tmp_system.wait_until(lambda: tmp_system.profiles() == 30, 60, "all 30 profiles")


def test_a_wedged_worker_says_why_answers_503_at_health_and_exits(tmp_system: System) -> None:
    """An induced wedge: member's seek at the end of its first rebalance never returns, while
    the broker and member.db answer. After SIGNUPFLOW_WEDGED_AFTER the worker says why,
    ``/health`` answers 503, and it exits with status 70, for its supervisor to restart it."""
    env = {**tmp_system.env, "SIGNUPFLOW_WEDGED_AFTER": "10", "SIGNUPFLOW_SHUTDOWN_TIMEOUT": "10"}
    log = tmp_system.log("member")
    proc = start_process([sys.executable, "-m", "faust", "-A", "tests.integration.wedged_member",
                          "worker", "-l", "info"], log, env)
    tmp_system.procs["member"] = proc
    wait_http(tmp_system.url("member") + "/health", 90, proc)
    started = time.monotonic()
    health: list[tuple[int, Any]] = []
    while proc.poll() is None and time.monotonic() - started < 60:
        with contextlib.suppress(OSError):  # stopping
            health.append(get(tmp_system.url("member") + "/health"))
        time.sleep(0.2)
    assert proc.wait(30) == EXIT_WEDGED
    del tmp_system.procs["member"]
    assert health[0] == (200, {"status": "live", "service": "signupflow-member"})
    wedged = [body for status, body in health if status == 503]
    assert wedged and wedged[0]["status"] == "wedged", health
    assert "rebalancing" in wedged[0]["reason"], wedged[0]
    told = [line for line in log.read_text().splitlines() if ": wedged, " in line]
    assert len(told) == 1 and "not ready for 10s" in told[0] and "exiting with status 70" in \
        told[0], told
    assert 10 <= time.monotonic() - started < 45


def test_a_broker_outage_of_20s_is_a_few_lines_per_worker(tmp_system: System) -> None:
    """Each worker wrote about 3,600 lines in a 20 s broker outage (aiokafka's "Unable connect
    to node with id 1" and its companions, 180 a second). Now: the first line of each kind,
    one line when the broker goes away and one when it is back, with how long."""
    tmp_system.start()
    tmp_system.wait_until(lambda: ready(tmp_system), 60, "every worker ready")
    assert finish(tmp_system.signup(20, seed=73)) == 20
    tmp_system.wait_until(lambda: tmp_system.profiles() == 20, 60, "all 20 profiles")
    before = {s: tmp_system.log(s).stat().st_size for s in SERVICES}
    tmp_system.stop_broker()
    time.sleep(20)
    tmp_system.start_broker()
    tmp_system.wait_until(lambda: ready(tmp_system), 90, "every worker ready again")
    time.sleep(5)  # what the reconnection logs
    for service in SERVICES:
        lines = log_from(tmp_system.log(service), before[service])
        assert len(lines) <= 40, f"{service}: {len(lines)} lines\n" + "\n".join(lines[:60])
        assert sum(f"{service}: broker unreachable (" in line for line in lines) == 1, lines
        assert sum(f"{service}: broker back after " in line for line in lines) == 1, lines
        # a real first error is still shown as it is
        assert any("Unable connect to node with id 1" in line for line in lines), lines


def test_up_starts_a_worker_that_exits_again_and_shows_outages_in_its_terminal(
        tmp_path: Path) -> None:
    """``signupflow up`` in the foreground: a worker killed with SIGKILL is started again, and
    a broker outage shows in its terminal as a line when the broker goes and one when it is
    back, per worker (and a reminder every REMINDER_EVERY seconds while it lasts)."""
    env = {**os.environ, "SIGNUPFLOW_DATA_DIR": str(tmp_path), "SIGNUPFLOW_SCRYPT_N": "4096",
           "SIGNUPFLOW_BROKER_PORT": str(free_port()), "SIGNUPFLOW_SESSION_TIMEOUT": "6",
           **{f"SIGNUPFLOW_{s.upper()}_WEB_PORT": str(free_port()) for s in SERVICES}}
    url = {s: f"http://127.0.0.1:{env[f'SIGNUPFLOW_{s.upper()}_WEB_PORT']}" for s in SERVICES}
    up = subprocess.Popen([sys.executable, "-m", "signupflow.cli", "up"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = up.stdout
    assert output is not None
    terminal: list[str] = []
    reader = threading.Thread(target=lambda: terminal.extend(iter(output.readline, "")),
                              daemon=True)
    reader.start()

    def shows(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in terminal):
            assert time.monotonic() < deadline and up.poll() is None, \
                f"{text!r} not shown:\n{''.join(terminal)}"
            time.sleep(0.2)

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "signupflow.cli", *args], env=env, check=True,
                       capture_output=True, timeout=120)

    def all_ready() -> bool:
        try:
            return all(get(url[s] + "/ready")[0] == 200 for s in SERVICES)
        except OSError:
            return False

    try:
        shows("signupflow is up.", 180)
        deadline = time.monotonic() + 60
        while not all_ready():
            assert time.monotonic() < deadline, "not every worker became ready"
            time.sleep(0.5)
        member = int((tmp_path / "member.pid").read_text())
        os.kill(member, signal.SIGKILL)
        shows("member worker exited (killed by SIGKILL); starting it again in 1s", 10)
        deadline = time.monotonic() + 60
        while int((tmp_path / "member.pid").read_text()) == member or not all_ready():
            assert time.monotonic() < deadline, "member was not started again"
            time.sleep(0.5)
        cli("broker", "stop")
        for service in SERVICES:
            shows(f"{service}: broker unreachable (", 15)
        cli("broker", "start")
        for service in SERVICES:
            shows(f"{service}: broker back after ", 60)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        reader.join(5)
        output.close()
    assert terminal[-1].strip() == "stopped.", "".join(terminal)
    for service in SERVICES:
        shown = [line for line in terminal if f"{service}: broker " in line]
        went = [line for line in shown if "broker unreachable (" in line]
        back = [line for line in shown if "broker back after " in line]
        reminders = [line for line in shown if "broker still " in line]
        assert len(went) == 1 and len(back) == 1, "".join(terminal)
        # and a reminder per REMINDER_EVERY of the outage (a slow restart under load)
        lasted = re.search(r"back after ([\d.]+)s", back[0])
        assert lasted, back[0]
        assert len(reminders) <= float(lasted.group(1)) // REMINDER_EVERY, "".join(terminal)
        assert len(shown) == 2 + len(reminders), "".join(terminal)
