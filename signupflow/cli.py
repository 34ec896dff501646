"""The ``signupflow`` command line: run the system, feed it signups, look at its state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import click

from signupflow import broker as local_broker
from signupflow.cluster_health import DEFAULT_WAIT
from signupflow.settings import SERVICES, Settings, get_settings
from signupflow.topics import ensure_every_topic

if TYPE_CHECKING:
    from signupflow.client import LifeTally, SignupOutcome


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """signupflow: signups flow auth -> member -> batch over Apache Kafka (Faust)."""


# --- broker ---------------------------------------------------------------------------------

@main.group()
def broker() -> None:
    """The local Apache Kafka cluster: one node, or --nodes N (no Docker needed)."""


def start_broker_with_topics(port: int, nodes: int,
                             secure: bool | None = None) -> local_broker.BrokerStatus:
    """Start the local cluster (idempotent), grant the ACLs of a secured one (as its admin)
    and create the topics (as the operator), or exit with the reason."""
    from signupflow.local_security import LocalSecurity, grant_acls

    s = get_settings()
    try:
        status = local_broker.start(s.broker_home, port, nodes, secure=secure)
        local = LocalSecurity(status.home)
        if local.enabled:
            asyncio.run(grant_acls(local, status.bootstrap, s))
        asyncio.run(ensure_every_topic(status.access("operator"), s))
    except (local_broker.BrokerError, RuntimeError, ValueError) as exc:
        fail(str(exc))
    click.echo(f"broker {status.describe()}")
    if local.enabled:
        click.echo(f"secured: SASL_SSL (SCRAM-SHA-512), ACLs per principal; clients' settings "
                   f"in {status.home / 'client.env'}")
    return status


NODES = click.option("--nodes", type=click.IntRange(1, 9), default=None,
                     help="Kafka nodes (brokers + controllers) of the local cluster; default: "
                          "as the broker home was started before, else 1.")
SECURE = click.option("--secure/--no-secure", default=None,
                      help="TLS, SCRAM users and ACLs, as managed Kafka runs (default: as the "
                           "broker home was started before, else --no-secure).")


def nodes_or_default(nodes: int | None) -> int:
    home = get_settings().broker_home
    return nodes or (local_broker.node_count(home) if home.exists() else 1)


@broker.command("start")
@click.option("--port", type=int, default=None,
              help="First node's port on 127.0.0.1 (default SIGNUPFLOW_BROKER_PORT or 9092; "
                   "0 = any free).")
@NODES
@SECURE
def broker_start(port: int | None, nodes: int | None, secure: bool | None) -> None:
    """Fetch Kafka (first time), start the cluster, create the topics. Safe to run twice;
    starts nodes that died again."""
    start_broker_with_topics(get_settings().broker_port if port is None else port,
                             nodes_or_default(nodes), secure)


@broker.command("stop")
def broker_stop() -> None:
    """Stop every node of the local cluster by PID."""
    stopped = local_broker.stop(get_settings().broker_home)
    click.echo("broker stopped" if stopped else "broker was not running")


@broker.command("status")
@click.option("--wait", type=click.FloatRange(0), is_flag=False, flag_value=DEFAULT_WAIT,
              default=None, metavar="[SECONDS]",
              help=f"Wait until every node is up and nothing is under-replicated (at most "
                   f"SECONDS, default {DEFAULT_WAIT:.0f}): the step between two brokers of a "
                   "rolling upgrade.")
def broker_status(wait: float | None) -> None:
    """Each node, each topic partition's leader and in-sync replicas, and a summary. Exits 1
    unless every node runs and no partition is under-replicated or without a leader."""
    from signupflow import cluster_health

    home = get_settings().broker_home
    health = (cluster_health.check(home) if wait is None else
              cluster_health.wait_healthy(partial(cluster_health.check, home), wait))
    click.echo(f"broker {health.status.describe()}")
    if health.partitions:
        click.echo("topic partition: leader, replicas, in-sync replicas (node ids)")
    for r in health.partitions:
        lagging = "" if set(r.isr) == set(r.replicas) else "  UNDER-REPLICATED"
        click.echo(f"  {r.topic}[{r.partition}]: leader {r.leader}, replicas "
                   f"{_ids(r.replicas)}, isr {_ids(r.isr)}{lagging}")
    click.echo(health.summary())
    sys.exit(0 if health.healthy else 1)


def _ids(ids: tuple[int, ...]) -> str:
    return ",".join(map(str, ids)) or "-"


@main.command()
def topics() -> None:
    """Create the topics on SIGNUPFLOW_KAFKA_BROKER (any cluster, not only the local one),
    replicated as SIGNUPFLOW_REPLICATION_FACTOR / _MIN_INSYNC_REPLICAS say; refuse topics
    with another partition count or fewer replicas."""
    s = get_settings()
    try:
        kafka = s.kafka("operator")
        states = asyncio.run(ensure_every_topic(kafka, s))
    except Exception as exc:
        fail(f"topics on {s.bootstrap_servers}: {exc}")
    click.echo("topics ready: name, partitions, replicas, min.insync.replicas")
    for t in states:
        click.echo(f"  {t.name}: {t.partitions}, {t.replicas}, {t.min_insync_replicas}")


@main.command()
@click.option("--principal", "-p", "names", multiple=True, metavar="ROLE=PRINCIPAL",
              help="Kafka's name of a role, e.g. member=User:CN=member.example (default: "
                   "User:$SIGNUPFLOW_KAFKA_<ROLE>_USERNAME, else User:signupflow-<role>).")
@click.option("--command-config", default="admin.properties", show_default=True,
              help="The admin client properties kafka-acls.sh is given.")
@click.option("--apply", "apply_them", is_flag=True,
              help="Create them on SIGNUPFLOW_KAFKA_BROKER as the admin role instead "
                   "(SIGNUPFLOW_KAFKA_ADMIN_*; idempotent).")
def acls(names: tuple[str, ...], command_config: str, apply_them: bool) -> None:
    """Print the ACLs of least privilege as kafka-acls.sh commands, for a cluster of your own
    (`broker start --secure` applies them to the local one), or apply them."""
    from signupflow.acls import apply, plan
    from signupflow.settings import PRINCIPALS, Principal

    s = get_settings()
    principals = {p: f"User:{s.kafka_security.clients[p].username or f'signupflow-{p}'}"
                  for p in PRINCIPALS}
    for given in names:
        role, _, name = given.partition("=")
        if role not in principals or not name:
            fail(f"--principal {given!r}: expected ROLE=PRINCIPAL, ROLE one of "
                 f"{', '.join(PRINCIPALS)}")
        principals[cast(Principal, role)] = name
    grants = plan(s, principals)
    if apply_them:
        try:
            count = asyncio.run(apply(s.kafka("admin"), grants))
        except Exception as exc:
            fail(f"applying the ACLs on {s.bootstrap_servers}: {exc}")
        click.echo(f"{count} ACLs in place on {s.bootstrap_servers}")
        return
    for acl in grants:
        click.echo(acl.kafka_acls(command_config))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", "hosts", multiple=True, required=True,
              help="A Kafka node's host name (its certificate's names), once per node.")
@click.option("--kafka-uid", type=int, default=None,
              help="Owner of the brokers' folder (the apache/kafka image runs as 1000).")
def secrets(directory: Path, hosts: tuple[str, ...], kafka_uid: int | None) -> None:
    """Make the docker-compose deployment's secrets under DIRECTORY, a folder per container
    (TLS, Kafka users, web token); what exists is kept. Prints no secret."""
    from signupflow.compose_secrets import write

    made = write(directory, hosts, kafka_uid)
    click.echo(f"{len(made)} secret file(s) made under {directory}" if made
               else f"every secret under {directory} exists already")


# --- databases ------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Each service's database schema: Alembic migrations (signupflow/migrations)."""


