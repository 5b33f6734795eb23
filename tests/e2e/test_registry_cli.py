"""The registry and inference services as their own processes, driven by the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from driftloop.kafka.local_broker import free_port
from driftloop.kit.grpc_client import open_channel
from tests.datasets import churn

TOKEN = "cli-test-token"


async def wait_serving(target: str, process: asyncio.subprocess.Process) -> None:
    async with open_channel(target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            assert process.returncode is None, f"the service at {target} exited"
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except Exception:  # noqa: BLE001  # not up yet
                pass
            assert time.monotonic() < deadline, f"{target} never became SERVING"
            await asyncio.sleep(0.2)


@pytest.fixture
async def services(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    registry_port, inference_port, gateway_port = free_port(), free_port(), free_port()
    drift_port = free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DRIFTLOOP_KAFKA_TOPIC_PREFIX": f"cli{os.getpid()}.",
        "DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "clickhouse"),
        "DRIFTLOOP_ARTIFACTS_PATH": str(tmp_path / "artifacts"),
        "DRIFTLOOP_ADMIN_TOKEN": TOKEN,
        "DRIFTLOOP_RETRAINER_PORT": str(registry_port),
        "DRIFTLOOP_INFERENCE_PORT": str(inference_port),
        "DRIFTLOOP_INFERENCE_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_INFERENCE_TARGET": f"127.0.0.1:{inference_port}",
        "DRIFTLOOP_GATEWAY_PORT": str(gateway_port),
        "DRIFTLOOP_GATEWAY_INFERENCE_TARGETS": f"127.0.0.1:{inference_port}",
        "DRIFTLOOP_GATEWAY_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_GATEWAY_TARGET": f"127.0.0.1:{gateway_port}",
        "DRIFTLOOP_GATEWAY_DRIFT_TARGET": f"127.0.0.1:{drift_port}",
        "DRIFTLOOP_DRIFT_PORT": str(drift_port),
        "DRIFTLOOP_DRIFT_REGISTRY_TARGET": f"127.0.0.1:{registry_port}",
        "DRIFTLOOP_DRIFT_TARGET": f"127.0.0.1:{drift_port}",
        "DRIFTLOOP_ACTOR": "ci",
        "DRIFTLOOP_LOG_LEVEL": "WARNING",
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    # One process per embedded ClickHouse folder: the drift service gets its own.
    own = {"drift": {"DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "drift-clickhouse")}}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"driftloop.{name}", env=env | own.get(name, {})
        )
        for name in ("retrainer", "inference", "gateway", "drift")
    ]
    try:
        await wait_serving(f"127.0.0.1:{registry_port}", processes[0])
        await wait_serving(f"127.0.0.1:{inference_port}", processes[1])
        await wait_serving(f"127.0.0.1:{gateway_port}", processes[2])
        await wait_serving(f"127.0.0.1:{drift_port}", processes[3])
        yield env
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            assert await asyncio.wait_for(process.wait(), 30) == 0


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_register_alias_history_and_predict_from_the_cli(
    services: dict[str, str], tmp_path: Path
) -> None:
    table = churn(rows=800)
    csv = tmp_path / "train.csv"
    names = [n for n in table.columns if n not in ("segment", "spend")]
    lines = [",".join(names)]
    for i in range(table.rows):
        cells = []
        for name in names:
            value = table.columns[name][i]
            cells.append(
                "" if isinstance(value, float | np.floating) and np.isnan(value) else str(value)
            )
        lines.append(",".join(cells))
    csv.write_text("\n".join(lines) + "\n")

    code, out = await cli(
        services,
        "models",
        "register",
        "--model",
        "churn",
        "--data",
        str(csv),
        "--target",
        "churned",
        "--seed",
        "1",
        "--alias",
        "champion",
    )
    assert code == 0, out
    assert "registered churn version 1 (linear" in out and "auc=" in out
    assert "alias champion -> version 1 (was unset)" in out
    code, out = await cli(
        services,
        "models",
        "register",
        "--model",
        "churn",
        "--data",
        str(csv),
        "--target",
        "churned",
        "--seed",
        "2",
        "--parent",
        "1",
    )
    assert code == 0 and "registered churn version 2" in out, out
    between = dt.datetime.now(dt.UTC)  # the next move's time is taken after this, by the registry

    code, out = await cli(
        services,
        "models",
        "alias",
        "--model",
        "churn",
        "--alias",
        "champion",
        "--version",
        "2",
        "--expected",
        "5",
    )
    assert code == 2 and "FAILED_PRECONDITION" in out and "points to version 1" in out, out
    code, out = await cli(
        services,
        "models",
        "alias",
        "--model",
        "churn",
        "--alias",
        "champion",
        "--version",
        "2",
        "--reason",
        "better auc",
    )
    assert code == 0 and "alias champion -> version 2 (was 1)" in out, out

    code, out = await cli(services, "models", "list", "--model", "churn")
    assert code == 0, out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[4]) for r in rows] == [("1", "-"), ("2", "champion")]

    code, out = await cli(
        services, "models", "show", "--model", "churn", "--version", "champion", "--json"
    )
    assert code == 0, out
    shown = json.loads(out)  # JSON and nothing else
    assert (
        shown["version"] == "2" and shown["parent_version"] == "1" and shown["created_by"] == "ci"
    )
    assert shown["data"]["row_count"] == "800" and shown["seed"] == "2"
    assert shown["lineage"] == ["2", "1"]
    code, out = await cli(services, "models", "show", "--model", "churn", "--version", "2")
    assert code == 0 and "lineage    v2 <- v1" in out and "by ci" in out, out

    code, out = await cli(
        services, "models", "history", "--model", "churn", "--at", between.isoformat()
    )
    assert code == 0 and f"champion at {between.isoformat()}: version 1" in out, out
    code, out = await cli(services, "models", "history", "--model", "churn")
    assert code == 0 and "1 -> 2    by ci: better auc" in out, out

    row = {f"x{i}": 0.1 for i in range(6)} | {"plan": "pro", "region": "south"}
    deadline = time.monotonic() + 30
    while True:  # the inference service hears the alias move over model-events
        code, out = await cli(
            services,
            "predict",
            "--direct",
            "--model",
            "churn",
            "--version",
            "champion",
            "--row",
            json.dumps(row),
        )
        assert code == 0, out
        response = json.loads(out)
        if response["model"]["version"] == "2" or time.monotonic() > deadline:
            break
    assert response["model"]["version"] == "2"
    assert 0 < response["output"]["value"] < 1
    code, out = await cli(
        services,
        "predict",
        "--direct",
        "--model",
        "churn",
        "--version",
        "2",
        "--row",
        json.dumps(row | {"x0": "oops"}),
    )
    assert code == 2 and "INVALID_ARGUMENT: row.x0: expected a number" in out, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out

    # Through the gateway: a policy, a blue-green rollout, a rollback, a promotion.
    code, out = await cli(services, "routing", "set", "--model", "churn", "--stable", "1", "--json")
    assert code == 0 and json.loads(out)["revision"] == "1", out

    async def served_by() -> str:
        code, out = await cli(services, "predict", "--model", "churn", "--row", json.dumps(row))
        assert code == 0, out
        return str(json.loads(out)["version"])

    assert await served_by() == "1"
    code, out = await cli(
        services,
        "routing",
        "rollout",
        "--model",
        "churn",
        "--candidate",
        "2",
        "--strategy",
        "blue-green",
        "--hold-s",
        "600",
    )
    assert code == 0, out
    assert await served_by() == "2"
    code, out = await cli(services, "routing", "rollback", "--model", "churn", "--reason", "check")
    assert code == 0 and "rolled back; version 1 serves" in out, out
    assert await served_by() == "1"
    code, out = await cli(services, "routing", "promote", "--model", "churn")
    assert code == 2 and "FAILED_PRECONDITION" in out, out

    # The drift service sinks what the gateway logged and reports on it.
    code, out = await cli(
        services, "drift", "baseline", "--model", "churn", "--version", "1", "--json"
    )
    assert code == 0, out
    baseline = json.loads(out)
    assert [b["feature"] for b in baseline["numeric"]] == [f"x{i}" for i in range(6)]
    assert {c["feature"] for c in baseline["categorical"]} == {"plan", "region"}
    deadline = time.monotonic() + 30
    while True:
        code, out = await cli(
            services, "drift", "report", "--model", "churn", "--version", "1", "--last", "100"
        )
        assert code == 0, out
        if not out.startswith("churn v1: 0 rows") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert out.startswith("churn v1: ") and "drift: none" in out, out
    assert not out.startswith("churn v1: 0 rows"), "the gateway's predictions never arrived"
    code, out = await cli(services, "drift", "alerts", "--model", "churn")
    assert code == 0 and out == "", out
    code, out = await cli(services, "drift", "report", "--model", "churn", "--version", "9")
    assert code == 2 and "NOT_FOUND" in out, out
