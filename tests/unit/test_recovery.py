"""Table recovery waits out a slow step instead of ending itself (the batch worker that stayed
wedged, issue 21 item 1).

Faust's ``Recovery._wait`` gives a step such as the final ``perform_seek`` the broker request
timeout (90 s) and reads "no answer yet" as "the service was stopped": the recovery task then
ends for good, quietly, and the worker never becomes ready again, whatever the broker does
later. Here a step that outlasts its timeout is waited for; a stop and a new rebalance still
end the wait as before.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest
from faust.tables.recovery import RebalanceAgain, ServiceStopped

from signupflow.app import create_app
from signupflow.recovery import Recovery, TableManager
from signupflow.settings import load_settings


@pytest.fixture
async def recovery(tmp_path: Path) -> Recovery:
    """The recovery service of a member app made on the test's loop (never started)."""
    app = create_app("member", load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)}))
    recovery = cast(TableManager, app.tables).recovery
    assert isinstance(recovery, Recovery)
    return recovery


async def test_a_step_slower_than_its_timeout_is_waited_for(recovery: Recovery) -> None:
    finished: list[bool] = []

    async def slow_seek() -> None:
        await asyncio.sleep(0.3)
        finished.append(True)

    await recovery._wait(slow_seek(), timeout=0.05)
    assert finished == [True]


async def test_a_failing_step_still_raises(recovery: Recovery) -> None:
    async def failing() -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("seek failed")

    with pytest.raises(RuntimeError, match="seek failed"):
        await recovery._wait(failing(), timeout=0.05)


@pytest.mark.parametrize(("ending", "error"), [("rebalance", RebalanceAgain),
                                               ("stop", ServiceStopped)])
async def test_a_new_rebalance_or_a_stop_ends_the_wait_at_once(
        recovery: Recovery, ending: str, error: type[Exception]) -> None:
    never = asyncio.get_running_loop().create_future()
    end = {"rebalance": recovery.signal_recovery_start.set, "stop": recovery._stopped.set}
    asyncio.get_running_loop().call_later(0.2, end[ending])
    with pytest.raises(error):
        await recovery._wait(never, timeout=0.05)
    assert never.cancelled()
