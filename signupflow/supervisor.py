"""Start, watch and stop the worker processes (used by ``signupflow up`` and the tests)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from signupflow.settings import PREFIX, PRINCIPALS, SERVICES


def worker_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the Kafka credentials of every principal but ``service``'s: a worker
    holds only its own."""
    others = tuple(f"{PREFIX}KAFKA_{p.upper()}_" for p in PRINCIPALS if p != service)
    return {k: v for k, v in env.items() if not k.startswith(others)}


def worker_command(service: str, log_level: str = "info") -> list[str]:
    """The plain Faust command line of one service's worker."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    # uvloop cut the member worker's CPU per event by 16% in the benchmark.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "aio"
    return [sys.executable, "-m", "faust", "--loop", loop, "-A", f"signupflow.streams.{service}",
            "worker", "-l", log_level]


def start_worker(service: str, log_path: Path, env: Mapping[str, str] | None = None,
                 log_level: str = "info") -> subprocess.Popen[bytes]:
    return start_process(worker_command(service, log_level), log_path, env)


def start_process(command: list[str], log_path: Path,
                  env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own (stopped by its pid), its output appended to
    ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env if env is not None else os.environ), start_new_session=True,
        )


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return 200 <= status < 500
    except urllib.error.HTTPError as exc:  # it answered (401 when the views need a token)
        exc.close()
        return exc.code < 500
    except (OSError, ValueError):
        return False


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers; raise if it does not in time or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} "
                               f"before {url} answered")
        if http_ok(url):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pids(pids: Mapping[str, int], timeout: float) -> dict[str, str]:
    """Stop processes that are not our children (``signupflow down``): SIGTERM, and SIGKILL
    whatever still runs after ``timeout``. Returns only once every one is gone, so that what
    they depend on (the broker) can be stopped safely after; says how each ended."""
    outcome: dict[str, str] = {}
    for name, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            outcome[name] = "was not running"
    deadline = time.monotonic() + timeout
    waiting = {n: p for n, p in pids.items() if n not in outcome}
    while waiting:
        for name, pid in list(waiting.items()):
            if not _alive(pid):
                outcome[name] = "stopped"
                del waiting[name]
            elif time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                outcome[name] = f"killed (still running {timeout:.0f}s after SIGTERM)"
                while _alive(pid):
                    time.sleep(0.05)
                del waiting[name]
        time.sleep(0.05)
    return outcome
