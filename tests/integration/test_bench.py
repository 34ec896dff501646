"""The benchmark runs end to end on a few hundred signups (figures only, no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

KEYS = {"ceiling_msgs_per_s", "baseline_signups_per_s", "pipeline_signups_per_s",
        "http_signups_per_s", "pipeline_vs_baseline", "latency_ms_p50", "latency_ms_p95",
        "latency_ms_p99", "pipeline_traced_signups_per_s", "tracing_on_vs_off", "machine"}


def test_bench_prints_every_figure_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signupflow.cli", "bench", "--signups", "300", "--rate", "100",
         "--http-signups", "20", "--json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SIGNUPFLOW_SCRYPT_N": "4096"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures.keys() >= KEYS
    assert figures["signups"] == 300
    for key in KEYS - {"machine"}:
        assert figures[key] > 0, key
    assert figures["pipeline_vs_baseline"] == (
        figures["pipeline_signups_per_s"] / figures["baseline_signups_per_s"])
    assert figures["latency_ms_p50"] <= figures["latency_ms_p95"] <= figures["latency_ms_p99"]
    assert figures["machine"]["cpus"] >= 1
    assert "... pipeline" in result.stderr  # progress goes to stderr, JSON alone to stdout
