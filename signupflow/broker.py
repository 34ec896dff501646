"""A local Apache Kafka cluster (KRaft; one node by default), fetched with Maven, run with Java.

Used by ``signupflow broker start|stop|status``, ``signupflow up`` and the test suite, so that
nothing needs Docker. The jars are cached under ``~/.cache/signupflow`` (``SIGNUPFLOW_CACHE``);
the cluster's state lives in one folder, the *broker home*: node 1's config, data, log, pid and
port in the folder itself, node N's in ``node-N``. Each node is a combined broker and
controller JVM; everything binds to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

from signupflow.kafka_client import KafkaAccess
from signupflow.local_security import ADMIN_USER, LocalSecurity, user_of
from signupflow.settings import Principal

KAFKA_VERSION = "4.1.1"


#: Brokers this process started, by PID: kept so that they are reaped through their Popen.
_running: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or reached; the message says why."""


@dataclass(frozen=True)
class NodeStatus:
    """One node of the local cluster (a combined KRaft broker + controller JVM)."""

    node_id: int
    running: bool
    pid: int | None
    port: int | None
    home: Path

    def describe(self) -> str:
        state = f"running, pid {self.pid}" if self.running else "not running"
        return f"node {self.node_id}: {state}, 127.0.0.1:{self.port}, home {self.home}"


@dataclass(frozen=True)
class BrokerStatus:
    """The local cluster: one node (the default) or several."""

    home: Path
    nodes: tuple[NodeStatus, ...]

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    @property
    def pid(self) -> int | None:
        return self.nodes[0].pid

    @property
    def port(self) -> int | None:
        """The first node's port (``SIGNUPFLOW_BROKER_PORT``)."""
        return self.nodes[0].port

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every node, for plain Kafka clients."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.port)

    def access(self, principal: Principal) -> KafkaAccess:
        """How ``principal`` connects to this cluster: as its local user when the cluster is
        secured, else PLAINTEXT."""
        local = LocalSecurity(self.home)
        if local.enabled:
            return local.access(self.bootstrap, user_of(principal))
        return KafkaAccess(self.bootstrap)

    @property
    def kafka_url(self) -> str:
        """The same, as ``SIGNUPFLOW_KAFKA_BROKER`` takes it."""
        return ";".join(f"kafka://127.0.0.1:{n.port}" for n in self.nodes if n.port)

    def describe(self) -> str:
        if len(self.nodes) == 1:
            n = self.nodes[0]
            if n.running:
                return f"running: pid {n.pid}, bootstrap {self.bootstrap}, home {self.home}"
            return f"not running (home {self.home})"
        up = sum(n.running for n in self.nodes)
        lines = [f"{up} of {len(self.nodes)} nodes running, bootstrap {self.bootstrap}"]
        return "\n".join([*lines, *(f"  {n.describe()}" for n in self.nodes)])


def cache_dir() -> Path:
    base = os.environ.get("SIGNUPFLOW_CACHE") or Path.home() / ".cache" / "signupflow"
    return Path(base) / f"kafka-{KAFKA_VERSION}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BrokerError(f"`{tool}` not found on PATH: {hint}")
    return path


