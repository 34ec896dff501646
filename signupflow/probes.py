"""``/health``, ``/ready`` and ``/metrics`` on every worker's web port.

* **Readiness** (``/ready``): this worker would process an event now: its broker is
  reachable, its database takes a write, and (for a consuming service) it has joined its group
  with partitions assigned and its tables recovered. Otherwise 503 with every reason, as JSON.
  A worker that is not ready because of a dependency needs no restart; it needs what it waits
  for.
* **Liveness** (``/health``): the event loop answers and the worker is not wedged, i.e. not
  kept from being ready by reasons of its own (group, rebalance, recovery) for longer than
  ``SIGNUPFLOW_WEDGED_AFTER`` while its dependencies answer (``signupflow/liveness.py``). A
  wedged worker answers 503 and exits, so that its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signupflow.metrics import REGISTRY
from signupflow.outages import Outage
from signupflow.recovery import Recovery, TableManager

if TYPE_CHECKING:
    from signupflow.app import ServiceApp

log = logging.getLogger(__name__)
#: What a worker that is not ready waits for: a dependency (the broker, its database), its own
#: progress (joining the group, a rebalance, recovering its tables), or nothing (idle: more
#: workers than partitions).
Kind = Literal["dependency", "progress", "idle"]
#: Reads a state into its gauges before ``/metrics`` answers.
Refresher = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    """One condition of readiness: ``probe`` says what is wrong (None when fine)."""

    name: str
    kind: Kind
    probe: Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Reason:
    """Why a worker is not ready, and what kind of thing it waits for."""

    text: str
    kind: Kind


async def reasons_not_ready(checks: Sequence[Check]) -> list[Reason]:
    """Every check's complaint; a check that does not answer in time is one too."""

    async def run(check: Check) -> Reason | None:
        try:
            text = await asyncio.wait_for(check.probe(), CHECK_TIMEOUT)
        except TimeoutError:
            text = f"{check.name}: no answer within {CHECK_TIMEOUT}s"
        except Exception as exc:
            text = f"{check.name}: {exc!r}"
        return None if text is None else Reason(text, check.kind)

    return [r for r in await asyncio.gather(*(run(c) for c in checks)) if r]


async def broker_unreachable(bootstrap: str) -> str | None:
    """None if a TCP connection to any bootstrap broker opens within a second; else each
    broker's error."""
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
    return "; ".join(errors)


def broker_check(bootstrap: str, outage: Outage) -> Check:
    """The broker accepts a connection; its outages are logged as transitions (``outage``)."""

    async def broker() -> str | None:
        problem = outage.observe(await broker_unreachable(bootstrap))
        return None if problem is None else f"broker unreachable ({problem})"

    return Check("broker", "dependency", broker)


def recovering(records: int) -> str:
    """The reason of a worker recovering its tables (``records`` left to read)."""
    return f"tables recovering from their changelogs ({records} records left)"


def consumer_checks(app: ServiceApp) -> list[Check]:
    """Readiness of a service that consumes: in its group, not rebalancing, tables recovered
    (its own progress), and partitions assigned (none: idle, more workers than partitions)."""

    def recovery() -> Recovery:
        return cast(TableManager, app.tables).recovery

    async def consumer() -> str | None:
        tables = recovery()
        if tables.in_recovery:  # every recovery; the count changes as it goes: not stuck
            return recovering(max(0, tables.active_remaining_total()))
        if app.rebalancing:
            return "rebalancing: partitions are being reassigned"
        if not tables.completed.is_set():
            return "joining the consumer group (no rebalance completed yet)"
        try:
            app.consumer.assignment()
        except Exception as exc:  # ConsumerNotStarted and the like
            return f"consumer not started ({type(exc).__name__})"
        return None

    async def partitions() -> str | None:
        if app.rebalancing or not recovery().completed.is_set():
            return None  # the consumer check says why
        try:
            assigned = app.consumer.assignment()
        except Exception:
            return None  # likewise
        return None if assigned else "no partitions assigned (more workers than partitions)"

    return [Check("consumer", "progress", consumer), Check("partitions", "idle", partitions)]


def register_probes(app: ServiceApp) -> None:
    """The three endpoints; the app's ``ready_checks`` and ``metric_refreshers`` feed them."""

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            wedged = app.liveness.wedged
            if wedged is not None:
                return self.json({"status": "wedged", "service": app.conf.id,
                                  "reason": wedged}, status=503)
            return self.json({"status": "live", "service": app.conf.id})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            reasons = await reasons_not_ready(app.ready_checks)
            if reasons:
                return self.json({"ready": False, "reasons": [r.text for r in reasons]},
                                 status=503)
            return self.json({"ready": True})

    async def table_recovery() -> None:
        cast(TableManager, app.tables).recovery.progress()

    app.metric_refreshers.append(table_recovery)

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
