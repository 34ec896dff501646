"""HTTP client side of ``POST /signup`` (concurrent posting with a tally of the outcomes) and of
``PATCH``/``DELETE /accounts/{uuid}`` (as the account's owner), and the lives of members.

A request answered 429 or 503 (the service sheds load) is sent again after its
``Retry-After``, as a well-behaved client does, until ``patience`` runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson

from signupflow.domain.account import basic_authorization
from signupflow.domain.fake import LifeStep


@dataclass
class SignupOutcome:
    status: int
    body: dict[str, Any]
    #: how many times the service said "later" (429, 503) before this answer
    waits: int = 0
    #: the body that was sent (post_signups keeps it: the passwords of the accounts it made)
    sent: Any = None


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


async def send(session: aiohttp.ClientSession, method: str, url: str, data: bytes | None = None,
               patience: float = 120.0, authorization: str | None = None) -> SignupOutcome:
    """Send one request (a JSON body, if any), again after each 429/503's Retry-After while
    ``patience`` (seconds) lasts. A connection failure is an outcome too (status 0), not an
    exception: the server may or may not have done it, and the other requests must still be
    sent. A body that is not a JSON object comes back as ``{"body": ...}`` (``{}`` for none)."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if authorization is not None:
        headers["Authorization"] = authorization
    deadline = time.monotonic() + patience
    waits = 0
    while True:
        try:
            async with session.request(method, url, data=data, headers=headers) as resp:
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
        parsed = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        parsed = {"error": raw[:200].decode("utf-8", "replace")}
    return SignupOutcome(resp.status, parsed if isinstance(parsed, dict) else {"body": parsed},
                         waits)


async def post_signup(session: aiohttp.ClientSession, url: str, body: Any,
                      patience: float = 120.0) -> SignupOutcome:
    """POST one signup (see :func:`send`)."""
    return await send(session, "POST", url,
                      body if isinstance(body, bytes) else orjson.dumps(body), patience)


async def change_account(session: aiohttp.ClientSession, base_url: str, member_uuid: str,
                         email: str, password: str, change: Mapping[str, Any],
                         patience: float = 120.0) -> SignupOutcome:
    """``PATCH /accounts/{uuid}`` with ``change`` (nickname, favorite_styles) as its owner."""
    return await send(session, "PATCH", account_url(base_url, member_uuid),
                      orjson.dumps(dict(change)), patience, basic_authorization(email, password))


async def delete_account(session: aiohttp.ClientSession, base_url: str, member_uuid: str,
                         email: str, password: str, patience: float = 120.0) -> SignupOutcome:
    """``DELETE /accounts/{uuid}`` as its owner."""
    return await send(session, "DELETE", account_url(base_url, member_uuid), None, patience,
                      basic_authorization(email, password))


def account_url(base_url: str, member_uuid: str) -> str:
    return f"{base_url.rstrip('/')}/accounts/{member_uuid}"


async def post_signups(
    base_url: str, bodies: Sequence[Any], concurrency: int = 8,
    progress: Callable[[SignupOutcome], None] | None = None,
) -> Tally:
    """POST every body to ``base_url``/signup with ``concurrency`` requests in flight."""
    url = base_url.rstrip("/") + "/signup"
    tally = Tally()

    async def one(session: aiohttp.ClientSession, body: Any) -> None:
        outcome = await post_signup(session, url, body)
        outcome.sent = body
        (tally.accepted if outcome.status == 201 else tally.rejected).append(outcome)
        if progress:
            progress(outcome)

    await side_by_side(bodies, concurrency, one)
    return tally


Item = TypeVar("Item")


async def side_by_side(items: Sequence[Item], concurrency: int,
                       each: Callable[[aiohttp.ClientSession, Item], Awaitable[None]]) -> None:
    """``each(session, item)`` for every item, ``concurrency`` of them at a time."""
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await each(session, queue.get_nowait())

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))


@dataclass
class LifeTally:
    """What the members' lives after signup came to."""

    changed: int = 0
    deleted: int = 0
    refused: list[SignupOutcome] = field(default_factory=list)

    def summary(self) -> str:
        line = f"lives: {self.changed} profile changes, {self.deleted} deletions"
        if self.refused:
            reasons = Counter(f"{o.status} {o.body.get('error', '?')}" for o in self.refused)
            line += f", refused {len(self.refused)}: " + ", ".join(
                f"{n}x {r}" for r, n in reasons.most_common())
        return line


#: A member whose life goes on: its uuid, email, password and its steps (``fake_life``).
Life = tuple[str, str, str, Sequence[LifeStep]]


async def live(base_url: str, lives: Sequence[Life], concurrency: int = 8) -> LifeTally:
    """Each member's steps, in order (a change then the next, the deletion last); members
    side by side, ``concurrency`` requests in flight. A refused step ends that member's life
    (the next would be refused too, or meaningless)."""
    tally = LifeTally()

    async def one(session: aiohttp.ClientSession, life: Life) -> None:
        member_uuid, email, password, steps = life
        for step in steps:
            if step is None:
                outcome = await delete_account(session, base_url, member_uuid, email, password)
            else:
                outcome = await change_account(session, base_url, member_uuid, email, password,
                                               step)
            if outcome.status not in (200, 204):
                tally.refused.append(outcome)
                return
            if step is None:
                tally.deleted += 1
            else:
                tally.changed += 1

    await side_by_side(lives, concurrency, one)
    return tally
