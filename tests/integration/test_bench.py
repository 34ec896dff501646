"""The benchmark runs end to end on a few hundred signups (figures only, no timing asserted)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from signupflow.bench import render
from signupflow.peers import missing_peers

KEYS = {"ceiling_msgs_per_s", "baseline_signups_per_s", "pipeline_signups_per_s",
        "http_signups_per_s", "pipeline_vs_baseline", "latency_ms_p50", "latency_ms_p95",
        "latency_ms_p99", "pipeline_traced_signups_per_s", "tracing_on_vs_off",
        "member_signups_per_s", "catchup_signups_per_s", "catchup_startup_s",
        "pipeline_1_member_signups_per_s", "pipeline_2_members_signups_per_s", "member_scaling",
        "flood_clients", "flood_seconds", "flood_created_ms_p50", "flood_created_ms_p99",
        "flood_health_ms_p50", "flood_health_ms_p99", "created_ms_p50", "duplicate_ms_p50",
        "duplicate_vs_created", "recovery_entries", "recovery_rocksdb_first_key_s",
        "recovery_rocksdb_rss_mib", "recovery_memory_first_key_s", "recovery_memory_rss_mib",
        "machine"}
#: Figures of a peer (and the ratios to it): a number, or None when its package is missing.
PEER_KEYS = {"confluent": {"confluent_signups_per_s", "member_vs_confluent"},
             "quix": {"quix_signups_per_s", "member_vs_quix"}}


def test_bench_prints_every_figure_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signupflow.cli", "bench", "--signups", "300", "--rate", "100",
         "--http-signups", "20", "--flood-clients", "40", "--flood-seconds", "4", "--json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "SIGNUPFLOW_SCRYPT_N": "4096"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    assert figures.keys() >= KEYS | set().union(*PEER_KEYS.values())
    assert figures["signups"] == 300
    for key in KEYS - {"machine"}:
        assert figures[key] > 0, key
    # the flood: answers a client can act on, some of them accounts
    assert set(figures["flood_answers"]) <= {"201", "409", "429", "503"}
    assert figures["flood_answers"]["201"] > 0
    missing = missing_peers()
    for peer, keys in PEER_KEYS.items():
        for key in keys:
            assert (figures[key] is None) if peer in missing else (figures[key] > 0), key
    # None when the worker's first batch took every event: too few to tell
    assert figures["catchup_drain_signups_per_s"] is None or (
        figures["catchup_drain_signups_per_s"] > 0)
    assert figures["skipped"] == [f"{peer}: {why}" for peer, why in missing.items()]
    assert figures["pipeline_vs_baseline"] == (
        figures["pipeline_signups_per_s"] / figures["baseline_signups_per_s"])
    assert figures["latency_ms_p50"] <= figures["latency_ms_p95"] <= figures["latency_ms_p99"]
    assert figures["machine"]["cpus"] >= 1
    assert figures["date"] and figures["commit"]
    assert "... pipeline" in result.stderr  # progress goes to stderr, JSON alone to stdout
    assert "Quix Streams" in render(figures)
    # a peer whose package is missing is reported, not fatal
    without_quix = {**figures, "quix_signups_per_s": None, "member_vs_quix": None,
                    "skipped": ["quix: quixstreams is not installed"]}
    assert "skipped quix: quixstreams is not installed" in " ".join(render(without_quix).split())


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (from /proc: children by their parent's pid)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_bench_and_every_process_it_started(tmp_path: Path) -> None:
    """Finding: ``kill`` of a running ``signupflow bench`` left its broker and batch worker
    running (Python's default SIGTERM ends a process without its ``finally``)."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "signupflow.cli", "bench", "--recovery-only",
         "--table-entries", "200000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 300
        started: set[int] = set()
        while time.monotonic() < deadline and bench.poll() is None:
            started = descendants(bench.pid)
            cmdlines = " ".join(Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                                for p in started if alive(p))
            if "kafka.Kafka" in cmdlines and "signupflow.streams.batch" in cmdlines:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no broker and batch worker under the bench: {bench.poll()}")
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    left = time.monotonic() + 30  # the broker's own exit may take a moment after the bench's
    while (running := {p for p in started if alive(p)}) and time.monotonic() < left:
        time.sleep(0.5)
    for pid in running:  # not left behind by a failing test either
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert bench.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: benchmark stopped" in err
    assert not running, f"still running after the bench: {running}"
    assert list(tmp_path.glob("signupflow-bench-*")) == []  # its folder removed too
