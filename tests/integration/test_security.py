"""A secured 3-node cluster (``broker start --secure``): SASL_SSL with SCRAM, one principal per
process, ACLs granting each exactly what it uses, protected web views.

What the broker allows and refuses is checked with an independent client (librdkafka, through
confluent-kafka), each principal with its own credentials. The whole flow runs on it, faults
included, and no credential shows anywhere a person or another process could read it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from signupflow.kafka_client import ClientSecurity, KafkaAccess, Secret
from signupflow.local_security import LocalSecurity
from signupflow.settings import PRINCIPALS, Principal, load_settings
from signupflow.topics import PARTNER_CREATED, PROFILE_INSERT, all_topics, service_uses
from tests.integration.browser import dump_dom
from tests.integration.system import System, finish

WEB_TOKEN = "web-token-for-the-secured-system"
LOAD = 600


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    system = System(tmp_path_factory.mktemp("secured"), nodes=3, secure=True)
    try:
        system.start_broker()
        system.env["SIGNUPFLOW_WEB_TOKEN"] = WEB_TOKEN
        system.start()
        yield system
    finally:
        system.shutdown()


def librdkafka(system: System, principal: Principal | None, **extra: str) -> dict[str, str]:
    """An independent client's settings as ``principal`` (None: its password is wrong)."""
    access = system.access(principal or "reader")
    if principal is None:
        security = access.security
        access = KafkaAccess(access.bootstrap, ClientSecurity(
            security.protocol, security.mechanism, security.username, Secret("wrong"),
            security.ca_file))
    return access.librdkafka(**extra)


def secrets(system: System) -> dict[str, str]:
    """Every credential of the secured system: the users' passwords and the web token."""
    folder = system.broker_home / "credentials"
    return {**{f.stem: f.read_text() for f in folder.iterdir()}, "web token": WEB_TOKEN}


