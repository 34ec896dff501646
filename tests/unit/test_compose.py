"""docker-compose.yml (the production layout) checked against the code, without Docker.

Each check is a function that lists the problems it finds in the parsed file. The real file must
give none; a copy broken on purpose must give some (so no check passes whatever the file says).
`docker-compose config` (Compose v1, Debian's docker-compose: it needs no Docker engine) then
validates the file against Compose's schema and must read the YAML anchors as PyYAML does.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from signupflow.broker import KAFKA_VERSION
from signupflow.settings import PREFIX, SERVICES, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
INITDB = "/docker-entrypoint-initdb.d"
#: The official images the file may use (the workers are built from the Dockerfile).
OFFICIAL = {"apache/kafka", "postgres"}

Compose = dict[str, Any]
Check = Callable[[Compose], list[str]]


class Recording(Mapping[str, str]):
    """An environment that remembers every name read from it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


#: A file holding a stand-in secret: the containers' secret files exist only at run time.
_SECRET = Path(__file__).parent / "test_compose.py"


def settings_env(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment with each ``*_FILE`` pointing at a readable stand-in, so that
    ``load_settings`` can be given it on this machine."""
    return {k: str(_SECRET) if k.startswith(PREFIX) and k.endswith("_FILE") else v
            for k, v in env_of(svc).items()}


def settings_names(env: Mapping[str, str] | None = None) -> set[str]:
    """The variables load_settings reads, given ``env``."""
    recording = Recording(env)
    load_settings(recording)
    return recording.read


# --- reading the file --------------------------------------------------------------------------


@functools.cache
def _parsed() -> Compose:
    parsed: Compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return parsed


def load() -> Compose:
    """docker-compose.yml as PyYAML reads it (anchors and `<<` merges resolved); a copy."""
    return copy.deepcopy(_parsed())


def services(c: Compose) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = c["services"]
    return found


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as the container sees it (strings)."""
    env = service.get("environment") or {}
    if isinstance(env, list):  # the ["NAME=value"] form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def workers(c: Compose) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (signupflow service, compose service) of every `signupflow worker` service."""
    return {name: (svc["command"][1], svc) for name, svc in services(c).items()
            if svc.get("command", [None])[0] == "worker"}


def signupflow_processes(c: Compose) -> dict[str, dict[str, Any]]:
    """Every service that runs signupflow (the workers and the secrets, topics and migrate
    jobs)."""
    return {name: svc for name, svc in services(c).items() if "build" in svc}


def by_image(c: Compose, repository: str) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services(c).items()
            if str(svc.get("image", "")).split(":")[0] == repository}


def web_port(service: str, svc: dict[str, Any]) -> int:
    return int(env_of(svc)[f"{PREFIX}{service.upper()}_WEB_PORT"])


def published(svc: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each `ports` entry; the address is '' when
    the entry names none (then Docker publishes on every interface)."""
    found: list[tuple[str, int, int]] = []
    for entry in svc.get("ports", []):
        if isinstance(entry, dict):  # the long form
            target = int(entry["target"])
            found.append((entry.get("host_ip", ""), int(entry.get("published", target)), target))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            found.append(("", int(parts[0]), int(parts[1])))
        else:
            found.append(("", int(parts[0]), int(parts[0])))
    return found


def init_scripts(c: Compose) -> str:
    """The SQL of the postgres service's init scripts (the host folder mounted on initdb.d)."""
    text = ""
    for svc in by_image(c, "postgres").values():
        for volume in svc.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if target == INITDB:
                folder = (COMPOSE.parent / source).resolve()
                text += "".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.sql")))
    return text


def databases(sql: str) -> dict[str, tuple[str, str]]:
    """database -> (owner, owner's password), from the init scripts' CREATE statements."""
    passwords = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']*)'", sql, re.I))
    return {db: (owner, passwords.get(owner, "")) for db, owner
            in re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql, re.I)}


# --- the checks --------------------------------------------------------------------------------


