"""deploy/prometheus: the alerting rules are valid and each fires on what it is about
(``promtool check rules``, ``promtool test rules`` with alerts.test.yml, ``promtool check
config``; Debian's ``prometheus`` package, which `make test-unit` installs), every signupflow
metric they name is one the workers export, and every runbook they point at exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from signupflow import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
#: Metrics the rules take from elsewhere: Prometheus itself, the blackbox exporter, the
#: Prometheus client's process collector (exported by every worker), Kafka's JMX exporter.
EXTERNAL = {"up", "probe_success", "process_start_time_seconds",
            "kafka_server_replicamanager_underreplicatedpartitions"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make test-unit` installs Debian's prometheus package"
    return subprocess.run([tool, *args], cwd=RULES, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [("check", "rules", "alerts.yml"),
                                  ("test", "rules", "alerts.test.yml"),
                                  ("check", "config", "prometheus.yml")])
def test_promtool_accepts_the_rules_their_tests_and_the_example_config(
        args: tuple[str, ...]) -> None:
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exported() -> set[str]:
    """Every sample name a worker's /metrics can have (ours, and the process collector's)."""
    names = {s.name for family in metrics.PROCESS.collect() for s in family.samples}
    for metric in vars(metrics).values():
        if isinstance(metric, Counter):
            names.add(metric._name + "_total")
        elif isinstance(metric, Histogram):
            names.update(metric._name + s for s in ("_bucket", "_sum", "_count"))
        elif isinstance(metric, Gauge):
            names.add(metric._name)
    return names


def test_every_metric_the_rules_name_exists() -> None:
    ours = exported()
    for rule in alerts():
        named = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[|\)|$|\s)", rule["expr"]))
        metric_names = {n for n in named if n.startswith(("signupflow_", "kafka_"))
                        or n in EXTERNAL}
        assert metric_names, rule["alert"]
        unknown = {n for n in metric_names if n not in ours and n not in EXTERNAL}
        assert not unknown, f"{rule['alert']}: {unknown} is exported by no worker"


def test_every_alert_is_tested_and_points_at_a_runbook_that_exists() -> None:
    tests = yaml.safe_load((RULES / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case.get("exp_alerts")}
    production = (ROOT / "docs" / "production.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", production, re.M)}
    for rule in alerts():
        assert rule["alert"] in fired, f"no test in alerts.test.yml fires {rule['alert']}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/production.md" and anchor in anchors, rule["alert"]
