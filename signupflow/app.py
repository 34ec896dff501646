"""One faust.App per service: three consumer groups, three microservices, one codebase."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import faust
from faust.types import TransportT

from signupflow import liveness, tracing, transport, web_auth
from signupflow.identity import name_the_process
from signupflow.kafka_client import KafkaAccess
from signupflow.outages import Outage, RepeatFilter
from signupflow.probes import Check, Refresher, broker_check, register_probes
from signupflow.recovery import TableManager
from signupflow.settings import Service, Settings, get_settings
from signupflow.tables import rocks
from signupflow.topics import (
    TopicPolicy,
    cluster_id,
    ensure_topics,
    leader_topic,
    topic_config,
)

log = logging.getLogger(__name__)
#: How often a worker refreshes the cluster's metadata, at the latest (ms).
METADATA_MAX_AGE_MS = 10_000
#: Exit status of a worker that the shutdown watchdog ended.
EXIT_SHUTDOWN_TIMEOUT = 75
#: Exit status of a worker whose database is not at the code's schema revision (EX_CONFIG).
EXIT_SCHEMA_BEHIND = 78
Task = TypeVar("Task", bound=Callable[[], Awaitable[None]])


class Worker(faust.Worker):
    """faust.Worker without the terminal spinner, and with a deadline on shutdown.

    At log level warn or above, Faust's spinner sets the root logger to DEBUG so it can spin on
    every record: every library then builds a debug LogRecord per message (about 6% of the
    member worker's CPU in a profile). Workers here log to files, where a spinner is no use.

    Once a stop signal arrives the worker has ``SIGNUPFLOW_SHUTDOWN_TIMEOUT`` seconds to finish;
    past that a watchdog thread (which works even if the event loop is wedged) ends the process.
    That loses nothing: offsets are committed only for events whose effects are stored, so
    whatever was in flight is processed again after the restart, as after a kill -9.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        timeout = get_settings().shutdown_timeout
        watchdog = threading.Timer(timeout, _hard_exit, args=(signal.name, timeout))
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signal)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:  # aiokafka's repeated errors, once per 30 s
            handler.addFilter(RepeatFilter())

    def execute_from_commandline(self) -> NoReturn:
        """Faust's, with exit status ``EXIT_WEDGED`` after the liveness watchdog stopped a
        wedged worker (``signupflow/liveness.py``), or the status of :meth:`ServiceApp.refuse`."""
        try:
            super().execute_from_commandline()
        except SystemExit as exc:
            app = self.app
            if not exc.code and isinstance(app, ServiceApp):
                if app.liveness.wedged:
                    raise SystemExit(liveness.EXIT_WEDGED) from exc
                if app.refused is not None:
                    raise SystemExit(app.refused) from exc
            raise