def produce_as(system: System, principal: Principal, topic: str, value: bytes) -> KafkaError:
    """Produce one record as ``principal``; the delivery error (None if it was written)."""
    errors: list[KafkaError] = []
    producer = Producer(librdkafka(system, principal, **{"message.timeout.ms": "10000"}))
    producer.produce(topic, value, key=b"forged",
                     on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(20)
    assert len(errors) == 1
    return errors[0]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_the_whole_flow_runs_secured_and_verify_is_clean(secured: System) -> None:
    load = secured.signup(200, seed=71)
    assert finish(load) == 200
    secured.assert_exactly(200, seed=71)
    # the workers connected as themselves (the broker's authorizer decided, not a default)
    assert load_settings(secured.env).kafka("member").security.protocol == "SASL_SSL"


def test_the_cli_works_in_the_same_shell_with_no_extra_settings(secured: System) -> None:
    """After `up --secure` a user has only the data folder and ports: the verbs find the local
    cluster's users themselves."""
    plain = {k: v for k, v in secured.env.items() if not k.startswith("SIGNUPFLOW_KAFKA_")}
    uuid = secured.query("member", "SELECT uuid FROM partner_profile LIMIT 1")[0][0]
    for args in (["verify"], ["trace", uuid], ["dlq", "show", PROFILE_INSERT],
                 ["dlq", "replay", PARTNER_CREATED], ["tables"], ["broker", "status"],
                 ["topics"]):
        result = subprocess.run([sys.executable, "-m", "signupflow.cli", *args], env=plain,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (args, result.stdout, result.stderr)


def test_an_anonymous_client_cannot_connect(secured: System) -> None:
    bootstrap = {"bootstrap.servers": secured.bootstrap}
    ca = str(LocalSecurity(secured.broker_home).ca_file)
    for config in ({"security.protocol": "PLAINTEXT"},
                   {"security.protocol": "SSL", "ssl.ca.location": ca},
                   {"security.protocol": "SASL_SSL", "ssl.ca.location": ca,
                    "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "nobody",
                    "sasl.password": "guess"}):
        with pytest.raises(KafkaException):
            AdminClient({**bootstrap, **config}).list_topics(timeout=8)
    with pytest.raises(KafkaException):  # a real user with a wrong password
        AdminClient(librdkafka(secured, None)).list_topics(timeout=8)
    # and the same client with the right password sees the topics
    assert PROFILE_INSERT in AdminClient(librdkafka(secured, "reader")).list_topics(
        timeout=20).topics


def test_member_cannot_forge_a_signup(secured: System) -> None:
    before = secured.profiles()
    forged = json.dumps({"uuid": "7d3a6c52-6c0b-4b8e-9d2f-1b2c3d4e5f60", "role": "PARTNER",
                         "nickname": "forged", "favorite_styles": [1],
                         "occurred_at": "2026-12-07T00:00:00+00:00"}).encode()

    error = produce_as(secured, "member", PROFILE_INSERT, forged)

    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # auth's own principal may write it (the grant exists, it is member's that is refused)
    assert secured.profiles() == before
    assert "forged" not in secured.log("member").read_text()


def test_batch_cannot_read_profile_insert(secured: System) -> None:
    consumer = Consumer(librdkafka(secured, "batch", **{
        "group.id": service_uses(load_settings(secured.env))["batch"].group,
        "enable.auto.commit": "false"}))
    read: list[bytes] = []
    try:
        consumer.subscribe([PROFILE_INSERT])
        for _ in range(30):  # the refusal comes as an error event, after the group's join
            message = consumer.poll(1)
            if message is not None and message.error() is not None:
                break
            if message is not None:
                read.append(message.value())
    finally:
        consumer.close()
    assert read == []
    assert message is not None and message.error() is not None
    assert message.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, message.error()


@pytest.mark.parametrize("principal", ["reader", "batch"])
def test_a_principal_cannot_produce_where_it_is_not_granted(secured: System,
                                                             principal: Principal) -> None:
    granted = {t for use in [service_uses(load_settings(secured.env)).get(principal)]
               if use for t in use.writes}
    refused = [t for t in (*all_topics(), *changelogs(secured)) if t not in granted]
    assert refused
    for topic in refused:
        error = produce_as(secured, principal, topic, b"x")
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic


def changelogs(system: System) -> list[str]:
    uses = service_uses(load_settings(system.env))
    return sorted({t for use in uses.values() for t in use.writes if t.endswith("-changelog")})


def test_the_views_need_the_web_token_and_the_probes_do_not(secured: System) -> None:
    for service in ("auth", "member", "batch"):
        assert get(secured.url(service) + "/health")[0] == 200
        assert get(secured.url(service) + "/ready")[0] == 200
        assert get(secured.url(service) + "/metrics")[0] == 401
        assert get(secured.url(service) + "/metrics", WEB_TOKEN)[0] == 200
    status, body = get(secured.url("batch") + "/partners/", WEB_TOKEN)
    assert status == 200 and json.loads(body)["count"] > 0
    assert get(secured.url("batch") + "/console/data")[0] == 401
    status, body = get(secured.url("batch") + "/console/data", WEB_TOKEN)
    assert status == 200 and all(s["ready"] for s in json.loads(body)["stages"].values())


def test_the_console_reads_with_the_token_and_says_so_without_it(secured: System) -> None:
    """In headless Chromium: given the token (``#token=``, kept for the tab), the console reads
    every stage; without it, it asks for it (its form shown) instead of breaking."""
    url = secured.url("batch") + "/console"
    budget = "--virtual-time-budget=8000"
    with_token = dump_dom(f"{url}#token={WEB_TOKEN}", secured.root / "chromium-1", 60, budget)
    without = dump_dom(url, secured.root / "chromium-2", 60, budget)

    def updated(dom: str) -> str:
        return re.search(r'<p id="updated">(.*?)</p>', dom, re.S).group(1)  # type: ignore[union-attr]

    assert updated(with_token).startswith("updated"), updated(with_token)
    assert with_token.count('<section class="stage ') == 3
    # no read of the console refused (401) where it tells what went wrong; not the whole page:
    # a uuid in the partner table may well hold "401"
    errors = re.findall(r'class="reasons"[^>]*>([^<]*)<', with_token)
    assert len(errors) == 5 and not [e for e in errors if "401" in e], errors
    assert '<form id="token-form" hidden="">' in with_token
    assert WEB_TOKEN not in with_token  # not in the page, not left in its address
    assert updated(without).startswith("the web token is missing or wrong"), updated(without)
    assert '<form id="token-form">' in without  # asked for: the form is shown


def test_kill_9_of_a_worker_and_of_a_broker_under_load_loses_nothing(secured: System) -> None:
    start = secured.profiles()
    load = secured.signup(LOAD, seed=72)
    secured.wait_until(lambda: secured.profiles() >= start + 100, 180, "member under load")
    secured.kill("member")
    secured.start("member")
    secured.wait_until(lambda: secured.profiles() >= start + 250, 180, "member back")
    node = secured.leader(PROFILE_INSERT, 1)
    secured.stop_node(node, kill=True)
    secured.wait_until(lambda: secured.profiles() >= start + 400, 180,
                       f"progress while node {node} is down")
    secured.start_nodes()
    assert finish(load) == LOAD
    secured.wait_until(lambda: secured.profiles() == start + LOAD, 180, "every profile")
    secured.assert_consistent()
    secured.wait_in_sync()


def test_each_worker_process_holds_only_its_own_credentials(secured: System) -> None:
    for service, proc in secured.procs.items():
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
        names = {item.split("=", 1)[0] for item in environ.split("\0") if "=" in item}
        others = {n for n in names if n.startswith("SIGNUPFLOW_KAFKA_")
                  and n.split("_")[2].lower() in PRINCIPALS and n.split("_")[2].lower() != service}
        assert not others, (service, others)
        assert f"SIGNUPFLOW_KAFKA_{service.upper()}_USERNAME" in names


def test_no_credential_shows_in_logs_ps_views_or_errors(secured: System) -> None:
    """Last: the logs then hold a whole secured run, faults included."""
    hidden = secrets(secured)
    places: dict[str, str] = {
        **{f"log {p}": p.read_text(errors="replace")
           for p in [*secured.root.rglob("*.log")]},
        "ps": subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                             text=True).stdout,
    }
    for service in ("auth", "member", "batch"):
        places[f"{service} /metrics"] = get(secured.url(service) + "/metrics", WEB_TOKEN)[1]
    places["console data"] = get(secured.url("batch") + "/console/data", WEB_TOKEN)[1]
    places["console page"] = get(secured.url("batch") + "/console")[1]
    places.update(failures(secured))
    for place, text in places.items():
        for name, secret in hidden.items():
            assert secret not in text, f"the {name} credential shows in {place}"


def failures(system: System) -> dict[str, str]:
    """What the CLI prints when its credentials are wrong (it must exit non-zero)."""
    wrong = {**system.env, "SIGNUPFLOW_KAFKA_READER_PASSWORD_FILE": "",
             "SIGNUPFLOW_KAFKA_READER_PASSWORD": "not-the-password",
             "SIGNUPFLOW_KAFKA_OPERATOR_PASSWORD_FILE": "",
             "SIGNUPFLOW_KAFKA_OPERATOR_PASSWORD": "not-the-password"}
    uuid = system.query("member", "SELECT uuid FROM user_profile LIMIT 1")[0][0]
    shown = {}
    for args in (["dlq", "show", PROFILE_INSERT], ["trace", uuid], ["topics"]):
        result = subprocess.run([sys.executable, "-m", "signupflow.cli", *args], env=wrong,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, (args, result.stdout)
        shown[f"`{' '.join(args)}` with a wrong password"] = result.stdout + result.stderr
    return shown
