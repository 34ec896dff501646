"""The local cluster's security (``signupflow broker start --secure``): TLS and SCRAM users.

It runs the way managed Kafka services do, so that the tests exercise that: clients connect
with ``SASL_SSL`` and SCRAM-SHA-512, each signupflow principal as its own user whose rights are
the ACLs of :mod:`signupflow.acls` (Kafka's StandardAuthorizer, nothing allowed without a
grant); the nodes talk to each other over TLS too (the controllers require the brokers'
certificate). Everything lives in the broker home, private to its owner (files 0600):

* ``tls/``: a throwaway CA (made here, valid a year) and the nodes' key and certificate
  (PEM, for 127.0.0.1 and localhost);
* ``credentials/<user>.password``: a random password per user;
* ``client.env``: the client settings of every principal (user names and password *files*),
  which :func:`signupflow.settings.load_settings` reads when no security protocol is set.

No password is ever on a command line: the SCRAM users are created when the storage is
formatted, from a Java argument file that is deleted right after.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signupflow.kafka_client import ClientSecurity, KafkaAccess, Mechanism, Secret
from signupflow.settings import LOCAL_CLIENT_ENV, PREFIX, PRINCIPALS, Principal, Settings

MECHANISM: Mechanism = "SCRAM-SHA-512"
BROKER_USER = "signupflow-broker"
ADMIN_USER = "signupflow-admin"  # user_of("admin")
#: The subject of the nodes' certificate: the principal the controllers see for a broker.
NODE_SUBJECT = "CN=signupflow-broker"
CERT_DAYS = 365


def user_of(principal: Principal) -> str:
    return f"signupflow-{principal}"


#: The inter-broker user, then one per principal (the admin among them: ADMIN_USER).
USERS = (BROKER_USER, *(user_of(p) for p in PRINCIPALS))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@dataclass(frozen=True)
class LocalSecurity:
    """The files of a secured local cluster, in its broker home."""

    home: Path

    @property
    def tls(self) -> Path:
        return self.home / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def node_keystore(self) -> Path:
        """The nodes' private key, certificate and CA in one PEM file (Kafka's PEM keystore)."""
        return self.tls / "node.pem"

    def password_file(self, user: str) -> Path:
        return self.home / "credentials" / f"{user}.password"

    def password(self, user: str) -> Secret:
        return Secret(self.password_file(user).read_text(encoding="utf-8"))

    @property
    def enabled(self) -> bool:
        """Whether the cluster in this home was set up secured."""
        return (self.home / LOCAL_CLIENT_ENV).exists()

    def prepare(self) -> None:
        """Make what is missing: CA and node certificate, passwords, ``client.env``
        (idempotent: a cluster keeps its users and certificates across restarts)."""
        private_dir(self.home)
        private_dir(self.tls)
        if not self.node_keystore.exists():
            made = make_certificates(["127.0.0.1", "localhost"])
            write_private(self.ca_file, made.ca_pem())
            write_private(self.node_keystore, made.node_pem())
        private_dir(self.home / "credentials")
        for user in USERS:
            if not self.password_file(user).exists():
                write_private(self.password_file(user), secrets.token_urlsafe(24).encode())
        write_private(self.home / LOCAL_CLIENT_ENV, self.client_env().encode())

    def client_env(self) -> str:
        """The settings of every principal, as ``SIGNUPFLOW_*`` variables (no password)."""
        lines = ["# written by `signupflow broker start --secure`: the local cluster's users",
                 f"{PREFIX}KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                 f"{PREFIX}KAFKA_SASL_MECHANISM={MECHANISM}",
                 f"{PREFIX}KAFKA_CA_FILE={self.ca_file}"]
        for p in PRINCIPALS:
            lines += [f"{PREFIX}KAFKA_{p.upper()}_USERNAME={user_of(p)}",
                      f"{PREFIX}KAFKA_{p.upper()}_PASSWORD_FILE={self.password_file(user_of(p))}"]
        return "\n".join(lines) + "\n"

    def access(self, bootstrap: str, user: str) -> KafkaAccess:
        """How ``user`` connects to this cluster (the admin, for ACLs)."""
        return KafkaAccess(bootstrap, ClientSecurity(
            "SASL_SSL", MECHANISM, user, self.password(user), self.ca_file))

    def server_config(self, port: int, controller_port: int) -> dict[str, str]:
        """The node settings that secure it (they replace the PLAINTEXT listeners)."""
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        broker_password = self.password(BROKER_USER).reveal()
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config":
                f'{jaas} username="{BROKER_USER}" password="{broker_password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.node_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{BROKER_USER};User:{NODE_SUBJECT};User:{ADMIN_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every user (for an argument file:
        they hold the passwords)."""
        return [f"--add-scram={MECHANISM}=[name={user},password={self.password(user).reveal()}]"
                for user in USERS]

    def principals(self) -> Mapping[Principal, str]:
        """Each principal's Kafka name, for the ACLs."""
        return {p: f"User:{user_of(p)}" for p in PRINCIPALS}


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a node certificate it signed, for server and client authentication."""

    ca: x509.Certificate
    node_key: ec.EllipticCurvePrivateKey
    node: x509.Certificate

    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    def node_pem(self) -> bytes:
        """Kafka's PEM keystore: the key (PKCS#8), the certificate, the CA."""
        key = self.node_key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        return key + self.node.public_bytes(serialization.Encoding.PEM) + self.ca_pem()

    def node_pkcs12(self, password: str) -> bytes:
        """The same as a PKCS#12 keystore (what the apache/kafka image's settings take), in the
        classic encryption every Java reads."""
        encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                      .kdf_rounds(50_000)
                      .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                      .hmac_hash(hashes.SHA1()).build(password.encode()))
        return pkcs12.serialize_key_and_certificates(b"node", self.node_key, self.node,
                                                     [self.ca], encryption)


def make_certificates(hosts: Iterable[str], days: int = CERT_DAYS) -> Certificates:
    """A new CA and a node certificate signed by it, valid for ``hosts`` (names or IP
    addresses), for server and client authentication."""
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
                ) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder("signupflow local CA", name("signupflow local CA"), ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    node_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    node = (builder(NODE_SUBJECT.removeprefix("CN="), ca.subject, node_key)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Certificates(ca, node_key, node)


async def grant_acls(local: LocalSecurity, bootstrap: str, settings: Settings) -> int:
    """Grant every principal its ACLs on the local cluster, as its admin (idempotent)."""
    from signupflow.acls import apply, plan

    return await apply(local.access(bootstrap, ADMIN_USER), plan(settings, local.principals()))
