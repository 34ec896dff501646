"""Load shedding for ``POST /signup``: answer at once rather than make everyone wait.

A signup costs one scrypt hash (tens of milliseconds of a core, on purpose). Without a bound,
a flood queues hashes for clients that gave up long ago: they are told nothing, their accounts
are created anyway, and their retry meets 409. So:

* :class:`RateLimiter`: a token bucket per client address (429 when empty);
* :class:`HashGate`: at most ``concurrency`` hashes at once, on threads of their own (the
  event loop and the database's threads stay free), behind a queue no longer than what can be
  hashed within the latency budget (503 when full). A request whose client has gone by the
  time its turn comes is dropped, not hashed and not stored; one that waited longer than the
  budget (the machine got slower than the queue's size assumed) is answered 503 then, not
  hashed for a client about to give up.

Both answer with how long to wait (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Weight of the newest hash duration in the running mean.
SMOOTHING = 0.2


@functools.lru_cache(maxsize=4096)
def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: Sequence[Network]) -> str:
    """Who the request comes from: the peer, unless the peer is a trusted proxy; then the
    right-most address of ``X-Forwarded-For`` that is not one (each proxy appends the address
    it saw, so the ones left of an untrusted hop can be forged)."""
    networks = tuple(trusted)

    def is_trusted(address: str) -> bool:
        return bool(networks) and _trusted(address, networks)

    client = peer or "unknown"
    if not is_trusted(client) or not forwarded_for:
        return client
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        client = hop
        if not is_trusted(hop):
            break
    return client


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per client: ``rate`` requests a second, up to ``burst`` at once.

    At most ``max_clients`` buckets are kept; the least recently seen goes first (a bucket
    not seen for ``burst / rate`` seconds is full again, the same as a new one).
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        """Take a token for ``client`` at ``now`` (monotonic seconds): 0 if it had one, else
        the seconds until it will. A rate of 0 limits nothing."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[client] = bucket
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


class Gone(Exception):
    """The client left before its turn came: nothing was done for it."""


class Late(Exception):
    """The request waited longer than the budget for its turn: nothing was done for it."""


@dataclass(frozen=True)
class Ticket:
    """A place in the queue, taken at ``admitted_at`` (monotonic seconds)."""

    admitted_at: float


class HashGate:
    """Bounded, budgeted hashing: see the module docstring.

    ``seconds_per_hash`` starts as a measurement (one hash at start-up) and follows the hashes
    done since (a running mean), so the queue shrinks when the machine is slower than thought.
    """

    def __init__(self, concurrency: int, budget: float, seconds_per_hash: float):
        self.concurrency, self.budget = concurrency, budget
        self.seconds_per_hash = max(seconds_per_hash, 1e-4)
        self._slots = asyncio.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="signup-hash",
                                            initializer=_yield_cpu)
        #: requests admitted and not finished (waiting or hashing)
        self.admitted = 0

    @property
    def capacity(self) -> int:
        """How many requests may be admitted at once: those whose hash can end within the
        budget (the k-th admitted ends after about ``(k // concurrency + 1)`` hashes)."""
        return max(self.concurrency,
                   math.floor(self.concurrency * self.budget / self.seconds_per_hash))

    def retry_after(self) -> int:
        """Whole seconds after which the queue has room again, at the earliest 1."""
        return max(1, math.ceil(self.admitted * self.seconds_per_hash / self.concurrency
                                - self.budget))

    @property
    def full(self) -> bool:
        return self.admitted >= self.capacity

    def admit(self) -> Ticket | None:
        """Take a place in the queue, or None when it is full (answer 503 at once)."""
        if self.full:
            return None
        self.admitted += 1
        return Ticket(time.monotonic())

    async def run(self, ticket: Ticket, still_wanted: Callable[[], bool], fn: Callable[..., T],
                  *args: object) -> T:
        """Run ``fn(*args)`` on a hashing thread once a slot is free, for an admitted request;
        raise :class:`Gone` instead if ``still_wanted()`` says its client has left by then, or
        :class:`Late` if it waited longer than the budget."""
        try:
            async with self._slots:
                if not still_wanted():
                    raise Gone()
                if time.monotonic() - ticket.admitted_at > self.budget:
                    raise Late()
                start = time.perf_counter()
                result = await asyncio.get_running_loop().run_in_executor(
                    self._executor, fn, *args)
                took = time.perf_counter() - start
                self.seconds_per_hash += SMOOTHING * (took - self.seconds_per_hash)
                return result
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


