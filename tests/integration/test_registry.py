"""The model registry in the retrainer service: real gRPC, real Kafka, real ClickHouse engine."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.v1 import common_pb2, events_pb2, registry_pb2, registry_pb2_grpc
from tests.datasets import churn, without

TOKEN = "registry-test-token"
ADMIN = admin_metadata(TOKEN, actor="alice")
DATA = without(churn(), "segment", "spend")


@pytest.fixture
async def service(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[RetrainerService]:
    assert kafka_settings.bootstrap_servers is not None
    service = RetrainerService(
        RetrainerSettings(port=0, admin_token=SecretStr(TOKEN)),
        kafka_settings,
        kafka_settings.bootstrap_servers,
        clickhouse,
        LocalArtifactStore(tmp_path / "artifacts"),
    )
    await service.start()
    yield service
    await service.stop(0)


@pytest.fixture
async def registry(
    service: RetrainerService,
) -> AsyncIterator[registry_pb2_grpc.ModelRegistryStub]:
    async with open_channel(f"127.0.0.1:{service.port}") as channel:
        yield registry_pb2_grpc.ModelRegistryStub(channel)


def store_of(service: RetrainerService) -> LocalArtifactStore:
    store = service.registry._artifacts
    assert isinstance(store, LocalArtifactStore)
    return store


async def register(
    registry: registry_pb2_grpc.ModelRegistryStub,
    service: RetrainerService,
    seed: int = 3,
    parent: str = "",
) -> registry_pb2.ModelVersion:
    trained = train_linear(DATA, TrainingSpec(target="churned", seed=seed))
    digest = store_of(service).put(trained.artifact)
    window = common_pb2.TimeWindow()
    window.start.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    window.end.FromDatetime(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    record = version_record(
        trained,
        model="churn",
        artifact_sha256=digest,
        source="s3://bucket/churn.parquet",
        tags={"team": "growth"},
        parent_version=parent,
        window=window,
    )
    registered: registry_pb2.ModelVersion = await registry.RegisterModelVersion(
        registry_pb2.RegisterModelVersionRequest(version=record), timeout=10, metadata=ADMIN
    )
    return registered


async def model_events(settings: KafkaSettings, count: int) -> list[events_pb2.ModelEvent]:
    consumer = AIOKafkaConsumer(
        TopicNames(settings.topic_prefix).model_events,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    events: list[events_pb2.ModelEvent] = []
    try:
        deadline = time.monotonic() + 20
        while len(events) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            events += [
                events_pb2.ModelEvent.FromString(m.value) for ms in batch.values() for m in ms
            ]
    finally:
        await consumer.stop()
    return events


async def test_a_registered_version_comes_back_with_its_whole_lineage(
    registry: registry_pb2_grpc.ModelRegistryStub,
    service: RetrainerService,
    kafka_settings: KafkaSettings,
) -> None:
    first = train_linear(DATA, TrainingSpec(target="churned", seed=3))
    again = train_linear(DATA, TrainingSpec(target="churned", seed=3))
    assert first.artifact == again.artifact
    registered = await register(registry, service)
    assert registered.version == "1"
    got = await registry.GetModelVersion(
        registry_pb2.GetModelVersionRequest(model=common_pb2.ModelRef(model="churn", version="1")),
        timeout=10,
    )
    assert got == registered
    assert got.artifact_sha256 == store_of(service).put(first.artifact)
    assert got.flavor == "linear"
    assert got.output_kind == common_pb2.OUTPUT_KIND_BINARY
    assert [f.name for f in got.schema.features] == [
        "x0",
        "x1",
        "x2",
        "x3",
        "x4",
        "x5",
        "plan",
        "region",
    ]
    assert {m.name for m in got.metrics} == {"accuracy", "auc", "brier", "log_loss"}
    assert got.hyperparameters == {"l2": "1.0", "holdout_fraction": "0.2", "target": "churned"}
    assert got.seed == 3
    assert got.data.source == "s3://bucket/churn.parquet"
    assert got.data.row_count == 2000
    assert got.data.content_sha256 == DATA.content_sha256()
    assert got.data.window.end.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert got.code_version.startswith(("git:", "driftloop-models:"))
    assert {"python", "numpy", "pyarrow"} <= set(got.environment)
    assert got.created_by == "alice"
    assert abs(got.created.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(
        minutes=1
    )
    assert got.tags == {"team": "growth"}
    assert len(got.baseline.numeric) == 6 and len(got.baseline.categorical) == 2
    assert got.baseline.output.edges
    (event,) = await model_events(kafka_settings, 1)
    assert event.kind == events_pb2.MODEL_EVENT_KIND_REGISTERED
    assert (event.model, event.version, event.actor) == ("churn", "1", "alice")


async def test_lineage_follows_parents(
    registry: registry_pb2_grpc.ModelRegistryStub, service: RetrainerService
) -> None:
    await register(registry, service, seed=1)
    await register(registry, service, seed=2, parent="1")
    third = await register(registry, service, seed=3, parent="2")
    assert third.version == "3"
    chain = await registry.GetLineage(
        registry_pb2.GetModelVersionRequest(model=common_pb2.ModelRef(model="churn", version="3")),
        timeout=10,
    )
    assert [v.version for v in chain.versions] == ["3", "2", "1"]
    listed = await registry.ListModelVersions(
        registry_pb2.ListModelVersionsRequest(model="churn"), timeout=10
    )
    assert [v.version for v in listed.versions] == ["1", "2", "3"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await register(registry, service, seed=4, parent="9")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_alias_moves_are_compare_and_set_and_history_answers_for_any_instant(
    registry: registry_pb2_grpc.ModelRegistryStub,
    service: RetrainerService,
    kafka_settings: KafkaSettings,
) -> None:
    for seed in (1, 2, 3):
        await register(registry, service, seed=seed)

    async def move(version: str, expected: str) -> registry_pb2.AliasMove:
        moved: registry_pb2.AliasMove = await registry.SetAlias(
            registry_pb2.SetAliasRequest(
                model="churn",
                alias="champion",
                version=version,
                expected_version=expected,
                reason=f"promote {version}",
            ),
            timeout=10,
            metadata=ADMIN,
        )
        return moved

    instants = []
    for version, expected in (("1", ""), ("2", "1"), ("3", "2")):
        moved = await move(version, expected)
        assert (moved.previous_version, moved.actor) == (expected, "alice")
        # The instant of the move itself: the alias points there from then on.
        instants.append(moved.time.ToDatetime(tzinfo=dt.UTC))
    assert instants == sorted(set(instants))
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await move("1", "2")
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "points to version 3, not version 2" in (stale.value.details() or "")

    for instant, expected_version in zip(instants, ("1", "2", "3"), strict=True):
        request = registry_pb2.ResolveAliasRequest(model="churn", alias="champion")
        request.at.FromDatetime(instant)
        assert (await registry.ResolveAlias(request, timeout=10)).version == expected_version
    just_before = registry_pb2.ResolveAliasRequest(model="churn", alias="champion")
    just_before.at.FromDatetime(instants[2] - dt.timedelta(microseconds=1))
    assert (await registry.ResolveAlias(just_before, timeout=10)).version == "2"
    before = registry_pb2.ResolveAliasRequest(model="churn", alias="champion")
    before.at.FromDatetime(instants[0] - dt.timedelta(hours=1))
    with pytest.raises(grpc.aio.AioRpcError) as none_yet:
        await registry.ResolveAlias(before, timeout=10)
    assert none_yet.value.code() == grpc.StatusCode.NOT_FOUND

    history = await registry.GetAliasHistory(
        registry_pb2.GetAliasHistoryRequest(model="churn", alias="champion"), timeout=10
    )
    assert [(m.version, m.previous_version, m.reason) for m in history.moves] == [
        ("1", "", "promote 1"),
        ("2", "1", "promote 2"),
        ("3", "2", "promote 3"),
    ]
    by_alias = await registry.GetModelVersion(
        registry_pb2.GetModelVersionRequest(
            model=common_pb2.ModelRef(model="churn", version="champion")
        ),
        timeout=10,
    )
    assert (by_alias.version, list(by_alias.aliases)) == ("3", ["champion"])
    events = await model_events(kafka_settings, 6)
    alias_events = [e for e in events if e.kind == events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED]
    assert [(e.alias, e.version, e.previous_version) for e in alias_events] == [
        ("champion", "1", ""),
        ("champion", "2", "1"),
        ("champion", "3", "2"),
    ]


async def test_bad_registrations_get_precise_statuses(
    registry: registry_pb2_grpc.ModelRegistryStub, service: RetrainerService
) -> None:
    trained = train_linear(DATA, TrainingSpec(target="churned"))
    digest = store_of(service).put(trained.artifact)
    good = version_record(trained, model="churn", artifact_sha256=digest, source="test")

    async def status_of(
        record: registry_pb2.ModelVersion, metadata: tuple[tuple[str, str], ...] = ADMIN
    ) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await registry.RegisterModelVersion(
                registry_pb2.RegisterModelVersionRequest(version=record),
                timeout=10,
                metadata=metadata,
            )
        return error.value.code(), error.value.details() or ""

    bad_name = registry_pb2.ModelVersion()
    bad_name.CopyFrom(good)
    bad_name.model = "churn model"
    assert (await status_of(bad_name))[0] == grpc.StatusCode.INVALID_ARGUMENT
    unknown = registry_pb2.ModelVersion()
    unknown.CopyFrom(good)
    unknown.artifact_sha256 = "0" * 64
    assert (await status_of(unknown))[0] == grpc.StatusCode.NOT_FOUND
    flavor = registry_pb2.ModelVersion()
    flavor.CopyFrom(good)
    flavor.flavor = "tensorflow"
    code, details = await status_of(flavor)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("version.flavor:")
    assert (await status_of(good, metadata=()))[0] == grpc.StatusCode.UNAUTHENTICATED

    path = store_of(service).root / digest[:2] / digest
    path.write_bytes(trained.artifact[:-1] + b" ")
    code, details = await status_of(good)
    assert code == grpc.StatusCode.DATA_LOSS
    assert "failed verification" in details
    listed = await registry.ListModelVersions(
        registry_pb2.ListModelVersionsRequest(model="churn"), timeout=10
    )
    assert list(listed.versions) == []
