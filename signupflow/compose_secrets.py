"""The secrets of the docker-compose deployment, made once by its ``secrets`` job.

``signupflow secrets DIR --host kafka-1 ...`` writes one folder per consumer of secrets, so that
each container mounts only its own (least privilege between containers too):

* ``kafka/``: what the brokers read (the apache/kafka image looks in ``/etc/kafka/secrets``):
  the nodes' PKCS#12 keystore and its password, the CA, the JAAS file with every SASL/PLAIN
  user (Kafka reads users from it, no format-time step), the admin client settings of the
  healthcheck. Owned by the image's user.
* ``auth/``, ``member/``, ``batch/``: the CA, that service's Kafka password, the web token;
* ``ops/``: the CA and the admin, operator and reader passwords (the topics job, the CLI).

PLAIN over TLS is what managed Kafka offers as API keys; the local cluster (``broker start
--secure``) runs SCRAM instead. An existing secret is kept: running the job again changes
nothing, and a restarted cluster keeps its users.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from signupflow.local_security import (
    BROKER_USER,
    make_certificates,
    private_dir,
    user_of,
    write_private,
)
from signupflow.settings import SERVICES, Principal

#: Where the containers find their folder.
KAFKA_SECRETS = "/etc/kafka/secrets"
SERVICE_SECRETS = "/run/secrets/signupflow"
KEYSTORE, KEYSTORE_PASSWORD, CA, JAAS = "node.p12", "keystore-password", "ca.pem", "jaas.conf"
ADMIN_CLIENT = "admin-client.properties"
OPS: tuple[Principal, ...] = ("admin", "operator", "reader")
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


def password_file(principal: Principal) -> str:
    return f"{principal}.password"


def write(out: Path, hosts: Sequence[str], kafka_uid: int | None = None) -> list[Path]:
    """Make what is missing under ``out`` (the brokers' folder owned by ``kafka_uid``, when
    given); returns the files made."""
    made: list[Path] = []

    def keep(path: Path, content: str | bytes) -> bytes:
        """``path``'s content, written (private to its owner) if missing."""
        if not path.exists():
            for folder in reversed([path.parent, *path.parent.parents]):
                if folder == out or out in folder.parents:
                    private_dir(folder)
            write_private(path, content if isinstance(content, bytes) else content.encode())
            made.append(path)
        return path.read_bytes()

    def new() -> str:
        return secrets.token_urlsafe(24)

    users = (BROKER_USER, *(user_of(p) for p in (*SERVICES, *OPS)))
    secret = {u: keep(out / "passwords" / u, new()).decode() for u in users}
    token = keep(out / "web-token", new())
    keystore_password = keep(out / KEYSTORE_PASSWORD, new()).decode()
    kafka = out / "kafka"
    if not ((out / CA).exists() and (kafka / KEYSTORE).exists()):  # a new pair, both at once
        certificates = make_certificates([*hosts, "localhost"])
        for path in (out / CA, kafka / KEYSTORE, kafka / CA):
            path.unlink(missing_ok=True)
        keep(out / CA, certificates.ca_pem())
        keep(kafka / KEYSTORE, certificates.node_pkcs12(keystore_password))
    ca = (out / CA).read_bytes()
    keep(kafka / KEYSTORE_PASSWORD, keystore_password)
    keep(kafka / CA, ca)
    plain_users = " ".join(f'user_{name}="{pw}"' for name, pw in sorted(secret.items()))
    keep(kafka / JAAS, f'KafkaServer {{\n  {PLAIN}\n  username="{BROKER_USER}" '
                       f'password="{secret[BROKER_USER]}"\n  {plain_users};\n}};\n')
    admin = user_of("admin")
    keep(kafka / ADMIN_CLIENT, "\n".join([
        "security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
        f'sasl.jaas.config={PLAIN} username="{admin}" password="{secret[admin]}";',
        "ssl.truststore.type=PEM", f"ssl.truststore.location={KAFKA_SECRETS}/{CA}", ""]))
    if kafka_uid is not None:
        for path in (kafka, *kafka.iterdir()):
            os.chown(path, kafka_uid, kafka_uid)
    for service in SERVICES:
        keep(out / service / CA, ca)
        keep(out / service / password_file(service), secret[user_of(service)])
        keep(out / service / "web-token", token)
    for principal in OPS:
        keep(out / "ops" / CA, ca)
        keep(out / "ops" / password_file(principal), secret[user_of(principal)])
    return made
