"""A flood of signups: many clients, each sending signups in a loop, as fast as answered.

What a signup service facing the internet meets on a bad day; used by ``signupflow bench``
(its flood phase) and the tests, in a process of its own so that whoever watches the service
meanwhile is not slowed down by the flood's own work. Each client waits at most ``patience``
seconds for an answer and does not wait out a ``Retry-After`` (the worst case); one signup in
ten reuses an email accepted before (a duplicate: 409). With ``forwarded`` each client sends
its own ``X-Forwarded-For`` address, as behind a trusted proxy, but for one in ten, which
share one (an office behind one NAT address: the per-client limit's case).

Run: ``python -m signupflow.flood URL CLIENTS SECONDS`` prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from signupflow.domain.fake import fake_signup

#: What a client is counted as when it got no answer in time (or none at all).
TIMED_OUT = "timeout"


@dataclass
class FloodResult:
    clients: int
    seconds: float
    #: answers by HTTP status ("timeout": no answer within the patience)
    answers: dict[str, int] = field(default_factory=dict)
    #: seconds each 201 took, sorted
    created_seconds: list[float] = field(default_factory=list)
    #: partners among the 201s
    created_partners: int = 0
    #: what the requests without an answer failed with (exception type), and when (seconds)
    failures: dict[str, list[float]] = field(default_factory=dict)

    def percentile(self, p: float) -> float | None:
        values = self.created_seconds
        return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else None

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {"clients": self.clients, "seconds": self.seconds, "answers": self.answers,
                "created": self.answers.get("201", 0), "created_partners": self.created_partners,
                "created_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
                "created_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
                "failures": self.failures}


async def flood(url: str, clients: int, seconds: float, patience: float = 10.0,
                forwarded: bool = True, seed: int = 7) -> FloodResult:
    """``clients`` clients posting signups to ``url``/signup for ``seconds``."""
    answers: Counter[str] = Counter()
    created: list[float] = []
    partners = 0
    failures: dict[str, list[float]] = {}
    deadline = time.monotonic() + seconds
    run = f"flood{seed}-{int(time.time())}"

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal partners
        rng = random.Random(seed * 100_003 + n)
        shared = n < max(1, clients // 10)
        address = "203.0.113.1" if shared else f"198.{18 + n // 65536}.{n // 256 % 256}.{n % 256}"
        headers = {"Content-Type": "application/json",
                   **({"X-Forwarded-For": address} if forwarded else {})}
        accepted: list[str] = []
        index = 0
        while time.monotonic() < deadline:
            body = fake_signup(rng, index, 0.3, f"{run}-{n}")
            index += 1
            if accepted and rng.random() < 0.1:
                body["email"] = rng.choice(accepted)
            start = time.perf_counter()
            try:
                async with session.post(f"{url.rstrip('/')}/signup", data=orjson.dumps(body),
                                        headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                answers[TIMED_OUT] += 1
                failures.setdefault(type(exc).__name__, []).append(
                    round(time.perf_counter() - start, 3))
                continue
            answers[str(status)] += 1
            if status == 201:
                created.append(time.perf_counter() - start)
                accepted.append(body["email"])
                partners += body["role"] == "PARTNER"

    timeout = aiohttp.ClientTimeout(total=patience)
    connector = aiohttp.TCPConnector(limit=0)  # one connection per client, as real ones
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(n, session) for n in range(clients)))
    return FloodResult(clients, seconds, dict(answers), sorted(created), partners, failures)


def main(argv: list[str]) -> None:
    url, clients, seconds = argv[0], int(argv[1]), float(argv[2])
    result = asyncio.run(flood(url, clients, seconds))
    print(json.dumps({**result.summary(), "result": asdict(result)}))


if __name__ == "__main__":
    main(sys.argv[1:])
