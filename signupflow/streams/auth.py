"""auth service: ``POST /signup`` stores the account and its event, ``PATCH`` and ``DELETE
/accounts/{uuid}`` change or erase it and store theirs; the outbox relay publishes.

Run: ``signupflow worker auth`` or ``faust -A signupflow.streams.auth worker``.
Guarantee: the member row and its event's outbox row (ProfileInsert, ProfileChanged,
MemberDeleted) commit in one transaction; the relay publishes pending rows in id order with an
idempotent, acks=all producer and marks them published only after the broker acknowledged. A
crash anywhere loses no event; at worst an event is published twice, which the consumers absorb
(its version is not newer than what they stored). Auth workers sharing a PostgreSQL database
publish one relay at a time (an advisory lock, see ``storage/auth.py``), so one member's events
are never published out of order. Published rows are deleted by the relay once older than
``SIGNUPFLOW_OUTBOX_RETENTION``; pending rows never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar, cast

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from faust.web import Request, Response, View
from opentelemetry.trace import Span, SpanKind

from signupflow import tracing
from signupflow.app import create_app
from signupflow.domain.account import (
    ACCOUNTS,
    UNAUTHORIZED,
    WWW_AUTHENTICATE,
    ChangeInvalid,
    ProfileChange,
    ProfileUnknown,
    basic_credentials,
    costs_a_hash,
    may_act,
    validate_change,
)
from signupflow.domain.passwords import hash_password, verify_password
from signupflow.domain.signup import SignupInvalid, profile_event, validate_signup
from signupflow.http_input import (
    BodyRefused,
    aiohttp_request,
    close_after,
    connected,
    read_body,
)
from signupflow.kafka_client import durable_producer
from signupflow.metrics import (
    ACCOUNT_CHANGE_KINDS,
    ACCOUNT_REQUESTS,
    OUTBOX_DELETED,
    OUTBOX_OLDEST_PENDING,
    OUTBOX_PENDING,
    SIGNUPS,
    count_account_change,
    export_auth_metrics,
)
from signupflow.outages import Outage
from signupflow.settings import Service, get_settings
from signupflow.shedding import Gone, HashGate, Late, RateLimiter, admission, shed, timed
from signupflow.storage.auth import (
    PendingEvent,
    change_profile,
    delete_account,
    delete_published,
    find_account,
    pending_outbox,
    publish_pending,
    register,
)
from signupflow.storage.errors import AccountGone, EmailTaken
from signupflow.streams.common import service_resources
from signupflow.streams.retry import Backoff
from signupflow.topics import PROFILE_INSERT

log = logging.getLogger(__name__)
T = TypeVar("T")
STAGE: Service = "auth"
RELAY_BATCH = 1000
RELAY_POLL_INTERVAL = 1.0
#: Seconds a relay waits before trying again while another auth worker's relay publishes.
RELAY_STANDBY_INTERVAL = 0.1
#: Seconds between two clean-ups of the outbox, and rows deleted per statement (short locks).
RETENTION_INTERVAL = 60.0
RETENTION_BATCH = 500
MAX_BODY_BYTES = 16 * 1024

settings = get_settings()
#: Who may sign up how often, and how much hashing may queue (signupflow/shedding.py).
limiter = RateLimiter(settings.signup_rate, settings.signup_burst)
hash_gate = HashGate(settings.hash_concurrency, settings.signup_latency_budget,
                     timed(hash_password, "a calibration password", settings.scrypt_n))
#: What a request with an unknown email is checked against: as slow as a real check.
DECOY_HASH = hash_password("no account has this password", settings.scrypt_n)


app = create_app(STAGE, settings, [PROFILE_INSERT], middlewares=[
    admission("/signup", limiter, hash_gate, settings.trusted_proxies,
              lambda outcome: SIGNUPS.labels(outcome).inc()),
    admission(lambda request: costs_a_hash(request.method, request.path), limiter, hash_gate,
              settings.trusted_proxies,
              lambda outcome: ACCOUNT_REQUESTS.labels(outcome).inc())])
resources = service_resources(app, STAGE, settings)
relay_wakeup = asyncio.Event()


#: ``signupflow_signups_total`` outcome of each answer of the view ``POST /signup`` (429s and
#: the 503s of a full queue are answered, and counted, by the admission middleware).
OUTCOMES = {201: "created", 400: "invalid", 413: "invalid", 409: "duplicate", 503: "shed",
            408: "timed_out", 499: "abandoned"}
#: What a request whose client left is answered (nobody reads it): nginx's "client closed".
CLIENT_GONE = 499


async def outbox_backlog() -> None:
    pending, oldest = await pending_outbox(await resources.engine(), datetime.now(UTC))
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST_PENDING.set(oldest)


app.metric_refreshers.append(outbox_backlog)
export_auth_metrics()


def error(view: View, status: int, message: str, **extra: object) -> Response:
    return view.json({"error": message, **extra}, status=status)


class Answered(Exception):
    """The request is answered already (refused): ``response`` is the answer."""

    def __init__(self, response: Response):
        super().__init__(response)
        self.response = response


async def json_body(view: View, raw: web.Request) -> Any:
    """The request's JSON body, bounded in size and time; :class:`Answered` 400, 408, 413."""
    try:
        body = await read_body(raw, MAX_BODY_BYTES, settings.request_body_timeout)
    except BodyRefused as exc:
        raise Answered(close_after(error(view, exc.status, str(exc)))) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Answered(error(view, 400, f"body is not valid JSON: {exc}")) from None