SERVICE_ARGS = click.argument("services", nargs=-1, type=click.Choice(SERVICES))


def upgrade_databases(s: Settings, services: tuple[str, ...] = ()) -> None:
    """Bring the databases of ``services`` (default: all) to the head revision, saying what
    was done; exit with the reason if one cannot be."""
    from signupflow.migrations import upgrade

    for service in services or SERVICES:
        try:
            done = asyncio.run(upgrade(s.database_url(service), service))
        except Exception as exc:
            fail(f"upgrading the {service} database: {exc}")
        click.echo(f"database {done.describe()}")


@db.command("upgrade")
@SERVICE_ARGS
def db_upgrade(services: tuple[str, ...]) -> None:
    """Upgrade the databases of SERVICES (default: auth, member and batch) to the revision
    this code needs. Safe to run again, and from several processes at once; a database made
    by older code (tables, no alembic_version) is stamped at 0001 with its rows kept."""
    upgrade_databases(get_settings(), services)


@db.command("current")
@SERVICE_ARGS
def db_current(services: tuple[str, ...]) -> None:
    """Each database's revision and the one the code needs. Exits 1 unless all are there."""
    from signupflow.migrations import behind, current, database_label

    s = get_settings()
    lagging = False
    for service in services or SERVICES:
        url = s.database_url(service)
        try:
            found = asyncio.run(current(url))
        except Exception as exc:
            fail(f"reading the {service} database's revision: {exc}")
        problem = behind(service, database_label(url, service), found)
        lagging = lagging or problem is not None
        click.echo(f"{service}: {found} (head)" if problem is None else f"{service}: {problem}")
    sys.exit(1 if lagging else 0)


