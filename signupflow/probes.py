"""``/health``, ``/ready`` and ``/metrics`` on every worker's web port.

* **Liveness** (``/health``): the event loop answers. A worker that fails it is wedged and
  should be restarted.
* **Readiness** (``/ready``): this worker would process an event now: its broker is
  reachable, its database answers, and (for a consuming service) it has joined its group with
  partitions assigned and its tables recovered. Otherwise 503 with every reason, as JSON. A
  worker that is not ready needs no restart; it needs what it waits for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, cast

from faust.tables.manager import TableManager
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signupflow.metrics import REGISTRY

if TYPE_CHECKING:
    from signupflow.app import ServiceApp

log = logging.getLogger(__name__)
#: A readiness check: None when fine, else what is wrong.
Check = Callable[[], Awaitable[str | None]]
#: Reads a state into its gauges before ``/metrics`` answers.
Refresher = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


async def reasons_not_ready(checks: Sequence[Check]) -> list[str]:
    """Every check's complaint; a check that does not answer in time is one too."""

    async def run(check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except TimeoutError:
            return f"{getattr(check, '__name__', 'check')}: no answer within {CHECK_TIMEOUT}s"
        except Exception as exc:
            return f"{getattr(check, '__name__', 'check')}: {exc!r}"

    return [r for r in await asyncio.gather(*(run(c) for c in checks)) if r]


async def broker_reachable(bootstrap: str) -> str | None:
    """None if a TCP connection to any bootstrap broker opens within a second."""
    errors = []
    for address in bootstrap.split(","):
        host, _, port = address.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, TimeoutError) as exc:
            errors.append(f"{address}: {exc or type(exc).__name__}")
            continue
        writer.close()
        return None
    return "broker unreachable (" + "; ".join(errors) + ")"


def consumer_checks(app: ServiceApp) -> list[Check]:
    """Readiness of a service that consumes: in its group, partitions assigned, tables
    recovered."""

    async def consumer() -> str | None:
        if app.rebalancing:
            return "rebalancing: partitions are being reassigned"
        if app.tables and not cast(TableManager, app.tables).recovery.completed.is_set():
            return "recovering tables from their changelogs"
        try:
            assigned = app.consumer.assignment()
        except Exception as exc:  # ConsumerNotStarted and the like
            return f"consumer not started ({type(exc).__name__})"
        if not assigned:
            return "no partitions assigned (not in the consumer group yet, or more workers " \
                   "than partitions)"
        return None

    return [consumer]


def register_probes(app: ServiceApp) -> None:
    """The three endpoints; the app's ``ready_checks`` and ``metric_refreshers`` feed them."""

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "live", "service": app.conf.id})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            reasons = await reasons_not_ready(app.ready_checks)
            if reasons:
                return self.json({"ready": False, "reasons": reasons}, status=503)
            return self.json({"ready": True})

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            for refresh in app.metric_refreshers:
                try:
                    await asyncio.wait_for(refresh(), CHECK_TIMEOUT)
                except Exception as exc:  # stale gauges beat no metrics at all
                    log.warning("metrics: %s failed: %r", getattr(refresh, "__name__", "?"), exc)
            return self.text(generate_latest(REGISTRY).decode(),
                             content_type=CONTENT_TYPE_LATEST.split(";")[0])
