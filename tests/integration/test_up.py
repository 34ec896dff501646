"""``signupflow up`` stops the whole system, workers and broker, on SIGTERM, SIGHUP and SIGINT
alike, also when a script started it in the background.

Finding: SIGTERM to `up` (under `make run`) left the three workers and the broker running
under PID 1; only Ctrl-C in a terminal stopped them. A shell starting `up &` from a script
also sets SIGINT to ignored for it, so `kill -INT` did nothing at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from signupflow import broker
from signupflow.broker import free_port
from signupflow.settings import SERVICES
from signupflow.supervisor import _alive, stop_pids

#: How a test starts `up`: the process to wait for, and up's own PID.
Start = Callable[[Path, Path], tuple[subprocess.Popen[bytes], int]]
#: up's bound: the workers' shutdown timeout (below) and the broker's controlled shutdown.
STOP_WITHIN = 45.0


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "SIGNUPFLOW_DATA_DIR": str(root / "data"),
            "SIGNUPFLOW_BROKER_PORT": str(free_port()), "SIGNUPFLOW_PARTITIONS": "2",
            "SIGNUPFLOW_SHUTDOWN_TIMEOUT": "10", "SIGNUPFLOW_SCRYPT_N": "4096",
            **{f"SIGNUPFLOW_{s.upper()}_WEB_PORT": str(free_port()) for s in SERVICES}}


def system_pids(data: Path) -> dict[str, int]:
    """The workers' and the broker's PIDs, from the files `up` writes."""
    files: dict[str, Path] = {s: data / f"{s}.pid" for s in SERVICES}
    files["broker"] = data / "broker" / "broker.pid"
    return {name: int(f.read_text()) for name, f in files.items() if f.exists()}


def wait_up(log: Path, upper: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while "signupflow is up." not in (log.read_text() if log.exists() else ""):
        assert upper.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"up not ready in {timeout}s:\n{log.read_text()}"
        time.sleep(0.5)


def start_directly(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`signupflow up` as a child of the test: its PID is the process's."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "signupflow.cli", "up"],
                                env=environment(root), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return proc, proc.pid


def start_from_a_script(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`signupflow up &` in a non-interactive shell script, which waits for it: the shell
    starts it with SIGINT ignored (no job control)."""
    pid_file = root / "up.pid"
    script = (f'"{sys.executable}" -m signupflow.cli up > "{log}" 2>&1 &\n'
              f'echo $! > "{pid_file}"\nwait\n')
    shell = subprocess.Popen(["sh", "-c", script], env=environment(root),
                             stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the script did not start up"
        time.sleep(0.1)
    return shell, int(pid_file.read_text())


@pytest.mark.parametrize(("how", "sig"), [
    (start_directly, signal.SIGTERM),
    (start_directly, signal.SIGHUP),
    (start_directly, signal.SIGINT),
    (start_from_a_script, signal.SIGINT),
    (start_from_a_script, signal.SIGTERM),
], ids=["sigterm", "sighup", "sigint", "script-sigint", "script-sigterm"])
def test_a_stop_signal_to_up_stops_every_worker_and_the_broker(
        tmp_path: Path, how: Start, sig: signal.Signals) -> None:
    log = tmp_path / "up.log"
    waited, up_pid = how(tmp_path, log)
    pids: dict[str, int] = {}
    try:
        wait_up(log, waited)
        pids = system_pids(tmp_path / "data")
        assert set(pids) == {*SERVICES, "broker"}, pids
        assert all(_alive(pid) for pid in pids.values())
        started = time.monotonic()
        os.kill(up_pid, sig)
        assert waited.wait(STOP_WITHIN) == 0, log.read_text()
        took = time.monotonic() - started
        running = {name: pid for name, pid in pids.items() if _alive(pid)}
        assert not running, f"left running after {sig.name}: {running}\n{log.read_text()}"
        assert not _alive(up_pid)
        assert "stopped." in log.read_text()
        assert took < STOP_WITHIN
        assert not any((tmp_path / "data" / f"{s}.pid").exists() for s in SERVICES)
    finally:
        stop_up(waited, up_pid, pids, tmp_path)


def stop_up(waited: subprocess.Popen[bytes], up_pid: int, pids: dict[str, int],
            root: Path) -> None:
    """Whatever a test left running: `up`, its workers and its broker."""
    if waited.poll() is None:
        waited.send_signal(signal.SIGTERM)
        try:
            waited.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            waited.kill()
            waited.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(up_pid, signal.SIGKILL)
    stop_pids({n: p for n, p in pids.items() if n != "broker" and _alive(p)}, 5)
    broker.stop(root / "data" / "broker", kill=True)


def test_up_prints_the_console_and_commands_that_work_when_pasted(tmp_path: Path) -> None:
    """Finding: the banner suggested `signupflow signup --count 20`, not on the PATH of a
    `make run` user (`.venv/bin/signupflow` is), left the console out and pointed at member's
    `/` (Faust's status page). Each command it prints is run here as a user would paste it."""
    log = tmp_path / "up.log"
    env = environment(tmp_path)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # as in a fresh shell: no venv activated
    with open(log, "wb") as out:
        upper = subprocess.Popen([sys.executable, "-m", "signupflow.cli", "up"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    pids: dict[str, int] = {}
    try:
        wait_up(log, upper)
        pids = system_pids(tmp_path / "data")
        banner = log.read_text()
        batch = f"http://127.0.0.1:{env['SIGNUPFLOW_BATCH_WEB_PORT']}"
        assert f"{batch}/console" in banner
        member = f"http://127.0.0.1:{env['SIGNUPFLOW_MEMBER_WEB_PORT']}"
        assert f"{member}/signups-per-minute/" in banner and f"{member}/ " not in banner
        commands = [line.strip() for line in banner.split("In another shell:")[1].splitlines()
                    if "signupflow" in line]
        assert [c.split()[1] for c in commands] == ["signup", "tables", "verify"], commands
        for command in commands:
            pasted = subprocess.run(["sh", "-c", command], env=env, capture_output=True,
                                    text=True, timeout=120)
            assert pasted.returncode == 0, f"{command}:\n{pasted.stdout}{pasted.stderr}"
        for url in (f"{batch}/console", f"{member}/signups-per-minute/"):
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200
    finally:
        stop_up(upper, upper.pid, pids, tmp_path)
