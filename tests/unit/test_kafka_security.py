"""Kafka security settings: one principal per process, secrets from files, never shown."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from signupflow.kafka_client import ClientSecurity, KafkaAccess, Secret
from signupflow.local_security import LocalSecurity, make_certificates
from signupflow.settings import PRINCIPALS, load_settings
from signupflow.supervisor import worker_env

PASSWORD = "s3cret-Pa55word"


def sasl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"SIGNUPFLOW_DATA_DIR": str(tmp_path), "SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "SIGNUPFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}
    for p in PRINCIPALS:
        env[f"SIGNUPFLOW_KAFKA_{p.upper()}_USERNAME"] = f"user-{p}"
        env[f"SIGNUPFLOW_KAFKA_{p.upper()}_PASSWORD"] = f"{PASSWORD}-{p}"
    return {**env, **extra}


def test_plaintext_by_default(tmp_path: Path) -> None:
    access = load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)}).kafka("member")

    assert access.security == ClientSecurity()
    assert access.options() == {"bootstrap_servers": "127.0.0.1:9092",
                                "security_protocol": "PLAINTEXT"}
    assert access.security.faust() is None


def test_each_principal_connects_as_itself(tmp_path: Path) -> None:
    settings = load_settings(sasl_env(tmp_path))

    for p in PRINCIPALS:
        options = settings.kafka(p).options()
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-256"
        assert options["sasl_plain_username"] == f"user-{p}"
        assert options["sasl_plain_password"] == f"{PASSWORD}-{p}"
        assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_password_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "member.password"
    secret.write_text("from-a-file\n")
    env = sasl_env(tmp_path, SIGNUPFLOW_KAFKA_MEMBER_PASSWORD_FILE=str(secret))
    del env["SIGNUPFLOW_KAFKA_MEMBER_PASSWORD"]

    security = load_settings(env).kafka("member").security

    assert security.password == Secret("from-a-file")


def test_a_password_and_its_file_together_are_refused(tmp_path: Path) -> None:
    env = sasl_env(tmp_path, SIGNUPFLOW_KAFKA_MEMBER_PASSWORD_FILE=str(tmp_path / "x"))

    with pytest.raises(ValueError, match="KAFKA_MEMBER_PASSWORD or "):
        load_settings(env)


def test_an_unreadable_secret_file_is_named_without_its_content(tmp_path: Path) -> None:
    env = sasl_env(tmp_path, SIGNUPFLOW_KAFKA_AUTH_PASSWORD_FILE=str(tmp_path / "missing"))
    del env["SIGNUPFLOW_KAFKA_AUTH_PASSWORD"]

    with pytest.raises(ValueError, match=r"KAFKA_AUTH_PASSWORD_FILE: cannot read .*missing"):
        load_settings(env)


def test_sasl_without_credentials_names_the_variables_and_the_principal(tmp_path: Path) -> None:
    env = sasl_env(tmp_path)
    del env["SIGNUPFLOW_KAFKA_READER_PASSWORD"]
    settings = load_settings(env)

    settings.kafka("member")  # others are not affected
    with pytest.raises(ValueError, match=r"KAFKA_READER_USERNAME and .*KAFKA_READER_PASSWORD .*"
                                         r"'reader' principal"):
        settings.kafka("reader")


@pytest.mark.parametrize(("name", "value"), [
    ("KAFKA_SECURITY_PROTOCOL", "TLS"), ("KAFKA_SASL_MECHANISM", "GSSAPI")])
def test_unknown_protocols_and_mechanisms_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"SIGNUPFLOW_{name} must be one of"):
        load_settings({f"SIGNUPFLOW_{name}": value})


def test_a_client_certificate_per_principal_or_for_all(tmp_path: Path) -> None:
    settings = load_settings({
        "SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL": "SSL", "SIGNUPFLOW_KAFKA_CA_FILE": "/ca.pem",
        "SIGNUPFLOW_KAFKA_CERT_FILE": "/all.pem", "SIGNUPFLOW_KAFKA_KEY_FILE": "/all.key",
        "SIGNUPFLOW_KAFKA_BATCH_CERT_FILE": "/batch.pem",
        "SIGNUPFLOW_KAFKA_BATCH_KEY_FILE": "/batch.key"})

    assert settings.kafka("member").security.cert_file == Path("/all.pem")
    batch = settings.kafka("batch").security
    assert (batch.cert_file, batch.key_file) == (Path("/batch.pem"), Path("/batch.key"))
    assert batch.librdkafka() == {"security.protocol": "SSL", "ssl.ca.location": "/ca.pem",
                                  "ssl.certificate.location": "/batch.pem",
                                  "ssl.key.location": "/batch.key"}
    with pytest.raises(ValueError, match=r"TLS CA file /ca\.pem does not exist"):
        batch.ssl_context()


def test_a_secret_never_shows_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(sasl_env(tmp_path, SIGNUPFLOW_WEB_TOKEN="web-token-value"))
    security = settings.kafka("auth").security
    logging.getLogger("test").warning("settings %r %s %s", settings, security,
                                      security.faust())

    shown = caplog.text + repr(settings) + str(settings) + f"{security}"
    assert PASSWORD not in shown and "web-token-value" not in shown
    assert "user-auth" in shown  # the rest is there


def test_the_local_secure_cluster_settings_apply_to_loopback_brokers_only(
        tmp_path: Path) -> None:
    home = tmp_path / "broker"
    local = LocalSecurity(home)
    local.prepare()
    base = {"SIGNUPFLOW_DATA_DIR": str(tmp_path)}

    member = load_settings(base).kafka("member").security
    assert (member.protocol, member.username) == ("SASL_SSL", "signupflow-member")
    assert member.password == local.password("signupflow-member")
    assert member.ca_file == local.ca_file
    # another cluster named explicitly: its own settings, not the local ones
    remote = load_settings({**base, "SIGNUPFLOW_KAFKA_BROKER": "kafka.example:9093"})
    assert remote.kafka("member").security == ClientSecurity()
    explicit = load_settings({**base, "SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert explicit.kafka("member").security == ClientSecurity()


def test_the_local_cluster_files_are_private_and_hold_no_password_in_client_env(
        tmp_path: Path) -> None:
    local = LocalSecurity(tmp_path / "broker")
    local.prepare()
    before = {p: p.read_bytes() for p in local.home.rglob("*") if p.is_file()}
    local.prepare()  # idempotent: the same users, the same certificates

    assert {p: p.read_bytes() for p in local.home.rglob("*") if p.is_file()} == before
    for path in local.home.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path
    client_env = (local.home / "client.env").read_text()
    for user_file in (local.home / "credentials").iterdir():
        assert user_file.read_text() not in client_env
    assert len({f.read_text() for f in (local.home / "credentials").iterdir()}) == 7


def test_the_node_certificate_is_signed_by_the_ca_for_loopback(tmp_path: Path) -> None:
    made = make_certificates(["127.0.0.1", "localhost", "kafka-1"])
    (tmp_path / "ca.pem").write_bytes(made.ca_pem())
    (tmp_path / "node.pem").write_bytes(made.node_pem())
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "node.pem")

    for host in ("127.0.0.1", "localhost", "kafka-1"):
        assert handshake(client, server, host)
    assert not handshake(client, server, "kafka-2")


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> bool:
    """A TLS handshake in memory: does ``client`` accept ``server`` as ``host``?"""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=host)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", c), ("server", s)):
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if all(done.values()):
            return True
    return False


def test_a_worker_gets_only_its_own_credentials() -> None:
    env = {"SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PATH": "/bin",
           **{f"SIGNUPFLOW_KAFKA_{p.upper()}_{k}": "x" for p in PRINCIPALS
              for k in ("USERNAME", "PASSWORD_FILE")}}

    kept = worker_env("member", env)

    assert set(kept) == {"SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL", "PATH",
                         "SIGNUPFLOW_KAFKA_MEMBER_USERNAME",
                         "SIGNUPFLOW_KAFKA_MEMBER_PASSWORD_FILE"}


def test_an_access_describes_itself_without_its_password() -> None:
    access = KafkaAccess("k:9093", ClientSecurity("SASL_SSL", "PLAIN", "bob", Secret("pw-x")))

    assert access.describe() == "k:9093 (SASL_SSL, User:bob)"
    assert "pw-x" not in repr(access)