def every_variable_is_a_setting(c: Compose) -> list[str]:
    """Every SIGNUPFLOW_ name in the file (and in the Dockerfile) is one settings.py reads, and
    each signupflow process's environment loads."""
    text = "".join([yaml.safe_dump(c), COMPOSE.read_text(encoding="utf-8"),
                    DOCKERFILE.read_text(encoding="utf-8")])
    known = settings_names()
    problems = [f"{name} is not a setting (signupflow/settings.py)"
                for name in sorted(set(re.findall(PREFIX + r"\w+", text)) - known)]
    for name, svc in signupflow_processes(c).items():
        env = Recording(settings_env(svc))
        try:
            load_settings(env)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        unread = {k for k in env if k.startswith(PREFIX)} - env.read
        problems += [f"{name}: {k} is not read" for k in sorted(unread)]
    return problems


def settings_fit_the_cluster(c: Compose) -> list[str]:
    """Each signupflow process bootstraps from every Kafka node (at the address it advertises)
    and asks for replication 3 and min in-sync 2; each worker binds every address, advertises
    its own service name and sets its service's web port."""
    wanted = sorted(address for svc in by_image(c, "apache/kafka").values() for address
                    in re.findall(r"://([^,]+)", env_of(svc).get("KAFKA_ADVERTISED_LISTENERS", "")))
    problems = []
    for name, svc in signupflow_processes(c).items():
        if not talks_to_kafka(c, name):
            continue
        s = load_settings(settings_env(svc))
        if sorted(s.bootstrap_servers.split(",")) != wanted:
            problems.append(f"{name}: brokers {s.bootstrap_servers}, not {wanted}")
        if (s.replication_factor, s.min_insync_replicas) != (3, 2):
            problems.append(f"{name}: replication {s.replication_factor}, "
                            f"min in-sync {s.min_insync_replicas}, not 3 and 2")
    for name, (service, svc) in workers(c).items():
        s = load_settings(settings_env(svc))
        if s.web_host != "0.0.0.0":
            problems.append(f"{name}: web host {s.web_host}: unreachable from outside")
        if s.web_advertised_host != name:
            problems.append(f"{name}: advertises {s.web_advertised_host}, not its own name")
        if f"{PREFIX}{service.upper()}_WEB_PORT" not in env_of(svc):
            problems.append(f"{name}: no {PREFIX}{service.upper()}_WEB_PORT")
    return problems


def databases_are_created(c: Compose) -> list[str]:
    """Each worker's database URL is PostgreSQL on the postgres service, a database the init
    scripts create, as its owner; no worker has another service's database."""
    created = databases(init_scripts(c))
    postgres = by_image(c, "postgres")
    problems = [] if created else ["the postgres init scripts create no database"]
    for name, (service, svc) in workers(c).items():
        env = env_of(svc)
        key = f"{PREFIX}{service.upper()}_DATABASE_URL"
        url = urllib.parse.urlsplit(env.get(key, ""))
        db = url.path.lstrip("/")
        if url.scheme != "postgresql+asyncpg" or url.hostname not in postgres:
            problems.append(f"{name}: {key} is not postgresql+asyncpg on {sorted(postgres)}")
        elif db not in created:
            problems.append(f"{name}: database {db!r} is not created by {INITDB}")
        elif (url.username, url.password) != created[db]:
            problems.append(f"{name}: logs in as {url.username}, not {db}'s owner")
        others = {f"{PREFIX}{s.upper()}_DATABASE_URL" for s in SERVICES} - {key}
        problems += [f"{name}: has {k}" for k in sorted(others & set(env))]
    return problems


def postgres_is_checked(c: Compose) -> list[str]:
    found = by_image(c, "postgres")
    problems = [] if len(found) == 1 else [f"{len(found)} postgres services, not 1"]
    for name, svc in found.items():
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        if "pg_isready" not in test:
            problems.append(f"{name}: healthcheck {test!r} is not pg_isready")
        if not any(str(v).endswith(":/var/lib/postgresql/data") for v in svc.get("volumes", [])):
            problems.append(f"{name}: no data volume")
    return problems


