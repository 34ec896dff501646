"""A private PostgreSQL server for the tests: Debian's binaries, a temporary cluster, loopback.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` system
user (created by Debian's package), in a folder of its own under the system temp folder (the
postgres user cannot enter pytest's private tmp_path). Stopped by the postmaster's PID and
removed at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signupflow.broker import free_port
from signupflow.settings import SERVICES

USER = "signupflow"


def bindir() -> Path:
    found = os.environ.get("SIGNUPFLOW_PG_BINDIR") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
    if not found or not (Path(found) / "initdb").exists():
        raise RuntimeError("PostgreSQL server binaries not found: `make test` installs Debian's "
                           "postgresql with apt (or set SIGNUPFLOW_PG_BINDIR)")
    return Path(found)


class Postgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="signupflow-pg-"))
        self.data = self.root / "pgdata"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr or done.stdout}")

    def start(self, databases: list[str]) -> None:
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        pg = bindir()
        self._run(str(pg / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        self._run(str(pg / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
                  "-w", "-t", "60", "start", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")
        for db in databases:
            self._run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                      db)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # "fast" shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pid_file.exists():
            time.sleep(0.1)
        if pid_file.exists():
            os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def database_settings(kind: str) -> Iterator[dict[str, str]]:
    """Settings that give each service its own database of ``kind``: ``sqlite`` (the default
    files, no settings) or ``postgresql`` (one database per service on a private server)."""
    if kind == "sqlite":
        yield {}
        return
    assert kind == "postgresql", kind
    server = Postgres()
    try:
        server.start(list(SERVICES))
        yield {f"SIGNUPFLOW_{s.upper()}_DATABASE_URL": server.url(s) for s in SERVICES}
    finally:
        server.remove()
