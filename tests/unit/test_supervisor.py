"""stop_pids (``signupflow down``): it returns only when every process is gone, so the broker
is never stopped under a worker that still runs (finding: a hung worker outlived `down`).
supervise (``signupflow up``): a worker that exits is started again, and the terminal shows
the outages' transitions from the workers' logs."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from signupflow.identity import PID_HEADER
from signupflow.supervisor import (
    LogFollower,
    Restarts,
    Stopped,
    _alive,
    signals_ignored,
    start_process,
    stop_on_signals,
    stop_pids,
    stop_process,
    stop_processes,
    supervise,
    transition,
    wait_http,
)

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


def test_a_log_follower_returns_each_complete_line_once_from_where_it_started(
        tmp_path: Path) -> None:
    log = tmp_path / "member.log"
    log.write_text("before the start\n")
    follower = LogFollower(log)
    assert follower.new_lines() == []
    with open(log, "a") as f:
        f.write("one\ntwo\nthr")
    assert follower.new_lines() == ["one", "two"]
    with open(log, "a") as f:
        f.write("ee\n")
    assert follower.new_lines() == ["three"]
    assert LogFollower(tmp_path / "not yet.log").new_lines() == []


def test_only_transitions_are_shown_shortened_to_time_and_text() -> None:
    line = "[2026-12-07 00:34:51,146] [3101] [{}] {} "
    assert transition(line.format("ERROR", "member: broker unreachable (refused); waiting")) \
        == "00:34:51 member: broker unreachable (refused); waiting"
    assert transition(line.format("WARNING", "member: broker back after 24.0s")) \
        == "00:34:51 member: broker back after 24.0s"
    assert transition(line.format("ERROR", "Unable connect to node with id 1: refused")) is None
    assert transition(line.format("INFO", "[^Worker]: Ready")) is None


def test_restarts_back_off_while_a_worker_keeps_exiting_and_reset_once_it_ran_a_while(
        ) -> None:
    now = [0.0]
    restarts = Restarts(clock=lambda: now[0])
    delays = []
    for _ in range(8):
        delays.append(restarts.exited())
        now[0] += delays[-1]
        restarts.starting()
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    now[0] += 120  # ran two minutes
    assert restarts.exited() == 1


def test_supervise_starts_an_exited_worker_again_and_echoes_transitions(
        tmp_path: Path) -> None:
    """A worker that exits with status 70 (wedged) is started again; the transition lines its
    log gets are echoed, the rest is not."""
    log = tmp_path / "member.log"
    wedge = ("import sys; print('[2026-12-07 00:32:00,744] [1] [ERROR] member: wedged, not "
             "ready for 10s', flush=True); sys.exit(70)")
    starts: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        starts.append(start_process([sys.executable, "-c", POLITE if starts else wedge], log))
        return starts[-1]

    workers = {"member": start("member")}
    shown: list[str] = []
    deadline = time.monotonic() + 10
    try:
        supervise(workers, start, {"member": log}, shown.append,
                  running=lambda: len(starts) < 2 and time.monotonic() < deadline, poll=0.05)
    finally:
        for proc in starts:
            stop_process(proc)
    assert len(starts) == 2 and workers["member"] is starts[1]
    assert shown[0] == "00:32:00 member: wedged, not ready for 10s"
    assert shown[1].endswith("member worker exited (status 70: wedged); starting it again in 1s")
    assert len(shown) == 2


def test_stop_processes_stops_them_at_once_and_kills_the_stubborn_after_the_timeout() -> None:
    """`up` stops its three workers together: one shutdown timeout, not three in a row."""
    procs = [spawn(STUBBORN), spawn(STUBBORN), spawn(STUBBORN), spawn(POLITE)]
    started = time.monotonic()
    timeout = 2.0
    stop_processes(procs, timeout=timeout)
    # one after the other would take 3 timeouts at least; the margin is for a loaded machine
    # (under load 23, 1 s together took more than 2.5 s)
    assert timeout <= time.monotonic() - started < 3 * timeout
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 3 + [-signal.SIGTERM]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_stop_signal_raises_stopped_and_the_handlers_are_restored(
        sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(Stopped) as raised, stop_on_signals():
        os.kill(os.getpid(), sig)
        time.sleep(1)  # the handler runs at the next bytecode; never reached
    assert raised.value.signal == sig
    assert signal.getsignal(sig) == before


def test_an_ignored_sigint_is_handled_but_an_ignored_sighup_stays_ignored_for_nohup() -> None:
    """A script's `up &` inherits SIGINT ignored; `nohup up` inherits SIGHUP ignored."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP)}
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            with pytest.raises(Stopped):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            with signals_ignored():  # while stopping, a second signal changes nothing
                os.kill(os.getpid(), signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def answering(headers: dict[str, str]) -> tuple[http.server.HTTPServer, str]:
    """An HTTP server on a free loopback port, in a thread, answering 200 with ``headers``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.mark.parametrize("headers, says", [
    ({}, "not a signupflow worker"),
    ({PID_HEADER: "1"}, "process 1"),
])
def test_an_answer_from_another_program_on_the_port_is_not_the_worker_up(
        headers: dict[str, str], says: str) -> None:
    """Finding: a worker that could not bind its port (taken meanwhile) was taken for up,
    because another worker answered there; its signups then went to a stranger."""
    proc = spawn(POLITE)
    server, url = answering(headers)
    try:
        with pytest.raises(TimeoutError, match=f"another program answers there: {says}"):
            wait_http(url, 1.0, proc)
    finally:
        server.shutdown()
        server.server_close()
        stop_process(proc)


def test_the_workers_own_answer_is_up() -> None:
    proc = spawn(POLITE)
    server, url = answering({PID_HEADER: str(proc.pid)})
    try:
        wait_http(url, 5.0, proc)
        wait_http(url, 5.0)  # without a process: any answer
    finally:
        server.shutdown()
        server.server_close()
        stop_process(proc)