def kafka_is_a_cluster(c: Compose) -> list[str]:
    """Three combined nodes, distinct ids, one voters list naming them all, consistent listener
    names, replication 3 / min in-sync 2 for every topic, no auto-created topics."""
    kafka = by_image(c, "apache/kafka")
    if len(kafka) != 3:
        return [f"{len(kafka)} kafka services, not 3"]
    envs = {name: env_of(svc) for name, svc in kafka.items()}
    problems = []
    ids = {name: env.get("KAFKA_NODE_ID") for name, env in envs.items()}
    if len(set(ids.values())) != 3:
        problems.append(f"node ids not distinct: {ids}")
    voters = {name: env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "") for name, env in envs.items()}
    for name, env in envs.items():
        listeners = dict(re.findall(r"(\w+)://([^,]*)", env.get("KAFKA_LISTENERS", "")))
        controller = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
        wanted = sorted(f"{ids[n]}@{n}:{listeners.get(controller, '').rsplit(':', 1)[-1]}"
                        for n in kafka)
        if sorted(voters[name].split(",")) != wanted:
            problems.append(f"{name}: voters {voters[name]!r}, not {','.join(wanted)}")
        protocols = dict(p.split(":") for p in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                                                       "").split(",") if p)
        advertised = dict(re.findall(r"(\w+)://([^,]*)",
                                     env.get("KAFKA_ADVERTISED_LISTENERS", "")))
        inter = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "")
        for listener in {controller, inter, *advertised}:
            if listener not in listeners or listener not in protocols:
                problems.append(f"{name}: listener {listener!r} not in the listeners and map")
        if {h.split(":")[0] for h in advertised.values()} != {name}:
            problems.append(f"{name}: advertises {advertised}, not its own name")
        if "broker" not in env.get("KAFKA_PROCESS_ROLES", "") or not controller:
            problems.append(f"{name}: not a combined broker and controller")
        for setting, value in {
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
            "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
            "KAFKA_MIN_INSYNC_REPLICAS": "2",
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        }.items():
            if env.get(setting, "").lower() != value:
                problems.append(f"{name}: {setting}={env.get(setting)!r}, not {value}")
        log_dirs = env.get("KAFKA_LOG_DIRS")
        if not any(str(v).split(":")[1:2] == [log_dirs] for v in kafka[name].get("volumes", [])):
            problems.append(f"{name}: KAFKA_LOG_DIRS {log_dirs!r} is not a volume")
        if "test" not in kafka[name].get("healthcheck", {}):
            problems.append(f"{name}: no healthcheck")
    if len({env.get("CLUSTER_ID") for env in envs.values()}) != 1:
        problems.append("the nodes have different CLUSTER_IDs")
    return problems


def workers_check_readiness(c: Compose) -> list[str]:
    """Each worker's healthcheck asks GET /ready on the port its settings give it."""
    problems = []
    for name, (service, svc) in workers(c).items():
        test = " ".join(str(part) for part in svc.get("healthcheck", {}).get("test", []))
        urls = re.findall(r"https?://[^\s'\"]+", test)
        wanted = f"http://127.0.0.1:{web_port(service, svc)}/ready"
        if urls != [wanted]:
            problems.append(f"{name}: healthcheck asks {urls}, not {wanted}")
    return problems


def ports_are_local_and_unique(c: Compose) -> list[str]:
    """Published ports bind 127.0.0.1 and are unique; a worker publishes its web port as is."""
    problems = []
    seen: dict[int, str] = {}
    for name, svc in services(c).items():
        for address, host, _ in published(svc):
            if address != "127.0.0.1":
                problems.append(f"{name}: port {host} published on {address or 'every address'}")
            if host in seen:
                problems.append(f"{name}: port {host} also published by {seen[host]}")
            seen[host] = name
    for name, (service, svc) in workers(c).items():
        port = web_port(service, svc)
        if [(h, p) for _, h, p in published(svc)] != [(port, port)]:
            problems.append(f"{name}: publishes {published(svc)}, not its web port {port}")
    return problems


