"""The inference service with the registry: every flavor over gRPC, and every bad input."""

from __future__ import annotations

import asyncio
import math
import pickle
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from river import linear_model, preprocessing

from driftloop.clickhouse.client import ClickHouse
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.convert import OUTPUT_KINDS, row_to_proto, schema_to_proto
from driftloop.models.registration import version_record
from driftloop.models.schema import Feature, Schema
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from tests.datasets import churn, without

TOKEN = "inference-test-token"
ADMIN = admin_metadata(TOKEN)
DATA = without(churn(), "segment", "spend")
ROW: dict[str, float | str] = {f"x{i}": 0.5 for i in range(6)} | {"plan": "pro", "region": "north"}
XY = Schema((Feature("x", "number"), Feature("y", "number")))


@dataclass
class Stack:
    retrainer: RetrainerService
    inference: InferenceService
    store: LocalArtifactStore
    registry: registry_pb2_grpc.ModelRegistryStub
    stub: inference_pb2_grpc.InferenceServiceStub
    channel: grpc.aio.Channel

    async def register(self, record: registry_pb2.ModelVersion) -> str:
        registered: registry_pb2.ModelVersion = await self.registry.RegisterModelVersion(
            registry_pb2.RegisterModelVersionRequest(version=record), timeout=10, metadata=ADMIN
        )
        return registered.version

    async def alias(self, model: str, alias: str, version: str, expected: str = "") -> None:
        await self.registry.SetAlias(
            registry_pb2.SetAliasRequest(
                model=model, alias=alias, version=version, expected_version=expected
            ),
            timeout=10,
            metadata=ADMIN,
        )

    async def predict(
        self, model: str, version: str, row: dict[str, Any]
    ) -> inference_pb2.InferenceResponse:
        response: inference_pb2.InferenceResponse = await self.stub.Predict(
            inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model=model, version=version),
                request_id="r1",
                row=row_to_proto(row),
            ),
            timeout=10,
        )
        return response


StackFactory = Callable[..., Any]


@pytest.fixture
async def make_stack(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[StackFactory]:
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
    started: list[tuple[InferenceService, grpc.aio.Channel]] = []

    async def build(**overrides: Any) -> Stack:
        settings = InferenceSettings(
            port=0,
            admin_token=SecretStr(TOKEN),
            registry_target=f"127.0.0.1:{retrainer.port}",
            **overrides,
        )
        inference = InferenceService(
            settings, store, kafka_settings, kafka_settings.bootstrap_servers
        )
        await inference.start()
        registry_channel = open_channel(f"127.0.0.1:{retrainer.port}")
        channel = open_channel(f"127.0.0.1:{inference.port}")
        started.append((inference, channel))
        started.append((inference, registry_channel))
        return Stack(
            retrainer,
            inference,
            store,
            registry_pb2_grpc.ModelRegistryStub(registry_channel),
            inference_pb2_grpc.InferenceServiceStub(channel),
            channel,
        )

    yield build
    for inference, channel in started:
        await channel.close()
        await inference.stop(0)
    await retrainer.stop(0)


async def register_linear(stack: Stack, seed: int = 3) -> str:
    trained = train_linear(DATA, TrainingSpec(target="churned", seed=seed))
    digest = stack.store.put(trained.artifact)
    return await stack.register(
        version_record(trained, model="churn", artifact_sha256=digest, source="test")
    )


def other_flavor(
    model: str, flavor: str, digest: str, kind: str, entry_point: str = ""
) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        model=model,
        flavor=flavor,
        artifact_sha256=digest,
        schema=schema_to_proto(XY),
        output_kind=OUTPUT_KINDS[kind],  # type: ignore[index]
        entry_point=entry_point,
    )


