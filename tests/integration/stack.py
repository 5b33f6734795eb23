"""The registry, inference and gateway services in one test process, as tests drive them:
register versions, start gateways, set policies, call them, wait on conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.inference.server import InferenceService
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.v1 import events_pb2, gateway_pb2, gateway_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.datasets import churn, without

TOKEN = "gateway-test-token"
ADMIN = admin_metadata(TOKEN)
DATA = without(churn(), "segment", "spend")
ROW = row_to_proto({f"x{i}": 0.5 for i in range(6)} | {"plan": "pro", "region": "north"})


@dataclass
class Stack:
    kafka: KafkaSettings
    store: LocalArtifactStore
    registry: registry_pb2_grpc.ModelRegistryStub
    inference: InferenceService
    gateways: list[GatewayService] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def register_linear(self, seed: int) -> str:
        trained = train_linear(DATA, TrainingSpec(target="churned", seed=seed))
        record = version_record(
            trained, model="churn", artifact_sha256=self.store.put(trained.artifact), source="test"
        )
        return await self._register(record)

    async def register_user(self, entry_point: str) -> str:
        schema = train_linear(DATA, TrainingSpec(target="churned")).model.schema
        record = registry_pb2.ModelVersion(
            model="churn",
            flavor="python",
            artifact_sha256=self.store.put(b"-"),
            schema=schema_to_proto(schema),
            output_kind=OUTPUT_KINDS["binary"],
            entry_point=entry_point,
        )
        return await self._register(record)

    async def _register(self, record: registry_pb2.ModelVersion) -> str:
        registered = await self.registry.RegisterModelVersion(
            registry_pb2.RegisterModelVersionRequest(version=record), timeout=10, metadata=ADMIN
        )
        return str(registered.version)

    async def champion(self, version: str, expected: str = "") -> None:
        await self.registry.SetAlias(
            registry_pb2.SetAliasRequest(
                model="churn", alias="champion", version=version, expected_version=expected
            ),
            timeout=10,
            metadata=ADMIN,
        )

    async def gateway(
        self, bootstrap: str | None = None, **overrides: Any
    ) -> gateway_pb2_grpc.GatewayStub:
        options: dict[str, Any] = {
            "port": 0,
            "admin_token": SecretStr(TOKEN),
            "inference_targets": [f"127.0.0.1:{self.inference.port}"],
            "registry_target": self.registry_target,
            "controller_interval_s": 0.1,
        }
        settings = GatewaySettings(**(options | overrides))
        kafka = (
            self.kafka
            if bootstrap is None
            else self.kafka.model_copy(update={"bootstrap_servers": bootstrap})
        )
        assert kafka.bootstrap_servers is not None
        service = GatewayService(settings, kafka, kafka.bootstrap_servers)
        await service.start()
        self.gateways.append(service)
        channel = open_channel(f"127.0.0.1:{service.port}")
        self.channels.append(channel)
        return gateway_pb2_grpc.GatewayStub(channel)

    registry_target: str = ""


async def set_policy(
    gateway: gateway_pb2_grpc.GatewayStub, policy: events_pb2.RoutingPolicy, expected: int = 0
) -> events_pb2.RoutingPolicy:
    result: events_pb2.RoutingPolicy = await gateway.SetRoutingPolicy(
        gateway_pb2.SetRoutingPolicyRequest(policy=policy, expected_revision=expected),
        timeout=10,
        metadata=ADMIN,
    )
    return result


async def predict(
    gateway: gateway_pb2_grpc.GatewayStub, key: str = "", request_id: str = ""
) -> gateway_pb2.PredictResponse:
    response: gateway_pb2.PredictResponse = await gateway.Predict(
        gateway_pb2.PredictRequest(model="churn", entity_key=key, request_id=request_id, row=ROW),
        timeout=10,
    )
    return response


async def until(
    condition: Callable[[], Awaitable[bool]],
    seconds: float = 30,
    traffic: gateway_pb2_grpc.GatewayStub | None = None,
) -> None:
    deadline = time.monotonic() + seconds
    n = 0
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        if traffic is not None:
            await asyncio.gather(*(predict(traffic, key=f"user-{n + i}") for i in range(20)))
            n += 20
        else:
            await asyncio.sleep(0.05)


async def read_topic(
    settings: KafkaSettings, topic: str, count: int, seconds: float = 20
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + seconds
        while len(values) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(m.value for ms in batch.values() for m in ms)
    finally:
        await consumer.stop()
    return values


async def rewind(settings: KafkaSettings, group: str, topics: Sequence[str]) -> None:
    """Move the group's committed offsets on these single-partition topics back to the
    start: every record is delivered to it again (what a crash before the commit, or an
    operator, does)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0) for topic in topics]
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
