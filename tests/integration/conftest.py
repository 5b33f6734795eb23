"""Fixtures of the integration tests: the service stack against the real broker and engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.v1 import registry_pb2_grpc
from tests.integration.stack import TOKEN, Stack


@pytest.fixture
async def stack(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[Stack]:
    assert kafka_settings.bootstrap_servers is not None
    store = LocalArtifactStore(tmp_path / "artifacts")
    retrainer = RetrainerService(
        RetrainerSettings(port=0, admin_token=SecretStr(TOKEN)),
        kafka_settings,
        kafka_settings.bootstrap_servers,
        clickhouse,
        store,
    )
    await retrainer.start()
    inference = InferenceService(
        InferenceSettings(
            port=0, admin_token=SecretStr(TOKEN), registry_target=f"127.0.0.1:{retrainer.port}"
        ),
        store,
        kafka_settings,
        kafka_settings.bootstrap_servers,
    )
    await inference.start()
    registry_channel = open_channel(f"127.0.0.1:{retrainer.port}")
    stack = Stack(
        kafka_settings, store, registry_pb2_grpc.ModelRegistryStub(registry_channel), inference
    )
    stack.registry_target = f"127.0.0.1:{retrainer.port}"
    yield stack
    for channel in stack.channels:
        await channel.close()
    for gateway in stack.gateways:
        await gateway.stop(0)
    await registry_channel.close()
    await inference.stop(0)
    await retrainer.stop(0)
