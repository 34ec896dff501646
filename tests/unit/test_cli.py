"""The command line as a user meets it, on a system that is not running (no broker needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signupflow.broker import free_port
from signupflow.cli import main
from signupflow.settings import get_settings


@pytest.fixture(autouse=True)
def stopped_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh data folder, every service's URL a port nothing answers, read afresh."""
    nobody = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SIGNUPFLOW_DATA_DIR", str(tmp_path))
    for service in ("AUTH", "MEMBER", "BATCH"):
        monkeypatch.setenv(f"SIGNUPFLOW_{service}_URL", nobody)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_cli(*args: str) -> Result:
    """``signupflow ARGS`` in this process (as a user would type it)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verify_with_the_system_stopped_could_not_check_and_says_the_way_out(
        tmp_path: Path) -> None:
    """Finding: it printed `PROBLEM table unreadable ... INCONSISTENT` and exited 1, as if the
    data were wrong."""
    result = run_cli("verify")
    assert result.exit_code == 2, result.output
    assert "INCONSISTENT" not in result.stdout and "PROBLEM" not in result.stdout
    assert "could not check the partner-summary table" in result.stdout
    assert "--no-table" in result.stdout and "signupflow up" in result.stdout


def test_verify_without_the_table_checks_the_databases_alone(tmp_path: Path) -> None:
    result = run_cli("verify", "--no-table")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("consistent")


def test_signup_on_a_pipe_says_what_it_posts_in_a_line_of_its_own() -> None:
    """Not a terminal (a log, a pipe): no progress bar, and no bare label run into the next
    line."""
    url = get_settings().web_url("auth")
    result = run_cli("signup", "--count", "2", "--url", url)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"posting 2 signups to {url}"
    assert lines[1].startswith(f"error: cannot reach the auth service at {url}")

