"""All settings in one place, read from the environment (prefix ``SIGNUPFLOW_``).

Every process (workers, CLI, tests) calls :func:`get_settings`; tests and the CLI change behaviour
only through environment variables, so a worker started as a subprocess sees the same values.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar, cast, get_args

from signupflow.kafka_client import (
    MECHANISMS,
    PROTOCOLS,
    ClientSecurity,
    KafkaAccess,
    Mechanism,
    Protocol,
    Secret,
)

Service = Literal["auth", "member", "batch"]
SERVICES: tuple[Service, ...] = get_args(Service)
#: Who connects to Kafka: each service as itself; the CLI's read-only verbs (verify, trace,
#: dlq show, broker status) as ``reader``; ``topics`` and ``dlq replay`` as ``operator``;
#: ``acls --apply`` as ``admin`` (a super user of the cluster, used for nothing else).
Principal = Literal["auth", "member", "batch", "reader", "operator", "admin"]
#: Where a worker keeps its tables: RocksDB files under the data directory (a restart reads
#: only the changelog written since), or memory (rebuilt from the whole changelog each time).
TableStore = Literal["rocksdb", "memory"]
TABLE_STORES: tuple[TableStore, ...] = get_args(TableStore)
PRINCIPALS: tuple[Principal, ...] = get_args(Principal)
PREFIX = "SIGNUPFLOW_"
#: What ``signupflow broker start --secure`` writes in the broker home: the settings of its
#: local cluster's users, read when no security protocol is set (see :func:`_local_cluster`).
LOCAL_CLIENT_ENV = "client.env"


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


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """A credential from ``SIGNUPFLOW_<name>`` or from the file ``SIGNUPFLOW_<name>_FILE``
    names (the container-secrets convention; one trailing newline is dropped). Errors name the
    variable and the file, never the value."""
    value, path = env.get(PREFIX + name), env.get(f"{PREFIX}{name}_FILE")
    if value and path:
        raise ValueError(f"set {PREFIX}{name} or {PREFIX}{name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").removesuffix("\n")
        except OSError as exc:
            raise ValueError(f"{PREFIX}{name}_FILE: cannot read {path} "
                             f"({exc.strerror or type(exc).__name__})") from None
        if not value:
            raise ValueError(f"{PREFIX}{name}_FILE: {path} is empty")
    return Secret(value) if value else None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(PREFIX + name) or default).strip().upper()
    if raw not in choices:
        raise ValueError(f"{PREFIX}{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(PREFIX + name)
    return Path(raw).expanduser().resolve() if raw else None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_cluster(env: Mapping[str, str], broker_home: Path) -> Mapping[str, str]:
    """``env`` with the local secure cluster's client settings under it, when it has no
    security protocol of its own and its brokers are this machine's: after ``signupflow up
    --secure`` the CLI's verbs work in the same shell with nothing to set. The file holds
    user names and the paths of password files, never a password."""
    if env.get(PREFIX + "KAFKA_SECURITY_PROTOCOL"):
        return env
    broker = env.get(PREFIX + "KAFKA_BROKER") or ""
    hosts = [a.split("://", 1)[-1].rpartition(":")[0] for a in broker.split(";") if a]
    if not all(_loopback(h) for h in hosts):
        return env
    local = read_env_file(broker_home / LOCAL_CLIENT_ENV)
    return {**local, **{k: v for k, v in env.items() if v}} if local else env


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of ``path`` (``#`` comments); {} if there is no such file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@dataclass(frozen=True)
class KafkaSecurity:
    """How this deployment's processes connect to Kafka, each as its own principal."""

    protocol: Protocol
    #: each principal's client settings, credentials included (read from its variables)
    clients: Mapping[Principal, ClientSecurity]

    def client(self, principal: Principal) -> ClientSecurity:
        """The client settings of ``principal``; an error naming the variables to set when a
        SASL protocol has no credentials for it."""
        client = self.clients[principal]
        if client.sasl and not (client.username and client.password):
            name = f"{PREFIX}KAFKA_{principal.upper()}"
            raise ValueError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL is {client.protocol}, but {name}_USERNAME and "
                f"{name}_PASSWORD (or {name}_PASSWORD_FILE) are not both set: this process "
                f"connects to Kafka as the {principal!r} principal")
        return client


