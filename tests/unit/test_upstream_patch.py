"""The upstream patch for Faust's seek race (docs/upstream/): it applies to the installed
faust-streaming, its test fails on stock Faust and passes with the patch.

signupflow carries the same fix in ``signupflow/transport.py``; this keeps the patch offered
upstream honest as Faust moves.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import faust
import pytest

UPSTREAM = Path(__file__).resolve().parents[2] / "docs" / "upstream"
PATCH = UPSTREAM / "faust-seek-epochs.patch"
TEST = UPSTREAM / "test_seek_epochs.py"


def run_upstream_test(tmp_path: Path, faust_path: Path | None) -> subprocess.CompletedProcess[str]:
    """Run the patch's test with plain pytest (no project config), on the Faust found first
    on ``faust_path`` (the installed one when None)."""
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = {"PATH": "/usr/bin:/bin"} | ({"PYTHONPATH": str(faust_path)} if faust_path else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(ini), "-p", "no:cacheprovider",
         "-p", "no:randomly", "-p", "no:hypothesispytest", str(TEST)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def patched_faust(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(Path(faust.__file__).parent, site / "faust",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "apply", "-p1", str(PATCH)], cwd=site, check=True,
                   capture_output=True, text=True)
    return site


def test_the_upstream_test_fails_on_stock_faust(tmp_path: Path) -> None:
    result = run_upstream_test(tmp_path, None)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed" in result.stdout, result.stdout


def test_the_upstream_test_passes_with_the_patch(tmp_path: Path, patched_faust: Path) -> None:
    result = run_upstream_test(tmp_path, patched_faust)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
