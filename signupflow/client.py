"""HTTP client side of ``POST /signup``: concurrent posting with a tally of the outcomes.

A signup answered 429 or 503 (the service sheds load) is sent again after its
``Retry-After``, as a well-behaved client does, until ``patience`` runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class SignupOutcome:
    status: int
    body: dict[str, Any]
    #: how many times the service said "later" (429, 503) before this answer
    waits: int = 0


@dataclass
class Tally:
    accepted: list[SignupOutcome] = field(default_factory=list)
    rejected: list[SignupOutcome] = field(default_factory=list)

    @property
    def unreachable(self) -> bool:
        """Nothing got through: every request failed without an HTTP response."""
        return not self.accepted and all(o.status == NO_RESPONSE for o in self.rejected)

    def reasons(self) -> Counter[str]:
        return Counter(f"{o.status} {o.body.get('error', '?')}" for o in self.rejected)

    def summary(self) -> str:
        partners = sum(1 for o in self.accepted if o.body.get("role") == "PARTNER")
        line = (f"accepted {len(self.accepted)} ({partners} partners, "
                f"{len(self.accepted) - partners} users), rejected {len(self.rejected)}")
        if self.rejected:
            line += ": " + ", ".join(f"{n}x {r}" for r, n in self.reasons().most_common())
        waits = sum(o.waits for o in (*self.accepted, *self.rejected))
        if waits:
            line += f"; told to wait {waits} time(s) (429/503 Retry-After), and waited"
        return line


#: Status of an outcome whose request got no HTTP response at all.
NO_RESPONSE = 0
#: Answers that mean "send it again later" (rate limited, shed).
LATER = (429, 503)


def retry_after(header: str | None) -> float:
    """Seconds of a ``Retry-After`` header (a number of seconds; 1 if missing or a date)."""
    try:
        return max(0.0, float(header or "1"))
    except ValueError:
        return 1.0


async def post_signup(session: aiohttp.ClientSession, url: str, body: Any,
                      patience: float = 120.0) -> SignupOutcome:
    """POST one signup, again after each 429/503's Retry-After while ``patience`` (seconds)
    lasts. A connection failure is an outcome too (status 0), not an exception: the server
    may or may not have stored that signup, and the others must still be sent."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    deadline = time.monotonic() + patience
    waits = 0
    while True:
        try:
            async with session.post(url, data=data,
                                    headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                wait = retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return SignupOutcome(NO_RESPONSE,
                                 {"error": f"no response ({type(exc).__name__}: {exc})"}, waits)
        if resp.status not in LATER or time.monotonic() + wait > deadline:
            break
        waits += 1
        await asyncio.sleep(wait)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = {"error": raw[:200].decode("utf-8", "replace")}
    return SignupOutcome(resp.status, parsed if isinstance(parsed, dict) else {"body": parsed},
                         waits)


async def post_signups(
    base_url: str, bodies: Sequence[Any], concurrency: int = 8,
    progress: Callable[[SignupOutcome], None] | None = None,
) -> Tally:
    """POST every body to ``base_url``/signup with ``concurrency`` requests in flight."""
    url = base_url.rstrip("/") + "/signup"
    tally = Tally()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            outcome = await post_signup(session, url, queue.get_nowait())
            (tally.accepted if outcome.status == 201 else tally.rejected).append(outcome)
            if progress:
                progress(outcome)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
    return tally