def fetch_jars(quiet: bool = True) -> Path:
    """Download the broker jars once (Maven Central) and return the folder holding them."""
    lib = cache_dir() / "lib"
    if (lib / ".complete").exists():
        return lib
    _require("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = _require("mvn", "install Apache Maven (Debian: apt-get install maven)")
    staging = cache_dir() / f"lib.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    pom = resources.files("signupflow.kafka") / "pom.xml"
    with resources.as_file(pom) as pom_path:
        cmd = [mvn, "-B", "-f", str(pom_path), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
        if quiet:
            cmd.insert(1, "-q")
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BrokerError(f"Maven could not fetch Apache Kafka {KAFKA_VERSION}:\n{tail}")
    (staging / ".complete").write_text(KAFKA_VERSION)
    try:
        staging.rename(lib)
    except OSError:  # another process finished first: theirs is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return lib


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_broker(pid: int) -> bool:
    """True if ``pid`` is alive and is a Kafka broker JVM (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline


def node_home(home: Path, node_id: int) -> Path:
    """Node 1 lives in the broker home itself (as a single broker always has), node N in
    ``node-N`` under it."""
    return home if node_id == 1 else home / f"node-{node_id}"


def node_count(home: Path) -> int:
    """How many nodes the cluster in ``home`` was started with (1 if never)."""
    return _read_int(home / "broker.nodes") or 1


def _node_status(home: Path, node_id: int) -> NodeStatus:
    folder = node_home(home, node_id)
    pid = _read_int(folder / "broker.pid")
    running = pid is not None and _is_our_broker(pid)
    return NodeStatus(node_id, running, pid if running else None,
                      _read_int(folder / "broker.port"), folder)


def status(home: Path) -> BrokerStatus:
    _reap_exited()
    home = home.resolve()
    return BrokerStatus(home, tuple(_node_status(home, i)
                                    for i in range(1, node_count(home) + 1)))


def _config(folder: Path, node_id: int, port: int, controllers: dict[int, int],
            security: LocalSecurity | None = None) -> str:
    """A node's ``server.properties``; ``security``: SASL_SSL and ACLs instead of PLAINTEXT."""
    from signupflow.topics import TopicPolicy

    # the broker's own topics get signupflow's default replication for this cluster size
    factor, min_isr = TopicPolicy().resolve(len(controllers))
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in sorted(controllers.items()))
    config = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controllers[node_id]}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(folder / "data"),
        # Topics are created explicitly with the right partition counts (see topics.py):
        # an auto-created topic with another count makes a Faust agent crash-loop.
        "auto.create.topics.enable": "false",
        # The broker's own topics (consumer offsets, ...) replicated like signupflow's.
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(min_isr),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(factor),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.flush.interval.messages": "9223372036854775807",
    }
    if security is not None:
        config.update(security.server_config(port, controllers[node_id]))
    return "".join(f"{key}={value}\n" for key, value in config.items())


def _previous_ports(config: Path) -> tuple[int | None, int | None]:
    """The broker and controller ports of an earlier run (KRaft remembers the controllers)."""
    broker = controller = None
    if config.exists():
        for line in config.read_text().splitlines():
            if line.startswith("listeners="):
                for listener in line.split("=", 1)[1].split(","):
                    name, _, address = listener.partition("://")
                    if name == "CONTROLLER":
                        controller = int(address.rsplit(":", 1)[1])
                    else:  # PLAINTEXT, or SASL_SSL on a secured cluster
                        broker = int(address.rsplit(":", 1)[1])
    return broker, controller


def _cluster_id(home: Path, nodes: int) -> str:
    """The id in any node's formatted storage, or a new one: every node must share it."""
    for i in range(1, nodes + 1):
        meta = node_home(home, i) / "data" / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(java: str, lib: Path, folder: Path, config: Path, cluster_id: str,
                    security: LocalSecurity | None = None) -> None:
    """Format a node's storage once; a secured cluster's SCRAM users are created with it.

    The arguments go through a Java argument file (``java @file``, private, deleted after):
    they hold the users' passwords, which must not show in ``ps``.
    """
    if (folder / "data" / "meta.properties").exists():
        return
    # an argument file expands no class path wildcard: the jars are listed
    classpath = ":".join(str(jar) for jar in sorted(lib.glob("*.jar")))
    arguments = ["-cp", classpath, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(config),  # ids may start with "-"
                 *(security.scram_arguments() if security else [])]
    argfile = folder / "format.args"
    fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(f'"{a}"' for a in arguments) + "\n")
    try:
        proc = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True)
    finally:
        argfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise BrokerError(f"formatting the KRaft storage failed:\n{proc.stdout}{proc.stderr}")


