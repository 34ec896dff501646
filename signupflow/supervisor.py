"""Start, watch and stop the worker processes (used by ``signupflow up`` and the tests)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from types import FrameType

from signupflow.identity import PID_HEADER
from signupflow.outages import TRANSITION
from signupflow.settings import PREFIX, PRINCIPALS, SERVICES
from signupflow.streams.retry import Backoff


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


def http_answer(url: str, timeout: float = 2.0) -> str | None:
    """The pid an answer of ``url`` names (:data:`PID_HEADER`; ``""`` if it names none), or
    None if nothing answers, or answers 5xx. A 4xx counts as an answer (401 when the views
    need a token)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.headers.get(PID_HEADER, ""))
    except urllib.error.HTTPError as exc:
        exc.close()
        return str(exc.headers.get(PID_HEADER, "")) if exc.code < 500 else None
    except (OSError, ValueError):
        return None


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers (from ``proc``, if given); raise if it does not in time or
    the process dies. Another program answering on that port is not ``proc``: found when a
    worker could not bind its port and the harness took a neighbour's answer for its own."""
    deadline = time.monotonic() + timeout
    stranger = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} "
                               f"before {url} answered{stranger}")
        pid = http_answer(url)
        if pid is not None and (proc is None or pid == str(proc.pid)):
            return
        if pid is not None:
            stranger = (f" (another program answers there: "
                        f"{'process ' + pid if pid else 'not a signupflow worker'}; is the "
                        "port taken?)")
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s{stranger}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    stop_processes([proc], timeout)
    return proc.returncode


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM to every one at once, then wait for each; SIGKILL whatever still runs
    ``timeout`` seconds after the SIGTERM. Every one is reaped."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: What stops ``signupflow up``: Ctrl-C, ``kill``, and the terminal or session going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, as KeyboardInterrupt: no ``except Exception``
    on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(self.signal.name)


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, SIGINT, SIGTERM and SIGHUP raise :class:`Stopped` in the main thread.

    Installed whatever the process inherited: a shell without job control (a script's
    ``signupflow up &``) starts background commands with SIGINT ignored, and Python's default
    SIGTERM and SIGHUP end the process without a ``finally``, orphaning its children. Only a
    SIGHUP inherited as ignored stays so: that is what ``nohup`` asks for.
    """
    wanted = [s for s in STOP_SIGNALS
              if not (s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN)]
    previous = {s: signal.signal(s, _raise_stopped) for s in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Stop signals are ignored inside: a second Ctrl-C or SIGTERM must not cut a shutdown
    short (each step of it is bounded by a timeout)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


class LogFollower:
    """The lines a log file gets from now on, as they come (a partial last line waits)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]


#: "[2026-12-07 00:34:51,146] [3101] [ERROR] member: broker unreachable (...); waiting"
_LOG_LINE = re.compile(r"^\[\S+ (?P<time>\d\d:\d\d:\d\d)[,.]\d+\] \[\d+\] \[\w+\] "
                       r"(?P<text>.*?)\s*$")


def transition(line: str) -> str | None:
    """``line`` of a worker's log shortened to time and text, if it tells an outage's
    transition or a wedged worker (``outages.TRANSITION``); else None."""
    match = _LOG_LINE.match(line)
    if match is None or not TRANSITION.search(match["text"]):
        return None
    return f"{match['time']} {match['text']}"


def exit_meaning(code: int) -> str:
    """What a worker's exit status says."""
    # the worker's modules, only when needed
    from signupflow.app import EXIT_SCHEMA_BEHIND, EXIT_SHUTDOWN_TIMEOUT
    from signupflow.liveness import EXIT_WEDGED

    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return {EXIT_WEDGED: f"status {code}: wedged",
            EXIT_SHUTDOWN_TIMEOUT: f"status {code}: did not stop in time",
            EXIT_SCHEMA_BEHIND: f"status {code}: its database is not at the code's schema "
                                "revision (its log says; `signupflow db upgrade`)"}.get(
        code, f"status {code}")


class Restarts:
    """When to start a worker again after it exited: 1 s, doubling up to a minute while it
    keeps exiting within a minute of its start, so that a worker that cannot start does not
    spin."""

    CAP = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.backoff = Backoff(1.0, self.CAP)
        self.started = clock()

    def exited(self) -> float:
        """The delay before the next start."""
        if self.clock() - self.started >= self.CAP:
            self.backoff.reset()
        return self.backoff.next_delay()

    def starting(self) -> None:
        self.started = self.clock()


def supervise(workers: MutableMapping[str, subprocess.Popen[bytes]],
              start: Callable[[str], subprocess.Popen[bytes]], logs: Mapping[str, Path],
              echo: Callable[[str], None], running: Callable[[], bool] = lambda: True,
              poll: float = 0.5) -> None:
    """Keep ``workers`` running (``signupflow up``): start one that exited again, after a
    delay (:class:`Restarts`), and ``echo`` what an operator should see: each restart, and the
    transitions of outages and wedged workers from the workers' logs. Returns once
    ``running()`` is false (or raises what interrupts it, such as KeyboardInterrupt)."""
    followers = {name: LogFollower(path) for name, path in logs.items()}
    restarts = {name: Restarts() for name in workers}
    due: dict[str, float] = {}  # exited workers: when they start again
    while running():
        for follower in followers.values():
            for line in follower.new_lines():
                if (shown := transition(line)) is not None:
                    echo(shown)
        now = time.monotonic()
        for name, proc in workers.items():
            code = proc.poll()
            if code is not None and name not in due:
                delay = restarts[name].exited()
                due[name] = now + delay
                echo(f"{time.strftime('%H:%M:%S')} {name} worker exited "
                     f"({exit_meaning(code)}); starting it again in {delay:.0f}s")
        for name, at in list(due.items()):
            if now >= at:
                del due[name]
                restarts[name].starting()
                workers[name] = start(name)
        time.sleep(poll)
