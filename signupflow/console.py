"""``GET /console`` (batch worker): the flow auth → member → batch at a glance, live.

The page is static HTML with a little inline JavaScript (no build step, nothing from the
internet). Every few seconds it reads ``/console/data``, which this worker assembles from the
three workers' own ``/metrics`` and ``/ready`` and the member service's signups-per-minute
table (``/signups-per-minute/``, every member worker's partitions), and the partner table
through ``/partners/`` (paged, searchable). Nicknames are user text: the page only ever sets
them as text.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import aiohttp
import faust
from faust.web import Request, Response, View
from prometheus_client.parser import text_string_to_metric_families

from signupflow.kafka_client import Secret
from signupflow.settings import SERVICES, Settings
from signupflow.web_auth import authorization

#: Minutes of the signups-per-minute chart.
CHART_MINUTES = 60
#: A figure's samples: (metric name, the labels a sample must have), summed.
Samples = tuple[tuple[str, dict[str, str]], ...]


def _consumer(service: str) -> dict[str, Samples]:
    """A consuming stage's own counts: every event it finished but the dead letters (stale
    and skipped ones too: finished is finished), and the changes and deletions it applied."""
    events = "signupflow_events_total"
    return {
        "processed": tuple((events, {"service": service, "outcome": o})
                           for o in ("applied", "stale", "skipped")),
        **{kind: ((events, {"service": service, "kind": kind, "outcome": "applied"}),)
           for kind in ("changed", "deleted")},
    }


#: What each stage counts as its figures, by figure.
FIGURES: dict[str, dict[str, Samples]] = {
    "auth": {"processed": (("signupflow_signups_total", {"outcome": "created"}),),
             **{kind: (("signupflow_account_changes_total", {"kind": kind}),)
                for kind in ("changed", "deleted")}},
    "member": _consumer("member"),
    "batch": _consumer("batch"),
}
#: Figures every stage has (a gauge or counter of its own, whatever its labels).
COMMON: dict[str, str] = {"dead_lettered": "signupflow_dead_letters_total",
                          "lag": "signupflow_consumer_lag",
                          "outbox_pending": "signupflow_outbox_pending"}


def stage_figures(service: str, metrics_text: str) -> dict[str, float]:
    """The console's figures of one stage, from its ``/metrics`` text."""
    wanted = {**{figure: ((name, {}),) for figure, name in COMMON.items()},
              **FIGURES[service]}
    figures = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            for figure, samples in wanted.items():
                if any(sample.name == name and all(sample.labels.get(k) == v
                                                   for k, v in labels.items())
                       for name, labels in samples):
                    figures[figure] += sample.value
    return figures


@dataclass
class Rates:
    """Each stage's events per second, from the counts this worker read on its earlier
    answers: over about ``window`` seconds, on one clock for every browser that watches (a
    page computing it between its own polls shows 0 when its timers run fast, as in a
    headless browser's virtual time)."""

    window: float = 10.0
    #: samples at least this far apart are kept
    spacing: float = 1.0
    samples: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def rate(self, stage: str, count: float, now: float) -> float | None:
        """Per second since the newest sample at least ``window`` old (else the oldest
        kept); None until one is ``spacing`` old."""
        kept = self.samples.setdefault(stage, deque())
        if kept and count < kept[-1][1]:  # the worker restarted: its counters begin at 0
            kept.clear()
        while len(kept) > 1 and now - kept[1][0] >= self.window:
            kept.popleft()
        since = kept[0] if kept else None
        if not kept or now - kept[-1][0] >= self.spacing:
            kept.append((now, count))
        if since is None or now - since[0] < self.spacing:
            return None
        return (count - since[1]) / (now - since[0])


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__  # a TimeoutError says nothing by itself


async def gather_stages(urls: Mapping[str, str], rates: Rates, token: Secret | None = None,
                        clock: Callable[[], float] = time.monotonic
                        ) -> dict[str, dict[str, Any]]:
    """Every stage's figures, rate and readiness, each worker asked over HTTP; a worker that
    does not answer is shown as such, not left out."""
    timeout = aiohttp.ClientTimeout(total=4)
    async with aiohttp.ClientSession(timeout=timeout, headers=authorization(token)) as session:

        async def one(service: str, url: str) -> dict[str, Any]:
            try:
                async with session.get(f"{url}/metrics") as resp:
                    figures: dict[str, Any] = stage_figures(service, await resp.text())
                async with session.get(f"{url}/ready") as resp:
                    ready = await resp.json()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return {"up": False, "ready": False,
                        "reasons": [f"{url} does not answer: {_why(exc)}"]}
            return {**figures, "up": True, "ready": bool(ready.get("ready")),
                    "rate": rates.rate(service, figures["processed"], clock()),
                    "reasons": ready.get("reasons", [])}

        results = await asyncio.gather(*(one(s, u) for s, u in urls.items()))
    return dict(zip(urls, results, strict=True))


async def per_minute(member_url: str, token: Secret | None = None) -> dict[str, Any]:
    """The last hour of signups per minute by role, as the member workers' table has them; or
    why not."""
    timeout = aiohttp.ClientTimeout(total=6)  # a member worker may ask the others (5 s)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=authorization(token)
                                         ) as session, session.get(
                f"{member_url}/signups-per-minute/?minutes={CHART_MINUTES}") as resp:
            answer: dict[str, Any] = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return {"error": f"{member_url} does not answer: {_why(exc)}"}
    return answer


def register_console(app: faust.App, settings: Settings) -> None:
    """``/console`` and its data, ``/console/data``."""
    urls: dict[str, str] = {s: settings.web_url(s) for s in SERVICES}
    rates = Rates()

    @app.page("/console/data")
    class ConsoleData(View):
        async def get(self, request: Request) -> Response:
            token = settings.web_token
            stages, minutes = await asyncio.gather(gather_stages(urls, rates, token),
                                                   per_minute(urls["member"], token))
            return self.json({"stages": stages, "per_minute": minutes})

    @app.page("/console")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return self.html(PAGE)


#: The page itself (``console.html`` beside this module), read once.
PAGE = resources.files("signupflow").joinpath("console.html").read_text(encoding="utf-8")