async def _brokers_seen(kafka: KafkaAccess) -> int:
    """How many brokers the cluster's metadata lists, asked through ``kafka`` (0: no
    answer). One connection, whose closing is waited for: a client's bootstrap connection is
    closed without waiting, and a TLS connection whose close_notify is still on its way when
    the loop ends leaves its socket open (a ResourceWarning, seen under load)."""
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.protocol.metadata import MetadataRequest

    host, port = kafka.bootstrap.split(",")[0].rsplit(":", 1)
    options = kafka.options(request_timeout_ms=3000)
    del options["bootstrap_servers"]
    conn = AIOKafkaConnection(host, int(port), **options)
    try:
        await conn.connect()
        return len((await conn.send(MetadataRequest([]))).brokers)
    except Exception:
        return 0
    finally:
        closed = conn.close()
        if conn._protocol is not None:  # a transport was opened: wait for its socket's close
            await asyncio.wait({closed}, timeout=5)


def wait_ready(port: int, timeout: float, alive: Callable[[], bool], log: Path,
               brokers: int = 1, security: LocalSecurity | None = None) -> None:
    """Block until the broker at ``port`` answers a metadata request listing ``brokers``
    brokers (every node of the cluster registered), or raise. A secured cluster is asked by
    its admin user."""
    deadline = time.monotonic() + timeout
    address = f"127.0.0.1:{port}"
    kafka = security.access(address, ADMIN_USER) if security else KafkaAccess(address)
    while time.monotonic() < deadline:
        if not alive():
            tail = "\n".join(log.read_text().splitlines()[-30:]) if log.exists() else ""
            raise BrokerError(f"the broker process exited during start-up:\n{tail}")
        if port_open(port) and asyncio.run(_brokers_seen(kafka)) >= brokers:
            return
        time.sleep(0.3)
    raise BrokerError(f"the broker on 127.0.0.1:{port} did not answer (with {brokers} "
                      f"broker(s) registered) within {timeout:.0f}s")


def _choose_ports(home: Path, port: int, nodes: int) -> dict[int, tuple[int, int]]:
    """Broker and controller port of each node: the earlier run's (a cluster's controllers
    must keep theirs), the first node's broker port as asked (0: the previous one or any)."""
    chosen: dict[int, tuple[int, int]] = {}
    for i in range(1, nodes + 1):
        node = _node_status(home, i)
        previous, controller = _previous_ports(node.home / "server.properties")
        if i == 1 and port != 0 and port != previous:
            if port_open(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another process; "
                    "set SIGNUPFLOW_BROKER_PORT to a free port (or stop that process)")
            broker_port = port
        elif previous and (node.running or not port_open(previous)):
            broker_port = previous  # clients reconnect on their own after a restart
        else:
            broker_port = free_port()
        if not controller or (not node.running and nodes == 1 and port_open(controller)):
            controller = free_port()
        chosen[i] = (broker_port, controller)
    return chosen


