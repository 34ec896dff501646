"""``signupflow bench``: throughput and latency, as ratios to references measured in the same run.

Everything runs on a private broker (fresh store, free port) and private databases, so a run
measures only itself. Phases, in order:

* **ceiling**: raw aiokafka produce and consume of N ProfileInsert-sized messages through one
  topic, no processing: the most any Kafka consumer on this machine could do.
* **baseline**: what a user would write instead of Faust: a plain aiokafka consumer doing the
  member stage's work (decode, validate, write profiles and styles, produce PartnerCreated with
  acks=all, commit offsets only after that) with the same delivery guarantees.
* **pipeline**: N events through the real member and batch Faust workers, until every profile
  and every partner summary is stored.
* **latency**: events at a steady ``--rate`` through the same workers; from the moment a signup
  is accepted (its ``occurred_at``) to its profile row and to its partner summary.
* **http**: signups through ``POST /signup`` of the real auth worker with concurrent clients,
  at the configured scrypt cost (password hashing dominates this figure).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from signupflow import broker
from signupflow.client import post_signups
from signupflow.db import create_schema, make_engine
from signupflow.domain.decode import InvalidEvent, decode_profile_insert
from signupflow.domain.fake import fake_signups
from signupflow.domain.signup import profile_event, validate_signup
from signupflow.domain.summary import partner_created
from signupflow.kafka_client import durable_producer
from signupflow.settings import SERVICES
from signupflow.storage.member import save_profiles
from signupflow.supervisor import start_worker, stop_process, wait_http
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

    def db(self, service: str) -> Path:
        return self.root / "data" / f"{service}.db"

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


def producer(bootstrap: str) -> AIOKafkaProducer:
    """The producer settings every phase uses: durable (acks=all, idempotent) and batched."""
    return durable_producer(bootstrap, max_batch_size=256 * 1024)


async def produce(bootstrap: str, topic: str, events: Events, rate: float | None = None,
                  stamp: bool = False) -> float:
    """Send all events (paced at ``rate``/s if given); returns seconds until all were acked."""
    prod = producer(bootstrap)
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


async def consumer_at_start(bootstrap: str, topic: str, group: str | None) -> AIOKafkaConsumer:
    cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=4 * 1024 * 1024)
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
    cons = await consumer_at_start(env.bootstrap, topic, group)
    try:
        start = time.perf_counter()
        sending = asyncio.create_task(produce(env.bootstrap, topic, events))
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
    await ensure_topics(env.bootstrap, env.partitions, [topic])

    async def nothing(_cons: Any, _records: list[Any]) -> None:
        return None

    total, produce_s = await drain_while_producing(env, topic, None, events, 5000, 200, nothing)
    return {"ceiling_msgs_per_s": len(events) / total,
            "ceiling_produce_msgs_per_s": len(events) / produce_s}


# --- baseline: the member stage by hand ------------------------------------------------------

async def baseline(env: Env, events: Events) -> dict[str, float]:
    """A plain aiokafka consumer with the member stage's work and guarantees."""
    source, target = "bench-baseline-profile-insert", "bench-baseline-partner-created"
    await ensure_topics(env.bootstrap, env.partitions, [source, target, dlq_topic(source)])
    engine = make_engine(f"sqlite+aiosqlite:///{env.root / 'baseline-member.db'}")
    await create_schema(engine, "member")
    prod = producer(env.bootstrap)
    await prod.start()

    async def member_stage(cons: Any, records: list[Any]) -> None:
        profiles, futures = [], []
        for m in records:
            try:
                profiles.append(decode_profile_insert(m.key, m.value, 64 * 1024))
            except InvalidEvent as exc:
                futures.append(await prod.send(dlq_topic(source), m.value, key=m.key,
                                               headers=[("dlq.error", str(exc).encode())]))
        await save_profiles(engine, profiles)
        for p in profiles:
            if (e := partner_created(p)) is not None:
                futures.append(await prod.send(target, e.dumps(), key=e.partner_id.encode()))
        await asyncio.gather(*futures)
        await cons.commit()

    try:
        elapsed, _ = await drain_while_producing(env, source, "bench-baseline", events, 500, 50,
                                                 member_stage)
    finally:
        await prod.stop()
        await engine.dispose()
    return {"baseline_signups_per_s": len(events) / elapsed}


# --- the real workers -------------------------------------------------------------------------