# --- workers --------------------------------------------------------------------------------

@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("-l", "--loglevel", default=None, help="Faust log level (default: settings).")
def worker(service: str, loglevel: str | None) -> None:
    """Run one service's Faust worker (same as `faust -A signupflow.streams.SERVICE worker`)."""
    from signupflow.supervisor import worker_command

    cmd = worker_command(service, loglevel or get_settings().log_level)
    os.execv(cmd[0], cmd)


@main.command()
@click.option("--detach", is_flag=True, help="Start everything and return.")
@NODES
@SECURE
def up(detach: bool, nodes: int | None, secure: bool | None) -> None:
    """Run the whole system: broker + auth, member, batch workers (with their web views).
    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop all of it, however `up` was started."""
    from signupflow.supervisor import (
        Stopped,
        signals_ignored,
        stop_on_signals,
        stop_processes,
        supervise,
    )

    s = get_settings()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    detached = False
    with stop_on_signals():
        try:
            start = start_system(s, nodes, secure, procs)
            if detach:
                click.echo(f"stop with: {own_command()} down")
                detached = True
                return
            click.echo("Ctrl-C (or SIGTERM, SIGHUP) stops the workers and the broker. Outages "
                       "and restarts show here.")
            # a worker that exits (a wedged one does) is started again
            supervise(procs, start, {n: s.data_dir / "log" / f"{n}.log" for n in SERVICES},
                      say)
        except Stopped as stop:
            say(f"{stop.signal.name}: stopping the workers, then the broker...")
        finally:
            if not detached:
                with signals_ignored():  # a second Ctrl-C must not cut the stop short
                    # a worker ends itself after SIGNUPFLOW_SHUTDOWN_TIMEOUT; then SIGKILL
                    stop_processes(procs.values(), s.shutdown_timeout + 5)
                    for service in procs:
                        (s.data_dir / f"{service}.pid").unlink(missing_ok=True)
                    local_broker.stop(s.broker_home)
                say("stopped.")


def own_command() -> str:
    """This command as a user can paste it into a shell: ``signupflow`` if that is the one on
    the PATH, else its path (``.venv/bin/signupflow`` under ``make run``)."""
    script = Path(sys.executable).with_name("signupflow")  # the console script beside us
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m signupflow.cli"
    found = shutil.which("signupflow")
    if found and Path(found).resolve() == script.resolve():
        return "signupflow"
    with contextlib.suppress(ValueError):
        return shlex.quote(str(script.relative_to(Path.cwd())))
    return shlex.quote(str(script))


