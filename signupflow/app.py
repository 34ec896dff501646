"""One faust.App per service: three consumer groups, three microservices, one codebase."""

from __future__ import annotations

import faust

from signupflow.settings import Settings, get_settings


def create_app(service: str, settings: Settings | None = None) -> faust.App:
    """The Faust app of ``service`` (auth, member or batch) with the project's settings.

    The app id (``signupflow-<service>`` unless ``SIGNUPFLOW_<SERVICE>_APP_ID`` says otherwise)
    is the Kafka consumer group and the prefix of its internal topics, so each service consumes
    every event once, independently of the others.
    """
    s = settings or get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        s.app_ids[service],
        broker=s.kafka_broker,
        # Tables live in memory and are rebuilt from their changelog topic at start-up.
        store="memory://",
        datadir=str(s.data_dir / f"faust-{service}"),
        topic_partitions=s.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=max(s.session_timeout / 5, 0.5),
        broker_commit_interval=1.0,
        web_enabled=True,
        web_bind=s.web_host,
        web_host=s.web_host,
        web_port=s.web_ports[service],
        web_in_thread=False,
        autodiscover=False,
        origin="signupflow",
    )
