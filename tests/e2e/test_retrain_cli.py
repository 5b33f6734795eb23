"""`driftloop retrain ...` as a subprocess against a real retrainer service.

The retrainer (registry and continuous training) runs in the test process on the session's
embedded ClickHouse, where the test writes the labelled traffic it trains on (chDB allows
one process per data folder, so the service cannot be a process of its own here); the
CLI runs as its own process against the service's port, with the real Kafka broker behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.times import stamp
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import common_pb2
from tests.retrain_data import MODEL, log_traffic, population

TOKEN = "retrain-cli-token"
STEPS = ["extract", "validate", "train", "evaluate", "gate", "register", "rollout"]


@dataclass
class Served:
    service: RetrainerService
    store: LocalArtifactStore
    log: PredictionLog
    env: dict[str, str]


@pytest.fixture
async def served(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[Served]:
    assert kafka_settings.bootstrap_servers is not None
    store = LocalArtifactStore(tmp_path / "artifacts")
    service = RetrainerService(
        RetrainerSettings(port=0, admin_token=SecretStr(TOKEN), check_every_s=3600),
        kafka_settings,
        kafka_settings.bootstrap_servers,
        clickhouse,
        store,
    )
    await service.start()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DRIFTLOOP_")}
    env |= {
        "DRIFTLOOP_REGISTRY_TARGET": f"127.0.0.1:{service.port}",
        "DRIFTLOOP_ADMIN_TOKEN": TOKEN,
        "DRIFTLOOP_ACTOR": "ci",
        "DRIFTLOOP_LOG_LEVEL": "WARNING",
    }
    try:
        yield Served(service, store, PredictionLog(clickhouse), env)
    finally:
        await service.stop(0)


@dataclass
class Result:
    code: int
    out: str
    err: str


async def cli(env: dict[str, str], *args: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        "retrain",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def test_policy_trigger_and_inspect_a_run_from_the_cli(served: Served) -> None:
    # A champion trained on the original relation; labelled traffic where it flipped.
    trained = train_linear(population(1, 3000), TrainingSpec(target="churned"))
    until = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    record = version_record(
        trained,
        model=MODEL,
        artifact_sha256=served.store.put(trained.artifact),
        source="test",
        window=common_pb2.TimeWindow(start=stamp(until - dt.timedelta(hours=1)), end=stamp(until)),
    )
    champion = await served.service.registry.register(new_version_from_proto(record), "tester")
    await served.service.registry.set_alias(
        MODEL, "champion", champion.version, "", "first version", "tester"
    )
    await log_traffic(
        served.log, trained.model, champion.version, population(7, 2500, flip_regions="abc")
    )

    # The policy: read-modify-write with compare-and-set, then read back.
    result = await cli(served.env, "policy", "set", MODEL, "--rollout", "none", "--min-rows", "200")
    assert result.code == 0, result
    assert "rollout.on_pass: canary -> none" in result.out
    assert "training.min_rows: 500 -> 200" in result.out
    result = await cli(served.env, "policy", "get", MODEL, "--json")
    assert result.code == 0 and result.err == "", result
    policy = json.loads(result.out)
    assert policy["revision"] == "1" and policy["updated_by"] == "ci"
    assert policy["rollout"]["on_pass"] == "ROLLOUT_ON_PASS_NONE"
    assert policy["training"]["min_rows"] == 200
    assert policy["performance"]["max_drop"] == 0.05, "the other fields keep their values"
    result = await cli(served.env, "policy", "get", MODEL)
    assert result.code == 0, result
    assert f"{MODEL}: training policy, revision 1" in result.out
    assert "training.min_rows" in result.out and "--min-rows" in result.out

    # A manual run, followed to its end.
    result = await cli(served.env, "trigger", MODEL, "--reason", "labels flipped", "--wait")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].startswith(f"run {MODEL}-") and "(manual): requested by ci" in lines[0]
    run_id = lines[0].split()[1]
    assert [line.split()[0] for line in lines[1:8]] == STEPS
    assert all(line.split()[1] == "succeeded" for line in lines[1:8])
    assert f"run {run_id} succeeded: v2 registered" in result.out
    assert f"new version: {MODEL} v2 (parent v1)" in result.out

    runs, show, decisions, missing = await asyncio.gather(
        cli(served.env, "runs", MODEL, "--json"),
        cli(served.env, "show", run_id),
        cli(served.env, "decisions", MODEL),
        cli(served.env, "show", "no-such-run"),
    )
    assert runs.code == 0 and runs.err == "", runs
    listed = json.loads(runs.out)["runs"]
    assert [run["run_id"] for run in listed] == [run_id]
    run = listed[0]
    assert run["state"] == "RUN_STATE_SUCCEEDED" and run["new_version"] == "2"
    primary = run["gate"]["checks"][0]
    assert primary["test"] == "mcnemar" and primary["p_value"] < 1e-6

    assert show.code == 0, show
    text = show.out.splitlines()
    step_lines = text[text.index("steps") + 1 : text.index("steps") + 8]
    assert [line.split()[0] for line in step_lines] == STEPS
    gate = text.index("gate: passed")
    assert text[gate + 1].split()[:4] == ["check", "metric", "test", "champion"]
    cells = text[gate + 2].split()
    assert cells[:3] == ["primary", "accuracy", "McNemar"] and cells[-1] == "pass"
    assert f"{primary['p_value']:.3g}" in cells
    assert f"snapshot    {run['snapshot_id']}" in show.out
    assert "rows        2,000 training, 500 holdout" in show.out
    assert "rollout: not requested" in show.out and "outcome: v2 registered" in show.out

    assert decisions.code == 0, decisions
    header, *rows = decisions.out.splitlines()
    assert header.split()[:3] == ["time", "(UTC)", "trigger"]
    assert len(rows) == 1 and rows[0].split()[2:5] == ["manual", "run", run_id]
    assert "requested by ci: labels flipped" in rows[0]

    # An expected failure: one line on stderr, exit status 2, nothing on stdout.
    assert missing.code == 2 and missing.out == "", missing
    assert missing.err.count("\n") == 1 and "Traceback" not in missing.err
    assert missing.err.startswith("driftloop: retrainer at 127.0.0.1:")
    assert ": NOT_FOUND: no retraining run" in missing.err