def _kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    protocol = cast(Protocol, _choice(env, "KAFKA_SECURITY_PROTOCOL", PROTOCOLS, "PLAINTEXT"))
    mechanism = cast(Mechanism, _choice(env, "KAFKA_SASL_MECHANISM", MECHANISMS,
                                        "SCRAM-SHA-512"))
    ca_file = _path(env, "KAFKA_CA_FILE")
    clients: dict[Principal, ClientSecurity] = {}
    for principal in PRINCIPALS:
        name = f"KAFKA_{principal.upper()}"
        clients[principal] = ClientSecurity(
            protocol, mechanism, env.get(f"{PREFIX}{name}_USERNAME") or None,
            _secret(env, f"{name}_PASSWORD"), ca_file,
            _path(env, f"{name}_CERT_FILE") or _path(env, "KAFKA_CERT_FILE"),
            _path(env, f"{name}_KEY_FILE") or _path(env, "KAFKA_KEY_FILE"))
    return KafkaSecurity(protocol, clients)


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
    kafka_security: KafkaSecurity
    #: what every web view but /health and /ready asks for (None: open; only on loopback)
    web_token: Secret | None
    #: signups hashed at once (threads), and how long one may wait for its turn
    hash_concurrency: int
    signup_latency_budget: float
    #: signups per second and burst per client address (0: no limit)
    signup_rate: float
    signup_burst: int
    #: proxies whose X-Forwarded-For is believed (addresses or networks)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    #: seconds a client has to send its request body
    request_body_timeout: float
    #: the tables' store; RocksDB's block cache and memtables (MiB, each shared by a worker's
    #: tables); warm copies of each table partition kept by other workers
    table_store: TableStore = "rocksdb"
    table_cache_mb: int = 64
    table_write_buffer_mb: int = 32
    table_standby_replicas: int = 1

    def kafka(self, principal: Principal) -> KafkaAccess:
        """The cluster and how ``principal`` connects to it."""
        return KafkaAccess(self.bootstrap_servers, self.kafka_security.client(principal))

    @property
    def web_on_loopback(self) -> bool:
        return _loopback(self.web_host)

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
    broker_home = Path(env.get(PREFIX + "BROKER_HOME") or data_dir / "broker").resolve()
    env = _local_cluster(env, broker_home)
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
        broker_home=broker_home,
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
        kafka_security=_kafka_security(env),
        web_token=_secret(env, "WEB_TOKEN"),
        hash_concurrency=_at_least(env, "HASH_CONCURRENCY", os.cpu_count() or 1, 1),
        signup_latency_budget=_duration(env, "SIGNUP_LATENCY_BUDGET", 2.0),
        signup_rate=_non_negative(env, "SIGNUP_RATE", 10.0),
        signup_burst=_at_least(env, "SIGNUP_BURST", 30, 1),
        trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
        request_body_timeout=_duration(env, "REQUEST_BODY_TIMEOUT", 10.0),
        table_store=_table_store(env),
        table_cache_mb=_at_least(env, "TABLE_CACHE_MB", 64, 1),
        table_write_buffer_mb=_at_least(env, "TABLE_WRITE_BUFFER_MB", 32, 1),
        table_standby_replicas=_at_least(env, "TABLE_STANDBY_REPLICAS", 1, 0),
    )


def _table_store(env: Mapping[str, str]) -> TableStore:
    raw = (env.get(PREFIX + "TABLE_STORE") or "rocksdb").strip().lower()
    if raw not in TABLE_STORES:
        raise ValueError(f"{PREFIX}TABLE_STORE must be one of {', '.join(TABLE_STORES)}, "
                         f"got {raw!r}")
    return raw


def _at_least(env: Mapping[str, str], name: str, default: int, least: int) -> int:
    value = _int(env, name, default)
    if value < least:
        raise ValueError(f"{PREFIX}{name} must be at least {least}, got {value}")
    return value


def _non_negative(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value < 0:
        raise ValueError(f"{PREFIX}{name} must be 0 (off) or more, got {value}")
    return value


def _networks(env: Mapping[str, str], name: str
              ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or networks (``10.0.0.0/8``)."""
    nets = []
    for raw in (env.get(PREFIX + name) or "").split(","):
        if raw.strip():
            try:
                nets.append(ipaddress.ip_network(raw.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{PREFIX}{name}: {raw.strip()!r} is not an address or "
                                 "network") from None
    return tuple(nets)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
