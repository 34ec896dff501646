"""The docker-compose deployment's secrets: a folder per container, each with only its own."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from signupflow.compose_secrets import OPS, write
from signupflow.settings import SERVICES


def test_each_container_gets_only_its_own_secrets(tmp_path: Path) -> None:
    write(tmp_path, ["kafka-1", "kafka-2"])
    password = {p.name.removeprefix("signupflow-"): p.read_text()
                for p in (tmp_path / "passwords").iterdir()}

    for service in SERVICES:
        folder = tmp_path / service
        assert {f.name for f in folder.iterdir()} == {"ca.pem", f"{service}.password",
                                                      "web-token"}
        assert (folder / f"{service}.password").read_text() == password[service]
    assert {f.name for f in (tmp_path / "ops").iterdir()} == {
        "ca.pem", *(f"{p}.password" for p in OPS)}
    kafka = tmp_path / "kafka"
    jaas = (kafka / "jaas.conf").read_text()
    users = dict(re.findall(r'user_signupflow-(\w+)="([^"]+)"', jaas))
    assert users == password  # every user, the broker's own among them
    assert len(set(password.values())) == len(password)
    for path in tmp_path.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_the_keystore_opens_with_its_password_and_names_the_nodes(tmp_path: Path) -> None:
    write(tmp_path, ["kafka-1", "kafka-2", "kafka-3"])
    kafka = tmp_path / "kafka"

    key, cert, cas = pkcs12.load_key_and_certificates(
        (kafka / "node.p12").read_bytes(), (kafka / "keystore-password").read_bytes())

    assert key is not None and cert is not None
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"kafka-1", "kafka-2", "kafka-3",
                                                            "localhost"}
    assert [c.subject for c in cas] == [cert.issuer]
    assert (kafka / "ca.pem").read_bytes() == (tmp_path / "member" / "ca.pem").read_bytes()
    admin = (kafka / "admin-client.properties").read_text()
    assert (tmp_path / "ops" / "admin.password").read_text() in admin


def test_running_it_again_keeps_every_secret(tmp_path: Path) -> None:
    made = write(tmp_path, ["kafka-1"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    again = write(tmp_path, ["kafka-1"])

    assert made and again == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
