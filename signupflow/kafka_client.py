"""How every Kafka client of this project connects (address, TLS, SASL) and produces.

One :class:`KafkaAccess` names a cluster and the principal a process connects as; every client
here (Faust workers, outbox relay, dead-letter replay, CLI, admin, tests) is built from one, so
a setting such as ``SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL`` reaches all of them at once.

``acks=all`` waits for every in-sync replica and idempotence stops a retried send from writing
a duplicate; a short linger batches the sends of one burst. The outbox relay, dead-letter
replay, the benchmark and the tests all produce this way (the workers' own Faust producer is
configured alike in :func:`signupflow.app.create_app`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

DURABLE = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
MECHANISMS: tuple[Mechanism, ...] = get_args(Mechanism)


class Secret:
    """A credential that never shows itself: ``repr``, ``str`` and f-strings print ``***``, so
    one logged by accident (in a settings object, an exception, a Faust banner) leaks nothing.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one call that hands it to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ClientSecurity:
    """How one principal authenticates to the cluster and how the connection is encrypted.

    ``PLAINTEXT`` (the default, for the local broker on loopback) needs nothing else. ``SSL``
    and ``SASL_SSL`` verify the brokers against ``ca_file`` (the system's trust store when
    None) and may present a client certificate; ``SASL_*`` log in as ``username``.
    """

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def principal(self) -> str:
        """Who the cluster sees (for messages): the SASL user, the certificate, or nobody."""
        if self.sasl:
            return f"User:{self.username}"
        if self.cert_file:
            return f"the certificate {self.cert_file}"
        return "ANONYMOUS"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a TLS protocol (None otherwise): brokers verified against the CA
        with their host names checked; the client certificate, if any, presented."""
        if not self.tls:
            return None
        from aiokafka.helpers import create_ssl_context

        for name, path in (("CA", self.ca_file), ("certificate", self.cert_file),
                           ("key", self.key_file)):
            if path is not None and not path.is_file():
                raise ValueError(f"Kafka TLS {name} file {path} does not exist")
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None)
        return context

    def aiokafka(self, context: ssl.SSLContext | None = None) -> dict[str, Any]:
        """The keyword arguments of an aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = context or self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password.reveal() if self.password else None)
        return options

    def librdkafka(self) -> dict[str, str]:
        """The same for librdkafka clients (confluent-kafka: the benchmark's peers, tests)."""
        config: dict[str, str] = {"security.protocol": self.protocol}
        if self.sasl:
            config.update({"sasl.mechanisms": self.mechanism, "sasl.username": self.username or "",
                           "sasl.password": self.password.reveal() if self.password else ""})
        for key, path in (("ssl.ca.location", self.ca_file),
                          ("ssl.certificate.location", self.cert_file),
                          ("ssl.key.location", self.key_file)):
            if self.tls and path is not None:
                config[key] = str(path)
        return config

    def faust(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust
        from faust.types.auth import AuthProtocol

        if self.sasl:
            credentials = faust.SASLCredentials(
                username=self.username, ssl_context=self.ssl_context(), mechanism=self.mechanism,
                password=self.password.reveal() if self.password else None)
            credentials.protocol = AuthProtocol(self.protocol)  # SASL_SSL iff a TLS context
            return credentials
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


PLAINTEXT = ClientSecurity()


@dataclass(frozen=True)
class KafkaAccess:
    """A cluster (``host:port,...``) and how one principal connects to it."""

    bootstrap: str
    security: ClientSecurity = PLAINTEXT

    @cached_property
    def _context(self) -> ssl.SSLContext | None:
        return self.security.ssl_context()

    def options(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client for this access, with ``extra``."""
        return {"bootstrap_servers": self.bootstrap,
                **self.security.aiokafka(self._context), **extra}

    def librdkafka(self, **extra: str) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka(), **extra}

    def describe(self) -> str:
        """Where and as whom, for messages (never a credential)."""
        return f"{self.bootstrap} ({self.security.protocol}, {self.security.principal})"


def durable_producer(kafka: KafkaAccess, **options: Any) -> AIOKafkaProducer:
    """An (unstarted) producer with :data:`DURABLE` settings; ``options`` add to them."""
    return AIOKafkaProducer(**kafka.options(**{**DURABLE, **options}))


def consumer(kafka: KafkaAccess, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An (unstarted) consumer of ``topics`` (none: assigned later) for this access."""
    return AIOKafkaConsumer(*topics, **kafka.options(**options))


def admin(kafka: KafkaAccess, **options: Any) -> Any:
    """An (unstarted) aiokafka admin client for this access."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**kafka.options(**options))
