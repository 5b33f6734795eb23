"""The retrainer as its own process, killed with SIGKILL in the middle of a run and
restarted: the interrupted run is closed as failed with its reason (never left running),
nothing is registered twice, and the next run succeeds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from driftloop.clickhouse.backend import EmbeddedBackend
from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.events import KafkaModelEvents
from driftloop.retrainer.policy import default_policy
from driftloop.retrainer.registry import Registry
from driftloop.retrainer.store import ClickHouseRegistryStore
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import registry_pb2, registry_pb2_grpc, retrainer_pb2, retrainer_pb2_grpc
from tests.e2e.test_registry_cli import wait_serving
from tests.retrain_data import MODEL, log_traffic, population

TOKEN = "crash-test-token"
ADMIN = admin_metadata(TOKEN, actor="tester")
OPEN = (retrainer_pb2.RUN_STATE_PENDING, retrainer_pb2.RUN_STATE_RUNNING)


async def prepare(settings: KafkaSettings, folder: Path, artifacts: LocalArtifactStore) -> None:
    """A champion and a lot of labelled traffic, written before the service starts, by a
    process of its own: a process opens one embedded ClickHouse folder in its life, and
    this test process has its own already."""
    code = (
        "import asyncio, sys; from pathlib import Path; "
        "from driftloop.kit.settings import KafkaSettings; "
        "from driftloop.models.artifacts import LocalArtifactStore; "
        "from tests.e2e.test_retrainer_crash import write_history; "
        "asyncio.run(write_history(KafkaSettings(bootstrap_servers=sys.argv[1], "
        "topic_prefix=sys.argv[2]), Path(sys.argv[3]), LocalArtifactStore(Path(sys.argv[4]))))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        str(settings.bootstrap_servers),
        settings.topic_prefix,
        str(folder),
        str(artifacts.root),
    )
    assert await asyncio.wait_for(process.wait(), 120) == 0


async def write_history(
    settings: KafkaSettings, folder: Path, artifacts: LocalArtifactStore
) -> None:
    assert settings.bootstrap_servers is not None
    backend = EmbeddedBackend(folder)
    clickhouse = ClickHouse(backend, "driftloop")
    producer = EventProducer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await clickhouse.apply_schema()
        events = KafkaModelEvents(producer, TopicNames(settings.topic_prefix).model_events)
        registry = Registry(ClickHouseRegistryStore(clickhouse), artifacts, events)
        trained = train_linear(population(1, 3000), TrainingSpec(target="churned"))
        record = version_record(
            trained, model=MODEL, artifact_sha256=artifacts.put(trained.artifact), source="t"
        )
        v1 = await registry.register(new_version_from_proto(record), "tester")
        await registry.set_alias(MODEL, "champion", v1.version, "", "first", "tester")
        flipped = population(2, 60_000, flip_regions="abc")
        await log_traffic(PredictionLog(clickhouse), trained.model, v1.version, flipped)
    finally:
        await producer.stop()
        await clickhouse.close()


async def kill_tree(process: asyncio.subprocess.Process) -> None:
    """SIGKILL a process and every process it started (its training worker): the children
    through psutil, the process itself through asyncio, which reaps it."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.kill()
    for child in children:
        child.kill()
    await asyncio.to_thread(psutil.wait_procs, children, 10)
    await process.wait()


async def test_a_retrainer_killed_mid_run_closes_the_run_and_registers_nothing_twice(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    folder, artifacts = tmp_path / "clickhouse", LocalArtifactStore(tmp_path / "artifacts")
    await prepare(kafka_settings, folder, artifacts)
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": str(kafka_settings.bootstrap_servers),
        "DRIFTLOOP_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(folder),
        "DRIFTLOOP_ARTIFACTS_PATH": str(artifacts.root),
        "DRIFTLOOP_ADMIN_TOKEN": TOKEN,
        "DRIFTLOOP_RETRAINER_PORT": str(port),
        "DRIFTLOOP_RETRAINER_CHECK_EVERY_S": "3600",
        "DRIFTLOOP_LOG_LEVEL": "ERROR",
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "driftloop.retrainer", env=env
        )
        await wait_serving(f"127.0.0.1:{port}", process)
        return process

    process = await start()
    channel = open_channel(f"127.0.0.1:{port}")
    stub = retrainer_pb2_grpc.RetrainerStub(channel)
    registry = registry_pb2_grpc.ModelRegistryStub(channel)
    try:
        policy = default_policy(MODEL)
        policy.rollout.on_pass = retrainer_pb2.ROLLOUT_ON_PASS_NONE
        policy.training.max_rows = 60_000
        await stub.SetTrainingPolicy(
            retrainer_pb2.SetTrainingPolicyRequest(policy=policy), timeout=10, metadata=ADMIN
        )
        run = await stub.TriggerRetrain(
            retrainer_pb2.TriggerRetrainRequest(model=MODEL), timeout=10, metadata=ADMIN
        )
        deadline = time.monotonic() + 60
        while True:  # the moment a step is under way
            current = await stub.GetRetrainRun(
                retrainer_pb2.GetRetrainRunRequest(run_id=run.run_id), timeout=10
            )
            running = [s for s in current.steps if s.state == retrainer_pb2.STEP_STATE_RUNNING]
            if running:
                break
            assert current.state in (
                retrainer_pb2.RUN_STATE_PENDING,
                retrainer_pb2.RUN_STATE_RUNNING,
            )
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        interrupted_in = running[0].name
        await kill_tree(process)
        assert process.returncode == -signal.SIGKILL
        process = await start()
        closed = await stub.GetRetrainRun(
            retrainer_pb2.GetRetrainRunRequest(run_id=run.run_id), timeout=10
        )
        assert closed.state == retrainer_pb2.RUN_STATE_FAILED
        assert f"interrupted: the retrainer stopped during {interrupted_in}" in closed.outcome
        assert all(s.state != retrainer_pb2.STEP_STATE_RUNNING for s in closed.steps)
        # A new run goes through, and every run registered at most one version.
        again = await stub.TriggerRetrain(
            retrainer_pb2.TriggerRetrainRequest(model=MODEL), timeout=10, metadata=ADMIN
        )
        deadline = time.monotonic() + 120
        while again.state in OPEN:
            assert time.monotonic() < deadline, again
            await asyncio.sleep(0.2)
            again = await stub.GetRetrainRun(
                retrainer_pb2.GetRetrainRunRequest(run_id=again.run_id), timeout=10
            )
        assert again.state == retrainer_pb2.RUN_STATE_SUCCEEDED, again.outcome
        versions = (
            await registry.ListModelVersions(
                registry_pb2.ListModelVersionsRequest(model=MODEL), timeout=10
            )
        ).versions
        run_ids = [v.tags.get("driftloop.run_id", "") for v in versions]
        assert run_ids.count(again.run_id) == 1
        assert len([r for r in run_ids if r]) == len({r for r in run_ids if r})
    finally:
        await channel.close()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                await kill_tree(process)
