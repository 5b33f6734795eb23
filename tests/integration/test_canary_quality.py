"""Canaries judged by the drift service on the logged traffic, against the real broker and
the real ClickHouse engine: a candidate whose calls fail is rolled back by the error-rate
check (its failures reach the log), and with the standalone stack's default settings a
candidate that is confidently wrong, but fails nothing, is rolled back once labels arrive
and never promoted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from driftloop.cli.stack import running_services
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.table import Column, Table
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.v1 import events_pb2, gateway_pb2
from tests.integration.stack import ADMIN, ROW, Stack, read_topic, set_policy, until


class Flaky:
    """A candidate (python flavor) that raises on 5% of its inputs: x0 below 0.05."""

    @classmethod
    def load(cls, path: Path) -> Flaky:
        return cls()

    def predict(self, rows: list[dict[str, float]]) -> list[float]:
        if any(row["x0"] < 0.05 for row in rows):
            raise RuntimeError("this model fails on small x0")
        return [0.5 for _ in rows]


@pytest.fixture
async def drift(
    stack: Stack, kafka_settings: KafkaSettings, clickhouse: ClickHouse
) -> AsyncIterator[int]:
    """A drift service on the stack's registry whose sink writes to ClickHouse; its port."""
    assert kafka_settings.bootstrap_servers is not None
    service = DriftService(
        DriftSettings(
            host="127.0.0.1",
            port=0,
            registry_target=stack.registry_target,
            sink_batch=5000,
            evaluate_every_s=3600,
            evaluate_every_rows=0,
        ),
        kafka_settings,
        kafka_settings.bootstrap_servers,
        clickhouse,
    )
    port = await service.start()
    try:
        yield port
    finally:
        await service.stop(grace=1)


async def test_a_candidate_failing_5_percent_of_calls_is_rolled_back_by_the_drift_service(
    stack: Stack, drift: int
) -> None:
    v1 = await stack.register_linear(1)
    flaky = await stack.register_user("tests.integration.test_canary_quality:Flaky")
    await stack.champion(v1)
    # Two replicas; the one that serves never runs the controller (its lease is given up),
    # so the controller's own traffic analysis sees nothing: only the drift service, which
    # reads the log of every replica, can fail the canary. No labels: the output distance
    # is switched off, as the flaky model answers 0.5 throughout.
    wiring: dict[str, Any] = {
        "drift_target": f"127.0.0.1:{drift}",
        "canary_max_output_distance": 1.0,
    }
    controller = await stack.gateway(controller_interval_s=0.5, **wiring)
    serving = await stack.gateway(**wiring)
    await stack.gateways[-1].lease.stop()
    lease = stack.gateways[-2].lease
    await until(lambda: asyncio.sleep(0, result=lease.held))
    await set_policy(controller, events_pb2.RoutingPolicy(model="churn", stable_version=v1))
    await controller.StartRollout(
        gateway_pb2.StartRolloutRequest(
            model="churn",
            candidate_version=flaky,
            strategy=gateway_pb2.ROLLOUT_STRATEGY_CANARY,
            steps=[
                events_pb2.CanaryStep(weight_bp=5000, min_requests=100_000, min_duration_s=3600),
                events_pb2.CanaryStep(weight_bp=10_000),
            ],
        ),
        timeout=30,
        metadata=ADMIN,
    )

    async def in_canary() -> bool:
        policy = await serving.GetRoutingPolicy(
            gateway_pb2.GetRoutingPolicyRequest(model="churn"), timeout=5
        )
        return bool(policy.canary.candidate_version == flaky)

    await until(in_canary)
    answered: list[gateway_pb2.PredictResponse] = []
    deadline = time.monotonic() + 60
    while await in_canary():
        assert time.monotonic() < deadline, f"not rolled back after {len(answered)} requests"
        batch = gateway_pb2.PredictBatchRequest(model="churn")
        for n in range(len(answered), len(answered) + 200):
            row = batch.requests.add(request_id=f"r{n}").row
            row.CopyFrom(ROW)
            row.features["x0"].number = (n % 100) / 100
        answered += (await serving.PredictBatch(batch, timeout=30)).responses
        await asyncio.sleep(0.2)
    assert all(r.version == v1 for r in answered if r.variant == "stable")  # nobody saw one

    names = TopicNames(stack.kafka.topic_prefix)
    events = [
        events_pb2.ModelEvent.FromString(value)
        for value in await read_topic(stack.kafka, names.model_events, 2)
    ]
    rolled_back = [e for e in events if e.kind == events_pb2.MODEL_EVENT_KIND_ROLLED_BACK]
    assert len(rolled_back) == 1 and rolled_back[0].version == flaky
    assert "drift service: error rate" in rolled_back[0].reason, rolled_back[0].reason

    # Every failed call is on the log with its status and no output, then the stable answer.
    log = stack.gateways[-1].prediction_log
    await until(lambda: asyncio.sleep(0, result=log.counts.delivered == log.counts.offered))
    assert log.counts.dropped == 0
    canary = [r for r in answered if r.variant == "canary"]
    logged = [
        events_pb2.PredictionEvent.FromString(value)
        for value in await read_topic(stack.kafka, names.predictions, log.counts.offered)
    ]
    failed = [e for e in logged if e.error]
    assert failed and {e.version for e in failed} == {flaky}
    assert {e.variant for e in failed} == {"canary"} and {e.error for e in failed} <= {
        "INTERNAL",
        "UNKNOWN",
    }
    assert all(not e.HasField("output") and e.features["x0"].number < 0.05 for e in failed)
    assert all(e.HasField("time") and e.latency_us > 0 for e in failed)
    by_request = {e.request_id: e for e in logged if not e.error}
    assert all(by_request[e.request_id].version == v1 for e in failed)
    assert len(logged) == len(answered) + len(failed)
    assert 0.02 < len(failed) / (len(canary) + len(failed)) < 0.09


