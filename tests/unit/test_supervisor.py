"""stop_pids (``signupflow down``): it returns only when every process is gone, so the broker
is never stopped under a worker that still runs (finding: a hung worker outlived `down`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from signupflow.supervisor import (
    Stopped,
    _alive,
    signals_ignored,
    stop_on_signals,
    stop_pids,
    stop_processes,
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


def test_stop_processes_stops_them_at_once_and_kills_the_stubborn_after_the_timeout() -> None:
    """`up` stops its three workers together: one shutdown timeout, not three in a row."""
    procs = [spawn(STUBBORN), spawn(STUBBORN), spawn(STUBBORN), spawn(POLITE)]
    started = time.monotonic()
    stop_processes(procs, timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 2.5  # one after the other: 3 s at least
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
