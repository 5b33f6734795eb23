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

from driftloop.cli.stack import HOST
from driftloop.cli.up import SERVICES
from driftloop.clickhouse.client import ClickHouse
from driftloop.kafka.local_broker import free_port
from driftloop.kit.settings import KafkaSettings
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.v1 import events_pb2
from tests.metric_names import missing, scrape
from tests.retrain_data import MODEL, population, rows_of
from tests.standalone import Standalone, standalone

OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {"evaluate_every_s": 3600, "evaluate_every_rows": 0},
    "gateway": {"request_timeout_s": 10},  # the first call loads the version: slow under load
    "retrainer": {"training": False},
    "shadow": {"compare_every_s": 3600},
}
SERVED = 200


@dataclass
class LiveMetrics:
    stack: Standalone
    kafka: KafkaSettings
    ports: dict[str, int]  # each service's metrics port

    async def send_undecodable_label(self) -> None:
        """A label the drift sink cannot decode: it goes to dead-letter."""
        await self.stack.producer.publish(self.stack.names.labels, "bad", b"{x")

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
    ports = {name: free_port(HOST) for name in SERVICES}
    overrides = {name: {**OVERRIDES.get(name, {}), "metrics_port": ports[name]} for name in ports}
    async with standalone(kafka_settings, clickhouse, tmp_path, "metrics-test", overrides) as stack:
        table = population(1, SERVED)
        trained = train_linear(table, TrainingSpec(target="churned", seed=1))
        version = (await stack.client.register_trained(MODEL, trained, source="test")).version
        await stack.client.set_routing_policy(
            events_pb2.RoutingPolicy(model=MODEL, stable_version=version), 0
        )
        for response in await stack.client.serve_batch(MODEL, rows_of(table)):
            await stack.producer.enqueue(
                stack.names.labels,
                response.request_id,
                events_pb2.LabelEvent(request_id=response.request_id, label="1"),
            )
        await stack.producer.flush()
        live = LiveMetrics(stack, kafka_settings, ports)
        await live.send_undecodable_label()
        yield live
