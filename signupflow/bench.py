"""``signupflow bench``: throughput and latency, as ratios to references measured in the same run.

Everything runs on a private broker (fresh store, free port) and private databases, so a run
measures only itself. Phases, in order:

* **ceiling**: raw aiokafka produce and consume of N ProfileInsert-sized messages through one
  topic, no processing: the most any Kafka consumer on this machine could do.
* **baseline**: what a user would write instead of Faust: a plain aiokafka consumer doing the
  member stage's work (decode, validate, write profiles and styles, produce PartnerCreated with
  acks=all, commit offsets only after that) with the same delivery guarantees.
* **peers**: the same member stage written with confluent-kafka by hand and with Quix Streams
  (:mod:`signupflow.peers`, the ``bench`` extra; skipped, and said so, when a package is
  missing), each a process of its own with its own topics and database, on the same N events.
* **member**: the Faust member worker alone (no batch worker) on the same N events, measured
  like the peers: from the first send until every profile is stored.
* **catch-up**: the member worker stopped while N events accumulate, then started: how fast it
  drains a backlog, with and without its start-up (:func:`catchup`).
* **pipeline**: N events through the real member and batch Faust workers, until every profile
  and every partner summary is stored.
* **latency**: events at a steady ``--rate`` through the same workers; from the moment a signup
  is accepted (its ``occurred_at``) to its profile row and to its partner summary.
* **http**: signups through ``POST /signup`` of the real auth worker with concurrent clients,
  at the configured scrypt cost (password hashing dominates this figure).
* **scaling**: the pipeline again with a second member worker sharing the partitions, against
  the one-worker pipeline above.
* **traced**: the pipeline again, tracing on.
* **recovery**: a batch worker restarted with a table of ``--table-entries`` partners, in
  memory and on disk side by side: first key served, resident memory
  (:mod:`signupflow.bench_recovery`; alone with ``--recovery-only``).

Each phase of the Faust workers starts once every earlier event is stored and summarised
(:func:`settle`), so that none measures another's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from signupflow import broker, peers
from signupflow.bench_recovery import recovery
from signupflow.bench_recovery import render as render_recovery_lines
from signupflow.client import post_signup, post_signups
from signupflow.db import make_engine
from signupflow.domain.fake import fake_signups
from signupflow.domain.signup import profile_event, validate_signup
from signupflow.kafka_client import KafkaAccess, consumer, durable_producer
from signupflow.migrations import upgrade
from signupflow.peers import missing_peers, partner_messages, split
from signupflow.settings import SERVICES, load_settings
from signupflow.storage.member import save_profiles
from signupflow.supervisor import start_process, start_worker, stop_process, wait_http
from signupflow.topic_reader import topic_partitions
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, dlq_topic, ensure_topics

Events = list[tuple[bytes, bytes, bool]]  # key, value, is_partner


@dataclass
class Env:
    root: Path
    bootstrap: str
    env: dict[str, str]
    partitions: int
    readers: dict[str, sqlite3.Connection] = field(default_factory=dict)

    @property
    def kafka(self) -> KafkaAccess:
        """The bench's own broker: private, on loopback, PLAINTEXT."""
        return KafkaAccess(self.bootstrap)
    #: Events sent to the workers' profile-insert topic so far, and the partners among them:
    #: what :func:`settle` waits for.
    sent: int = 0
    partners: int = 0

    def db(self, service: str) -> Path:
        """A worker's (or a peer's) database."""
        return self.root / "data" / f"{service}.db"

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def url(self, service: str, port: int | None = None) -> str:
        """The web address of ``service``'s worker (of the one on ``port``, if given)."""
        return f"http://127.0.0.1:{port or self.env[f'SIGNUPFLOW_{service.upper()}_WEB_PORT']}"

    def count_sent(self, events: Events) -> None:
        self.sent += len(events)
        self.partners += sum(1 for e in events if e[2])

    def count(self, service: str, sql: str) -> int:
        """A count from ``service``'s database, 0 until the worker has created it.

        One read-only connection per database for the whole run: opening one per poll cost
        about 1.5 ms of the benchmark's own CPU, every 5 ms, taken from the workers it measures.
        """
        try:
            if service not in self.readers:
                if not self.db(service).exists():
                    return 0
                self.readers[service] = sqlite3.connect(
                    f"file:{self.db(service)}?mode=ro", uri=True, timeout=10)
            return int(self.readers[service].execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # schema not created yet
            return 0

    def close(self) -> None:
        for conn in self.readers.values():
            conn.close()


def make_events(count: int, partner_ratio: float = 0.3, seed: int = 1) -> Events:
    """``count`` valid ProfileInsert events (uuid keys) built by the real domain code."""
    out: Events = []
    for body in fake_signups(count, partner_ratio, seed):
        signup = validate_signup(body)
        event = profile_event(signup, str(uuid.uuid4()), datetime.now(UTC))
        out.append((event.uuid.encode(), event.dumps(), signup.role == "PARTNER"))
    return out


def restamp(value: bytes) -> bytes:
    """The same event, accepted now (for latency at a steady rate)."""
    import orjson

    data = orjson.loads(value)
    data["occurred_at"] = datetime.now(UTC).isoformat()
    return orjson.dumps(data)


def producer(kafka: KafkaAccess) -> AIOKafkaProducer:
    """The producer settings every phase uses: durable (acks=all, idempotent) and batched."""
    return durable_producer(kafka, max_batch_size=256 * 1024)


async def produce(kafka: KafkaAccess, topic: str, events: Events, rate: float | None = None,
                  stamp: bool = False) -> float:
    """Send all events (paced at ``rate``/s if given); returns seconds until all were acked."""
    prod = producer(kafka)
    await prod.start()
    try:
        start = time.perf_counter()
        futures = []
        for i, (key, value, _) in enumerate(events):
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(await prod.send(topic, restamp(value) if stamp else value, key=key))
        await asyncio.gather(*futures)
        return time.perf_counter() - start
    finally:
        await prod.stop()


async def consumer_at_start(kafka: KafkaAccess, topic: str, group: str | None
                            ) -> AIOKafkaConsumer:
    cons = consumer(kafka, group_id=group, enable_auto_commit=False,
                    auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await cons.start()
    cons.assign(await topic_partitions(cons, topic))
    await cons.seek_to_beginning()
    return cons


# --- ceiling --------------------------------------------------------------------------------

async def drain_while_producing(
    env: Env, topic: str, group: str | None, events: Events, max_records: int, wait_ms: int,
    on_batch: Callable[[Any, list[Any]], Awaitable[None]],
) -> tuple[float, float]:
    """Produce ``events`` to ``topic`` while a consumer reading it from the start hands each
    fetched batch to ``on_batch(consumer, records)``, until every event was seen. Returns the
    seconds it all took and the seconds producing took."""
    cons = await consumer_at_start(env.kafka, topic, group)
    try:
        start = time.perf_counter()
        sending = asyncio.create_task(produce(env.kafka, topic, events))
        seen = 0
        while seen < len(events):
            batch = await cons.getmany(timeout_ms=wait_ms, max_records=max_records)
            records = [m for msgs in batch.values() for m in msgs]
            if records:
                await on_batch(cons, records)
                seen += len(records)
        produce_s = await sending
        return time.perf_counter() - start, produce_s
    finally:
        await cons.stop()


async def ceiling(env: Env, events: Events) -> dict[str, float]:
    topic = "bench-ceiling"
    await ensure_topics(env.kafka, env.partitions, [topic])

    async def nothing(_cons: Any, _records: list[Any]) -> None:
        return None

    total, produce_s = await drain_while_producing(env, topic, None, events, 5000, 200, nothing)
    return {"ceiling_msgs_per_s": len(events) / total,
            "ceiling_produce_msgs_per_s": len(events) / produce_s}


# --- baseline: the member stage by hand ------------------------------------------------------

async def baseline(env: Env, events: Events) -> dict[str, float]:
    """A plain aiokafka consumer with the member stage's work and guarantees."""
    source, target = "bench-baseline-profile-insert", "bench-baseline-partner-created"
    await ensure_topics(env.kafka, env.partitions, [source, target, dlq_topic(source)])
    engine = make_engine(f"sqlite+aiosqlite:///{env.root / 'baseline-member.db'}")
    await upgrade(engine, "member")
    prod = producer(env.kafka)
    await prod.start()

    async def member_stage(cons: Any, records: list[Any]) -> None:
        profiles, dead = split((m.key, m.value) for m in records)
        futures = [await prod.send(dlq_topic(source), d.value, key=d.key, headers=d.headers)
                   for d in dead]
        await save_profiles(engine, profiles)
        for key, value in partner_messages(profiles):
            futures.append(await prod.send(target, value, key=key))
        await asyncio.gather(*futures)
        await cons.commit()

    try:
        elapsed, _ = await drain_while_producing(env, source, "bench-baseline", events, 500, 50,
                                                 member_stage)
    finally:
        await prod.stop()
        await engine.dispose()
    return {"baseline_signups_per_s": len(events) / elapsed}


# --- measuring what a process stores ------------------------------------------------------------

def profiles(env: Env, service: str = "member") -> int:
    return env.count(service, "SELECT (SELECT count(*) FROM user_profile) + "
                              "(SELECT count(*) FROM partner_profile)")


def summaries(env: Env) -> int:
    return env.count("batch", "SELECT count(*) FROM partner_summary")


async def wait_for(predicate: Callable[[], bool], seconds: float, what: str,
                   procs: Sequence[subprocess.Popen[bytes]] = ()) -> float:
    """Poll ``predicate`` every 5 ms; returns the perf_counter time it became true. Fails at
    once if one of ``procs`` (the processes doing the work) exits."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"benchmark: {what}: process {proc.pid} exited with "
                                   f"{proc.returncode} (its log is in the run's log folder)")
        await asyncio.sleep(0.005)
    raise TimeoutError(f"benchmark: {what} not reached within {seconds:.0f}s")


async def send(env: Env, events: Events, rate: float | None = None, stamp: bool = False) -> None:
    """``events`` to the workers' profile-insert topic, counted for :func:`settle`."""
    env.count_sent(events)
    await produce(env.kafka, PROFILE_INSERT, events, rate, stamp)


async def settle(env: Env, summarised: bool = True, seconds: float = 600) -> None:
    """Until every event sent so far is stored (and, with ``summarised``, every partner
    summarised): no phase measures the backlog of the one before."""
    await wait_for(lambda: profiles(env) >= env.sent and (
        not summarised or summaries(env) >= env.partners), seconds, "every earlier event")


async def stored(env: Env, events: Events, service: str = "member", topic: str = PROFILE_INSERT,
                 procs: Sequence[subprocess.Popen[bytes]] = ()) -> tuple[float, float]:
    """Send ``events`` to ``topic`` and wait until ``service``'s database holds every profile;
    returns the clock when sending began and when the last profile was stored."""
    base = profiles(env, service)
    if topic == PROFILE_INSERT:
        env.count_sent(events)
    start = time.perf_counter()
    sending = asyncio.create_task(produce(env.kafka, topic, events))
    done = await wait_for(lambda: profiles(env, service) >= base + len(events), 600,
                          f"all profiles ({service})", procs)
    await sending
    return start, done


# --- peers: the member stage written with other tools -----------------------------------------

async def peer(env: Env, name: str, events: Events) -> dict[str, float]:
    """A :mod:`signupflow.peers` process on topics and a database of its own: warmed up by one
    event (it has joined its group), then measured like the member worker alone."""
    source, target = f"bench-{name}-profile-insert", f"bench-{name}-partner-created"
    await ensure_topics(env.kafka, env.partitions, [source, target, dlq_topic(source)])
    proc = start_process(peers.command(name, env.bootstrap, source, target, f"bench-{name}",
                                       env.db(name)), env.log(name), env.env)
    try:
        await produce(env.kafka, source, make_events(1, seed=96))
        await wait_for(lambda: profiles(env, name) >= 1, 120, f"{name} warm-up", [proc])
        start, done = await stored(env, events, name, source, [proc])
    finally:
        stop_process(proc)
    return {f"{name}_signups_per_s": len(events) / (done - start)}


# --- the real workers -------------------------------------------------------------------------

async def member_alone(env: Env, events: Events,
                       procs: Sequence[subprocess.Popen[bytes]]) -> dict[str, float]:
    """The member worker with no batch worker beside it, like for like with the peers."""
    await settle(env, summarised=False)
    start, done = await stored(env, events, procs=procs)
    return {"member_signups_per_s": len(events) / (done - start)}


async def catchup(env: Env, events: Events,
                  member: subprocess.Popen[bytes]) -> tuple[dict[str, float | None],
                                                            subprocess.Popen[bytes]]:
    """Stop the member worker, send ``events``, start it again; returns the figures and the new
    worker.

    ``catchup_signups_per_s`` counts from the worker's launch to the last profile stored, so
    it includes the start-up (Python and Faust, joining the group, the first fetch);
    ``catchup_startup_s`` is the launch to the first profiles stored.
    ``catchup_drain_signups_per_s`` is the rate after those first profiles, the start-up
    excluded; None when the first batch held them all (too few events to tell).
    """
    await settle(env, summarised=False)
    stop_process(member)
    base = profiles(env)
    await send(env, events)
    launched = time.perf_counter()
    member = start_worker("member", env.log("member"), env.env, "warn")
    first = await wait_for(lambda: profiles(env) > base, 120, "the first caught-up profile",
                           [member])
    rest = base + len(events) - profiles(env)
    done = await wait_for(lambda: profiles(env) >= base + len(events), 600,
                          "all caught-up profiles", [member])
    return {"catchup_signups_per_s": len(events) / (done - launched),
            "catchup_drain_signups_per_s": rest / (done - first) if rest > 0 else None,
            "catchup_startup_s": first - launched}, member


async def pipeline(env: Env, events: Events) -> dict[str, float]:
    await settle(env)
    start, member_done = await stored(env, events)
    end = await wait_for(lambda: summaries(env) >= env.partners, 600, "all summaries")
    return {"pipeline_signups_per_s": len(events) / (end - start),
            # the member stage alone, like for like with the baseline (batch runs alongside)
            "pipeline_member_signups_per_s": len(events) / (member_done - start)}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p95": 0.0, "p99": 0.0}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": qs[94], "p99": qs[98]}


def latencies_ms(db: Path, sql: str, keys: set[str]) -> list[float]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(sql).fetchall()
    return [(datetime.fromisoformat(end) - datetime.fromisoformat(begin)).total_seconds() * 1000
            for key, begin, end in rows if key in keys]


async def latency(env: Env, events: Events, rate: float) -> dict[str, float]:
    await settle(env)
    await send(env, events, rate=rate, stamp=True)
    await settle(env, seconds=120)
    keys = {k.decode() for k, _, _ in events}
    to_profile = latencies_ms(env.db("member"), "SELECT uuid, joined_at, stored_at FROM "
                              "user_profile UNION ALL SELECT uuid, joined_at, stored_at FROM "
                              "partner_profile", keys)
    to_summary = latencies_ms(env.db("batch"), "SELECT partner_id, joined_at, summarized_at "
                              "FROM partner_summary", keys)
    p, s = percentiles(to_profile), percentiles(to_summary)
    return {"latency_rate_per_s": rate,
            "latency_ms_p50": p["p50"], "latency_ms_p95": p["p95"], "latency_ms_p99": p["p99"],
            "summary_latency_ms_p50": s["p50"], "summary_latency_ms_p95": s["p95"],
            "summary_latency_ms_p99": s["p99"]}


async def http(env: Env, count: int, concurrency: int) -> dict[str, float]:
    bodies = fake_signups(count, 0.3, seed=7)
    start = time.perf_counter()
    tally = await post_signups(env.url("auth"), bodies, concurrency)
    elapsed = time.perf_counter() - start
    if tally.rejected:
        raise RuntimeError(f"benchmark: HTTP signups rejected: {tally.summary()}")
    env.sent += count  # auth sends each to profile-insert
    env.partners += sum(1 for b in bodies if b["role"] == "PARTNER")
    return {"http_signups_per_s": count / elapsed, "http_concurrency": concurrency}


async def duplicates(env: Env, count: int = 20) -> dict[str, float]:
    """Does a 409 tell an email is taken sooner than a 201 tells it was free? ``count`` new
    signups one after another, then the same again (each a 409): the medians of both."""
    bodies = fake_signups(count, 0.3, seed=13, run="duplicates")
    seconds: dict[int, list[float]] = {201: [], 409: []}
    async with aiohttp.ClientSession() as session:
        for body in [*bodies, *bodies]:
            start = time.perf_counter()
            outcome = await post_signup(session, env.url("auth") + "/signup", body)
            seconds.setdefault(outcome.status, []).append(time.perf_counter() - start)
    if len(seconds[201]) != count or len(seconds[409]) != count:
        raise RuntimeError(f"benchmark: duplicates phase answered {sorted(seconds)}")
    env.sent += count
    env.partners += sum(1 for b in bodies if b["role"] == "PARTNER")
    created, duplicate = statistics.median(seconds[201]), statistics.median(seconds[409])
    return {"created_ms_p50": created * 1000, "duplicate_ms_p50": duplicate * 1000,
            "duplicate_vs_created": duplicate / created}


async def health_seconds(url: str, stop: asyncio.Event) -> list[float]:
    """``GET url`` every 100 ms until ``stop``: each answer's seconds (no answer: 10 s)."""
    seconds: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                seconds.append(time.perf_counter() - start)
            except (TimeoutError, aiohttp.ClientError, OSError):
                seconds.append(10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    return seconds


async def flood_phase(env: Env, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` clients posting signups in a loop for ``seconds`` (signupflow.flood, a
    process of its own) against the auth worker, as limited as in production (per-client
    limit, each client its own address behind a trusted proxy): its answers by status, the
    latency of the 201s, and auth's ``/health`` meanwhile."""
    stop = asyncio.Event()
    watching = asyncio.create_task(health_seconds(env.url("auth") + "/health", stop))
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "signupflow.flood", env.url("auth"),
                         str(clients), str(seconds)],
        capture_output=True, text=True, timeout=seconds + 300, env=env.env)
    stop.set()
    health = await watching
    if run.returncode != 0:
        raise RuntimeError(f"benchmark: the flood failed: {run.stderr[-2000:]}")
    summary = json.loads(run.stdout)
    env.sent += summary["created"]  # they flow downstream like every other signup
    env.partners += summary["created_partners"]
    h = percentiles(health)
    return {"flood_clients": clients, "flood_seconds": seconds,
            "flood_answers": summary["answers"],
            "flood_created_ms_p50": summary["created_p50_ms"],
            "flood_created_ms_p99": summary["created_p99_ms"],
            "flood_health_ms_p50": h["p50"] * 1000, "flood_health_ms_p99": h["p99"] * 1000}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kafka": broker.KAFKA_VERSION, "os": platform.platform()}


def commit() -> str | None:
    """The checkout's commit, ``+changes`` if tracked files differ from it; None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


#: Each ratio of the results: (numerator, denominator).
RATIOS = {
    "pipeline_vs_baseline": ("pipeline_signups_per_s", "baseline_signups_per_s"),
    "member_vs_baseline": ("pipeline_member_signups_per_s", "baseline_signups_per_s"),
    "baseline_vs_ceiling": ("baseline_signups_per_s", "ceiling_msgs_per_s"),
    "pipeline_vs_ceiling": ("pipeline_signups_per_s", "ceiling_msgs_per_s"),
    "tracing_on_vs_off": ("pipeline_traced_signups_per_s", "pipeline_signups_per_s"),
    "member_vs_quix": ("member_signups_per_s", "quix_signups_per_s"),
    "member_vs_confluent": ("member_signups_per_s", "confluent_signups_per_s"),
    "member_alone_vs_baseline": ("member_signups_per_s", "baseline_signups_per_s"),
    "catchup_vs_member": ("catchup_drain_signups_per_s", "member_signups_per_s"),
    "member_scaling": ("pipeline_2_members_signups_per_s", "pipeline_1_member_signups_per_s"),
}


def ratios(results: Mapping[str, Any]) -> dict[str, float | None]:
    """Every ratio of :data:`RATIOS`; None where a figure is missing (a phase was skipped)."""
    out: dict[str, float | None] = {}
    for name, (num, den) in RATIOS.items():
        a, b = results.get(num), results.get(den)
        out[name] = a / b if a is not None and b else None
    return out


# --- orchestration -----------------------------------------------------------------------------

def start_env(root: Path, partitions: int) -> Env:
    status = broker.start(root / "broker", 0)
    ports = {s: broker.free_port() for s in SERVICES}
    env = {**os.environ, "SIGNUPFLOW_DATA_DIR": str(root / "data"),
           "SIGNUPFLOW_BROKER_PORT": str(status.port), "SIGNUPFLOW_PARTITIONS": str(partitions),
           "SIGNUPFLOW_LOG_LEVEL": "warn",
           # the http phase measures hashing from one address: no per-address limit there
           # (the flood phase restores it)
           "SIGNUPFLOW_SIGNUP_RATE": "0",
           **{f"SIGNUPFLOW_{s.upper()}_WEB_PORT": str(p) for s, p in ports.items()}}
    env.pop("SIGNUPFLOW_KAFKA_BROKER", None)
    for name in ("SIGNUPFLOW_AUTH_DATABASE_URL", "SIGNUPFLOW_MEMBER_DATABASE_URL",
                 "SIGNUPFLOW_BATCH_DATABASE_URL", "SIGNUPFLOW_BROKER_HOME"):
        env.pop(name, None)
    return Env(root, status.bootstrap, env, partitions)


def start_workers(env: Env, services: Sequence[str] = SERVICES,
                  **extra: str) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {
        s: start_worker(s, env.log(s), {**env.env, **extra}, "warn") for s in services}
    for s, proc in procs.items():
        wait_http(env.url(s) + "/", 90, proc)
    return procs


def start_second_member(env: Env, first: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """A second member worker (own web port and log) in the group of the first; returns once
    both are ready: partitions shared out, the rebalance over."""
    port = broker.free_port()
    proc = start_worker("member", env.log("member-2"),
                        {**env.env, "SIGNUPFLOW_MEMBER_WEB_PORT": str(port)}, "warn")
    wait_http(env.url("member", port) + "/ready", 90, proc)
    wait_http(env.url("member") + "/ready", 90, first)
    return proc


async def warm_up(env: Env, seed: int = 99, count: int = 1, summarised: bool = True) -> None:
    """``count`` partner events end to end: the consumer groups have joined and the DBs
    exist (and the backlog of earlier phases is drained)."""
    await send(env, make_events(count, partner_ratio=1.0, seed=seed))
    await settle(env, summarised)


def stop(procs: dict[str, subprocess.Popen[bytes]], *names: str) -> None:
    for name in names:
        if name in procs:
            stop_process(procs.pop(name))


async def run_recovery(table_entries: int, partitions: int,
                       progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The recovery phase alone (``signupflow bench --recovery-only``)."""
    with tempfile.TemporaryDirectory(prefix="signupflow-bench-") as tmp:
        root = Path(tmp)
        env = await asyncio.to_thread(start_env, root, partitions)
        results: dict[str, Any] = {"partitions": partitions}
        try:
            await ensure_topics(env.kafka, partitions, [PARTNER_CREATED,
                                                        dlq_topic(PARTNER_CREATED)])
            progress(f"recovery (batch restarted with {table_entries:,} table entries, "
                     "on disk, then in memory)")
            results.update(await recovery(env, table_entries))
        finally:
            env.close()
            broker.stop(root / "broker")
    results["machine"] = machine()
    results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["commit"] = commit()
    return results


def render_recovery(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join([
        f"signupflow bench --recovery-only: {r['partitions']} partitions, {m['cpus']} CPUs "
        f"({m['cpu']}), Python {m['python']}; {r['date']}, commit {r['commit'] or 'unknown'}",
        *render_recovery_lines(r)])


async def run(signups: int, rate: float, http_signups: int, concurrency: int, partitions: int,
              progress: Callable[[str], None] = lambda _: None, flood_clients: int = 400,
              flood_seconds: float = 30, table_entries: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="signupflow-bench-") as tmp:
        root = Path(tmp)
        env = await asyncio.to_thread(start_env, root, partitions)  # blocking start-up
        for service in SERVICES:  # the workers' databases, as `signupflow db upgrade` does
            await upgrade(load_settings(env.env).database_url(service), service)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        results: dict[str, Any] = {"signups": signups, "partitions": partitions, "skipped": []}
        try:
            await ensure_topics(env.kafka, partitions,
                                [PROFILE_INSERT, PARTNER_CREATED, *map(dlq_topic, (
                                    PROFILE_INSERT, PARTNER_CREATED))])
            # built up front, so that no phase's clock (or CPU) includes building the next's;
            # the workers' phases each need their own uuids
            events, catchup_events = make_events(signups), make_events(signups, seed=5)
            pipeline_events, scaled_events = make_events(signups, seed=2), make_events(
                signups, seed=6)
            traced_events = make_events(signups, seed=4)
            lat_events = make_events(max(50, min(signups, int(rate * 10))), seed=3)
            progress("ceiling (raw aiokafka produce + consume)")
            results.update(await ceiling(env, events))
            progress("baseline (hand-written aiokafka member consumer)")
            results.update(await baseline(env, events))
            missing = missing_peers()
            for name, what in (("confluent", "hand-written confluent-kafka member consumer"),
                               ("quix", "Quix Streams member application")):
                if name in missing:
                    progress(f"{name}: skipped, {missing[name]}")
                    results[f"{name}_signups_per_s"] = None
                    results["skipped"].append(f"{name}: {missing[name]}")
                    continue
                progress(f"{name} ({what})")
                results.update(await peer(env, name, events))
            progress("member (the Faust member worker alone)")
            procs = await asyncio.to_thread(start_workers, env, ("member",))
            await warm_up(env, seed=97, summarised=False)
            results.update(await member_alone(env, events, [procs["member"]]))
            progress(f"catch-up (the member worker stopped while {signups} events accumulate)")
            figures, procs["member"] = await catchup(env, catchup_events, procs["member"])
            results.update(figures)
            progress("starting the auth and batch workers")
            procs.update(await asyncio.to_thread(start_workers, env, ("auth", "batch")))
            await warm_up(env, seed=99)
            progress("pipeline (member + batch Faust workers)")
            results.update(await pipeline(env, pipeline_events))
            results["pipeline_1_member_signups_per_s"] = results["pipeline_signups_per_s"]
            progress(f"latency ({len(lat_events)} events at {rate:.0f}/s)")
            results.update(await latency(env, lat_events, rate))
            progress(f"http ({http_signups} signups, {concurrency} clients)")
            results.update(await http(env, http_signups, concurrency))
            progress("duplicates (does a 409 come sooner than a 201?)")
            results.update(await duplicates(env))
            await settle(env)
            progress(f"flood ({flood_clients} clients for {flood_seconds:.0f} s, each its own "
                     "address, limited as in production)")
            stop(procs, "auth")
            procs.update(await asyncio.to_thread(
                start_workers, env, ("auth",), SIGNUPFLOW_SIGNUP_RATE="",
                SIGNUPFLOW_TRUSTED_PROXIES="127.0.0.1"))
            results.update(await flood_phase(env, flood_clients, flood_seconds))
            await settle(env)
            if partitions >= 2:
                progress("pipeline with 2 member workers")
                procs["member-2"] = await asyncio.to_thread(
                    start_second_member, env, procs["member"])
                await warm_up(env, seed=95, count=2 * partitions)
                scaled = await pipeline(env, scaled_events)
                results["pipeline_2_members_signups_per_s"] = scaled["pipeline_signups_per_s"]
            else:
                results["pipeline_2_members_signups_per_s"] = None
                results["skipped"].append("scaling: 1 partition, nothing to share")
            progress("pipeline again, tracing on (SIGNUPFLOW_TRACE_FILE)")
            await settle(env)
            stop(procs, "member", "member-2", "batch")
            procs.update(await asyncio.to_thread(
                start_workers, env, ("member", "batch"),
                SIGNUPFLOW_TRACE_FILE=str(root / "spans.jsonl")))
            await warm_up(env, seed=98)
            traced = await pipeline(env, traced_events)
            results["pipeline_traced_signups_per_s"] = traced["pipeline_signups_per_s"]
            stop(procs, "member", "batch")
            progress(f"recovery (batch restarted with {table_entries:,} table entries, "
                     "on disk, then in memory)")
            results.update(await recovery(env, table_entries))
        finally:
            env.close()
            stop(procs, *procs)
            broker.stop(root / "broker")
    results.update(ratios(results))
    results["machine"] = machine()
    results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["commit"] = commit()
    return results


def per_s(value: float | None, unit: str = "signups/s") -> str:
    """A throughput in the table's column, or why there is none."""
    return f"{value:>9,.0f} {unit}" if value is not None else f"{'skipped':>9} {unit}"


def times(ratio: float | None, what: str) -> str:
    return f"{ratio:.2f} x {what}" if ratio is not None else f"- x {what}"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join([
        f"signupflow bench: {r['signups']} signups, {r['partitions']} partitions, "
        f"{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, Kafka {m['kafka']}; "
        f"{r['date']}, commit {r['commit'] or 'unknown'}",
        f"  ceiling   raw aiokafka produce+consume   {per_s(r['ceiling_msgs_per_s'], 'msgs/s')}"
        f"      (produce alone {r['ceiling_produce_msgs_per_s']:,.0f}/s)",
        f"  baseline  hand-written member consumer  {per_s(r['baseline_signups_per_s'])}"
        f"   = {times(r['baseline_vs_ceiling'], 'ceiling')}",
        "  peers, the member stage alone, each on the same events:",
        f"            confluent-kafka by hand       {per_s(r['confluent_signups_per_s'])}",
        f"            Quix Streams                  {per_s(r['quix_signups_per_s'])}",
        f"            Faust member worker           {per_s(r['member_signups_per_s'])}"
        f"   = {times(r['member_vs_quix'], 'Quix')}, "
        f"{times(r['member_vs_confluent'], 'confluent')}, "
        f"{times(r['member_alone_vs_baseline'], 'baseline')}",
        f"  catch-up  member worker, after a stop   {per_s(r['catchup_signups_per_s'])}"
        f"   (start-up {r['catchup_startup_s']:.1f} s included; after it "
        f"{per_s(r['catchup_drain_signups_per_s']).strip()} = "
        f"{times(r['catchup_vs_member'], 'member alone')})",
        f"  pipeline  Faust member + batch workers  {per_s(r['pipeline_signups_per_s'])}"
        f"   = {times(r['pipeline_vs_baseline'], 'baseline')}, "
        f"{times(r['pipeline_vs_ceiling'], 'ceiling')}",
        f"            of which the member stage   {per_s(r['pipeline_member_signups_per_s'])}"
        f"   = {times(r['member_vs_baseline'], 'baseline')}",
        f"            with 2 member workers       {per_s(r['pipeline_2_members_signups_per_s'])}"
        f"   = {times(r['member_scaling'], '1 member worker')}",
        f"            with tracing on             {per_s(r['pipeline_traced_signups_per_s'])}"
        f"   = {times(r['tracing_on_vs_off'], 'tracing off')}",
        f"  http      POST /signup                  {per_s(r['http_signups_per_s'])}"
        f"   ({r['http_concurrency']} clients, scrypt-bound)",
        f"  409 vs 201  a taken email answered in {r['duplicate_ms_p50']:.1f} ms, a new one in "
        f"{r['created_ms_p50']:.1f} ms (median) = {r['duplicate_vs_created']:.2f} x",
        f"  flood     {r['flood_clients']} clients, {r['flood_seconds']:.0f} s: answers "
        + ", ".join(f"{n:,} x {status}" for status, n in sorted(r["flood_answers"].items()))
        + f"; 201s p50 {r['flood_created_ms_p50']} ms p99 {r['flood_created_ms_p99']} ms; "
        f"/health p99 {r['flood_health_ms_p99']:.0f} ms",
        f"  latency at {r['latency_rate_per_s']:.0f}/s  accepted -> profile  "
        f"p50 {r['latency_ms_p50']:.1f} ms  p95 {r['latency_ms_p95']:.1f} ms  "
        f"p99 {r['latency_ms_p99']:.1f} ms",
        f"                     accepted -> summary  p50 {r['summary_latency_ms_p50']:.1f} ms  "
        f"p95 {r['summary_latency_ms_p95']:.1f} ms  p99 {r['summary_latency_ms_p99']:.1f} ms",
        *render_recovery_lines(r),
        *(f"  skipped   {reason}" for reason in r["skipped"]),
    ])