#: How much nicer than the process the hashing threads run: when the CPU is short, the event
#: loop (answers, 429s and 503s, /health) goes first and the hashes take what is left.
HASH_NICENESS = 10

#: Linux's largest niceness.
MAX_NICENESS = 19


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority below the process's (Linux: per thread).

    Relative, not absolute: under `nice -n 15` an absolute 10 would raise the hashes above the
    event loop (as root, which may raise priority) or fail (unprivileged).
    """
    with contextlib.suppress(OSError, AttributeError):
        process = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(process + HASH_NICENESS, MAX_NICENESS))


#: The bodies of the two refusals, encoded once: under a flood they are most answers.
RATE_LIMITED = json.dumps({"error": "too many signups from this address"}).encode()
SHED = json.dumps({"error": "too many signups at once; try again shortly"}).encode()


def busy(status: int, body: bytes, retry_after: float) -> web.Response:
    """A 429 or 503 answer, with the whole seconds after which to try again."""
    return web.Response(body=body, status=status, content_type="application/json",
                        headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


def shed(gate: HashGate) -> web.Response:
    return busy(503, SHED, gate.retry_after())


#: The longest a refused client's connection is not read from (seconds).
MAX_HOLD = 1.0


def hold(request: web.Request, seconds: float) -> None:
    """Read nothing more from this connection for ``seconds`` (at most :data:`MAX_HOLD`).

    The refusal itself goes out at once; what waits is the *next* request on the connection,
    in the kernel's buffer, so a client that ignores ``Retry-After`` and asks again at once
    is answered a moment later instead of costing the event loop, which ``/health`` and every
    other request share, as fast as it can send. One that waits as told notices nothing.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    transport.pause_reading()

    def resume() -> None:
        if not transport.is_closing():
            transport.resume_reading()

    asyncio.get_running_loop().call_later(min(seconds, MAX_HOLD), resume)


def admission(path: str | Callable[[web.Request], bool], limiter: RateLimiter, gate: HashGate,
              trusted: Sequence[Network], refused: Callable[[str], None]) -> Any:
    """An aiohttp middleware that answers ``POST path`` (or the requests ``path`` says are
    guarded, when a function) 429 (this client is over its rate) or 503 (the queue is full)
    before anything else runs: no body read, no view, no span, and the connection held a
    moment (:func:`hold`). Under a flood almost every request ends here, and what it costs
    the event loop is what every other request (``/health`` included) waits behind.
    ``refused`` counts each by outcome."""
    guarded = path if callable(path) else (
        lambda request: request.path == path and request.method == "POST")

    @web.middleware
    async def admit(request: web.Request, handler: Any) -> web.StreamResponse:
        if not guarded(request):
            response: web.StreamResponse = await handler(request)
            return response
        client = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                                trusted)
        wait = limiter.take(client, time.monotonic())
        if wait:
            refused("rate_limited")
            hold(request, wait)
            return busy(429, RATE_LIMITED, wait)
        if gate.full:
            refused("shed")
            refusal = shed(gate)
            hold(request, gate.retry_after())
            return refusal
        answer: web.StreamResponse = await handler(request)
        return answer

    return admit


def timed(fn: Callable[..., object], *args: object) -> float:
    """Seconds one call of ``fn(*args)`` takes (the gate's first estimate)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
