"""The command line as a user meets it, on a system that is not running (no broker needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from signupflow.broker import free_port


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``signupflow ARGS`` in a fresh data folder, every service's URL a port nothing answers."""
    nobody = f"http://127.0.0.1:{free_port()}"
    return subprocess.run(
        [sys.executable, "-m", "signupflow.cli", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, "SIGNUPFLOW_DATA_DIR": str(tmp_path),
                         **{f"SIGNUPFLOW_{s}_URL": nobody for s in ("AUTH", "MEMBER", "BATCH")},
                         **env})


def test_verify_with_the_system_stopped_could_not_check_and_says_the_way_out(
        tmp_path: Path) -> None:
    """Finding: it printed `PROBLEM table unreadable ... INCONSISTENT` and exited 1, as if the
    data were wrong."""
    result = run_cli(tmp_path, "verify")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "INCONSISTENT" not in result.stdout and "PROBLEM" not in result.stdout
    assert "could not check the partner-summary table" in result.stdout
    assert "--no-table" in result.stdout and "signupflow up" in result.stdout


def test_verify_without_the_table_checks_the_databases_alone(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "verify", "--no-table")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("consistent")