async def test_every_flavor_predicts_over_grpc(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    version = await register_linear(stack)
    await stack.alias("churn", "champion", version)
    by_version = await stack.predict("churn", version, ROW)
    by_alias = await stack.predict("churn", "champion", ROW)
    assert by_version.output == by_alias.output
    assert by_alias.model.version == version
    assert by_alias.request_id == "r1"
    assert by_alias.output.kind == common_pb2.OUTPUT_KIND_BINARY
    assert 0.0 < by_alias.output.value < 1.0
    assert by_alias.output.label in {"0", "1"}
    assert sum(by_alias.output.probabilities.values()) == pytest.approx(1.0)

    river_model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    for i in range(300):
        river_model.learn_one({"x": float(i % 10), "y": float(i % 4)}, 2.0 * (i % 10))
    river_version = await stack.register(
        other_flavor("river-reg", "river", stack.store.put(pickle.dumps(river_model)), "regression")
    )
    river_output = (await stack.predict("river-reg", river_version, {"x": 5.0, "y": 1.0})).output
    assert river_output.kind == common_pb2.OUTPUT_KIND_REGRESSION
    assert river_output.value == pytest.approx(10.0, abs=1.5)

    user_version = await stack.register(
        other_flavor(
            "user", "python", stack.store.put(b"3.0"), "regression", "tests.user_model:Scaled"
        )
    )
    assert (
        await stack.predict("user", user_version, {"x": 1.0, "y": 2.0})
    ).output.value == pytest.approx(9.0)

    batch = await stack.stub.PredictBatch(
        inference_pb2.InferenceBatchRequest(
            model=common_pb2.ModelRef(model="churn", version="champion"),
            rows=[row_to_proto(ROW), row_to_proto(ROW | {"x0": 3.0})],
        ),
        timeout=10,
    )
    assert len(batch.outputs) == 2
    assert batch.outputs[0] == by_alias.output
    assert batch.outputs[1].value > batch.outputs[0].value

    async def requests() -> AsyncIterator[inference_pb2.InferenceRequest]:
        for n in range(5):
            yield inference_pb2.InferenceRequest(
                model=common_pb2.ModelRef(model="churn", version=version),
                request_id=f"s{n}",
                row=row_to_proto(ROW | {"x0": float(n)}),
            )

    streamed = [response async for response in stack.stub.PredictStream(requests(), timeout=10)]
    assert [r.request_id for r in streamed] == [f"s{n}" for n in range(5)]
    assert [r.output.value for r in streamed] == sorted(r.output.value for r in streamed)


async def expect(call: Any, code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    assert details in (error.value.details() or ""), error.value.details()


async def test_bad_input_gets_its_precise_status(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(max_batch_rows=3)
    version = await register_linear(stack)
    await stack.predict("churn", version, ROW)
    renamed = {("colour" if k == "x0" else k): v for k, v in ROW.items()}
    await expect(
        stack.predict("churn", version, renamed),
        grpc.StatusCode.INVALID_ARGUMENT,
        "row.x0: missing feature",
    )
    await expect(
        stack.predict("churn", version, ROW | {"colour": "red"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "row.colour: unknown feature",
    )
    await expect(
        stack.predict("churn", version, ROW | {"x0": "high"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "row.x0: expected a number, got a category",
    )
    await expect(
        stack.predict("churn", version, ROW | {"x0": math.nan}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "row.x0: NaN is not allowed",
    )
    assert (
        await stack.predict("churn", version, ROW | {"x2": math.nan})
    ).output.value > 0  # x2 allows NaN
    await expect(
        stack.predict("churn", version, ROW | {"x1": math.inf}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "row.x1: infinity",
    )
    too_many = inference_pb2.InferenceBatchRequest(
        model=common_pb2.ModelRef(model="churn", version=version), rows=[row_to_proto(ROW)] * 4
    )
    await expect(
        stack.stub.PredictBatch(too_many, timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "4 rows is more than the limit of 3",
    )
    bad_second = inference_pb2.InferenceBatchRequest(
        model=common_pb2.ModelRef(model="churn", version=version),
        rows=[row_to_proto(ROW), row_to_proto(ROW | {"plan": 2.0})],
    )
    await expect(
        stack.stub.PredictBatch(bad_second, timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "rows[1].plan: expected a category",
    )
    await expect(
        stack.predict("nope", "1", ROW), grpc.StatusCode.NOT_FOUND, "'nope' has no version 1"
    )
    await expect(stack.predict("churn", "7", ROW), grpc.StatusCode.NOT_FOUND, "has no version 7")
    await expect(
        stack.predict("churn", "staging", ROW), grpc.StatusCode.NOT_FOUND, "alias 'staging'"
    )
    await expect(
        stack.predict("bad name", "1", ROW), grpc.StatusCode.INVALID_ARGUMENT, "model.model"
    )
    await expect(stack.predict("churn", "", ROW), grpc.StatusCode.INVALID_ARGUMENT, "model.version")


async def test_a_tampered_artifact_is_refused_and_never_served(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    trained = train_linear(DATA, TrainingSpec(target="churned"))
    digest = stack.store.put(trained.artifact)
    version = await stack.register(
        version_record(trained, model="churn", artifact_sha256=digest, source="test")
    )
    (stack.store.root / digest[:2] / digest).write_bytes(
        trained.artifact.replace(b'"intercepts":[', b'"intercepts":[5')
    )
    await expect(
        stack.predict("churn", version, ROW), grpc.StatusCode.DATA_LOSS, "failed verification"
    )
    await expect(
        stack.predict("churn", version, ROW), grpc.StatusCode.DATA_LOSS, "failed verification"
    )
    status = await stack.stub.GetModelStatus(
        inference_pb2.ModelStatusRequest(model="churn"), timeout=10
    )
    assert [(s.model.version, s.state) for s in status.models] == [
        (version, inference_pb2.LOAD_STATE_FAILED)
    ]
    assert "failed verification" in status.models[0].error


async def test_unavailable_while_loading_and_admin_loads(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(load_wait_s=0)
    version = await register_linear(stack)
    await expect(stack.predict("churn", version, ROW), grpc.StatusCode.UNAVAILABLE, "still loading")
    ref = common_pb2.ModelRef(model="churn", version=version)
    await expect(
        stack.stub.LoadModel(inference_pb2.LoadModelRequest(model=ref), timeout=10),
        grpc.StatusCode.UNAUTHENTICATED,
        "token",
    )
    loaded = await stack.stub.LoadModel(
        inference_pb2.LoadModelRequest(model=ref), timeout=10, metadata=ADMIN
    )
    assert loaded.state == inference_pb2.LOAD_STATE_READY
    assert loaded.output_kind == common_pb2.OUTPUT_KIND_BINARY
    assert (await stack.predict("churn", version, ROW)).model.version == version
    unloaded = await stack.stub.UnloadModel(
        inference_pb2.UnloadModelRequest(model=ref), timeout=10, metadata=ADMIN
    )
    assert unloaded.model.version == version
    assert not (
        await stack.stub.GetModelStatus(inference_pb2.ModelStatusRequest(), timeout=10)
    ).models


async def test_health_waits_for_preloaded_models_and_aliases_follow_model_events(
    make_stack: StackFactory,
) -> None:
    stack: Stack = await make_stack(preload=["churn:champion"], preload_retry_s=0.2)
    health: Any = health_pb2_grpc.HealthStub(stack.channel)

    async def serving() -> bool:
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="driftloop.v1.InferenceService"), timeout=5
        )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    assert not await serving()
    first = await register_linear(stack, seed=1)
    second = await register_linear(stack, seed=2)
    await stack.alias("churn", "champion", first)
    deadline = time.monotonic() + 20
    while not await serving():
        assert time.monotonic() < deadline, "never SERVING after the preloaded alias appeared"
        await asyncio.sleep(0.1)
    assert (await stack.predict("churn", "champion", ROW)).model.version == first
    await stack.alias("churn", "champion", second, expected=first)
    deadline = time.monotonic() + 20
    while (await stack.predict("churn", "champion", ROW)).model.version != second:
        assert time.monotonic() < deadline, "the alias move never reached the inference service"
        await asyncio.sleep(0.1)
