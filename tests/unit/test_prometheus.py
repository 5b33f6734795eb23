"""deploy/prometheus: promtool (built by `make setup` from the Go module proxy) accepts the
config and the rules, and every alerting rule passes its unit tests, firing on the bad
series and quiet on the good; every alert says what to do; the rules read only metrics the
code defines (tests/integration/test_metrics_live.py checks them on the live endpoints)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

import driftloop.drift.metrics
import driftloop.gateway.metrics
import driftloop.inference.metrics
import driftloop.kafka.metrics
import driftloop.kit.metrics
import driftloop.retrainer.metrics
import driftloop.shadow.metrics  # noqa: F401  # every metric defined, as each service does
from tests.metric_names import REPO, missing, prometheus_version, rule_metrics

PROMETHEUS = REPO / "deploy" / "prometheus"
PROMTOOL = REPO / ".cache" / "go" / "bin" / "promtool"


def promtool(*args: str) -> str:
    """promtool's output; the test fails (never skips) when it is missing or says no."""
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL.relative_to(REPO)} is missing: run `make setup`")
    result = subprocess.run(
        [str(PROMTOOL), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def load(name: str) -> Any:
    return yaml.safe_load((PROMETHEUS / name).read_text())


def alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for group in load("rules.yml")["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_promtool_is_the_pinned_prometheus_release() -> None:
    assert f"promtool, version {prometheus_version()} " in promtool("--version")


def test_the_config_is_valid_and_loads_the_rules() -> None:
    output = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output
    assert f"SUCCESS: {len(alerts()) + 1} rules found" in output  # and one recording rule


def test_the_rules_are_valid() -> None:
    promtool("check", "rules", "rules.yml")


def test_every_rule_passes_its_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load("rules_test.yml")["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(alerts()), "an alert without a test where it fires"
    assert quiet == set(alerts()), "an alert without a test where it stays quiet"


def test_every_alert_tells_the_operator_what_it_means_and_what_to_do() -> None:
    for name, rule in alerts().items():
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert len(annotations["description"].split()) >= 30, f"{name}: say what to do"


def test_the_rules_read_metrics_the_code_defines() -> None:
    read = rule_metrics()
    assert {"driftloop_consumer_lag_records", "driftloop_drift_alerts_total", "up"} <= read
    assert missing(read, [generate_latest(REGISTRY).decode()]) == []


def test_every_service_is_scraped_as_its_own_job() -> None:
    jobs = {job["job_name"] for job in load("prometheus.yml")["scrape_configs"]}
    assert jobs == {"gateway", "inference", "drift", "shadow", "retrainer"}
    (service_down,) = [rule["expr"] for rule in alerts().values() if "up{" in rule["expr"]]
    watched = re.search(r'job=~"([^"]+)"', service_down)
    assert watched is not None and set(watched.group(1).split("|")) == jobs


def test_the_name_check_counts_families_without_series_and_histogram_samples() -> None:
    page = "\n".join(
        [
            "# HELP a_total Calls.",
            "# TYPE a_total counter",  # a labelled counter before its first call
            "# HELP b_seconds Time.",
            "# TYPE b_seconds histogram",
            'b_seconds_bucket{le="+Inf"} 1.0',
            "c 2.0",
        ]
    )
    wanted = ["a_total", "b_seconds_count", "c", "up", "a_total_count", "d_total"]
    assert missing(wanted, [page]) == ["a_total_count", "d_total"]