def profiles(env: Env) -> int:
    return env.count("member", "SELECT (SELECT count(*) FROM user_profile) + "
                               "(SELECT count(*) FROM partner_profile)")


def summaries(env: Env) -> int:
    return env.count("batch", "SELECT count(*) FROM partner_summary")


async def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``predicate`` every 5 ms; returns the perf_counter time it became true."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        await asyncio.sleep(0.005)
    raise TimeoutError(f"benchmark: {what} not reached within {seconds:.0f}s")


async def pipeline(env: Env, events: Events) -> dict[str, float]:
    base_p, base_s = profiles(env), summaries(env)
    partners = sum(1 for e in events if e[2])
    start = time.perf_counter()
    sending = asyncio.create_task(produce(env.bootstrap, PROFILE_INSERT, events))
    member_done = await wait_for(lambda: profiles(env) >= base_p + len(events), 600,
                                 "all profiles")
    end = await wait_for(lambda: summaries(env) >= base_s + partners, 600, "all summaries")
    await sending
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
    base_p, base_s = profiles(env), summaries(env)
    partners = sum(1 for e in events if e[2])
    await produce(env.bootstrap, PROFILE_INSERT, events, rate=rate, stamp=True)
    await wait_for(lambda: profiles(env) >= base_p + len(events), 120, "latency profiles")
    await wait_for(lambda: summaries(env) >= base_s + partners, 120, "latency summaries")
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
    url = f"http://127.0.0.1:{env.env['SIGNUPFLOW_AUTH_WEB_PORT']}"
    start = time.perf_counter()
    tally = await post_signups(url, bodies, concurrency)
    elapsed = time.perf_counter() - start
    if tally.rejected:
        raise RuntimeError(f"benchmark: HTTP signups rejected: {tally.summary()}")
    return {"http_signups_per_s": count / elapsed, "http_concurrency": concurrency}


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kafka": broker.KAFKA_VERSION, "os": platform.platform()}


# --- orchestration -----------------------------------------------------------------------------

def start_env(root: Path, partitions: int) -> Env:
    status = broker.start(root / "broker", 0)
    ports = {s: broker.free_port() for s in SERVICES}
    env = {**os.environ, "SIGNUPFLOW_DATA_DIR": str(root / "data"),
           "SIGNUPFLOW_BROKER_PORT": str(status.port), "SIGNUPFLOW_PARTITIONS": str(partitions),
           "SIGNUPFLOW_LOG_LEVEL": "warn",
           **{f"SIGNUPFLOW_{s.upper()}_WEB_PORT": str(p) for s, p in ports.items()}}
    env.pop("SIGNUPFLOW_KAFKA_BROKER", None)
    for name in ("SIGNUPFLOW_AUTH_DATABASE_URL", "SIGNUPFLOW_MEMBER_DATABASE_URL",
                 "SIGNUPFLOW_BATCH_DATABASE_URL", "SIGNUPFLOW_BROKER_HOME"):
        env.pop(name, None)
    return Env(root, status.bootstrap, env, partitions)


def start_workers(env: Env, services: Sequence[str] = SERVICES,
                  **extra: str) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {
        s: start_worker(s, env.root / "log" / f"{s}.log", {**env.env, **extra}, "warn")
        for s in services}
    for s, proc in procs.items():
        wait_http(f"http://127.0.0.1:{env.env[f'SIGNUPFLOW_{s.upper()}_WEB_PORT']}/", 90, proc)
    return procs


async def warm_up(env: Env, seed: int = 99) -> None:
    """One partner event end to end: the consumer groups have joined and the DBs exist."""
    base_p, base_s = profiles(env), summaries(env)
    await produce(env.bootstrap, PROFILE_INSERT, make_events(1, partner_ratio=1.0, seed=seed))
    await wait_for(lambda: profiles(env) > base_p and summaries(env) > base_s, 120, "warm-up")