def _launch(java: str, lib: Path, folder: Path, port: int) -> subprocess.Popen[bytes]:
    log4j = resources.files("signupflow.kafka") / "log4j2.properties"
    with resources.as_file(log4j) as log4j_path, open(folder / "broker.log", "ab") as log_file:
        proc = subprocess.Popen(
            [java, "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC",
             f"-Dlog4j2.configurationFile={log4j_path}",
             "-cp", f"{lib}/*", "kafka.Kafka", str(folder / "server.properties")],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=folder,
        )
    _running[proc.pid] = proc  # outlives this call: tracked by its PID file, reaped by stop()
    (folder / "broker.pid").write_text(str(proc.pid))
    (folder / "broker.port").write_text(str(port))
    return proc


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def start(home: Path, port: int = 9092, nodes: int = 1, timeout: float = 90.0,
          secure: bool | None = None) -> BrokerStatus:
    """Start a local KRaft cluster of ``nodes`` in ``home``, the first node on ``port`` (0
    picks a free one). Idempotent: nodes already running are left alone, stopped ones (say,
    after a kill -9) are started again with their earlier ports and data.

    ``secure``: SASL_SSL with SCRAM users and ACLs (:mod:`signupflow.local_security`); None
    keeps what the home was started with (PLAINTEXT for a new one).
    """
    home = home.resolve()
    if nodes < 1:
        raise BrokerError(f"a cluster needs at least 1 node, got {nodes}")
    formatted = (home / "data" / "meta.properties").exists()
    if formatted and node_count(home) != nodes:
        raise BrokerError(
            f"the broker home {home} holds a cluster of {node_count(home)} node(s), not "
            f"{nodes}: stop it and remove that folder, or use another SIGNUPFLOW_BROKER_HOME")
    local = LocalSecurity(home)
    was_secure = local.enabled
    if formatted and secure is not None and secure != was_secure:
        kind = "a secured" if was_secure else "an unsecured (PLAINTEXT)"
        raise BrokerError(
            f"the broker home {home} holds {kind} cluster: stop it and remove that folder to "
            f"start it {'with' if secure else 'without'} --secure, or use another "
            "SIGNUPFLOW_BROKER_HOME")
    security = local if (secure if secure is not None else was_secure) else None
    current = status(home) if formatted else None
    if current is not None and current.running:
        first = current.nodes[0]
        pid = first.pid or 0
        wait_ready(first.port or 0, timeout, lambda: _is_our_broker(pid),
                   first.home / "broker.log", nodes, security)
        return current
    java = _require("java", "install a Java 17+ runtime")
    lib = fetch_jars()
    home.mkdir(parents=True, exist_ok=True)
    if security is not None:
        security.prepare()
    (home / "broker.nodes").write_text(str(nodes))
    ports = _choose_ports(home, port, nodes)
    controllers = {i: c for i, (_, c) in ports.items()}
    cluster_id = _cluster_id(home, nodes)
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    for i, (broker_port, _) in ports.items():
        folder = node_home(home, i)
        if _node_status(home, i).running:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "server.properties"
        # private: a secured node's file holds its inter-broker password
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_config(folder, i, broker_port, controllers, security))
        _format_storage(java, lib, folder, config, cluster_id, security)
        started.append((i, _launch(java, lib, folder, broker_port)))
    try:
        for i, proc in started:
            wait_ready(ports[i][0], timeout, partial(_alive, proc),
                       node_home(home, i) / "broker.log", nodes, security)
    except BrokerError:
        stop(home)
        raise
    return status(home)


def stop(home: Path, timeout: float = 30.0, kill: bool = False,
         node: int | None = None) -> bool:
    """Stop every node (or only ``node``) by PID: SIGTERM, then SIGKILL after ``timeout``;
    ``kill``: SIGKILL at once, as a crash would. Returns True if one was running."""
    home = home.resolve()
    wanted = [node] if node is not None else list(range(1, node_count(home) + 1))
    pids: list[int] = []
    for i in wanted:
        pid_file = node_home(home, i) / "broker.pid"
        pid = _read_int(pid_file)
        pid_file.unlink(missing_ok=True)
        if pid is not None and _is_our_broker(pid):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while not _gone(pid):
            time.sleep(0.05)
    _reap_exited()  # and any node of ours that had died before (crashed, killed)
    return bool(pids)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited, and if it is our child, been collected.

    A child is asked through its Popen, not /proc: an exiting JVM's command line reads empty
    before it becomes a zombie, so "no longer a broker" is not yet "reaped"."""
    proc = _running.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return False
        del _running[pid]
        return True
    return not _is_our_broker(pid)


def _reap_exited() -> None:
    """Collect every broker this process started that has exited since (so that none lingers
    as a zombie, whoever ended it)."""
    for pid, proc in list(_running.items()):
        if proc.poll() is not None:
            del _running[pid]
