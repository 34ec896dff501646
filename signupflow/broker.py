"""A local single-node Apache Kafka broker (KRaft), fetched with Maven and run with Java.

Used by ``signupflow broker start|stop|status``, ``signupflow up`` and the test suite, so that
nothing needs Docker. The jars are cached under ``~/.cache/signupflow`` (``SIGNUPFLOW_CACHE``);
the broker's state (config, data, log, pid, port) lives in one folder, the *broker home*.
Everything binds to 127.0.0.1.
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
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.1"


#: Brokers this process started, by PID: kept so that they are reaped through their Popen.
_running: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or reached; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int | None
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def describe(self) -> str:
        if self.running:
            return f"running: pid {self.pid}, bootstrap {self.bootstrap}, home {self.home}"
        return f"not running (home {self.home})"


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


def status(home: Path) -> BrokerStatus:
    pid = _read_int(home / "broker.pid")
    port = _read_int(home / "broker.port")
    running = pid is not None and _is_our_broker(pid)
    return BrokerStatus(running=running, pid=pid if running else None, port=port, home=home)


def _config(home: Path, port: int, controller_port: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={home / 'data'}",
        # Topics are created explicitly with the right partition counts (see topics.py):
        # an auto-created topic with another count makes a Faust agent crash-loop.
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=10",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=1000",
        "log.flush.interval.messages=9223372036854775807",
        "",
    ])


def _controller_port(config: Path) -> int:
    """The controller port of an earlier run if it is still free (KRaft remembers it)."""
    if config.exists():
        for line in config.read_text().splitlines():
            if line.startswith("controller.quorum.voters="):
                previous = int(line.rsplit(":", 1)[1])
                if not port_open(previous):
                    return previous
    return free_port()


def _format_storage(java: str, lib: Path, home: Path, config: Path) -> None:
    if (home / "data" / "meta.properties").exists():
        return
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    proc = subprocess.run(
        [java, "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format",
         f"--cluster-id={cluster_id}", "-c", str(config)],  # ids may start with "-"
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BrokerError(f"formatting the KRaft storage failed:\n{proc.stdout}{proc.stderr}")


async def _metadata_round_trip(bootstrap: str) -> bool:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return bool(metadata.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def wait_ready(port: int, timeout: float, alive: Callable[[], bool], log: Path) -> None:
    """Block until the broker at ``port`` answers a metadata request, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            tail = "\n".join(log.read_text().splitlines()[-30:]) if log.exists() else ""
            raise BrokerError(f"the broker process exited during start-up:\n{tail}")
        if port_open(port) and asyncio.run(_metadata_round_trip(f"127.0.0.1:{port}")):
            return
        time.sleep(0.3)
    raise BrokerError(f"the broker on 127.0.0.1:{port} did not answer within {timeout:.0f}s")


def start(home: Path, port: int = 9092, timeout: float = 90.0) -> BrokerStatus:
    """Start the broker in ``home`` on ``port`` (0 picks a free one); a no-op if it runs."""
    home = home.resolve()
    current = status(home)
    if current.running and current.port is not None and current.pid is not None:
        pid = current.pid
        wait_ready(current.port, timeout, lambda: _is_our_broker(pid), home / "broker.log")
        return current
    previous = _read_int(home / "broker.port")
    if port == 0:  # keep the previous port across restarts so clients reconnect on their own
        port = previous if previous and not port_open(previous) else free_port()
    elif port_open(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is already in use by another process; "
            "set SIGNUPFLOW_BROKER_PORT to a free port (or stop that process)"
        )
    java = _require("java", "install a Java 17+ runtime")
    lib = fetch_jars()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(_config(home, port, _controller_port(config)))
    _format_storage(java, lib, home, config)
    log4j = resources.files("signupflow.kafka") / "log4j2.properties"
    log_path = home / "broker.log"
    with resources.as_file(log4j) as log4j_path, open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [java, "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC",
             f"-Dlog4j2.configurationFile={log4j_path}",
             "-cp", f"{lib}/*", "kafka.Kafka", str(config)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=home,
        )
    _running[proc.pid] = proc  # outlives this call: tracked by its PID file, reaped by stop()
    (home / "broker.pid").write_text(str(proc.pid))
    (home / "broker.port").write_text(str(port))
    try:
        wait_ready(port, timeout, lambda: proc.poll() is None, log_path)
    except BrokerError:
        stop(home)
        raise
    return status(home)


def stop(home: Path, timeout: float = 30.0, kill: bool = False) -> bool:
    """Stop the broker by PID (SIGTERM, then SIGKILL; ``kill``: SIGKILL at once, as a crash
    would). Returns True if one was running."""
    home = home.resolve()
    pid = _read_int(home / "broker.pid")
    if pid is None or not _is_our_broker(pid):
        (home / "broker.pid").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_broker(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _is_our_broker(pid):
        os.kill(pid, signal.SIGKILL)
        while _is_our_broker(pid):
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)
    (home / "broker.pid").unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (so it does not linger as a zombie)."""
    proc = _running.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _running[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
