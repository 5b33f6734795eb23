"""The shadow service in the standalone composition (real broker, real ClickHouse engine):
mirrored requests answered by shadow versions, compared with live on the same requests;
A/B reports per variant. The gateway mirrors, the drift service logs both sides, the
shadow service answers and compares, exactly as in production."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from driftloop.cli.stack import Services
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.models.registration import version_record
from driftloop.models.schema import Model, Row
from driftloop.models.training import TrainingSpec, train_linear
from driftloop.retrainer.registry import NewVersion
from driftloop.retrainer.version_proto import new_version_from_proto
from driftloop.v1 import events_pb2
from tests.integration.stack import until
from tests.retrain_data import MODEL, population, rows_of
from tests.standalone import standalone

OVERRIDES: dict[str, dict[str, object]] = {
    "drift": {"sink_batch": 2000, "evaluate_every_s": 3600, "evaluate_every_rows": 0},
    "gateway": {"controller_interval_s": 0.2, "request_timeout_s": 5},
    "retrainer": {"training": False},
    "shadow": {"compare_every_s": 3600},
}


@dataclass
class Setup:
    services: Services
    client: DriftloopClient
    producer: EventProducer
    names: TopicNames
    clickhouse: ClickHouse
    store: LocalArtifactStore

    async def linear(self, seed: int, flip: str = "") -> tuple[str, Model]:
        trained = train_linear(
            population(seed, 3000, flip_regions=flip), TrainingSpec(target="churned", seed=1)
        )
        record = version_record(
            trained, model=MODEL, artifact_sha256=self.store.put(trained.artifact), source="t"
        )
        registered = await self.services.retrainer.registry.register(
            new_version_from_proto(record), "tester"
        )
        return registered.version, trained.model

    async def slow_shadow(self, like: str) -> str:
        base = await self.services.retrainer.registry.get(MODEL, like)
        record = NewVersion(
            model=MODEL,
            flavor="python",
            artifact_sha256=self.store.put(b"-"),
            schema=base.schema,
            output_kind="binary",
            entry_point="tests.user_model:SlowShadow",
        )
        registered = await self.services.retrainer.registry.register(record, "tester")
        return registered.version

    async def policy(self, stable: str, shadow: list[str], **fields: object) -> None:
        current = self.services.gateway.book.get(MODEL)
        policy = events_pb2.RoutingPolicy(model=MODEL, stable_version=stable, **fields)  # type: ignore[arg-type]
        policy.shadow.versions.extend(shadow)
        policy.shadow.sample_bp = 10_000 if shadow else 0
        await self.client.set_routing_policy(policy, current.revision if current else 0)

    async def serve(
        self, seed: int, rows: int, flip: str = "", keys: int = 0
    ) -> list[tuple[str, str]]:
        """Serve seeded customers through the gateway; publish every label; return
        (request id, truth) per request."""
        table = population(seed, rows, flip_regions=flip)
        customers = rows_of(table)
        truths = ["1" if v == 1.0 else "0" for v in table.columns["churned"].tolist()]
        rng = np.random.default_rng(seed)
        served: list[tuple[str, str]] = []
        for start in range(0, rows, 100):
            chunk = customers[start : start + 100]
            entity = [f"key-{rng.integers(keys)}" if keys else "" for _ in chunk]
            responses = await self.client.serve_batch(MODEL, chunk, entity)
            served += [
                (r.request_id, truth)
                for r, truth in zip(responses, truths[start : start + 100], strict=True)
            ]
        deliveries = [
            await self.producer.enqueue(
                self.names.labels,
                request_id,
                events_pb2.LabelEvent(request_id=request_id, label=truth, source="test"),
            )
            for request_id, truth in served
        ]
        await asyncio.gather(*deliveries)
        return served

    async def stored(self, role: str, rows: int, version: str = "") -> None:
        """Until ClickHouse holds `rows` predictions of that role (and version) and labels."""
        deadline = time.monotonic() + 60
        while True:
            result = await self.clickhouse.query(
                f"SELECT countIf(role = {{role:String}} AND ({{v:String}} = '' OR version = "
                f"{{v:String}})) FROM {self.clickhouse.table('predictions')} FINAL",
                {"role": role, "v": version},
            )
            if int(result.scalar()) >= rows:
                return
            assert time.monotonic() < deadline, f"only {result.scalar()} {role} rows"
            await asyncio.sleep(0.2)


@pytest.fixture
async def setup(
    kafka_settings: KafkaSettings, clickhouse: ClickHouse, tmp_path: Path
) -> AsyncIterator[Setup]:
    async with standalone(kafka_settings, clickhouse, tmp_path, "shadow-test", OVERRIDES) as stack:
        yield Setup(
            stack.services, stack.client, stack.producer, stack.names, clickhouse, stack.store
        )


async def cli(setup: Setup, *args: str) -> tuple[int, str]:
    """The CLI as a user runs it, against this stack."""
    env = {
        **os.environ,
        "DRIFTLOOP_SHADOW_TARGET": setup.services.ports.target("shadow"),
        "DRIFTLOOP_GATEWAY_TARGET": setup.services.ports.target("gateway"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "driftloop.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_shadow_identical_to_live_agrees_everywhere(setup: Setup) -> None:
    v1, _ = await setup.linear(1)
    v2, _ = await setup.linear(1)  # the same data and seed: the same model
    await setup.policy(v1, [v2])
    served = await setup.serve(5, 600)
    await setup.stored("shadow", len(served), v2)
    comparison = await setup.client.shadow_comparison(MODEL, v2)
    assert comparison.compared == len(served)
    assert comparison.live_version == v1
    assert comparison.agreement == 1.0 and comparison.mean_abs_diff == 0.0
    assert comparison.labelled == len(served)
    assert comparison.verdict == "no significant difference"
    assert comparison.effect == 0.0 and comparison.shadow_error_rate == 0.0
    code, out = await cli(setup, "shadow", "compare", MODEL, v2, "--json")
    assert code == 0, out
    assert json.loads(out)["agreement"] == 1.0 and int(json.loads(out)["compared"]) == len(served)
    code, out = await cli(setup, "shadow", "compare", MODEL, v2)
    assert code == 0 and "verdict         no significant difference" in out, out
    code, out = await cli(setup, "shadow", "status", "--json")
    assert code == 0 and int(json.loads(out)["answered"]) >= len(served), out


async def test_a_better_shadow_is_significantly_better_and_a_worse_one_worse(
    setup: Setup,
) -> None:
    old, _ = await setup.linear(1)
    new, _ = await setup.linear(2, flip="abc")  # knows the relation the traffic follows
    await setup.policy(old, [new])
    first = dt.datetime.now(dt.UTC)
    served = await setup.serve(6, 1000, flip="abc")
    await setup.stored("shadow", len(served), new)
    better = await setup.client.shadow_comparison(MODEL, new, start=first)
    assert better.verdict == "shadow better", better
    assert better.effect > 0.3 and better.effect_low > 0 and better.p_value < 1e-6
    assert better.shadow_metric - better.live_metric == pytest.approx(better.effect)
    assert better.agreement < 0.5  # they answer differently most of the time
    # The other way round: the shadow is now the worse one.
    await setup.policy(new, [old])
    second = dt.datetime.now(dt.UTC)
    served = await setup.serve(7, 1000, flip="abc")
    await setup.stored("shadow", len(served), old)
    worse = await setup.client.shadow_comparison(MODEL, old, start=second)
    assert worse.compared == len(served)
    assert worse.verdict == "shadow worse" and worse.effect < -0.3 and worse.effect_high < 0
    segments = {(s.feature, s.value) for s in worse.segments}
    assert ("region", "a") in segments


async def test_a_slow_shadow_is_compared_with_its_latency(setup: Setup) -> None:
    # Live latency with and without a slow shadow: tests/e2e/test_shadow_process.py, with the
    # shadow service in its own process as deployed (here all five share one process).
    v1, _ = await setup.linear(1)
    slow = await setup.slow_shadow(v1)
    await setup.policy(v1, [slow])
    await setup.serve(8, 150)
    await setup.stored("shadow", 100, slow)
    status = await setup.client.shadow_status()
    assert status.answered >= 100 and status.lag_s >= 0
    comparison = await setup.client.shadow_comparison(MODEL, slow)
    assert comparison.shadow_p50_latency_ms >= 50 > comparison.live_p50_latency_ms


async def test_ab_report_covers_the_true_difference_with_sticky_keys(setup: Setup) -> None:
    v1, model_1 = await setup.linear(1)
    v2, model_2 = await setup.linear(3, flip="c")  # better in region c only
    await setup.policy(
        v1,
        [],
        variants=[
            events_pb2.Variant(name="a", version=v1, weight_bp=5000),
            events_pb2.Variant(name="b", version=v2, weight_bp=5000),
        ],
        salt="exp-1",
    )
    served = await setup.serve(9, 3000, flip="c", keys=300)
    await setup.stored("live", len(served))
    await until(lambda: labels_stored(setup.clickhouse, len(served)), 60)
    report = await setup.client.ab_report(MODEL, min_effect=0.02)
    variants = {v.variant: v for v in report.variants}
    assert set(variants) == {"a", "b"}
    assert variants["a"].version == v1 and variants["b"].version == v2
    assert sum(v.requests for v in report.variants) == len(served)
    assert variants["a"].units + variants["b"].units <= 300
    (comparison,) = report.comparisons
    assert (comparison.variant, comparison.control) == ("b", "a")
    truth = population(10, 200_000, flip_regions="c")
    rows = rows_of(truth)
    labels = ["1" if v == 1.0 else "0" for v in truth.columns["churned"].tolist()]
    true_difference = accuracy(model_2, rows, labels) - accuracy(model_1, rows, labels)
    assert comparison.ci_low <= true_difference <= comparison.ci_high, (
        true_difference,
        comparison,
    )
    assert comparison.design_effect >= 1.0 and comparison.required_labelled > 0
    code, out = await cli(setup, "ab", "report", MODEL)
    assert code == 0 and "b - a:" in out and "units = entity keys" in out, out


def accuracy(model: Model, rows: list[Row], labels: list[str]) -> float:
    predictions = model.predict(rows)
    return float(np.mean([p.label == label for p, label in zip(predictions, labels, strict=True)]))


async def labels_stored(clickhouse: ClickHouse, count: int) -> bool:
    result = await clickhouse.query(f"SELECT count() FROM {clickhouse.table('labels')} FINAL")
    return int(result.scalar()) >= count


async def test_shadow_first_starts_the_canary_only_on_good_shadow_evidence(
    setup: Setup,
) -> None:
    v1, _ = await setup.linear(1)
    worse, _ = await setup.linear(2, flip="abc")  # answers the traffic's relation wrong
    similar, _ = await setup.linear(4)  # as good as v1
    await setup.policy(v1, [])
    await until(lambda: asyncio.sleep(0, result=setup.services.gateway.lease.held), 60)

    async def rollout(candidate: str) -> events_pb2.RoutingPolicy:
        return await setup.client.start_rollout(
            MODEL,
            candidate,
            "canary",
            steps_percent=(50, 100),
            min_requests=20,
            min_duration_s=1,
            shadow_min_compared=300,
            shadow_min_labelled=200,
        )

    async def serve_until(done: Callable[[events_pb2.RoutingPolicy], bool]) -> None:
        for seed in range(100, 130):
            policy = await setup.client.routing_policy(MODEL)
            if done(policy):
                return
            await setup.serve(seed, 200)
        raise AssertionError(f"the rollout did not move: {policy}")

    started = await rollout(worse)
    assert started.shadow_gate.candidate_version == worse
    assert list(started.shadow.versions) == [worse] and not started.canary.candidate_version
    # The worse candidate never gets live traffic: the gate ends the rollout.
    await serve_until(lambda p: not p.shadow_gate.candidate_version)
    after = await setup.client.routing_policy(MODEL)
    assert not after.canary.candidate_version and not after.shadow.versions
    assert after.stable_version == v1
    live = await setup.clickhouse.query(
        f"SELECT count() FROM {setup.clickhouse.table('predictions')} FINAL "
        "WHERE role = 'live' AND version = {v:String}",
        {"v": worse},
    )
    assert live.scalar() == 0
    # A candidate as good as live passes the gate: the canary starts.
    await rollout(similar)
    await serve_until(lambda p: p.canary.candidate_version == similar)
    canary = await setup.client.routing_policy(MODEL)
    assert not canary.shadow_gate.candidate_version and not canary.shadow.versions
