"""Unit tests for fake signups (signupflow.domain.fake) and settings (signupflow.settings)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from signupflow.domain.fake import fake_signups
from signupflow.domain.signup import validate_signup
from signupflow.domain.styles import STYLES
from signupflow.settings import load_settings

TODAY = date(2024, 6, 15)


@pytest.fixture(scope="module")
def signups() -> list[dict[str, Any]]:
    return fake_signups(300, 0.3, seed=1)


# --- fake signups ------------------------------------------------------------------------------


def test_fake_signups_count(signups: list[dict[str, Any]]) -> None:
    assert len(signups) == 300


def test_every_fake_signup_is_valid(signups: list[dict[str, Any]]) -> None:
    for body in signups:
        signup = validate_signup(body, today=TODAY)
        assert signup.email == body["email"]
        assert signup.favorite_styles == body["favorite_styles"]


def test_fake_emails_are_unique(signups: list[dict[str, Any]]) -> None:
    emails = [body["email"] for body in signups]

    assert len(set(emails)) == len(emails)


def test_same_seed_gives_same_data(signups: list[dict[str, Any]]) -> None:
    assert fake_signups(300, 0.3, seed=1) == signups


def test_other_seed_gives_other_data(signups: list[dict[str, Any]]) -> None:
    assert fake_signups(300, 0.3, seed=2) != signups


def test_run_tag_makes_emails_unique_across_runs() -> None:
    first = {body["email"] for body in fake_signups(20, 0.3, seed=1, run="a")}
    second = {body["email"] for body in fake_signups(20, 0.3, seed=1, run="b")}

    assert first.isdisjoint(second)
    assert all(".a." in email for email in first)


def test_partner_share_is_close_to_the_ratio(signups: list[dict[str, Any]]) -> None:
    partners = sum(body["role"] == "PARTNER" for body in signups)

    assert 0.2 <= partners / len(signups) <= 0.4
    assert {body["role"] for body in signups} == {"USER", "PARTNER"}


@pytest.mark.parametrize(("ratio", "role"), [(0.0, "USER"), (1.0, "PARTNER")])
def test_extreme_partner_ratios(ratio: float, role: str) -> None:
    roles = {body["role"] for body in fake_signups(200, ratio, seed=7)}

    assert roles == {role}


def test_each_fake_signup_has_one_to_three_distinct_known_styles(
    signups: list[dict[str, Any]],
) -> None:
    for body in signups:
        styles = body["favorite_styles"]
        assert 1 <= len(styles) <= 3
        assert len(set(styles)) == len(styles)
        assert set(styles) <= set(STYLES)
    assert {len(body["favorite_styles"]) for body in signups} == {1, 2, 3}


# --- settings ----------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)})

    assert settings.data_dir == tmp_path.resolve()
    assert dict(settings.web_ports) == {"auth": 6066, "member": 6067, "batch": 6068}
    assert settings.partitions == 4
    assert settings.broker_port == 9092
    assert settings.kafka_broker == "kafka://127.0.0.1:9092"
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.scrypt_n == 2**14
    assert settings.max_event_bytes == 64 * 1024
    assert settings.session_timeout == 10.0
    assert settings.web_host == "127.0.0.1"
    assert settings.web_advertised_host == "127.0.0.1"
    assert settings.log_level == "info"
    assert settings.broker_home == tmp_path.resolve() / "broker"
    for service in ("auth", "member", "batch"):
        expected = f"sqlite+aiosqlite:///{tmp_path.resolve() / f'{service}.db'}"
        assert settings.database_url(service) == expected
    assert settings.web_url("member") == "http://127.0.0.1:6067"
    assert settings.replication_factor is None  # worked out from the cluster
    assert settings.min_insync_replicas is None
    assert settings.outbox_retention == 7 * 86400
    assert settings.dlq_retention == 30 * 86400


def test_empty_env_uses_var_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings({})

    assert settings.data_dir == (tmp_path / "var").resolve()
    assert settings.database_url("batch").endswith("/var/batch.db")


def test_empty_strings_mean_default() -> None:
    settings = load_settings({"SIGNUPFLOW_PARTITIONS": "", "SIGNUPFLOW_KAFKA_BROKER": ""})

    assert settings.partitions == 4
    assert settings.kafka_broker == "kafka://127.0.0.1:9092"


def test_kafka_broker_derived_from_broker_port() -> None:
    settings = load_settings({"SIGNUPFLOW_BROKER_PORT": "19092"})

    assert settings.broker_port == 19092
    assert settings.kafka_broker == "kafka://127.0.0.1:19092"
    assert settings.bootstrap_servers == "127.0.0.1:19092"


def test_member_database_url_override(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://u:p@db:5432/member"

    settings = load_settings(
        {"SIGNUPFLOW_DATA_DIR": str(tmp_path), "SIGNUPFLOW_MEMBER_DATABASE_URL": url}
    )

    assert settings.database_url("member") == url
    assert settings.database_url("auth").endswith("/auth.db")
    assert settings.database_url("batch").endswith("/batch.db")


@pytest.mark.parametrize(
    ("broker", "bootstrap"),
    [
        ("kafka://broker.example:29092", "broker.example:29092"),
        ("broker.example:29092", "broker.example:29092"),
        ("kafka://k1:9092;kafka://k2:9093", "k1:9092,k2:9093"),
    ],
)
def test_kafka_broker_override(broker: str, bootstrap: str) -> None:
    settings = load_settings({"SIGNUPFLOW_KAFKA_BROKER": broker, "SIGNUPFLOW_BROKER_PORT": "1"})

    assert settings.kafka_broker == broker
    assert settings.bootstrap_servers == bootstrap


def test_advertised_web_host_defaults_to_the_bind_address() -> None:
    bound = load_settings({"SIGNUPFLOW_WEB_HOST": "0.0.0.0"})
    named = load_settings({"SIGNUPFLOW_WEB_HOST": "0.0.0.0",
                           "SIGNUPFLOW_WEB_ADVERTISED_HOST": "batch-2"})

    assert (bound.web_host, bound.web_advertised_host) == ("0.0.0.0", "0.0.0.0")
    assert (named.web_host, named.web_advertised_host) == ("0.0.0.0", "batch-2")


def test_workers_bind_the_web_host_and_advertise_the_advertised_one(tmp_path: Path) -> None:
    from signupflow.app import create_app

    app = create_app("batch", load_settings({
        "SIGNUPFLOW_DATA_DIR": str(tmp_path), "SIGNUPFLOW_WEB_HOST": "0.0.0.0",
        "SIGNUPFLOW_WEB_ADVERTISED_HOST": "batch-2", "SIGNUPFLOW_BATCH_WEB_PORT": "6078",
        "SIGNUPFLOW_WEB_TOKEN": "a-token"}))

    assert app.conf.web_bind == "0.0.0.0"
    assert str(app.conf.canonical_url) == "http://batch-2:6078"  # what other workers call


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("3600", 3600), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("0.5d", 43200)],
)
def test_durations_take_a_unit(raw: str, seconds: float) -> None:
    settings = load_settings({"SIGNUPFLOW_OUTBOX_RETENTION": raw, "SIGNUPFLOW_DLQ_RETENTION": raw})

    assert settings.outbox_retention == seconds
    assert settings.dlq_retention == seconds


def test_service_urls_default_to_the_web_ports_and_can_be_set() -> None:
    settings = load_settings({"SIGNUPFLOW_WEB_HOST": "0.0.0.0", "SIGNUPFLOW_AUTH_WEB_PORT": "7000",
                              "SIGNUPFLOW_MEMBER_URL": "http://member-1:6067/"})

    assert settings.web_url("auth") == "http://127.0.0.1:7000"  # bound everywhere: reach it here
    assert settings.web_url("member") == "http://member-1:6067"
    assert settings.web_url("batch") == "http://127.0.0.1:6068"


def test_replication_overrides() -> None:
    settings = load_settings({"SIGNUPFLOW_REPLICATION_FACTOR": "3",
                              "SIGNUPFLOW_MIN_INSYNC_REPLICAS": "2"})

    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)


def test_numeric_overrides() -> None:
    settings = load_settings({
        "SIGNUPFLOW_PARTITIONS": "12",
        "SIGNUPFLOW_AUTH_WEB_PORT": "7000",
        "SIGNUPFLOW_SCRYPT_N": "4096",
        "SIGNUPFLOW_SESSION_TIMEOUT": "2.5",
        "SIGNUPFLOW_MAX_EVENT_BYTES": "1024",
    })

    assert settings.partitions == 12
    assert dict(settings.web_ports) == {"auth": 7000, "member": 6067, "batch": 6068}
    assert settings.scrypt_n == 4096
    assert settings.session_timeout == 2.5
    assert settings.max_event_bytes == 1024


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SIGNUPFLOW_PARTITIONS", "abc", "SIGNUPFLOW_PARTITIONS must be an integer, got 'abc'"),
        ("SIGNUPFLOW_PARTITIONS", "0", "SIGNUPFLOW_PARTITIONS must be at least 1, got 0"),
        ("SIGNUPFLOW_PARTITIONS", "-2", "SIGNUPFLOW_PARTITIONS must be at least 1, got -2"),
        (
            "SIGNUPFLOW_SCRYPT_N",
            "1000",
            "SIGNUPFLOW_SCRYPT_N must be a power of two >= 4096, got 1000",
        ),
        (
            "SIGNUPFLOW_SCRYPT_N",
            "1024",
            "SIGNUPFLOW_SCRYPT_N must be a power of two >= 4096, got 1024",
        ),
        (
            "SIGNUPFLOW_SCRYPT_N",
            "20000",
            "SIGNUPFLOW_SCRYPT_N must be a power of two >= 4096, got 20000",
        ),
        ("SIGNUPFLOW_BROKER_PORT", "9092x", "SIGNUPFLOW_BROKER_PORT must be an integer"),
        ("SIGNUPFLOW_SESSION_TIMEOUT", "soon", "SIGNUPFLOW_SESSION_TIMEOUT must be a number"),
        ("SIGNUPFLOW_REPLICATION_FACTOR", "0",
         "SIGNUPFLOW_REPLICATION_FACTOR must be at least 1, got 0"),
        ("SIGNUPFLOW_MIN_INSYNC_REPLICAS", "two",
         "SIGNUPFLOW_MIN_INSYNC_REPLICAS must be an integer, got 'two'"),
        ("SIGNUPFLOW_OUTBOX_RETENTION", "7w", "SIGNUPFLOW_OUTBOX_RETENTION must be a duration"),
        ("SIGNUPFLOW_DLQ_RETENTION", "0d", "SIGNUPFLOW_DLQ_RETENTION must be above 0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_settings({name: value})

    assert str(info.value).startswith(message)
    assert name in str(info.value)


async def test_a_worker_freezes_its_heap_after_each_rebalance(tmp_path: Path) -> None:
    """Full collections then skip the long-lived objects (the pauses that made the p99)."""
    import gc

    from signupflow.app import create_app

    app = create_app("member", load_settings({"SIGNUPFLOW_DATA_DIR": str(tmp_path)}))
    gc.unfreeze()
    try:
        await app.on_rebalance_complete.send()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
