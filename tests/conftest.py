"""Keep every test's files out of the working tree (settings are read once per process), and
leave no process behind: every module's children must be reaped by its end."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SIGNUPFLOW_DATA_DIR", tempfile.mkdtemp(prefix="signupflow-test-"))


def zombie_children() -> dict[int, str]:
    """This process's children that have exited but were not collected: pid -> name."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:  # gone meanwhile
            continue
        name, fields = rest.rsplit(") ", 1)
        state, ppid = fields.split()[:2]
        if state == "Z" and int(ppid) == os.getpid():
            found[int(pid)] = name
    return found


@pytest.fixture(autouse=True, scope="module")
def _every_child_reaped() -> Iterator[None]:
    """Fails the module that leaves a zombie child (a process started and never waited for)."""
    before = set(zombie_children())
    yield
    left = {pid: name for pid, name in zombie_children().items() if pid not in before}
    assert not left, f"processes started by these tests and never reaped: {left}"
