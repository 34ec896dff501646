"""Load shedding of POST /signup: the per-client bucket, the client address, the hash gate."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time

import pytest

from signupflow.shedding import Gone, HashGate, Late, RateLimiter, client_address

PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


def test_a_bucket_allows_its_burst_then_asks_to_wait_until_a_token_is_back() -> None:
    limiter = RateLimiter(rate=2, burst=3)

    assert [limiter.take("a", 100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", 100.0) == pytest.approx(0.5)  # one token per 0.5 s
    assert limiter.take("a", 100.25) == pytest.approx(0.25)
    assert limiter.take("a", 100.5) == 0
    assert limiter.take("b", 100.5) == 0  # another client has its own bucket


def test_a_bucket_refills_up_to_its_burst_only() -> None:
    limiter = RateLimiter(rate=1, burst=2)
    for _ in range(2):
        limiter.take("a", 0.0)

    later = [limiter.take("a", 1000.0) for _ in range(3)]

    assert later[:2] == [0, 0] and later[2] > 0


def test_rate_zero_limits_nothing() -> None:
    limiter = RateLimiter(rate=0, burst=1)

    assert all(limiter.take("a", 0.0) == 0 for _ in range(1000))


def test_the_buckets_kept_are_bounded_and_the_least_recent_go_first() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=2)
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("a", 0.0)  # a was seen again: b is now the oldest
    limiter.take("c", 0.0)

    assert limiter.take("a", 0.0) > 0  # still remembered: empty
    assert limiter.take("b", 0.0) == 0  # forgotten: a full bucket again


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.7", None, "203.0.113.7"),
    # an untrusted peer's header is ignored: anyone can write it
    ("203.0.113.7", "198.51.100.1", "203.0.113.7"),
    ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
    # the right-most untrusted hop: the left ones may be forged by the client
    ("10.0.0.5", "1.1.1.1, 198.51.100.1", "198.51.100.1"),
    ("10.0.0.5", "1.1.1.1, 198.51.100.1, 10.0.0.9", "198.51.100.1"),
    ("10.0.0.5", None, "10.0.0.5"),
    ("10.0.0.5", "not-an-ip", "not-an-ip"),
    (None, None, "unknown"),
])
def test_the_client_address_trusts_forwarded_for_only_from_trusted_proxies(
        peer: str | None, forwarded: str | None, client: str) -> None:
    assert client_address(peer, forwarded, PROXY) == client


def test_the_gate_admits_what_can_be_hashed_within_the_budget() -> None:
    gate = HashGate(concurrency=2, budget=1.0, seconds_per_hash=0.1)

    assert gate.capacity == 20
    assert all(gate.admit() for _ in range(20))
    assert not gate.admit()
    assert gate.retry_after() == 1


def test_the_gate_admits_at_least_its_concurrency_however_slow_a_hash() -> None:
    gate = HashGate(concurrency=3, budget=0.5, seconds_per_hash=10)

    assert gate.capacity == 3
    assert gate.retry_after() == 1
    for _ in range(3):
        gate.admit()
    assert gate.retry_after() == 10  # 3 x 10 s on 3 threads, less the budget, rounded up


async def test_the_gate_runs_at_most_its_concurrency_at_once_off_the_loop() -> None:
    gate = HashGate(concurrency=2, budget=10, seconds_per_hash=0.05)
    running, most = 0, 0
    lock = threading.Lock()
    loop_thread = threading.get_ident()

    def work() -> int:
        nonlocal running, most
        assert threading.get_ident() != loop_thread
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return 7

    tickets = [gate.admit() for _ in range(6)]
    results = await asyncio.gather(*(gate.run(t, lambda: True, work) for t in tickets if t))

    assert results == [7] * 6
    assert most == 2
    assert gate.admitted == 0  # every place given back
    gate.close()


async def test_a_request_whose_client_left_is_dropped_before_its_hash() -> None:
    gate = HashGate(concurrency=1, budget=10, seconds_per_hash=0.01)
    ran: list[str] = []
    ticket = gate.admit()
    assert ticket

    with pytest.raises(Gone):
        await gate.run(ticket, lambda: False, ran.append, "hashed")

    assert ran == [] and gate.admitted == 0
    gate.close()


async def test_a_request_that_waited_past_the_budget_is_answered_not_hashed() -> None:
    """The queue's size assumed a faster machine: the late ones are told to come back rather
    than hashed for a client about to give up."""
    gate = HashGate(concurrency=1, budget=0.2, seconds_per_hash=0.001)
    first, late = gate.admit(), gate.admit()
    assert first and late
    ran: list[str] = []

    async def slow() -> None:
        await gate.run(first, lambda: True, time.sleep, 0.4)

    with pytest.raises(Late):
        await asyncio.gather(slow(), gate.run(late, lambda: True, ran.append, "hashed"))

    assert ran == [] and gate.admitted == 0
    gate.close()


async def test_the_estimate_follows_the_hashes_done() -> None:
    gate = HashGate(concurrency=1, budget=1, seconds_per_hash=0.001)
    for _ in range(10):
        ticket = gate.admit()
        assert ticket
        await gate.run(ticket, lambda: True, time.sleep, 0.02)

    assert 0.01 < gate.seconds_per_hash < 0.05
    assert gate.capacity < 100  # it started at 1000
    gate.close()


async def test_the_hashing_threads_yield_the_cpu_to_the_event_loop() -> None:
    import os

    gate = HashGate(concurrency=1, budget=10, seconds_per_hash=0.01)
    ticket = gate.admit()
    assert ticket

    niceness = await gate.run(ticket, lambda: True,
                              lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    assert niceness >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or niceness == 19
    gate.close()


async def test_the_admission_middleware_answers_before_the_view_runs() -> None:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from signupflow.shedding import admission

    limiter = RateLimiter(rate=0.001, burst=2)
    gate = HashGate(concurrency=1, budget=1, seconds_per_hash=1)
    refused: list[str] = []
    reached: list[str] = []

    async def view(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.Response(status=201)

    app = web.Application(middlewares=[admission("/signup", limiter, gate,
                                                 PROXY, refused.append)])
    app.router.add_post("/signup", view)
    app.router.add_get("/health", view)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()

    async def post(address: str) -> tuple[int, str | None]:
        async with aiohttp.ClientSession() as session, session.post(
                server.make_url("/signup"), data=b"{}",
                headers={"X-Forwarded-For": address}) as resp:
            return resp.status, resp.headers.get("Retry-After")

    try:
        # 127.0.0.1 is not a trusted proxy here: every client is 127.0.0.1, one bucket
        statuses = [await post("198.51.100.1") for _ in range(3)]
        assert [s for s, _ in statuses] == [201, 201, 429]
        assert int(statuses[2][1] or 0) > 100  # one token in 1000 s
        assert gate.admit()  # the queue is now full
        limiter.rate = 0
        assert await post("198.51.100.2") == (503, "1")
        async with aiohttp.ClientSession() as session, session.get(
                server.make_url("/health")) as resp:
            assert resp.status == 201  # other paths are not its business
    finally:
        await server.close()
        gate.close()
    assert refused == ["rate_limited", "shed"]
    assert reached == ["/signup", "/signup", "/health"]


async def test_account_changes_and_deletions_are_shed_as_signups_are() -> None:
    """auth's second admission middleware guards what :func:`costs_a_hash` says: a full queue
    refuses PATCH and DELETE /accounts/{uuid} (503), and nothing else of the accounts."""
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from signupflow.domain.account import costs_a_hash
    from signupflow.shedding import admission

    gate = HashGate(concurrency=1, budget=1, seconds_per_hash=1)
    refused: list[str] = []

    async def view(_request: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application(middlewares=[admission(
        lambda request: costs_a_hash(request.method, request.path), RateLimiter(0, 1), gate,
        PROXY, refused.append)])
    for method in ("GET", "PATCH", "DELETE", "POST"):
        app.router.add_route(method, "/accounts/{uuid}", view)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert gate.admit()  # the queue is full
    try:
        async with aiohttp.ClientSession() as session:
            statuses = {}
            for method in ("PATCH", "DELETE", "GET", "POST"):
                async with session.request(method, server.make_url("/accounts/x")) as resp:
                    statuses[method] = resp.status
    finally:
        await server.close()
        gate.close()
    assert statuses == {"PATCH": 503, "DELETE": 503, "GET": 200, "POST": 200}
    assert refused == ["shed", "shed"]
    assert not costs_a_hash("PATCH", "/accountsx") and not costs_a_hash("PATCH", "/signup")


async def test_a_refused_connection_is_not_read_for_a_moment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal goes out at once; the same client's next request on that connection waits
    (a lower bound: it can only be slower on a loaded machine)."""
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from signupflow import shedding

    monkeypatch.setattr(shedding, "MAX_HOLD", 0.4)
    limiter = RateLimiter(rate=0.001, burst=1)
    gate = HashGate(concurrency=1, budget=1, seconds_per_hash=1)

    async def view(_request: web.Request) -> web.Response:
        return web.Response(status=201)

    app = web.Application(middlewares=[shedding.admission("/signup", limiter, gate, PROXY,
                                                          lambda _: None)])
    app.router.add_post("/signup", view)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    connector = aiohttp.TCPConnector(limit=1)  # one connection: the second request reuses it
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            statuses, times = [], []
            for _ in range(3):
                start = time.perf_counter()
                async with session.post(server.make_url("/signup"), data=b"{}") as resp:
                    statuses.append(resp.status)
                times.append(time.perf_counter() - start)
    finally:
        await server.close()
        gate.close()
    assert statuses == [201, 429, 429]
    assert times[2] >= 0.35  # read only once the hold after the first refusal was over