def say(message: str, err: bool = False) -> None:
    """Print, if there is still somewhere to print to (after SIGHUP the terminal is gone)."""
    with contextlib.suppress(OSError):
        click.echo(message, err=err)


def start_system(s: Settings, nodes: int | None, secure: bool | None,
                 procs: dict[str, subprocess.Popen[bytes]]
                 ) -> Callable[[str], subprocess.Popen[bytes]]:
    """The databases' upgrade, the broker, then the workers (into ``procs`` as they start, so
    that whatever started is stopped if the rest fails or a stop signal comes), waiting until
    each one answers. Returns how to start one service's worker again."""
    from signupflow.settings import LOCAL_CLIENT_ENV, read_env_file
    from signupflow.supervisor import start_worker, wait_http, worker_env

    upgrade_databases(s)  # the workers only check their database's revision
    click.echo("starting the Kafka broker (the first run downloads it with Maven)...")
    cluster = start_broker_with_topics(s.broker_port, nodes_or_default(nodes), secure)
    # every node as bootstrap: a worker (re)starting while one node is down still connects;
    # on a secured cluster, each worker gets its own principal's settings and no other's
    env = {**read_env_file(cluster.home / LOCAL_CLIENT_ENV), **os.environ,
           "SIGNUPFLOW_KAFKA_BROKER": cluster.kafka_url}
    logs = s.data_dir / "log"

    def start(service: str) -> subprocess.Popen[bytes]:
        procs[service] = start_worker(service, logs / f"{service}.log",
                                      worker_env(service, env), log_level=s.log_level)
        (s.data_dir / f"{service}.pid").write_text(str(procs[service].pid))
        return procs[service]

    for service in SERVICES:
        start(service)
    try:
        for name, proc in procs.items():
            wait_http(s.web_url(name) + "/", 60, proc)
    except (RuntimeError, TimeoutError) as exc:
        fail(f"{exc}; see the logs in {logs}")
    me = own_command()
    click.echo(f"""
signupflow is up.
  console  {s.web_url('batch')}/console   (the flow at a glance, live)
  auth     POST {s.web_url('auth')}/signup
  member   {s.web_url('member')}/signups-per-minute/
  batch    {s.web_url('batch')}/partners/  and  {s.web_url('batch')}/partners.html
  logs     {logs}/  (auth.log, member.log, batch.log)
  data     {s.data_dir}  (auth.db, member.db, batch.db)

In another shell:
  {me} signup --count 20
  {me} tables
  {me} verify --settle 10
""")
    return start


@main.command()
def down() -> None:
    """Stop what `signupflow up --detach` started: the workers by PID (SIGTERM; SIGKILL if
    one is still running after its shutdown timeout), and only then the broker."""
    from signupflow.supervisor import stop_pids

    s = get_settings()
    pids: dict[str, int] = {}
    for service in SERVICES:
        pid_file = s.data_dir / f"{service}.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError):
                pids[service] = int(pid_file.read_text())
    # a worker ends itself after SIGNUPFLOW_SHUTDOWN_TIMEOUT; this is the last resort
    for name, outcome in stop_pids(pids, s.shutdown_timeout + 5).items():
        click.echo(f"{name} worker {outcome}")
        (s.data_dir / f"{name}.pid").unlink(missing_ok=True)
    click.echo("broker stopped" if local_broker.stop(s.broker_home) else "broker not running")


# --- signups and tables ---------------------------------------------------------------------

@main.command()
@click.option("--count", "-n", type=click.IntRange(1, 1_000_000), default=20, show_default=True)
@click.option("--partner-ratio", type=click.FloatRange(0, 1), default=0.3, show_default=True)
@click.option("--url", default=None, help="auth service base URL (default from settings).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--seed", type=int, default=None, help="Make the fake data reproducible.")
@click.option("--json-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Post the signups in this JSON array instead of fake ones.")
@click.option("--life", is_flag=True,
              help="Then live on: each member makes 0 to 3 profile changes and maybe "
                   "deletes its account (PATCH, DELETE /accounts/{uuid}).")
