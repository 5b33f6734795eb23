"""Continuous training against the real broker and the real ClickHouse engine.

The retrainer service runs as in production (registry, run store, the pipeline with its
worker process, the drift-alerts consumer); its training data is labelled traffic in the
prediction log, written the way the drift service's sink writes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.grpc_client import admin_metadata, open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.times import stamp
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.river_flavor import RiverModel
from driftloop.models.schema import Feature, Model, Schema
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.policy import default_policy
from driftloop.retrainer.registry import NewVersion, VersionRecord
from driftloop.retrainer.server import RetrainerService
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import common_pb2, events_pb2, retrainer_pb2, retrainer_pb2_grpc
from tests.integration.test_registry import model_events
from tests.retrain_data import MODEL, log_traffic, population, rows_of

TOKEN = "retrainer-test-token"
ADMIN = admin_metadata(TOKEN, actor="tester")
ENDED = (
    retrainer_pb2.RUN_STATE_SUCCEEDED,
    retrainer_pb2.RUN_STATE_REJECTED_DATA,
    retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER,
    retrainer_pb2.RUN_STATE_FAILED,
)


@dataclass
class Retrainer:
    service: RetrainerService
    stub: retrainer_pb2_grpc.RetrainerStub
    store: LocalArtifactStore
    log: PredictionLog
    kafka: KafkaSettings

    async def champion(self, model: Model | None = None, seed: int = 1) -> tuple[str, Model]:
        """Register a linear model trained on the original relation and make it champion."""
        if model is None:
            trained = train_linear(population(seed, 3000), TrainingSpec(target="churned"))
            trained_until = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            window = common_pb2.TimeWindow(
                start=stamp(trained_until - dt.timedelta(hours=1)), end=stamp(trained_until)
            )
            record = new_version_from_proto(
                version_record(
                    trained,
                    model=MODEL,
                    artifact_sha256=self.store.put(trained.artifact),
                    source="t",
                    window=window,
                )
            )
            model = trained.model
        else:
            assert isinstance(model, RiverModel)
            record = NewVersion(
                model=MODEL,
                flavor="river",
                artifact_sha256=self.store.put(RiverModel.to_bytes(model.estimator)),
                schema=model.schema,
                output_kind=model.output_kind,
                hyperparameters={"target": "churned"},
            )
        registered = await self.service.registry.register(record, "tester")
        await self.service.registry.set_alias(
            MODEL, "champion", registered.version, "", "first version", "tester"
        )
        return registered.version, model

    async def policy(self, **changes: object) -> retrainer_pb2.TrainingPolicy:
        """The defaults with no rollout (no gateway here) and the given changes."""
        policy = default_policy(MODEL)
        policy.rollout.on_pass = retrainer_pb2.ROLLOUT_ON_PASS_NONE
        policy.training.min_rows = 200
        policy.gate.segment_min_rows = 50
        for path, value in changes.items():
            target: object = policy
            *parents, leaf = path.split("__")
            for parent in parents:
                target = getattr(target, parent)
            setattr(target, leaf, value)
        current = await self.service.controller.policy(MODEL)
        return await self.service.controller.set_policy(policy, current.revision, "tester")

    async def trigger(self, **fields: object) -> retrainer_pb2.RetrainRun:
        run: retrainer_pb2.RetrainRun = await self.stub.TriggerRetrain(
            retrainer_pb2.TriggerRetrainRequest(model=MODEL, **fields),  # type: ignore[arg-type]
            timeout=10,
            metadata=ADMIN,
        )
        return await self.finished(run.run_id)

    async def finished(self, run_id: str) -> retrainer_pb2.RetrainRun:
        deadline = time.monotonic() + 90
        while True:
            run: retrainer_pb2.RetrainRun = await self.stub.GetRetrainRun(
                retrainer_pb2.GetRetrainRunRequest(run_id=run_id), timeout=10
            )
            if run.state in ENDED:
                await self.service.controller.wait_idle()
                return run
            assert time.monotonic() < deadline, f"run {run_id} did not end: {run}"
            await asyncio.sleep(0.1)

    async def versions(self) -> list[VersionRecord]:
        return await self.service.registry.versions(MODEL)


@pytest.fixture
async def retrainer(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[Retrainer]:
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
    channel = open_channel(f"127.0.0.1:{service.port}")
    try:
        yield Retrainer(
            service,
            retrainer_pb2_grpc.RetrainerStub(channel),
            store,
            PredictionLog(clickhouse),
            kafka_settings,
        )
    finally:
        await channel.close()
        await service.stop(0)


async def test_a_better_challenger_passes_every_step_and_is_registered_with_lineage(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy()
    await log_traffic(retrainer.log, champion, v1, population(7, 2500, flip_regions="abc"))
    run = await retrainer.trigger(reason="labels say the relation flipped")
    assert run.state == retrainer_pb2.RUN_STATE_SUCCEEDED, run.outcome
    assert [step.name for step in run.steps] == [
        "extract",
        "validate",
        "train",
        "evaluate",
        "gate",
        "register",
        "rollout",
    ]
    assert all(step.state == retrainer_pb2.STEP_STATE_SUCCEEDED for step in run.steps)
    assert all(step.HasField("finished") for step in run.steps)
    assert (run.training_rows, run.holdout_rows) == (2000, 500)
    assert run.trigger == retrainer_pb2.RETRAIN_TRIGGER_MANUAL
    primary = run.gate.checks[0]
    assert run.gate.passed and primary.effect > 0.2 and primary.p_value < 1e-6
    assert run.rollout_outcome == "not requested"
    new = await retrainer.service.registry.get(MODEL, run.new_version)
    assert new.parent_version == v1
    assert new.tags["driftloop.run_id"] == run.run_id
    assert new.tags["driftloop.trigger"] == "manual"
    assert new.data.content_sha256 == run.snapshot_id
    assert new.data.row_count == 2500
    assert new.baseline is not None and new.baseline.numeric
    assert "challenger" in new.aliases
    assert set(new.metrics) >= {"accuracy", "log_loss"}
    # The snapshot is in the artifact store, content-addressed.
    assert retrainer.store.get(run.snapshot_id)
    # The decision was recorded with the run it started.
    decisions = await retrainer.stub.ListRetrainDecisions(
        retrainer_pb2.ListRetrainDecisionsRequest(model=MODEL), timeout=10
    )
    assert [d.run_id for d in decisions.decisions if d.triggered] == [run.run_id]
    assert "requested by tester" in decisions.decisions[0].reason


async def test_a_zeroed_feature_halts_at_validation_and_a_mean_shift_does_not(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy()
    await log_traffic(retrainer.log, champion, v1, population(8, 1500, zero="x1"))
    run = await retrainer.trigger()
    assert run.state == retrainer_pb2.RUN_STATE_REJECTED_DATA
    assert [step.name for step in run.steps] == ["extract", "validate"]
    failed = [check for check in run.data_checks if not check.passed and check.severity == "error"]
    assert [(check.name, check.feature) for check in failed] == [("constant_feature", "x1")]
    assert "x1" in failed[0].message and "x1" in run.outcome
    assert [v.version for v in await retrainer.versions()] == [v1], "nothing registered"
    # Now the window holds shifted but healthy data (expected drift): validation passes.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    await log_traffic(
        retrainer.log, champion, v1, population(9, 3000, shift=1.5), end=later, prefix="s"
    )
    policy = await retrainer.policy(training__max_rows=3000)
    assert policy.training.max_rows == 3000
    shifted = await retrainer.trigger()
    validate = shifted.steps[1]
    assert validate.name == "validate" and validate.state == retrainer_pb2.STEP_STATE_SUCCEEDED
    assert all(c.passed for c in shifted.data_checks if c.severity == "error")


async def test_a_challenger_no_better_is_refused_with_its_effect_and_p_value(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy()
    await log_traffic(retrainer.log, champion, v1, population(10, 2500))
    run = await retrainer.trigger()
    assert run.state == retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER
    primary = run.gate.checks[0]
    assert primary.name == "primary" and not primary.passed
    assert primary.test == "mcnemar" and primary.rows == 500
    assert primary.ci_low < 0.01 and primary.p_value > 0.001
    assert "p" in run.outcome and "McNemar" in run.outcome
    assert [step.name for step in run.steps][-1] == "gate"
    assert [v.version for v in await retrainer.versions()] == [v1]
    # The halt is announced on model-events (after the registration and the alias move).
    events = await model_events(retrainer.kafka, 3)
    (halted,) = [e for e in events if e.kind == events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED]
    assert (halted.model, halted.version, halted.run_id) == (MODEL, v1, run.run_id)
    assert halted.run_state == "rejected_challenger" and halted.reason == run.outcome


async def test_a_challenger_better_overall_but_worse_on_one_segment_is_refused_naming_it(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy(gate__segment_feature="region")
    # The relation flips in regions a and b (80% of traffic) and stays in c.
    await log_traffic(retrainer.log, champion, v1, population(11, 5000, flip_regions="ab"))
    run = await retrainer.trigger()
    assert run.state == retrainer_pb2.RUN_STATE_REJECTED_CHALLENGER, run.outcome
    checks = {check.segment or check.name: check for check in run.gate.checks}
    assert checks["primary"].passed, "better overall"
    assert checks["a"].passed and checks["b"].passed
    assert not checks["c"].passed and checks["c"].effect < -0.1
    assert "segment c" in run.outcome


async def test_the_same_snapshot_and_seed_give_the_same_artifact(retrainer: Retrainer) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy(training__seed=5)
    await log_traffic(retrainer.log, champion, v1, population(12, 1500, flip_regions="abc"))
    first = await retrainer.trigger()
    assert first.state == retrainer_pb2.RUN_STATE_SUCCEEDED, first.outcome
    again = await retrainer.trigger(snapshot_id=first.snapshot_id, seed=5)
    other_seed = await retrainer.trigger(snapshot_id=first.snapshot_id, seed=6)
    assert again.snapshot_id == first.snapshot_id
    assert again.artifact_sha256 == first.artifact_sha256
    assert other_seed.seed == 6 and other_seed.snapshot_id == first.snapshot_id
    assert "snapshot" in again.steps[0].detail


async def test_cooldown_running_runs_and_duplicate_alerts_are_recorded_as_skips(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy(schedule__every_s=1, cooldown_s=3600)
    await log_traffic(retrainer.log, champion, v1, population(13, 1500, flip_regions="abc"))
    # Two triggers at once make one run; the other is refused, and recorded.
    results = await asyncio.gather(
        retrainer.stub.TriggerRetrain(
            retrainer_pb2.TriggerRetrainRequest(model=MODEL), timeout=10, metadata=ADMIN
        ),
        retrainer.stub.TriggerRetrain(
            retrainer_pb2.TriggerRetrainRequest(model=MODEL), timeout=10, metadata=ADMIN
        ),
        return_exceptions=True,
    )
    started = [r for r in results if isinstance(r, retrainer_pb2.RetrainRun)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(started) == 1 and len(refused) == 1
    assert refused[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is in progress" in (refused[0].details() or "")
    await retrainer.finished(started[0].run_id)
    # The scheduled trigger falls inside the cooldown of that run: skipped, and why.
    await retrainer.service.controller.check()
    decisions = (
        await retrainer.stub.ListRetrainDecisions(
            retrainer_pb2.ListRetrainDecisionsRequest(model=MODEL), timeout=10
        )
    ).decisions
    schedule = [d for d in decisions if d.trigger == retrainer_pb2.RETRAIN_TRIGGER_SCHEDULE]
    assert len(schedule) == 1 and not schedule[0].triggered
    assert "cooldown" in schedule[0].reason
    manual = [d for d in decisions if d.trigger == retrainer_pb2.RETRAIN_TRIGGER_MANUAL]
    assert sorted(d.triggered for d in manual) == [False, True]
    runs = await retrainer.stub.ListRetrainRuns(
        retrainer_pb2.ListRetrainRunsRequest(model=MODEL), timeout=10
    )
    assert len(runs.runs) == 1


async def test_a_drift_alert_triggers_one_run_even_when_delivered_twice(
    retrainer: Retrainer,
) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy(cooldown_s=0)
    await log_traffic(retrainer.log, champion, v1, population(14, 1500, flip_regions="abc"))
    alert = events_pb2.DriftAlert(
        alert_id="alert-1",
        kind=events_pb2.DRIFT_KIND_CONCEPT,
        model=MODEL,
        version=v1,
        severity=events_pb2.SEVERITY_CRITICAL,
        features=[events_pb2.FeatureScore(feature="x0", test="cusum", score=9.0)],
    )
    info = events_pb2.DriftAlert(
        alert_id="alert-2",
        kind=events_pb2.DRIFT_KIND_DATA,
        model=MODEL,
        version=v1,
        severity=events_pb2.SEVERITY_INFO,
    )
    assert retrainer.kafka.bootstrap_servers is not None
    producer = EventProducer(retrainer.kafka, retrainer.kafka.bootstrap_servers)
    await producer.start()
    topic = TopicNames(retrainer.kafka.topic_prefix).drift_alerts
    try:
        for event in (alert, alert, info):
            await producer.publish(topic, MODEL, event)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 30
    while True:
        decisions = (
            await retrainer.stub.ListRetrainDecisions(
                retrainer_pb2.ListRetrainDecisionsRequest(model=MODEL), timeout=10
            )
        ).decisions
        if len(decisions) >= 2:
            break
        assert time.monotonic() < deadline, decisions
        await asyncio.sleep(0.1)
    by_id = {d.decision_id: d for d in decisions}
    assert set(by_id) == {"drift:alert-1", "drift:alert-2"}
    assert (
        by_id["drift:alert-1"].triggered
        and "critical concept drift" in by_id["drift:alert-1"].reason
    )
    assert not by_id["drift:alert-2"].triggered
    run = await retrainer.finished(by_id["drift:alert-1"].run_id)
    assert run.trigger == retrainer_pb2.RETRAIN_TRIGGER_DRIFT and run.evidence == "alert-1"
    assert run.state == retrainer_pb2.RUN_STATE_SUCCEEDED, run.outcome


async def test_a_performance_drop_and_new_data_trigger_runs(retrainer: Retrainer) -> None:
    v1, champion = await retrainer.champion()
    await retrainer.policy(performance__min_labelled=500, cooldown_s=0)
    await log_traffic(retrainer.log, champion, v1, population(15, 1500, flip_regions="abc"))
    await retrainer.service.controller.check()
    await retrainer.service.controller.wait_idle()
    runs = (
        await retrainer.stub.ListRetrainRuns(
            retrainer_pb2.ListRetrainRunsRequest(model=MODEL), timeout=10
        )
    ).runs
    assert [r.trigger for r in runs] == [retrainer_pb2.RETRAIN_TRIGGER_PERFORMANCE]
    assert "below the holdout" in runs[0].reason
    # More labelled traffic since the champion's training data ended: the new-data rule fires.
    await log_traffic(
        retrainer.log,
        champion,
        v1,
        population(18, 1200),
        prefix="n",
        spacing=dt.timedelta(microseconds=100),  # all of it after the last run's window
    )
    await retrainer.policy(
        performance__enabled=False, new_data__min_new_labelled=1000, cooldown_s=0
    )
    await retrainer.service.controller.check()
    await retrainer.service.controller.wait_idle()
    runs = (
        await retrainer.stub.ListRetrainRuns(
            retrainer_pb2.ListRetrainRunsRequest(model=MODEL), timeout=10
        )
    ).runs
    assert runs[0].trigger == retrainer_pb2.RETRAIN_TRIGGER_DATA_VOLUME
    assert "1,200 new labelled predictions (at least 1,000)" in runs[0].reason
    assert runs[0].artifact_sha256 != runs[1].artifact_sha256, "trained on more data"


async def test_a_river_model_learning_online_becomes_a_gated_challenger(
    retrainer: Retrainer,
) -> None:
    from river import compose, linear_model, preprocessing

    estimator = (
        compose.Select("x0", "x1", "x2")
        | preprocessing.StandardScaler()
        | (linear_model.LogisticRegression())
    )
    original = population(16, 2000)
    for row, truth in zip(rows_of(original), original.columns["churned"].tolist(), strict=True):
        estimator.learn_one(dict(row), truth == 1.0)
    schema = Schema(
        (
            Feature("x0", "number"),
            Feature("x1", "number"),
            Feature("x2", "number"),
            Feature("region", "category", categories=("a", "b", "c")),
        )
    )
    v1, champion = await retrainer.champion(RiverModel(estimator, schema, "binary"))
    await retrainer.policy()
    await log_traffic(retrainer.log, champion, v1, population(17, 2500, flip_regions="abc"))
    run = await retrainer.trigger()
    assert run.state == retrainer_pb2.RUN_STATE_SUCCEEDED, run.outcome
    assert "learnt online" in run.steps[2].detail
    new = await retrainer.service.registry.get(MODEL, run.new_version)
    assert new.flavor == "river" and new.parent_version == v1
    learnt = pickle.loads(retrainer.store.get(new.artifact_sha256))
    assert learnt is not estimator  # a copy learnt; the champion's artifact is untouched
    assert run.gate.checks[0].effect > 0.1
