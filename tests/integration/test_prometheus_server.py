"""A real Prometheus (the release of docker-compose.yml's image, built by `make setup`)
scrapes the standalone composition's five metrics endpoints with deploy/prometheus's
config and rules (targets moved to this machine's ports, scrapes and rule rounds every
second): every target is up, every rule evaluates without error on the live series, and a
dead letter sent while it watches fires DriftloopDeadLetters."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftloop.cli.stack import HOST
from driftloop.kafka.local_broker import free_port
from tests.live_metrics import LiveMetrics, live_metrics
from tests.metric_names import REPO, RULES, prometheus_version

__all__ = ["live_metrics"]  # the fixture

PROMETHEUS = REPO / ".cache" / "go" / "bin" / "prometheus"
CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://{HOST}:{port}"

    def get(self, path: str, **query: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]

    async def api(self, path: str, **query: str) -> Any:
        return await asyncio.to_thread(self.get, path, **query)

    async def until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + 60
        while not await condition():
            assert time.monotonic() < deadline, f"Prometheus: {what}"
            await asyncio.sleep(0.5)


def local_config(ports: dict[str, int], folder: Path) -> Path:
    """deploy/prometheus/prometheus.yml with each job's target on this machine's port."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"{HOST}:{ports[job['job_name']]}"]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def prometheus(live_metrics: LiveMetrics, tmp_path: Path) -> AsyncIterator[Prometheus]:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS.relative_to(REPO)} is missing: run `make setup`")
    port = free_port(HOST)
    log = (tmp_path / "prometheus.log").open("w")
    process = await asyncio.create_subprocess_exec(
        str(PROMETHEUS),
        f"--config.file={local_config(live_metrics.ports, tmp_path)}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    server = Prometheus(port)
    try:

        async def ready() -> bool:
            assert process.returncode is None, (tmp_path / "prometheus.log").read_text()
            try:
                await server.api("/api/v1/status/buildinfo")
            except OSError:
                return False
            return True

        await server.until(ready, "not ready")
        yield server
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()


async def test_prometheus_scrapes_every_service_and_the_rules_work(
    live_metrics: LiveMetrics, prometheus: Prometheus
) -> None:
    async def all_up() -> bool:
        targets = (await prometheus.api("/api/v1/targets"))["activeTargets"]
        return sorted(t["labels"]["job"] for t in targets if t["health"] == "up") == sorted(
            live_metrics.ports
        )

    build = await prometheus.api("/api/v1/status/buildinfo")
    assert build["version"] == prometheus_version()  # docker-compose.yml's image's release
    await prometheus.until(all_up, "not every service is up")

    async def dead_letters_seen() -> bool:
        result = await prometheus.api("/api/v1/query", query="driftloop_dead_letters_total")
        return bool(result["result"])

    await prometheus.until(dead_letters_seen, "the fixture's dead letter was not scraped")
    await live_metrics.send_undecodable_label()  # a new one while Prometheus watches

    async def firing() -> bool:
        alerts = (await prometheus.api("/api/v1/alerts"))["alerts"]
        return any(
            alert["labels"]["alertname"] == "DriftloopDeadLetters" and alert["state"] == "firing"
            for alert in alerts
        )

    await prometheus.until(firing, "DriftloopDeadLetters did not fire")
    groups = (await prometheus.api("/api/v1/rules"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"])
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    quiet = {"DriftloopServiceDown", "DriftloopPredictionLogDropped", "DriftloopSinkLagHigh"}
    assert all(rule["state"] == "inactive" for rule in rules if rule["name"] in quiet)
    lag = await prometheus.api(
        "/api/v1/query", query='driftloop_consumer_lag_records{group=~".*drift-sink"}'
    )
    assert lag["result"], "the sink's lag is not in Prometheus"
