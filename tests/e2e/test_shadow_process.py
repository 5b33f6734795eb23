"""The shadow service as its own process, as deployed. Killed with SIGKILL mid-stream and
restarted: every mirrored request ends answered (none lost), and a request answered twice
(once before the kill, once re-delivered after it) makes the same row, stored once. Given a
slow shadow: the live answers and their latency stay what they are with no shadow."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.client import ClientSettings, DriftloopClient
from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.convert import row_to_proto
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.registry import NewVersion
from driftloop.retrainer.server import RetrainerService
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import common_pb2, events_pb2, gateway_pb2, gateway_pb2_grpc
from tests.e2e.test_registry_cli import wait_serving
from tests.integration.stack import TOKEN
from tests.retrain_data import MODEL, population, rows_of

# Enough that the kill (after 1,000 answers) lands mid-stream with commits on both sides,
# few enough that the restarted service's catch-up fits the test's time on a loaded 2-core host.
REQUESTS = 8_000


@dataclass
class Serving:
    registry: RetrainerService
    store: LocalArtifactStore
    port: int  # the inference service's
    version: str  # a linear version


@pytest.fixture
async def serving(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[Serving]:
    """Registry and inference in this process, with one linear version."""
    assert kafka_settings.bootstrap_servers is not None
    store = LocalArtifactStore(tmp_path / "artifacts")
    registry = RetrainerService(
        RetrainerSettings(port=0, admin_token=SecretStr("t"), training=False),
        kafka_settings,
        kafka_settings.bootstrap_servers,
        clickhouse,
        store,
    )
    await registry.start()
    service = InferenceService(
        InferenceSettings(
            port=0, registry_target=f"127.0.0.1:{registry.port}", admin_token=SecretStr(TOKEN)
        ),
        store,
        kafka_settings,
        kafka_settings.bootstrap_servers,
    )
    await service.start()
    try:
        trained = train_linear(population(1, 2000), TrainingSpec(target="churned"))
        record = version_record(
            trained, model=MODEL, artifact_sha256=store.put(trained.artifact), source="t"
        )
        new = new_version_from_proto(record)
        version = (await registry.registry.register(new, "tester")).version
        yield Serving(registry, store, service.port, version)
    finally:
        await service.stop(0)
        await registry.stop(0)


def shadow_environment(
    kafka_settings: KafkaSettings, serving: Serving, port: int, tmp_path: Path, **extra: str
) -> dict[str, str]:
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": str(kafka_settings.bootstrap_servers),
        "DRIFTLOOP_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "shadow-clickhouse"),
        "DRIFTLOOP_SHADOW_PORT": str(port),
        "DRIFTLOOP_SHADOW_INFERENCE_TARGETS": f"127.0.0.1:{serving.port}",
        "DRIFTLOOP_SHADOW_CALL_TIMEOUT_S": "5",
        "DRIFTLOOP_LOG_LEVEL": "ERROR",
        **extra,
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    return env


async def start_shadow(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "driftloop.shadow", env=env
    )
    await wait_serving(f"127.0.0.1:{port}", process)
    return process


async def mirror_requests(settings: KafkaSettings, version: str) -> None:
    assert settings.bootstrap_servers is not None
    producer = EventProducer(settings, settings.bootstrap_servers, linger_ms=20)
    await producer.start()
    topic = TopicNames(settings.topic_prefix).shadow_requests
    try:
        for n, row in enumerate(rows_of(population(2, REQUESTS))):
            request = events_pb2.ShadowRequest(
                request_id=f"r{n}",
                model=MODEL,
                live=common_pb2.ModelRef(model=MODEL, version=version),
                shadow_versions=[version],
            )
            request.time.FromSeconds(1_790_000_000 + n)
            request.features.MergeFrom(row_to_proto(row).features)
            await producer.enqueue(topic, request.request_id, request)
        await producer.flush()
    finally:
        await producer.stop()


class Counter:
    """Follows the predictions topic in the background: every answer, as it arrives."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(
            TopicNames(settings.topic_prefix).predictions,
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
        )
        self.total = 0
        self.ids: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    self.total += 1
                    self.ids.add(events_pb2.PredictionEvent.FromString(message.value).request_id)

    async def until(self, condition: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"{self.total} answers, {len(self.ids)} ids"
            await asyncio.sleep(0.05)

    async def caught_up(self, seconds: float) -> None:
        """Wait until every record the topic holds now is counted."""
        partitions = list(self._consumer.assignment())
        assert partitions, "the counter follows no partition"
        ends = await self._consumer.end_offsets(partitions)
        deadline = time.monotonic() + seconds
        while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"{self.total} answers counted; ends {ends}"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def answers(settings: KafkaSettings) -> list[events_pb2.PredictionEvent]:
    consumer = AIOKafkaConsumer(
        TopicNames(settings.topic_prefix).predictions,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    events: list[events_pb2.PredictionEvent] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                return events
            events += [
                events_pb2.PredictionEvent.FromString(m.value) for ms in batch.values() for m in ms
            ]
    finally:
        await consumer.stop()


async def test_a_shadow_service_killed_mid_stream_answers_everything_once(
    kafka_settings: KafkaSettings,
    clickhouse: ClickHouse,
    serving: Serving,
    tmp_path: Path,
) -> None:
    await mirror_requests(kafka_settings, serving.version)
    port = free_port()
    # Many commits: the kill lands between two.
    env = shadow_environment(kafka_settings, serving, port, tmp_path, DRIFTLOOP_SHADOW_BATCH="100")

    async def start() -> asyncio.subprocess.Process:
        return await start_shadow(env, port)

    counter = Counter(kafka_settings)
    await counter.start()
    process = await start()
    try:
        await counter.until(lambda: counter.total >= 1000, 60)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await counter.caught_up(30)  # what the broker had acknowledged is in the counter
        assert counter.total < REQUESTS, "killed mid-stream"
        process = await start()
        await counter.until(lambda: len(counter.ids) >= REQUESTS, 90)
    finally:
        await counter.stop()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    events = await answers(kafka_settings)
    assert {e.request_id for e in events} == {f"r{n}" for n in range(REQUESTS)}
    assert all(e.role == common_pb2.ROLE_SHADOW and e.error == "" for e in events)
    # A request answered twice made the same row key (the live request's time): stored once.
    log = PredictionLog(clickhouse)
    await log.write(events)
    stored = await clickhouse.query(
        f"SELECT count(), uniqExact(request_id) FROM {clickhouse.table('predictions')} FINAL "
        "WHERE role = 'shadow'"
    )
    assert stored.rows[0] == (REQUESTS, REQUESTS)


async def test_a_slow_shadow_leaves_live_answers_and_latency_alone(
    kafka_settings: KafkaSettings, serving: Serving, tmp_path: Path
) -> None:
    """The gateway only mirrors (a bounded buffer, then the broker): a shadow taking 50 ms a
    call, answered by the same inference service as live, changes no live answer and no
    live latency; the shadow service, in its own process as deployed, reports its work."""
    assert kafka_settings.bootstrap_servers is not None
    slow = await serving.registry.registry.register(
        NewVersion(
            model=MODEL,
            flavor="python",
            artifact_sha256=serving.store.put(b"-"),
            schema=(await serving.registry.registry.get(MODEL, serving.version)).schema,
            output_kind="binary",
            entry_point="tests.user_model:SlowShadow",
        ),
        "tester",
    )
    gateway = GatewayService(
        GatewaySettings(
            port=0,
            admin_token=SecretStr(TOKEN),
            inference_targets=[f"127.0.0.1:{serving.port}"],
            registry_target=f"127.0.0.1:{serving.registry.port}",
        ),
        kafka_settings,
        kafka_settings.bootstrap_servers,
    )
    await gateway.start()
    port = free_port()
    process = await start_shadow(shadow_environment(kafka_settings, serving, port, tmp_path), port)
    try:
        async with (
            open_channel(f"127.0.0.1:{gateway.port}") as channel,
            DriftloopClient(ClientSettings(shadow_target=f"127.0.0.1:{port}")) as client,
        ):
            stub = gateway_pb2_grpc.GatewayStub(channel)
            row = row_to_proto(rows_of(population(8, 1))[0])

            async def policy(shadow: list[str], revision: int) -> int:
                routing = events_pb2.RoutingPolicy(model=MODEL, stable_version=serving.version)
                routing.shadow.versions.extend(shadow)
                routing.shadow.sample_bp = 10_000 if shadow else 0
                committed = await stub.SetRoutingPolicy(
                    gateway_pb2.SetRoutingPolicyRequest(policy=routing, expected_revision=revision),
                    timeout=10,
                    metadata=admin_metadata(TOKEN),
                )
                return int(committed.revision)

            async def latencies(count: int) -> tuple[list[float], set[float]]:
                times, outputs = [], set()
                for _ in range(count):
                    started = time.perf_counter()
                    response = await stub.Predict(
                        gateway_pb2.PredictRequest(model=MODEL, row=row), timeout=5
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    outputs.add(round(response.output.value, 12))
                return times, outputs

            revision = await policy([], 0)
            await latencies(50)  # warm up
            off, off_outputs = await latencies(300)
            await policy([slow.version], revision)
            on, on_outputs = await latencies(300)
            assert on_outputs == off_outputs  # the live answer is the same
            p50_off, p50_on = statistics.median(off), statistics.median(on)
            p99_off, p99_on = np.quantile(off, 0.99), np.quantile(on, 0.99)
            print(
                f"live ms, shadow off/on: p50 {p50_off:.2f}/{p50_on:.2f}, "
                f"p99 {p99_off:.2f}/{p99_on:.2f}"
            )
            assert p50_on <= 1.5 * p50_off + 1.0, (p50_off, p50_on)
            assert p99_on <= 2.0 * p99_off + 5.0, (p99_off, p99_on)
            deadline = time.monotonic() + 60
            while (status := await client.shadow_status()).answered < 300:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
            assert status.failed == 0 and status.lag_s >= 0 and status.skipped_share >= 0
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        await gateway.stop(0)