def signup(count: int, partner_ratio: float, url: str | None, concurrency: int,
           seed: int | None, json_file: Path | None, life: bool) -> None:
    """POST realistic fake signups to the auth service and print the outcome; with --life,
    a realistic mix of signups, changes and deletions."""
    from signupflow.client import post_signups
    from signupflow.domain.fake import fake_signups

    url = url or get_settings().web_url("auth")
    if json_file is not None:
        try:
            bodies = json.loads(json_file.read_text())
        except json.JSONDecodeError as exc:
            fail(f"{json_file} is not valid JSON: {exc}")
        if not isinstance(bodies, list):
            fail(f"{json_file} must hold a JSON array of signup objects")
    else:
        bodies = fake_signups(count, partner_ratio, seed)
    with progress(len(bodies), f"posting {len(bodies)} signups to {url}") as step:
        tally = asyncio.run(post_signups(url, bodies, concurrency, step))
    if tally.unreachable:
        fail(f"cannot reach the auth service at {url}: {tally.rejected[0].body['error']}")
    click.echo(tally.summary())
    refused = tally.rejected
    if life:
        lived = live_on(url, tally.accepted, concurrency, seed)
        click.echo(lived.summary())
        refused = [*refused, *lived.refused]
    for outcome in refused[:5]:
        click.echo(f"  {outcome.status}: {json.dumps(outcome.body)}", err=True)
    sys.exit(1 if refused else 0)


def live_on(url: str, accepted: list[SignupOutcome], concurrency: int,
            seed: int | None) -> LifeTally:
    """The lives of the members just signed up (``fake_life``), through the HTTP API."""
    import random

    from signupflow.client import live
    from signupflow.domain.fake import fake_life

    rng = random.Random(None if seed is None else seed + 1)
    lives = [(o.body["uuid"], o.sent["email"], o.sent["password"], fake_life(rng, i))
             for i, o in enumerate(accepted)]
    steps = sum(len(steps) for *_, steps in lives)
    click.echo(f"living on: {steps} changes and deletions of {len(lives)} members", err=True)
    return asyncio.run(live(url, lives, concurrency))


# --- accounts -------------------------------------------------------------------------------

@main.group()
def account() -> None:
    """Change or delete an account through auth's HTTP API, as its owner (email, password)."""


def owner_options(command: Callable[..., None]) -> Callable[..., None]:
    """The account and its owner's credentials, common to `account update` and `delete`."""
    for option in reversed([
        click.argument("member_uuid", metavar="UUID"),
        click.option("--email", required=True, help="The account's email."),
        click.option("--password-file", type=click.File("r"), default=None,
                     help="Read the password from this file (its first line)."),
        click.option("--password-stdin", is_flag=True,
                     help="Read the password from standard input (its first line)."),
        click.option("--url", default=None, help="auth service base URL (default from "
                                                 "settings)."),
    ]):
        command = option(command)
    return command


def password_of(password_file: TextIO | None, password_stdin: bool) -> str:
    """The password from exactly one of the two sources (never an argument: `ps` shows
    those), its first line without the line break."""
    if (password_file is None) == (not password_stdin):
        fail("give the password with exactly one of --password-file F, --password-stdin")
    source = sys.stdin if password_stdin else password_file
    assert source is not None
    password = source.readline().rstrip("\r\n")
    if not password:
        fail("the password is empty")
    return password


def account_answer(url: str, outcome: SignupOutcome) -> None:
    """Exit with the server's message unless it said yes."""
    from signupflow.client import NO_RESPONSE

    if outcome.status == NO_RESPONSE:
        fail(f"cannot reach the auth service at {url}: {outcome.body['error']}")
    if outcome.status not in (200, 204):
        fields = outcome.body.get("fields")
        detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) if isinstance(
            fields, dict) else ""
        click.secho(f"error: {outcome.status} {outcome.body.get('error', '?')}"
                    + (f" ({detail})" if detail else ""), fg="red", err=True)
        sys.exit(1)


