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
from collections.abc import Mapping
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
#: What each stage counts as its processed events.
PROCESSED = {
    "auth": ("signupflow_signups_total", {"outcome": "created"}),
    "member": ("signupflow_events_total", {"service": "member", "outcome": "processed"}),
    "batch": ("signupflow_events_total", {"service": "batch", "outcome": "processed"}),
}


def stage_figures(service: str, metrics_text: str) -> dict[str, float]:
    """The console's figures of one stage, from its ``/metrics`` text."""
    name, labels = PROCESSED[service]
    figures = {"processed": 0.0, "dead_lettered": 0.0, "lag": 0.0, "outbox_pending": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                figures["processed"] += sample.value
            elif sample.name == "signupflow_dead_letters_total":
                figures["dead_lettered"] += sample.value
            elif sample.name == "signupflow_consumer_lag":
                figures["lag"] += sample.value
            elif sample.name == "signupflow_outbox_pending":
                figures["outbox_pending"] = sample.value
    return figures


async def gather_stages(urls: Mapping[str, str], token: Secret | None = None
                        ) -> dict[str, dict[str, Any]]:
    """Every stage's figures and readiness, each worker asked over HTTP; a worker that does
    not answer is shown as such, not left out."""
    timeout = aiohttp.ClientTimeout(total=4)
    async with aiohttp.ClientSession(timeout=timeout, headers=authorization(token)) as session:

        async def one(service: str, url: str) -> dict[str, Any]:
            try:
                async with session.get(f"{url}/metrics") as resp:
                    figures: dict[str, Any] = stage_figures(service, await resp.text())
                async with session.get(f"{url}/ready") as resp:
                    ready = await resp.json()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                return {"up": False, "ready": False, "reasons": [f"{url}: {exc!r}"]}
            return {**figures, "up": True, "ready": bool(ready.get("ready")),
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
        return {"error": f"{member_url}: {exc!r}"}
    return answer


def register_console(app: faust.App, settings: Settings) -> None:
    """``/console`` and its data, ``/console/data``."""
    urls: dict[str, str] = {s: settings.web_url(s) for s in SERVICES}

    @app.page("/console/data")
    class ConsoleData(View):
        async def get(self, request: Request) -> Response:
            token = settings.web_token
            stages, minutes = await asyncio.gather(gather_stages(urls, token),
                                                   per_minute(urls["member"], token))
            return self.json({"stages": stages, "per_minute": minutes})

    @app.page("/console")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return self.html(PAGE)


#: The page itself (``console.html`` beside this module), read once.
PAGE = resources.files("signupflow").joinpath("console.html").read_text(encoding="utf-8")