def images_are_official_and_pinned(c: Compose) -> list[str]:
    """Every image is an official one at a version number (Kafka's the one broker.py runs); the
    rest are built from the Dockerfile, which installs the PostgreSQL driver."""
    problems = []
    for name, svc in services(c).items():
        if "build" in svc:
            if str(svc["build"]) != ".":
                problems.append(f"{name}: built from {svc['build']}, not the Dockerfile")
            continue
        repository, _, tag = str(svc.get("image", "")).partition(":")
        if repository not in OFFICIAL:
            problems.append(f"{name}: image {repository!r} is not one of {sorted(OFFICIAL)}")
        if not re.fullmatch(r"\d+(\.\d+)+", tag):
            problems.append(f"{name}: tag {tag!r} is not a pinned version")
        if repository == "apache/kafka" and tag != KAFKA_VERSION:
            problems.append(f"{name}: Kafka {tag}, not {KAFKA_VERSION} (signupflow/broker.py)")
    if ".[postgres]" not in DOCKERFILE.read_text(encoding="utf-8"):
        problems.append("the Dockerfile does not install the postgres extra")
    return problems


def two_workers_per_service(c: Compose) -> list[str]:
    problems = []
    for service in SERVICES:
        names = sorted(n for n, (s, _) in workers(c).items() if s == service)
        if names != [f"{service}-1", f"{service}-2"]:
            problems.append(f"{service} workers: {names}, not {service}-1 and {service}-2")
    return problems


def start_order_holds(c: Compose) -> list[str]:
    """depends_on names existing services, with a condition each can meet; the topics job waits
    for every Kafka node and each worker for the topics and PostgreSQL."""
    all_services = services(c)
    problems = []
    for name, svc in all_services.items():
        needs = svc.get("depends_on", {})
        if isinstance(needs, list):
            needs = {n: {"condition": "service_started"} for n in needs}
        for other, how in needs.items():
            condition = how.get("condition", "service_started")
            if other not in all_services:
                problems.append(f"{name} depends on {other}, which is not a service")
            elif condition == "service_healthy" and "healthcheck" not in all_services[other]:
                problems.append(f"{name} waits for {other} to be healthy: it has no healthcheck")
            elif condition not in ("service_started", "service_healthy",
                                   "service_completed_successfully"):
                problems.append(f"{name}: unknown condition {condition!r}")
    topics = [n for n in all_services if "signupflow topics" in job(c, n)]
    if len(topics) != 1:
        return [*problems, f"{len(topics)} topics jobs, not 1"]
    kafka_healthy = {n: {"condition": "service_healthy"} for n in by_image(c, "apache/kafka")}
    if all_services[topics[0]].get("depends_on") != kafka_healthy:
        problems.append(f"{topics[0]} does not wait for every Kafka node to be healthy")
    secrets = [n for n in all_services if job(c, n).startswith("signupflow secrets ")]
    if len(secrets) != 1:
        return [*problems, f"{len(secrets)} secrets jobs, not 1"]
    for name in by_image(c, "apache/kafka"):
        if all_services[name].get("depends_on", {}).get(secrets[0]) != {
                "condition": "service_completed_successfully"}:
            problems.append(f"{name} does not wait for {secrets[0]} to complete")
    for name, (_, svc) in workers(c).items():
        needs = svc.get("depends_on", {})
        if needs.get(topics[0]) != {"condition": "service_completed_successfully"}:
            problems.append(f"{name} does not wait for {topics[0]} to complete")
        if not any(needs.get(p) == {"condition": "service_healthy"}
                   for p in by_image(c, "postgres")):
            problems.append(f"{name} does not wait for PostgreSQL to be healthy")
    return problems


MIGRATE = "signupflow db upgrade"