@account.command("update")
@owner_options
@click.option("--nickname", default=None, help="The new nickname.")
@click.option("--style", "styles", type=int, multiple=True,
              help="A favorite style id, once per style: the whole new list.")
def account_update(member_uuid: str, email: str, password_file: TextIO | None,
                   password_stdin: bool, url: str | None, nickname: str | None,
                   styles: tuple[int, ...]) -> None:
    """Change UUID's public profile (PATCH /accounts/UUID); prints its new version."""
    from signupflow.client import change_account

    change: dict[str, object] = {}
    if nickname is not None:
        change["nickname"] = nickname
    if styles:
        change["favorite_styles"] = list(styles)
    if not change:
        fail("nothing to change: give --nickname and/or --style")
    password = password_of(password_file, password_stdin)
    url = url or get_settings().web_url("auth")
    outcome = asyncio.run(with_session(partial(
        change_account, base_url=url, member_uuid=member_uuid, email=email, password=password,
        change=change)))
    account_answer(url, outcome)
    click.echo(f"version {outcome.body['version']}")


@account.command("delete")
@owner_options
def account_delete(member_uuid: str, email: str, password_file: TextIO | None,
                   password_stdin: bool, url: str | None) -> None:
    """Delete UUID's account and erase its personal data (DELETE /accounts/UUID)."""
    from signupflow.client import delete_account

    password = password_of(password_file, password_stdin)
    url = url or get_settings().web_url("auth")
    outcome = asyncio.run(with_session(partial(
        delete_account, base_url=url, member_uuid=member_uuid, email=email,
        password=password)))
    account_answer(url, outcome)
    click.echo("deleted")


async def with_session(request: Callable[..., Awaitable[SignupOutcome]]) -> SignupOutcome:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        return await request(session)


@contextlib.contextmanager
def progress(total: int, doing: str) -> Iterator[Callable[[object], None]]:
    """A progress bar on a terminal; elsewhere (a log, a pipe) ``doing`` in a line of its own:
    click's bar there prints its bare label, run into whatever comes next."""
    if not sys.stderr.isatty():
        click.echo(doing, err=True)
        yield lambda _: None
        return
    with click.progressbar(length=total, label="signups", file=sys.stderr) as bar:
        yield lambda _: bar.update(1)


@main.command()
@click.option("--url", default=None, help="batch service base URL (default from settings).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Partners per page.")
@click.option("--after", default="", help="Start after this partner id (the 'next' of a page).")
@click.option("--search", default="", help="Only nicknames containing this text.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def tables(url: str | None, limit: int, after: str, search: str, as_json: bool) -> None:
    """Show the partner-summary Faust table (read through the batch web view, every worker's
    entries), one page at a time."""
    import urllib.parse

    from signupflow.web_auth import get_json

    query = urllib.parse.urlencode({"limit": limit, "after": after, "q": search})
    url = f"{(url or get_settings().web_url('batch')).rstrip('/')}/partners/?{query}"
    try:
        data = get_json(url, get_settings().web_token)
    except OSError as exc:
        fail(f"cannot read {url}: {exc}")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"partner-summary: {data['count']} partners on this page "
               f"(from {data['workers']} worker(s))")
    for row in data["partners"]:
        click.echo(f"  {row['partner_id']}  {row['nickname']:<24} styles={row['style_count']}"
                   f"  joined {row['joined_at']}")
    if data["next"]:
        click.echo(f"more: signupflow tables --after {data['next']}")


# --- dead letters and consistency ------------------------------------------------------------

@main.group()
def dlq() -> None:
    """Dead-letter topics: events a service could not use, with the reason."""


TOPIC_CHOICE = click.Choice(["profile-insert", "partner-created"])