async def run(signups: int, rate: float, http_signups: int, concurrency: int, partitions: int,
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="signupflow-bench-") as tmp:
        root = Path(tmp)
        env = await asyncio.to_thread(start_env, root, partitions)  # blocking start-up
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            await ensure_topics(env.bootstrap, partitions,
                                [PROFILE_INSERT, PARTNER_CREATED, *map(dlq_topic, (
                                    PROFILE_INSERT, PARTNER_CREATED))])
            # built up front, so that no phase's clock (or CPU) includes building the next's
            events, pipeline_events = make_events(signups), make_events(signups, seed=2)
            traced_events = make_events(signups, seed=4)
            lat_events = make_events(max(50, min(signups, int(rate * 10))), seed=3)
            results: dict[str, Any] = {"signups": signups, "partitions": partitions}
            progress("ceiling (raw aiokafka produce + consume)")
            results.update(await ceiling(env, events))
            progress("baseline (hand-written aiokafka member consumer)")
            results.update(await baseline(env, events))
            progress("starting the Faust workers")
            procs = await asyncio.to_thread(start_workers, env)
            await warm_up(env)
            progress("pipeline (member + batch Faust workers)")
            results.update(await pipeline(env, pipeline_events))
            progress(f"latency ({len(lat_events)} events at {rate:.0f}/s)")
            results.update(await latency(env, lat_events, rate))
            progress(f"http ({http_signups} signups, {concurrency} clients)")
            results.update(await http(env, http_signups, concurrency))
            progress("pipeline again, tracing on (SIGNUPFLOW_TRACE_FILE)")
            settled = 1 + len(pipeline_events) + len(lat_events) + http_signups
            await wait_for(lambda: profiles(env) >= settled, 120, "the http signups")
            for service in ("member", "batch"):
                stop_process(procs.pop(service))
            procs.update(await asyncio.to_thread(
                start_workers, env, ("member", "batch"),
                SIGNUPFLOW_TRACE_FILE=str(root / "spans.jsonl")))
            await warm_up(env, seed=98)
            traced = await pipeline(env, traced_events)
            results["pipeline_traced_signups_per_s"] = traced["pipeline_signups_per_s"]
        finally:
            env.close()
            for proc in procs.values():
                stop_process(proc)
            broker.stop(root / "broker")
    results["pipeline_vs_baseline"] = results["pipeline_signups_per_s"] / results[
        "baseline_signups_per_s"]
    results["member_vs_baseline"] = results["pipeline_member_signups_per_s"] / results[
        "baseline_signups_per_s"]
    results["baseline_vs_ceiling"] = results["baseline_signups_per_s"] / results[
        "ceiling_msgs_per_s"]
    results["pipeline_vs_ceiling"] = results["pipeline_signups_per_s"] / results[
        "ceiling_msgs_per_s"]
    results["tracing_on_vs_off"] = results["pipeline_traced_signups_per_s"] / results[
        "pipeline_signups_per_s"]
    results["machine"] = machine()
    return results


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join([
        f"signupflow bench: {r['signups']} signups, {r['partitions']} partitions, "
        f"{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, Kafka {m['kafka']}",
        f"  ceiling   raw aiokafka produce+consume   {r['ceiling_msgs_per_s']:>9,.0f} msgs/s"
        f"   (produce alone {r['ceiling_produce_msgs_per_s']:,.0f}/s)",
        f"  baseline  hand-written member consumer  {r['baseline_signups_per_s']:>9,.0f} "
        f"signups/s   = {r['baseline_vs_ceiling']:.2f} x ceiling",
        f"  pipeline  Faust member + batch workers  {r['pipeline_signups_per_s']:>9,.0f} "
        f"signups/s   = {r['pipeline_vs_baseline']:.2f} x baseline, "
        f"{r['pipeline_vs_ceiling']:.2f} x ceiling",
        f"            of which the member stage   {r['pipeline_member_signups_per_s']:>9,.0f} "
        f"signups/s   = {r['member_vs_baseline']:.2f} x baseline",
        f"            with tracing on             {r['pipeline_traced_signups_per_s']:>9,.0f} "
        f"signups/s   = {r['tracing_on_vs_off']:.2f} x tracing off",
        f"  http      POST /signup                  {r['http_signups_per_s']:>9,.0f} "
        f"signups/s   ({r['http_concurrency']} clients, scrypt-bound)",
        f"  latency at {r['latency_rate_per_s']:.0f}/s  accepted -> profile  "
        f"p50 {r['latency_ms_p50']:.1f} ms  p95 {r['latency_ms_p95']:.1f} ms  "
        f"p99 {r['latency_ms_p99']:.1f} ms",
        f"                     accepted -> summary  p50 {r['summary_latency_ms_p50']:.1f} ms  "
        f"p95 {r['summary_latency_ms_p95']:.1f} ms  p99 {r['summary_latency_ms_p99']:.1f} ms",
    ])