def databases_are_migrated_first(c: Compose) -> list[str]:
    """One job runs `signupflow db upgrade` once PostgreSQL is healthy, on the very databases
    the workers use (as their owners), with nothing else: no Kafka settings, no secrets; every
    worker waits for it to complete (a worker refuses a database not upgraded)."""
    jobs = [n for n in services(c) if job(c, n) == MIGRATE]
    if len(jobs) != 1:
        return [f"{len(jobs)} `{MIGRATE}` jobs, not 1"]
    name, svc = jobs[0], services(c)[jobs[0]]
    env = env_of(svc)
    problems = []
    if not any(svc.get("depends_on", {}).get(p) == {"condition": "service_healthy"}
               for p in by_image(c, "postgres")):
        problems.append(f"{name} does not wait for PostgreSQL to be healthy")
    for worker, (service, wsvc) in workers(c).items():
        key = f"{PREFIX}{service.upper()}_DATABASE_URL"
        if env.get(key) != env_of(wsvc).get(key):
            problems.append(f"{name}: {key} is not {worker}'s")
        if wsvc.get("depends_on", {}).get(name) != {
                "condition": "service_completed_successfully"}:
            problems.append(f"{worker} does not wait for {name} to complete")
    problems += [f"{name}: {k} (it talks to PostgreSQL only)" for k in sorted(env)
                 if k.startswith(f"{PREFIX}KAFKA_")]
    if svc.get("volumes"):
        problems.append(f"{name}: mounts {svc['volumes']}, needs no secret")
    return problems


def talks_to_kafka(c: Compose, name: str) -> bool:
    """Whether a signupflow service connects to Kafka (not the secrets and migrate jobs)."""
    return not job(c, name).startswith(("signupflow secrets ", MIGRATE))


def job(c: Compose, name: str) -> str:
    """What a signupflow service runs, as one command line (``signupflow ...``)."""
    svc = services(c)[name]
    if "build" not in svc:
        return ""
    entry = [str(p) for p in svc.get("entrypoint", ["signupflow"])]
    command = [str(p) for p in svc.get("command", [])]
    return " ".join(command) if entry[:2] == ["sh", "-c"] else " ".join([*entry, *command])


#: Where a signupflow container finds its secrets, and the host folder of each's.
SECRETS_MOUNT = "/run/secrets/signupflow"
SECRETS_HOST = "./var/compose-secrets"


def roles(c: Compose, name: str) -> set[str]:
    """The Kafka roles a signupflow service needs: a worker its service's; the topics job the
    admin (ACLs) and the operator (topics)."""
    if name in workers(c):
        return {workers(c)[name][0]}
    return {"admin", "operator"} if "signupflow topics" in job(c, name) else set()


def everything_is_secured(c: Compose) -> list[str]:
    """Kafka: SASL_SSL on every listener, users from a JAAS file, the StandardAuthorizer with
    nothing allowed without an ACL, the brokers' secrets mounted read-only. Each signupflow
    process: SASL_SSL against the CA, the credentials of its own roles only and only as files,
    from its own folder of secrets (read-only); the workers' views behind the web token."""
    problems = []
    kafka_secrets = f"{SECRETS_HOST}/kafka:/etc/kafka/secrets:ro"
    for name, svc in by_image(c, "apache/kafka").items():
        env = env_of(svc)
        protocols = {p.split(":")[1] for p in env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                                                      "").split(",") if ":" in p}
        if protocols != {"SASL_SSL"}:
            problems.append(f"{name}: listeners speak {sorted(protocols)}, not only SASL_SSL")
        for setting, value in {
            "KAFKA_AUTHORIZER_CLASS_NAME":
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
            "KAFKA_SUPER_USERS": "User:signupflow-broker;User:signupflow-admin",
            "KAFKA_OPTS": "-Djava.security.auth.login.config=/etc/kafka/secrets/jaas.conf",
        }.items():
            if env.get(setting) != value:
                problems.append(f"{name}: {setting}={env.get(setting)!r}, not {value!r}")
        if kafka_secrets not in svc.get("volumes", []):
            problems.append(f"{name}: does not mount {kafka_secrets}")
    for name, svc in signupflow_processes(c).items():
        env = env_of(svc)
        if job(c, name).startswith("signupflow secrets "):
            if svc.get("volumes") != [f"{SECRETS_HOST}:/out"]:
                problems.append(f"{name}: writes to {svc.get('volumes')}, not {SECRETS_HOST}")
            continue
        if not talks_to_kafka(c, name):  # migrate: checked by databases_are_migrated_first
            continue
        literal = sorted(k for k in env if k.endswith(("_PASSWORD", "_TOKEN")))
        problems += [f"{name}: {k} holds a secret in the file itself" for k in literal]
        if env.get(f"{PREFIX}KAFKA_SECURITY_PROTOCOL") != "SASL_SSL":
            problems.append(f"{name}: does not speak SASL_SSL to Kafka")
        if env.get(f"{PREFIX}KAFKA_CA_FILE") != f"{SECRETS_MOUNT}/ca.pem":
            problems.append(f"{name}: does not verify the brokers against its CA")
        given = {k.split("_")[2].lower() for k in env if k.startswith(f"{PREFIX}KAFKA_")
                 and k.endswith(("_USERNAME", "_PASSWORD_FILE"))}
        if given != roles(c, name):
            problems.append(f"{name}: Kafka credentials of {sorted(given)}, not "
                            f"{sorted(roles(c, name))}")
        folder = "ops" if name not in workers(c) else workers(c)[name][0]
        mount = f"{SECRETS_HOST}/{folder}:{SECRETS_MOUNT}:ro"
        if svc.get("volumes") != [mount]:
            problems.append(f"{name}: mounts {svc.get('volumes')}, not only {mount}")
        outside = [v for k, v in env.items() if k.endswith("_FILE")
                   and not v.startswith(SECRETS_MOUNT + "/")]
        problems += [f"{name}: a secret file outside {SECRETS_MOUNT}: {v}" for v in outside]
        if name in workers(c) and not env.get(f"{PREFIX}WEB_TOKEN_FILE"):
            problems.append(f"{name}: its views have no web token")
    return problems


