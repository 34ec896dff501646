"""All settings in one place, read from the environment (prefix ``SIGNUPFLOW_``).

Every process (workers, CLI, tests) calls :func:`get_settings`; tests and the CLI change behaviour
only through environment variables, so a worker started as a subprocess sees the same values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar, get_args

Service = Literal["auth", "member", "batch"]
SERVICES: tuple[Service, ...] = get_args(Service)
PREFIX = "SIGNUPFLOW_"


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], what: str) -> N:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be {what}, got {raw!r}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, "a number")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(PREFIX + name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{PREFIX}{name} must be on or off, got {raw!r}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds, from a number of seconds or a number with a unit: ``90s``, ``15m``, ``12h``,
    ``7d``."""
    raw = (env.get(PREFIX + name) or "").strip().lower()
    if raw == "":
        return default
    unit = _UNITS.get(raw[-1])
    try:
        value = float(raw[:-1] if unit else raw) * (unit or 1)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be a duration such as 3600, 90s, 15m, 12h or "
                         f"7d, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{PREFIX}{name} must be above 0, got {raw!r}")
    return value


def _optional_count(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of at least 1, or None when unset (the default is worked out later)."""
    if not env.get(PREFIX + name):
        return None
    value = _int(env, name, 0)
    if value < 1:
        raise ValueError(f"{PREFIX}{name} must be at least 1, got {value}")
    return value


def _reachable(host: str) -> str:
    """A host to connect to for one bound to ``host`` (every address: this machine's)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; see README "Settings" for each variable."""

    data_dir: Path
    broker_home: Path
    broker_port: int
    kafka_broker: str
    database_urls: Mapping[str, str]
    web_host: str
    #: the host name other workers reach this one's web views at (Faust's canonical URL)
    web_advertised_host: str
    #: base URL of each service's web port, for the CLI and the console
    service_urls: Mapping[str, str]
    web_ports: Mapping[str, int]
    partitions: int
    session_timeout: float
    shutdown_timeout: float
    scrypt_n: int
    max_event_bytes: int
    log_level: str
    app_ids: Mapping[str, str]
    outbox_relay: bool
    #: None: min(3, the brokers the cluster reports), worked out by topics.TopicPolicy.resolve
    replication_factor: int | None
    #: None: replication factor - 1, at least 1
    min_insync_replicas: int | None
    #: seconds a published outbox row is kept before the relay deletes it
    outbox_retention: float
    #: seconds a dead letter is kept on its topic
    dlq_retention: float
    #: seconds a worker may be kept from being ready by reasons of its own before it exits
    wedged_after: float

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]`` for plain Kafka clients (aiokafka, kcat)."""
        return ",".join(u.split("://", 1)[-1] for u in self.kafka_broker.split(";"))

    def database_url(self, service: str) -> str:
        return self.database_urls[service]

    def web_url(self, service: str) -> str:
        """Where the CLI and the console reach ``service``'s web port."""
        return self.service_urls[service]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get(PREFIX + "DATA_DIR") or "var").resolve()
    broker_port = _int(env, "BROKER_PORT", 9092)
    kafka_broker = env.get(PREFIX + "KAFKA_BROKER") or f"kafka://127.0.0.1:{broker_port}"
    db_urls: dict[str, str] = {
        s: env.get(f"{PREFIX}{s.upper()}_DATABASE_URL") or _sqlite_url(data_dir / f"{s}.db")
        for s in SERVICES
    }
    defaults = {"auth": 6066, "member": 6067, "batch": 6068}
    ports = {s: _int(env, f"{s.upper()}_WEB_PORT", p) for s, p in defaults.items()}
    web_host = env.get(PREFIX + "WEB_HOST") or "127.0.0.1"
    partitions = _int(env, "PARTITIONS", 4)
    if partitions < 1:
        raise ValueError(f"{PREFIX}PARTITIONS must be at least 1, got {partitions}")
    scrypt_n = _int(env, "SCRYPT_N", 2**14)
    if scrypt_n < 2**12 or scrypt_n & (scrypt_n - 1):
        raise ValueError(f"{PREFIX}SCRYPT_N must be a power of two >= 4096, got {scrypt_n}")
    shutdown_timeout = _float(env, "SHUTDOWN_TIMEOUT", 15.0)
    if shutdown_timeout <= 0:
        raise ValueError(f"{PREFIX}SHUTDOWN_TIMEOUT must be above 0, got {shutdown_timeout}")
    return Settings(
        data_dir=data_dir,
        broker_home=Path(env.get(PREFIX + "BROKER_HOME") or data_dir / "broker").resolve(),
        broker_port=broker_port,
        kafka_broker=kafka_broker,
        database_urls=db_urls,
        web_host=web_host,
        web_advertised_host=env.get(PREFIX + "WEB_ADVERTISED_HOST") or web_host,
        service_urls={s: (env.get(f"{PREFIX}{s.upper()}_URL") or
                          f"http://{_reachable(web_host)}:{p}").rstrip("/")
                      for s, p in ports.items()},
        web_ports=ports,
        partitions=partitions,
        session_timeout=_float(env, "SESSION_TIMEOUT", 10.0),
        shutdown_timeout=shutdown_timeout,
        scrypt_n=scrypt_n,
        max_event_bytes=_int(env, "MAX_EVENT_BYTES", 64 * 1024),
        log_level=env.get(PREFIX + "LOG_LEVEL") or "info",
        app_ids={s: env.get(f"{PREFIX}{s.upper()}_APP_ID") or f"signupflow-{s}" for s in SERVICES},
        outbox_relay=_flag(env, "OUTBOX_RELAY", True),
        replication_factor=_optional_count(env, "REPLICATION_FACTOR"),
        min_insync_replicas=_optional_count(env, "MIN_INSYNC_REPLICAS"),
        outbox_retention=_duration(env, "OUTBOX_RETENTION", 7 * 86400),
        dlq_retention=_duration(env, "DLQ_RETENTION", 30 * 86400),
        wedged_after=_duration(env, "WEDGED_AFTER", 180),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