@dlq.command("show")
@click.argument("topic", type=TOPIC_CHOICE)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
def dlq_show(topic: str, as_json: bool) -> None:
    """List the dead letters of TOPIC (oldest first per partition)."""
    from signupflow import dlq as dead_letters

    s = get_settings()
    try:
        letters = asyncio.run(dead_letters.show(s.kafka("reader"), topic))
    except Exception as exc:
        fail(f"cannot read {topic}.dlq on {s.bootstrap_servers}: {exc}")
    for partition, offset, letter in letters:
        value = (letter.value or b"")[:120].decode("utf-8", "replace")
        if as_json:
            click.echo(json.dumps({
                "partition": partition, "offset": offset, "error": letter.error,
                "source": f"{letter.source_topic}[{letter.source_partition}]"
                          f"@{letter.source_offset}",
                "stage": letter.stage, "failed_at": letter.failed_at, "value": value}))
        else:
            click.echo(f"{letter.source_topic}[{letter.source_partition}]@"
                       f"{letter.source_offset} ({letter.stage}): {letter.error}\n    {value!r}")
    if not as_json:
        click.echo(f"{len(letters)} dead letter(s) in {topic}.dlq")


@dlq.command("replay")
@click.argument("topic", type=TOPIC_CHOICE)
def dlq_replay(topic: str) -> None:
    """Re-send TOPIC's dead letters (not replayed before) to TOPIC, e.g. after a fix."""
    from signupflow import dlq as dead_letters

    s = get_settings()
    try:
        count = asyncio.run(dead_letters.replay(s.kafka("operator"), topic))
    except Exception as exc:
        fail(f"cannot replay {topic}.dlq on {s.bootstrap_servers}: {exc}")
    click.echo(f"replayed {count} dead letter(s) to {topic}")


@main.command()
@click.option("--settle", type=float, default=0.0, show_default=True,
              help="Seconds to keep re-checking while events are still in flight.")
@click.option("--no-table", is_flag=True, help="Skip the table (batch worker not running).")
def verify(settle: float, no_table: bool) -> None:
    """Reconcile auth.db, member.db, batch.db and the partner-summary table.

    Exits 1 and lists every discrepancy (with sample uuids) if they disagree; exits 2 if a
    part could not be read (the table while the batch worker is stopped, a database).
    """
    from signupflow.verify import reconcile, snapshot

    s = get_settings()
    deadline = time.monotonic() + settle
    while True:
        try:
            report = reconcile(asyncio.run(snapshot(s, with_table=not no_table)))
        except Exception as exc:  # a database that does not answer: nothing known, exit 2
            fail(f"could not check the databases: {exc}")
        done = report.ok and not report.in_flight and not report.unchecked
        if done or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    click.echo(report.render())
    sys.exit(report.status)


@main.command()
@click.argument("who")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trace(who: str, as_json: bool) -> None:
    """Follow member WHO (a uuid or an account's email) through every hop.

    Every event of the member's life in order (its signup, each change, its deletion), with
    its kind and version, and where each one is: auth's outbox, the topics, member, batch.
    Read from the databases and topics themselves (no tracing backend needed). Exits 1 if
    nothing is known about WHO.
    """
    from signupflow.trace import collect, render, resolve, timeline

    s = get_settings()
    try:
        uuid = asyncio.run(resolve(s, who))
        hops = asyncio.run(collect(s, uuid)) if uuid else []
    except Exception as exc:
        fail(f"cannot read the system's data: {exc}")
    if not hops:
        click.secho(f"unknown signup: {who}", fg="red", err=True)
        sys.exit(1)
    rows = timeline(hops)
    click.echo(json.dumps({"uuid": uuid, "hops": rows}) if as_json else render(str(uuid), rows))


@main.command()
@click.option("--signups", "-n", type=click.IntRange(100, 10_000_000), default=20_000,
              show_default=True, help="Events per throughput phase.")
@click.option("--rate", type=click.FloatRange(1, 100_000), default=500, show_default=True,
              help="Steady events/s for the latency phase.")
@click.option("--http-signups", type=click.IntRange(10, 100_000), default=300,
              show_default=True, help="Signups through POST /signup (scrypt-bound).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--flood-clients", type=click.IntRange(1, 5000), default=400, show_default=True,
              help="Clients of the flood phase, each posting signups in a loop.")