# The standalone stack's test: a seeded world where churn follows the sign of `s`.
MODEL = "risk"


def world(rows: int, seed: int, inverted: bool = False) -> tuple[Table, list[str]]:
    """Customers whose churn follows the sign of s (92% of the time); the labels as the
    models name them. `inverted`: the labels of a model trained to be confidently wrong."""
    rng = np.random.default_rng(seed)
    s = rng.choice([-1.0, 1.0], rows)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-(2.5 * s + 0.3 * x1)))).astype(np.float64)
    target = 1.0 - churned if inverted else churned
    columns: dict[str, Column] = {"s": s, "x1": x1, "x2": x2, "churned": target}
    return Table(columns), ["1" if c else "0" for c in churned]


async def test_a_confidently_wrong_candidate_is_rolled_back_once_labels_exist(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    bootstrap = kafka_settings.bootstrap_servers
    right = train_linear(world(4000, 1)[0], TrainingSpec(target="churned"))
    wrong = train_linear(world(4000, 2, inverted=True)[0], TrainingSpec(target="churned"))
    producer = EventProducer(kafka_settings, bootstrap)
    await producer.start()
    try:
        async with (
            running_services(  # the standalone composition, default settings
                kafka_settings,
                bootstrap,
                clickhouse,
                LocalArtifactStore(tmp_path / "artifacts"),
                SecretStr("canary-quality-test"),
            ) as services,
            DriftloopClient(services.client_settings("tester")) as client,
        ):
            first = await client.register_trained(MODEL, right, source="test")
            await client.set_alias(MODEL, "champion", first.version, reason="first version")
            await client.set_routing_policy(
                events_pb2.RoutingPolicy(model=MODEL, stable_version=first.version),
                expected_revision=0,
            )
            await asyncio.wait_for(services.gateway.lease.acquired.wait(), 60)
            candidate = await client.register_trained(MODEL, wrong, source="test")
            await client.start_rollout(MODEL, candidate.version, "canary")  # the default plan
            names = TopicNames(kafka_settings.topic_prefix)
            served, seed, deadline = 0, 100, time.monotonic() + 60
            while (await client.routing_policy(MODEL)).canary.candidate_version:
                assert time.monotonic() < deadline, f"not rolled back after {served} requests"
                table, truths = world(500, seed)
                seed += 1
                rows = [
                    {name: float(table.columns[name][i]) for name in ("s", "x1", "x2")}
                    for i in range(500)
                ]
                responses = await client.serve_batch(MODEL, rows)
                served += len(responses)
                deliveries = []
                for response, truth in zip(responses, truths, strict=True):
                    label = events_pb2.LabelEvent(
                        request_id=response.request_id, label=truth, source="test"
                    )
                    label.time.GetCurrentTime()
                    deliveries.append(
                        await producer.enqueue(names.labels, response.request_id, label)
                    )
                await asyncio.gather(*deliveries)
            history = await client.alias_history(MODEL, "champion")
    finally:
        await producer.stop()
    assert [move.version for move in history] == [first.version]  # never promoted
    events = [
        events_pb2.ModelEvent.FromString(value)
        for value in await read_topic(kafka_settings, names.model_events, 4)
    ]
    kinds = [e.kind for e in events if e.model == MODEL]
    assert events_pb2.MODEL_EVENT_KIND_PROMOTED not in kinds
    (rolled_back,) = [e for e in events if e.kind == events_pb2.MODEL_EVENT_KIND_ROLLED_BACK]
    assert rolled_back.version == candidate.version
    assert "drift service: quality" in rolled_back.reason, rolled_back.reason
    assert "output distance" not in rolled_back.reason and "error rate" not in rolled_back.reason