def _stop_self() -> None:
    """Stop this worker as SIGTERM does (bounded by the shutdown watchdog)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _hard_exit(signal_name: str, timeout: float) -> None:
    # Straight to stderr (the worker's log): a wedged loop may hold the logging locks.
    os.write(2, (f"[ERROR] still stopping {timeout:.0f}s after {signal_name} "
                 "(SIGNUPFLOW_SHUTDOWN_TIMEOUT): exiting now; events in flight are processed "
                 "again after the restart\n").encode())
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


class ServiceApp(faust.App):
    """A faust.App that creates its topics before its consumer first joins the group.

    Faust checks a table's source topic against its changelog using the partition counts the
    consumer saw when it joined; a changelog created a moment later reads as 0 partitions until
    the next rebalance. Creating every topic up front (changelogs as their tables ask:
    compacted, and for a windowed table deleted after its expiry) avoids that race and an
    auto-created topic with a wrong partition count.
    """

    signupflow_topics: list[str]
    signupflow_settings: Settings
    #: the cluster, and how this service connects to it (its own principal)
    signupflow_kafka: KafkaAccess
    #: The batch writers of ``run_batches``, cancelled if they hold up a shutdown.
    batch_writers: set[asyncio.Task[None]]
    #: What ``/ready`` checks, and what refreshes the state gauges of ``/metrics``.
    ready_checks: list[Check]
    metric_refreshers: list[Refresher]
    #: Whether the worker is wedged (``/health``), watched from its start.
    liveness: liveness.Liveness
    #: Tasks that start with the worker (see :meth:`worker_task`).
    worker_tasks: list[Callable[[], Awaitable[None]]]
    #: The exit status of a worker that refused to run (:meth:`refuse`), else None.
    refused: int | None = None

    def refuse(self, reason: str, status: int) -> None:
        """Stop this worker for good reason (logged as such) and exit with ``status``."""
        log.critical("refusing to run: %s", reason)
        self.refused = status
        _stop_self()

    def worker_task(self, task: Task) -> Task:
        """Run ``task`` from the worker's start, stopped (cancelled) with it.

        ``@app.task`` starts only once the consumer's first rebalance and its table recovery
        are done, and a rebalance after a restart waits out the dead worker's session
        timeout: the outbox relay, which consumes nothing, sat that long (up to 24 s) before
        publishing, and a watchdog of the first rebalance could not watch it.
        """
        self.worker_tasks.append(task)
        return task

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.worker_tasks:
            self.add_future(task())

    async def on_first_start(self) -> None:
        s = self.signupflow_settings
        cluster = await cluster_id(self.signupflow_kafka)
        for table in self.tables.values():
            if isinstance(table.data, rocks.Store):
                table.data.cluster = cluster
        changelogs = {t.changelog_topic.get_topic_name(): topic_config(t.changelog_topic)
                      for t in self.tables.values()}
        states = await ensure_topics(self.signupflow_kafka, s.partitions,
                                     self.signupflow_topics, configs=changelogs,
                                     policy=TopicPolicy.from_settings(s),
                                     single=[leader_topic(self.conf.id)])
        # Anything Faust declares itself is replicated the same way.
        self.conf.topic_replication_factor = min(state.replicas for state in states)
        await super().on_first_start()

    def _new_transport(self) -> TransportT:
        # Faust's kafka:// transport, with commits that never pass an unprocessed event
        # (signupflow/transport.py).
        return transport.Transport(self.conf.broker_consumer, self)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """Wait for the events in flight to be acknowledged: for ever on a rebalance, as Faust
        does, but only for a grace period when the worker stops.

        A batch in an outage's retry loop would otherwise keep the worker from stopping: its
        events will never be acknowledged. After the grace period the batch writers are
        cancelled and their events stay unacknowledged, to be processed again after the
        restart (the offsets committed never pass an event whose effects are not stored).
        """
        if not self.should_stop:
            await super()._consumer_wait_empty(consumer, logger)
            return
        grace = self.signupflow_settings.shutdown_timeout / 3
        waiting = asyncio.ensure_future(super()._consumer_wait_empty(consumer, logger))
        done, _ = await asyncio.wait({waiting}, timeout=grace)
        if not done:
            logger.warning("stopping: a batch still unfinished after %.1fs is abandoned; its "
                           "events are processed again after the restart", grace)
            for task in list(self.batch_writers):
                task.cancel()
            # Faust waits while any event it handed out is unacknowledged (and cancelling that
            # wait is swallowed). Forget them: commits use the acknowledged offsets only.
            consumer._unacked_messages.clear()
        await waiting


def table_store(s: Settings) -> str:
    """The Faust store URL of ``SIGNUPFLOW_TABLE_STORE``."""
    if s.table_store == "memory":
        return "memory://"
    rocks.configure(s.table_cache_mb, s.table_write_buffer_mb)
    return rocks.register()


def table_dir(s: Settings, service: Service) -> Path:
    """Where a worker keeps its tables on disk: its own folder under the data directory, by app
    id and web port, so that workers sharing a data directory never share a store."""
    return s.data_dir / "tables" / f"{s.app_ids[service]}-{s.web_ports[service]}"


def create_app(
    service: Service, settings: Settings | None = None, topics: list[str] | None = None,
    middlewares: Sequence[Any] = (),
) -> ServiceApp:
    """The Faust app of ``service`` (auth, member or batch) with the project's settings.

    ``topics`` are the topics the service reads or writes; they are created at start-up if
    missing (given the right to) and checked.

    The app id (``signupflow-<service>`` unless ``SIGNUPFLOW_<SERVICE>_APP_ID`` says otherwise)
    is the Kafka consumer group and the prefix of its internal topics, so each service consumes
    every event once, independently of the others. It connects to Kafka as its own principal
    (``SIGNUPFLOW_KAFKA_<SERVICE>_*``), and refuses to serve its views beyond this machine
    without a web token. ``middlewares`` (aiohttp's) run on every request, first.
    """
    s = settings or get_settings()
    web_auth.check_exposure(s)
    kafka = s.kafka(service)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    table_dir(s, service).parent.mkdir(exist_ok=True)  # Faust makes the last level only
    app = ServiceApp(
        s.app_ids[service],
        broker=s.kafka_broker,
        broker_credentials=kafka.security.faust(),
        # Tables live on disk (RocksDB), one folder per worker, or in memory
        # (SIGNUPFLOW_TABLE_STORE); either way the changelog topics are the truth.
        store=table_store(s),
        datadir=str(s.data_dir / f"faust-{service}"),
        tabledir=str(table_dir(s, service)),
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        # on_first_start creates every topic (or, without the right to, checks it): Faust
        # declaring one itself would need the CREATE permission least privilege withholds.
        topic_allow_declare=False,
        # Warm copies of each table partition on other workers, for a quick failover.
        table_standby_replicas=s.table_standby_replicas,
        producer_acks=-1,
        # Not exactly_once: it lost table updates and crashed on a broker restart here
        # (docs/decisions/exactly-once-rejected.md).
        processing_guarantee="at_least_once",
        producer_linger_ms=5,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=max(s.session_timeout / 5, 0.5),
        broker_commit_interval=1.0,
        # A broker that restarts after a crash can answer the group's join before its topics'
        # metadata is back: Faust's assignor then ignores them ("Ignoring missing topic") and
        # hands out no partitions. The consumer re-joins once fresh metadata shows the topics;
        # by default that refresh comes only after 5 minutes of stalled partitions.
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        web_enabled=True,
        web_bind=s.web_host,
        # The canonical URL other workers use (table routes, the batch list): a bind address
        # such as 0.0.0.0 reaches no other host.
        web_host=s.web_advertised_host,
        web_port=s.web_ports[service],
        web_in_thread=False,
        web_application_options={"middlewares": [
            name_the_process, *middlewares, web_auth.middleware(s.web_token)]},
        autodiscover=False,
        origin="signupflow",
        Worker=Worker,
        TableManager=TableManager,
    )
    app.signupflow_topics = list(topics or [])
    app.signupflow_settings = s
    app.signupflow_kafka = kafka
    app.batch_writers = set()
    app.ready_checks = [broker_check(s.bootstrap_servers, Outage(f"{service}: broker",
                                                                 down="unreachable"))]
    app.metric_refreshers = []
    app.liveness = liveness.Liveness(s.wedged_after)
    app.worker_tasks = []
    app.worker_task(partial(liveness.watch, app, service, _stop_self))
    register_probes(app)
    tracing.setup(service)

    async def flush_traces(_app: Any, *_: Any, signal: Any, **__: Any) -> None:
        tracing.shutdown()

    app.on_before_shutdown.connect(flush_traces, weak=False)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(freeze_heap, weak=False)
    return app


async def freeze_heap(*_: Any, **__: Any) -> None:
    """After a rebalance, collect once and freeze what is left: Python's full collections then
    skip the objects that live as long as the worker (Faust's, the tables', the modules').

    Otherwise each full collection scanned all of them: 50 to 150 ms pauses of the member
    worker at 500 events/s (2026-11-28, 2 vCPUs, under load), each holding up every event in
    flight, about 1.5% of them: the p99 latency. What was frozen before is thawed and
    collected again first, so garbage cycles among it are not kept for ever.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
