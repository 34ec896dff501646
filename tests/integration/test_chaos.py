"""Kill combinations under load: a worker, then the broker, each with kill -9.

Finding: kill -9 of the batch worker under load, a restart, and about a second after it was
ready a kill -9 and restart of the broker lost a partner-summary table entry for good (1 run
of 3): the offset of its event had been committed while the table's changelog record was
still in Faust's producer buffer. ``make soak`` runs these scenarios many times
(``SOAK_RUNS``); ``make test`` runs each once.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.system import System, finish

LOAD = int(os.environ.get("SIGNUPFLOW_CHAOS_LOAD", "3000"))


def progress(system: System, service: str) -> int:
    return system.count("batch", "partner_summary") if service == "batch" else system.profiles()


@pytest.mark.parametrize("service", ["batch", "member"])
def test_worker_then_broker_killed_under_load_lose_and_duplicate_nothing(
    tmp_system: System, service: str,
) -> None:
    seed = 31 if service == "batch" else 32
    tmp_system.start()
    load = tmp_system.signup(LOAD, seed=seed)
    tmp_system.wait_until(lambda: progress(tmp_system, service) >= LOAD // 20, 120,
                          f"{service} under load")
    tmp_system.kill(service)
    time.sleep(1)
    tmp_system.start(service)  # returns once its web view answers: tables recovered
    time.sleep(1)
    tmp_system.stop_broker(kill=True)
    time.sleep(2)
    tmp_system.start_broker()  # same store, same port
    assert finish(load) == LOAD
    tmp_system.assert_exactly(LOAD, seed=seed)
    tmp_system.assert_counted_per_minute()