CHECKS: list[Check] = [
    every_variable_is_a_setting, settings_fit_the_cluster, databases_are_created,
    postgres_is_checked, kafka_is_a_cluster, workers_check_readiness,
    ports_are_local_and_unique, images_are_official_and_pinned, two_workers_per_service,
    start_order_holds, everything_is_secured, databases_are_migrated_first,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_docker_compose_yml(check: Check) -> None:
    problems = check(load())

    assert not problems, "\n".join(problems)


# --- each check fails on a file broken on purpose ----------------------------------------------


def _env(c: Compose, service: str) -> dict[str, Any]:
    env: dict[str, Any] = services(c)[service]["environment"]
    return env


def _set(service: str, name: str, value: Any) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        _env(c, service)[name] = value
    return breaking


def _drop(service: str, *path: str) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        node = services(c)[service]
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return breaking


def _ports(service: str, ports: list[str]) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[service]["ports"] = ports
    return breaking


def _healthcheck(service: str, url: str) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[service]["healthcheck"] = {
            **services(c)[service]["healthcheck"],
            "test": ["CMD", "python", "-c", f"import urllib.request as r; r.urlopen('{url}')"]}
    return breaking


def _image(service: str, image: str) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[service]["image"] = image
    return breaking


def _remove(service: str) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        del services(c)[service]
    return breaking


def _rename(old: str, new: str) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[new] = services(c).pop(old)
    return breaking


def _depends(service: str, needs: dict[str, Any]) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[service]["depends_on"] = needs
    return breaking


def _volumes(service: str, volumes: list[str]) -> Callable[[Compose], None]:
    def breaking(c: Compose) -> None:
        services(c)[service]["volumes"] = volumes
    return breaking


PG = "postgresql+asyncpg://"
BREAKAGES: list[tuple[Check, str, Callable[[Compose], None]]] = [
    (every_variable_is_a_setting, "a misspelt setting", _set("auth-1", "SIGNUPFLOW_WEB_PROT", 1)),
    (every_variable_is_a_setting, "a value settings refuse",
     _set("topics", "SIGNUPFLOW_REPLICATION_FACTOR", 0)),
    (settings_fit_the_cluster, "one broker left out",
     _set("member-2", "SIGNUPFLOW_KAFKA_BROKER", "kafka://kafka-1:9092;kafka://kafka-2:9092")),
    (settings_fit_the_cluster, "replication 1", _set("topics", "SIGNUPFLOW_REPLICATION_FACTOR", 1)),
    (settings_fit_the_cluster, "min in-sync unset", _drop("batch-1", "environment",
                                                          "SIGNUPFLOW_MIN_INSYNC_REPLICAS")),
    (settings_fit_the_cluster, "another worker's name",
     _set("batch-2", "SIGNUPFLOW_WEB_ADVERTISED_HOST", "batch-1")),
    (settings_fit_the_cluster, "advertised host unset",
     _drop("batch-2", "environment", "SIGNUPFLOW_WEB_ADVERTISED_HOST")),
    (settings_fit_the_cluster, "bound to loopback", _set("auth-2", "SIGNUPFLOW_WEB_HOST",
                                                         "127.0.0.1")),
    (databases_are_created, "SQLite", _set("member-1", "SIGNUPFLOW_MEMBER_DATABASE_URL",
                                           "sqlite+aiosqlite:////data/member.db")),
    (databases_are_created, "a database nobody creates",
     _set("batch-1", "SIGNUPFLOW_BATCH_DATABASE_URL", f"{PG}batch:batch@postgres:5432/batches")),
    (databases_are_created, "another host",
     _set("auth-1", "SIGNUPFLOW_AUTH_DATABASE_URL", f"{PG}auth:auth@db:5432/auth")),
    (databases_are_created, "the wrong role",
     _set("auth-2", "SIGNUPFLOW_AUTH_DATABASE_URL", f"{PG}batch:batch@postgres/auth")),
    (databases_are_created, "another service's database",
     _set("auth-1", "SIGNUPFLOW_MEMBER_DATABASE_URL", f"{PG}member:member@postgres/member")),
    (databases_are_created, "no init scripts", _drop("postgres", "volumes")),
    (postgres_is_checked, "no healthcheck", _drop("postgres", "healthcheck")),
    (kafka_is_a_cluster, "two nodes", _remove("kafka-3")),
    (kafka_is_a_cluster, "a repeated node id", _set("kafka-3", "KAFKA_NODE_ID", 2)),
    (kafka_is_a_cluster, "a voter missing", _set("kafka-2", "KAFKA_CONTROLLER_QUORUM_VOTERS",
                                                 "1@kafka-1:9093,2@kafka-2:9093")),
    (kafka_is_a_cluster, "a listener name unknown",
     _set("kafka-1", "KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL")),
    (kafka_is_a_cluster, "advertising another node",
     _set("kafka-2", "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-1:9092")),
    (kafka_is_a_cluster, "offsets on one replica",
     _set("kafka-1", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", 1)),
    (kafka_is_a_cluster, "min in-sync 1", _set("kafka-3", "KAFKA_MIN_INSYNC_REPLICAS", 1)),
    (kafka_is_a_cluster, "auto-created topics", _set("kafka-1", "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
                                                     "true")),
    (kafka_is_a_cluster, "no data volume", _drop("kafka-2", "volumes")),
    (kafka_is_a_cluster, "another cluster id", _set("kafka-2", "CLUSTER_ID", "x" * 22)),
    (workers_check_readiness, "another port",
     _healthcheck("member-2", "http://127.0.0.1:6067/ready")),
    (workers_check_readiness, "not /ready",
     _healthcheck("batch-1", "http://127.0.0.1:6068/health")),
    (workers_check_readiness, "no healthcheck", _drop("auth-1", "healthcheck")),
    (ports_are_local_and_unique, "every address", _ports("auth-1", ["6066:6066"])),
    (ports_are_local_and_unique, "a port twice", _ports("kafka-1", ["127.0.0.1:6066:9092"])),
    (ports_are_local_and_unique, "not the web port", _ports("batch-2", ["127.0.0.1:6078:6068"])),
    (images_are_official_and_pinned, "latest", _image("postgres", "postgres:latest")),
    (images_are_official_and_pinned, "unofficial", _image("kafka-1", "bitnami/kafka:4.1.1")),
    (images_are_official_and_pinned, "another Kafka", _image("kafka-2", "apache/kafka:4.0.0")),
    (two_workers_per_service, "one worker", _rename("member-2", "member-extra")),
    (start_order_holds, "a missing service",
     _depends("batch-2", {"topics": {"condition": "service_completed_successfully"},
                          "postgresql": {"condition": "service_healthy"}})),
    (start_order_holds, "topics before the brokers", _depends("topics", {})),
    (start_order_holds, "healthy without a healthcheck", _drop("kafka-1", "healthcheck")),
    (start_order_holds, "a broker before its secrets", _depends("kafka-2", {})),
    (everything_is_secured, "a PLAINTEXT listener",
     _set("kafka-1", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
          "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL")),
    (everything_is_secured, "everyone allowed",
     _set("kafka-3", "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "true")),
    (everything_is_secured, "another super user",
     _set("kafka-2", "KAFKA_SUPER_USERS", "User:signupflow-broker;User:signupflow-member")),
    (everything_is_secured, "a password in the file",
     _set("member-1", "SIGNUPFLOW_KAFKA_MEMBER_PASSWORD", "hunter2")),
    (everything_is_secured, "another service's credentials",
     _set("batch-2", "SIGNUPFLOW_KAFKA_AUTH_USERNAME", "signupflow-auth")),
    (everything_is_secured, "plaintext to Kafka",
     _set("auth-1", "SIGNUPFLOW_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")),
    (everything_is_secured, "every service's secrets mounted",
     _volumes("member-2", ["./var/compose-secrets:/run/secrets/signupflow:ro"])),
    (everything_is_secured, "no web token", _drop("batch-1", "environment",
                                                  "SIGNUPFLOW_WEB_TOKEN_FILE")),
    (databases_are_migrated_first, "no migrate job", _remove("migrate")),
    (databases_are_migrated_first, "another database migrated",
     _set("migrate", "SIGNUPFLOW_MEMBER_DATABASE_URL", f"{PG}member:member@postgres/other")),
    (databases_are_migrated_first, "a worker not waiting for it",
     _depends("member-2", {"topics": {"condition": "service_completed_successfully"},
                           "postgres": {"condition": "service_healthy"}})),
    (databases_are_migrated_first, "started before PostgreSQL is healthy",
     _depends("migrate", {})),
    (databases_are_migrated_first, "Kafka settings",
     _set("migrate", "SIGNUPFLOW_KAFKA_BROKER", "kafka://kafka-1:9092")),
]


@pytest.mark.parametrize(("check", "what", "breaking"), BREAKAGES,
                         ids=[f"{c.__name__}: {what}" for c, what, _ in BREAKAGES])
def test_each_check_fails_on_a_broken_file(
    check: Check, what: str, breaking: Callable[[Compose], None],
) -> None:
    broken = load()
    breaking(broken)

    assert check(broken) != [], what


def test_every_check_is_broken_once() -> None:
    assert {check for check, _, _ in BREAKAGES} == set(CHECKS)


def test_recording_sees_every_setting() -> None:
    names = settings_names()

    assert {"SIGNUPFLOW_KAFKA_BROKER", "SIGNUPFLOW_BATCH_DATABASE_URL", "SIGNUPFLOW_WEB_HOST",
            "SIGNUPFLOW_WEB_ADVERTISED_HOST", "SIGNUPFLOW_REPLICATION_FACTOR",
            "SIGNUPFLOW_DLQ_RETENTION"} <= names
    assert "SIGNUPFLOW_WEB_PROT" not in names


# --- Compose itself ----------------------------------------------------------------------------


def test_docker_compose_config_accepts_the_file() -> None:
    """Compose's own validation (its schema, references, anchors), without a Docker engine."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make test-unit` installs it (Debian package)"
    result = subprocess.run([binary, "--file", str(COMPOSE), "--project-directory", str(ROOT),
                             "config"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    mine = load()

    assert set(services(resolved)) == set(services(mine))
    for name, svc in services(mine).items():
        assert env_of(services(resolved)[name]) == env_of(svc), name