async def hashed(view: View, raw: web.Request, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` (a password hash or check) on the hash gate, off the event loop, for a
    client still there; :class:`Answered` 503 if the queue is full or the turn came too late,
    499 if the client left (nothing is done for it: nobody would learn the outcome)."""
    ticket = hash_gate.admit()
    if ticket is None:  # the queue filled while the body arrived
        raise Answered(cast(Response, shed(hash_gate)))
    try:
        result = await hash_gate.run(ticket, partial(connected, raw), fn, *args)
    except Gone:
        raise Answered(error(view, CLIENT_GONE, "the client left before its turn")) from None
    except Late:
        raise Answered(cast(Response, shed(hash_gate))) from None
    if not connected(raw):
        raise Answered(error(view, CLIENT_GONE, "the client left during hashing"))
    return result


@app.page("/signup")
class SignupView(View):
    """Create an account. 201 {uuid}; 400 with per-field errors; 409 if the email is taken;
    429 (this client) or 503 (everyone) with Retry-After when it must wait; 408, 413 for a
    body too slow or too large."""

    async def post(self, request: Request) -> Response:
        response = await self.create(request)
        SIGNUPS.labels(OUTCOMES.get(response.status, "error")).inc()
        return response

    async def create(self, request: Request) -> Response:
        parent = tracing.context_of(request.headers.get(tracing.HEADER))
        with tracing.tracer.start_as_current_span("auth signup", context=parent,
                                                  kind=SpanKind.SERVER) as span:
            try:
                response = await self.store(request, span)
            except Answered as answered:
                response = answered.response
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def store(self, request: Request, span: Span) -> Response:
        raw = aiohttp_request(request)  # admitted by the middleware: its rate, a place free
        try:
            signup = validate_signup(await json_body(self, raw))
        except SignupInvalid as exc:
            return self.json(exc.as_json(), status=400)
        password_hash = await hashed(self, raw, hash_password, signup.password,
                                     settings.scrypt_n)
        engine = await resources.engine()
        now = datetime.now(UTC)
        event = profile_event(signup, str(uuid.uuid4()), now)
        span.set_attribute(tracing.MEMBER_UUID, event.uuid)
        try:
            await register(engine, signup, password_hash, event, now,
                           tracing.traceparent(span) if tracing.enabled else None)
        except EmailTaken:
            return error(self, 409, "email is already registered", field="email")
        relay_wakeup.set()
        return self.json({"uuid": event.uuid, "role": signup.role}, status=201)


#: ``signupflow_account_requests_total`` outcome of each answer of ``/accounts/{uuid}`` (429s
#: and the 503s of a full queue are answered, and counted, by the admission middleware).
ACCOUNT_OUTCOMES = {200: "changed", 204: "deleted", 400: "invalid", 413: "invalid",
                    401: "unauthorized", 409: "conflict", 503: "shed", 408: "timed_out",
                    499: "abandoned"}


def unauthorized(view: View) -> Response:
    """The one answer of :data:`UNAUTHORIZED`, whatever was wrong with the credentials."""
    return view.json(UNAUTHORIZED, status=401,
                     headers={"WWW-Authenticate": WWW_AUTHENTICATE})


@app.page(ACCOUNTS + "{member_uuid}")
class AccountView(View):
    """Change (``PATCH``: nickname, favorite_styles) or delete (``DELETE``) an account, opened
    by HTTP Basic with its email and password. 200 {uuid, version, nickname,
    favorite_styles} / 204; 400 as a refused signup; 401 (one answer) for credentials that do
    not open this account; 409 for a change an account without a stored profile cannot take;
    429, 503, 408, 413 as ``POST /signup``. The credentials are never logged."""

    async def patch(self, request: Request, member_uuid: str) -> Response:
        return await self.answer(request, member_uuid, "change")

    async def delete(self, request: Request, member_uuid: str) -> Response:
        return await self.answer(request, member_uuid, "delete")

    async def answer(self, request: Request, member_uuid: str, operation: str) -> Response:
        parent = tracing.context_of(request.headers.get(tracing.HEADER))
        with tracing.tracer.start_as_current_span(f"auth account {operation}", context=parent,
                                                  kind=SpanKind.SERVER) as span:
            try:
                response = await self.act(request, member_uuid, operation, span)
            except Answered as answered:
                response = answered.response
            span.set_attribute("http.response.status_code", response.status)
        outcome = ACCOUNT_OUTCOMES.get(response.status, "error")
        ACCOUNT_REQUESTS.labels(outcome).inc()
        if outcome in ACCOUNT_CHANGE_KINDS:  # committed with its event
            count_account_change(outcome)
        return response

    async def act(self, request: Request, member_uuid: str, operation: str,
                  span: Span) -> Response:
        raw = aiohttp_request(request)  # admitted by the middleware: its rate, a place free
        change: ProfileChange | None = None
        if operation == "change":
            try:
                change = validate_change(await json_body(self, raw))
            except ChangeInvalid as exc:
                return self.json(exc.as_json(), status=400)
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            return unauthorized(self)
        engine = await resources.engine()
        account = await find_account(engine, credentials.email)
        # an unknown email costs the same hash as a known one: no timing tells them apart
        matches = await hashed(self, raw, verify_password, credentials.password,
                               account.password_hash if account else DECOY_HASH)
        if not may_act(member_uuid, account.uuid if account else None, matches):
            return unauthorized(self)
        span.set_attribute(tracing.MEMBER_UUID, member_uuid)
        now = datetime.now(UTC)
        traceparent = tracing.traceparent(span) if tracing.enabled else None
        try:
            if change is None:
                await delete_account(engine, member_uuid, now, traceparent)
                answer = self.bytes(b"", status=204)
            else:
                event = await change_profile(engine, member_uuid, change, now, traceparent)
                answer = self.json({"uuid": member_uuid, "version": event.version,
                                    "nickname": event.nickname,
                                    "favorite_styles": event.favorite_styles})
        except AccountGone:  # deleted since the credentials were read
            return unauthorized(self)
        except ProfileUnknown as exc:
            return error(self, 409, str(exc))
        relay_wakeup.set()
        return answer


async def relay_once(producer: AIOKafkaProducer) -> int | None:
    """Publish one batch of pending outbox rows; returns how many were published, or None if
    another auth worker's relay is publishing (this one stands by)."""

    async def publish(pending: list[PendingEvent]) -> None:
        spans = [tracing.tracer.start_span(
            "auth relay publish", context=tracing.context_of(row.traceparent),
            kind=SpanKind.PRODUCER, attributes=tracing.messaging(row.topic, row.key))
            for row in pending] if tracing.enabled else []
        futures = [await producer.send(row.topic, row.payload, key=row.key,
                                       headers=tracing.kafka_headers(spans[i] if spans else None))
                   for i, row in enumerate(pending)]
        try:
            for span, record in zip(spans, await asyncio.gather(*futures), strict=False):
                span.set_attribute("messaging.destination.partition.id", str(record.partition))
                span.set_attribute("messaging.kafka.offset", record.offset)
        finally:
            for span in spans:
                span.end()

    return await publish_pending(await resources.engine(), RELAY_BATCH, publish)


def due(last_run: float | None, now: float, interval: float) -> bool:
    """Whether a periodic job last run at ``last_run`` (None: not yet) runs again at ``now``
    (monotonic seconds, so a change of the wall clock neither skips nor repeats a run)."""
    return last_run is None or now - last_run >= interval


async def delete_expired(older_than: datetime) -> bool:
    """Delete the outbox rows published before ``older_than``, batch by batch, and count them.

    True once none is left; False if the relay was woken after a full batch: a new signup
    waits to be published, which comes first (the next round carries on where this one
    stopped).
    """
    engine = await resources.engine()
    while True:
        deleted = await delete_published(engine, older_than, RETENTION_BATCH)
        OUTBOX_DELETED.inc(deleted)
        if deleted < RETENTION_BATCH:
            return True
        if relay_wakeup.is_set():
            return False


async def retention_round(cleaned: float | None) -> float | None:
    """The relay's clean-up, if one is due since ``cleaned`` (when the last one finished or
    failed, monotonic; None: not yet); returns the new ``cleaned``.

    A failure is logged and tried again an interval later: it never stops the relay (the
    outbox only grows meanwhile).
    """
    if not due(cleaned, time.monotonic(), RETENTION_INTERVAL):
        return cleaned
    try:
        finished = await delete_expired(
            datetime.now(UTC) - timedelta(seconds=settings.outbox_retention))
    except Exception as exc:
        log.error("outbox clean-up failed (%r); retrying in %.0fs", exc, RETENTION_INTERVAL)
        return time.monotonic()
    return time.monotonic() if finished else cleaned


@app.worker_task
async def outbox_relay() -> None:
    """Publish the outbox forever: on every commit (wake-up) and every second (catch-up);
    every ``RETENTION_INTERVAL``, delete the rows published longer than the retention ago."""
    if not settings.outbox_relay:
        log.warning("outbox relay is off (SIGNUPFLOW_OUTBOX_RELAY): signups are stored, "
                    "their events wait in the outbox")
        return
    await resources.engine()
    producer = durable_producer(app.signupflow_kafka, client_id="signupflow-auth-outbox")
    await producer.start()
    backoff, outage = Backoff(), Outage(f"{STAGE}: outbox relay", down="failing")
    cleaned: float | None = None
    try:
        while True:
            relay_wakeup.clear()  # before reading: a commit from now on wakes the next round
            try:
                while (published := await relay_once(producer)) == RELAY_BATCH:
                    pass
                backoff.reset()
                outage.recovered()
            except Exception as exc:  # broker or database down: retry, never give up
                outage.failed(repr(exc))
                await backoff.sleep()
                continue
            if published is None:  # another relay publishes: try again soon, it may stop
                await asyncio.sleep(RELAY_STANDBY_INTERVAL)
                continue
            cleaned = await retention_round(cleaned)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay_wakeup.wait(), RELAY_POLL_INTERVAL)
    finally:
        await producer.stop()

