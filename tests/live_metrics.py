"""The five services run as the standalone composition runs them (real broker, embedded
ClickHouse, each service's `metrics_port` setting), after a little traffic: served
predictions, their labels and one label that does not decode. The `live_metrics` fixture
serves any check of metric names against the live /metrics endpoints (the alerting rules',
the Grafana dashboards'): `await live_metrics.missing(names)`.

In standalone mode the five services share one process, so each endpoint serves every
service's metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from driftloop.cli.stack import HOST, Services, running_services
from driftloop.cli.up import SERVICES
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.v1 import events_pb2
from tests.metric_names import missing, scrape
from tests.retrain_data import MODEL, population, rows_of

OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {"evaluate_every_s": 3600},
    "gateway": {"request_timeout_s": 10},  # the first call loads the version: slow under load
    "retrainer": {"training": False},
    "shadow": {"compare_every_s": 3600},
}
SERVED = 200


@dataclass
class LiveMetrics:
    services: Services
    kafka: KafkaSettings
    ports: dict[str, int]  # each service's metrics port
    producer: EventProducer

    async def send_undecodable_label(self) -> None:
        """A label the drift sink cannot decode: it goes to dead-letter."""
        await self.producer.publish(TopicNames(self.kafka.topic_prefix).labels, "bad", b"{x")

    async def pages(self) -> dict[str, str]:
        """Each service's /metrics page, now."""
        return {
            name: await asyncio.to_thread(scrape, HOST, port) for name, port in self.ports.items()
        }

    async def missing(self, names: Iterable[str]) -> list[str]:
        """The names no endpoint exposes (Prometheus's own `up` and scrape series aside)."""
        return missing(names, (await self.pages()).values())

    async def has(self, name: str, **labels: str) -> bool:
        """Whether an endpoint has a series of `name` with these labels (among others)."""
        return any(
            sample.name == name and labels.items() <= sample.labels.items()
            for page in (await self.pages()).values()
            for family in text_string_to_metric_families(page)
            for sample in family.samples
        )


@pytest.fixture
async def live_metrics(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[LiveMetrics]:
    assert kafka_settings.bootstrap_servers is not None
    ports = {name: free_port(HOST) for name in SERVICES}
    overrides = {name: {**OVERRIDES.get(name, {}), "metrics_port": ports[name]} for name in ports}
    store = LocalArtifactStore(tmp_path / "artifacts")
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    try:
        async with (
            running_services(
                kafka_settings,
                kafka_settings.bootstrap_servers,
                clickhouse,
                store,
                SecretStr("metrics-test"),
                overrides=overrides,
            ) as services,
            DriftloopClient(services.client_settings("tester")) as client,
        ):
            table = population(1, SERVED)
            trained = train_linear(table, TrainingSpec(target="churned", seed=1))
            record = version_record(
                trained, model=MODEL, artifact_sha256=store.put(trained.artifact), source="t"
            )
            version = (await services.retrainer.registry.register(record, "tester")).version
            await client.set_routing_policy(
                events_pb2.RoutingPolicy(model=MODEL, stable_version=version), 0
            )
            responses = await client.serve_batch(MODEL, rows_of(table))
            labels = TopicNames(kafka_settings.topic_prefix).labels
            for response in responses:
                await producer.enqueue(
                    labels,
                    response.request_id,
                    events_pb2.LabelEvent(request_id=response.request_id, label="1"),
                )
            await producer.flush()
            live = LiveMetrics(services, kafka_settings, ports, producer)
            await live.send_undecodable_label()
            yield live
    finally:
        await producer.stop()