@click.option("--flood-seconds", type=click.FloatRange(1, 3600), default=30, show_default=True)
@click.option("--partitions", type=click.IntRange(1, 64), default=None,
              help="Partitions per topic (default: SIGNUPFLOW_PARTITIONS).")
@click.option("--table-entries", type=click.IntRange(1, 100_000_000), default=10_000,
              show_default=True, help="Partners in the batch table of the recovery phase.")
@click.option("--recovery-only", is_flag=True,
              help="Only the recovery phase: a batch worker restarted with its table on "
                   "disk, then in memory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(signups: int, rate: float, http_signups: int, concurrency: int, flood_clients: int,
          flood_seconds: float, partitions: int | None, table_entries: int,
          recovery_only: bool, as_json: bool) -> None:
    """Measure throughput and latency against a raw-client ceiling and a hand-written
    baseline, and a restart's recovery of the tables, on a private broker started for the
    run. SIGINT, SIGTERM and SIGHUP stop it, and the broker and workers it started."""
    from signupflow.bench import render, render_recovery, run, run_recovery
    from signupflow.supervisor import Stopped, stop_on_signals

    def progress(phase: str) -> None:
        click.echo(f"... {phase}", err=True)

    parts = partitions or get_settings().partitions
    try:
        with stop_on_signals():  # Python's default SIGTERM would orphan the broker and workers
            if recovery_only:
                results = asyncio.run(run_recovery(table_entries, parts, progress))
            else:
                results = asyncio.run(run(signups, rate, http_signups, concurrency, parts,
                                          progress, flood_clients, flood_seconds,
                                          table_entries))
    except (local_broker.BrokerError, RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    except Stopped as stop:
        click.secho(f"{stop.signal.name}: benchmark stopped, and its broker and workers",
                    fg="red", err=True)
        sys.exit(128 + stop.signal.value)
    if as_json:
        click.echo(json.dumps(results))
    else:
        click.echo(render_recovery(results) if recovery_only else render(results))


# --- event contracts ------------------------------------------------------------------------

@main.group()
def schemas() -> None:
    """Event contracts: the topics' JSON Schemas and the AsyncAPI document (README, Event
    contracts)."""


CHECK = click.option("--check", is_flag=True,
                     help="Write nothing; exit 1 if the committed files are not up to date.")


@schemas.command("export")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("schemas"), show_default=True, help="Where the schemas are kept.")
@CHECK
def schemas_export(directory: Path, check: bool) -> None:
    """Write each topic's JSON Schema, generated from the Records, to DIR/<topic>/v<N>.json.

    Refuses (exit 1, naming topic, field and rule) while today's Records break the committed
    version they keep to: a deliberate break needs a new version."""
    from signupflow.contracts import files

    if check:
        problems = [*files.gate(directory), *(f"{directory / name}: stale, run `signupflow "
                                              "schemas export`" for name in files.stale(directory))]
        _problems_or(problems, f"{directory}: up to date")
        return
    try:
        changed = files.export(directory)
    except files.ContractBroken as exc:
        _problems_or(exc.problems, "")
    click.echo("\n".join(f"wrote {directory / name}" for name in changed)
               or f"{directory}: up to date")


def _problems_or(problems: list[str], fine: str) -> None:
    """Exit 1 listing ``problems``; or say ``fine``."""
    if problems:
        click.secho("\n".join(problems), fg="red", err=True)
        sys.exit(1)
    click.echo(fine)


@schemas.command("asyncapi")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("docs/asyncapi.yaml"), show_default=True)
@CHECK
def schemas_asyncapi(output: Path, check: bool) -> None:
    """Write the AsyncAPI 3.0 document of the services, their channels and messages."""
    from signupflow.contracts.asyncapi import document, render

    text = render(document())
    if check:
        fresh = output.exists() and output.read_text(encoding="utf-8") == text
        _problems_or([] if fresh else [f"{output}: stale, run `signupflow schemas asyncapi`"],
                     f"{output}: up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
