"""The safety net for a wedged worker: one that cannot become ready while its dependencies
answer exits, so that its supervisor (``signupflow up``, docker-compose, Kubernetes) restarts
it.

Found in CI (issue 21, item 1): a batch worker whose first rebalance never completed stayed
not ready for good while ``/health`` answered 200, so nothing restarted it. Whatever the
cause (``signupflow/recovery.py`` fixes the one found), a worker is *wedged* when for longer
than ``SIGNUPFLOW_WEDGED_AFTER`` it has been kept from being ready by the same reasons of its
own (joining its group, a rebalance, a table recovery that reads nothing) while the broker and
its database answered. A dependency that is down resets the clock (waiting for it is right),
and so does a change of reason (a table recovery that moves on changes its count); an idle
worker (more workers than partitions) is not wedged. A wedged worker says why in its log,
answers 503 at ``/health``, and stops with exit status :data:`EXIT_WEDGED` (75, the shutdown
watchdog's, if the stop itself hangs). Nothing is lost: offsets are committed only past events
whose effects are stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from signupflow.probes import Reason, reasons_not_ready

if TYPE_CHECKING:
    from signupflow.app import ServiceApp

log = logging.getLogger(__name__)

#: Exit status of a worker that stopped because it was wedged.
EXIT_WEDGED = 70
#: Seconds between two looks at the worker's readiness.
EVERY = 2.0


class Liveness:
    """Whether a worker is wedged, from its readiness reasons over time (pure: the caller
    gives the time)."""

    def __init__(self, limit: float):
        self.limit = limit
        self.stuck_on: tuple[str, ...] = ()
        self.stuck_since: float | None = None
        #: why the worker is wedged, once it is (then ``/health`` answers 503)
        self.wedged: str | None = None

    def observe(self, now: float, reasons: Sequence[Reason]) -> bool:
        """Take the reasons the worker is not ready at ``now`` (monotonic seconds); True once
        it has been stuck on the same reasons of its own for ``limit`` seconds while every
        dependency answered."""
        own = tuple(r.text for r in reasons if r.kind == "progress")
        if not own or any(r.kind == "dependency" for r in reasons):
            self.stuck_on, self.stuck_since = (), None
            return False
        if own != self.stuck_on or self.stuck_since is None:
            self.stuck_on, self.stuck_since = own, now
        return now - self.stuck_since >= self.limit


async def watch(app: ServiceApp, service: str, stop: Callable[[], None],
                every: float = EVERY) -> None:
    """Look at the worker's readiness every ``every`` seconds (which also drives the outage
    lines of its probes); once it is wedged, say why and ``stop`` it."""
    liveness = app.liveness
    while True:
        await asyncio.sleep(every)
        if liveness.observe(time.monotonic(), await reasons_not_ready(app.ready_checks)):
            liveness.wedged = (f"not ready for {liveness.limit:.0f}s (SIGNUPFLOW_WEDGED_AFTER) "
                               f"while the broker and the database answer: "
                               f"{'; '.join(liveness.stuck_on)}")
            log.error("%s: wedged, %s; exiting with status %d so that a supervisor restarts "
                      "it", service, liveness.wedged, EXIT_WEDGED)
            await asyncio.sleep(every)  # /health answers 503 meanwhile
            stop()
            return
