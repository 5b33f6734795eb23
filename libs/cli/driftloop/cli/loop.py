"""The closed loop as a scenario: a model serves, the world changes, nobody intervenes.

Shared by the demo (which prints it) and the end-to-end test (which asserts on it). After
setting up (v1 trained and made champion, the routing and training policies written),
the only actors are the traffic and the label producer: customers arrive through the
gateway, and 60% of them learn their truth `label_delay_s` later, as labels on Kafka.
At `change_after` requests the world changes: tenure drops (data drift) and churn starts
to follow the monthly charges and the family plan instead of tenure (concept drift). From
there the loop must close by itself: the drift service alerts, the retrainer triggers,
validates, trains on the logged traffic, gates, registers and asks for a canary, and the
gateway ramps it and promotes. A watcher records each stage as it happens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import datetime as dt
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.cli.stack import Services
from driftloop.clickhouse import prediction_log
from driftloop.clickhouse.client import ClickHouse
from driftloop.client import DriftloopClient
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.v1 import events_pb2, registry_pb2, retrainer_pb2

MODEL = "demo-churn"
Row = dict[str, float | str]


@dataclass(frozen=True)
class Scenario:
    seed: int = 7
    change_after: int = 4000
    label_delay_s: float = 5.0
    label_share: float = 0.6
    requests_per_s: float = 500.0
    batch: int = 100
    timeout_s: float = 240.0
    # After the first promotion the loop runs on this long (a first challenger trained on
    # little post-change data is improved on by the next runs), then until no canary is
    # open, so the final champion has labelled traffic of its own.
    settle_s: float = 20.0


def customer(rng: random.Random, changed: bool) -> tuple[Row, str]:
    """One customer and whether they churn. Before the change churn follows tenure; after
    it, tenure is lower and churn follows the monthly charges and the family plan."""
    tenure = max(0.0, rng.gauss(14.0 if changed else 24.0, 8.0))
    charges = rng.gauss(70.0, 15.0)
    plan = rng.choices(["basic", "pro", "family"], weights=[5, 3, 2])[0]
    if changed:
        z = -0.8 + 0.12 * (charges - 70.0) + 1.5 * (plan == "family") - 0.02 * tenure
    else:
        z = 1.5 - 0.08 * tenure + 0.01 * (charges - 70.0) + 0.5 * (plan == "basic")
    churned = "1" if rng.random() < 1.0 / (1.0 + math.exp(-z)) else "0"
    return {"tenure": tenure, "monthly_charges": charges, "plan": plan}, churned


def training_policy(model: str) -> retrainer_pb2.TrainingPolicy:
    """The demo's policy: retrain on concept drift alerts, a labelled accuracy drop, or
    2,500 new labelled predictions since the champion's training data ended, on the last
    10 s of labelled traffic (the demo's world moves fast), canary 10/50/100. The first
    retrain after the change sees little post-change data; the new-data trigger lets the
    next one, on a window wholly after the change, improve on it."""
    return retrainer_pb2.TrainingPolicy(
        model=model,
        enabled=True,
        performance=retrainer_pb2.PerformanceTrigger(
            enabled=True, max_drop=0.05, window_s=10, min_labelled=300
        ),
        drift=retrainer_pb2.DriftTrigger(
            enabled=True,
            kinds=[events_pb2.DRIFT_KIND_CONCEPT],
            min_severity=events_pb2.SEVERITY_WARNING,
        ),
        new_data=retrainer_pb2.DataTrigger(min_new_labelled=2500),
        cooldown_s=5,
        training=retrainer_pb2.TrainingWindow(
            window_s=10, max_rows=5000, holdout_fraction=0.25, min_rows=300, l2=1.0, seed=7
        ),
        gate=retrainer_pb2.GatePolicy(
            margin=0.02,
            alpha=0.01,
            secondary_tolerance=0.05,
            segment_tolerance=0.02,
            segment_min_rows=200,
        ),
        rollout=retrainer_pb2.RolloutPlan(
            on_pass=retrainer_pb2.ROLLOUT_ON_PASS_CANARY,
            steps_percent=[10, 50, 100],
            min_requests=100,
            min_duration_s=2,
        ),
    )


def write_training_csv(path: Path, rows: Sequence[tuple[Row, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tenure", "monthly_charges", "plan", "churned"])
        for row, churned in rows:
            writer.writerow([row["tenure"], row["monthly_charges"], row["plan"], churned])


async def first_champion(
    services: Services, client: DriftloopClient, data: Path, seed: int, rows: int = 5000
) -> registry_pb2.ModelVersion:
    """v1 trained on customers before the change, made champion and stable, with the
    scenario's training policy; returns once the gateway's rollout controller is up."""
    rng = random.Random(seed)
    customers = [customer(rng, changed=False) for _ in range(rows)]
    await asyncio.to_thread(write_training_csv, data, customers)
    first = await client.register_from_data(MODEL, data, target="churned", seed=seed)
    await client.set_alias(MODEL, "champion", first.version, reason="first version")
    await client.set_routing_policy(
        events_pb2.RoutingPolicy(model=MODEL, stable_version=first.version),
        expected_revision=0,
    )
    await client.set_training_policy(training_policy(MODEL), expected_revision=0)
    await asyncio.wait_for(services.gateway.lease.acquired.wait(), 60)
    return first


@dataclass
class Stage:
    at: float  # monotonic clock
    kind: str
    text: str
    since_change: float | None = None  # seconds, once the change has happened


@dataclass
class LoopResult:
    first_champion: str
    champion: str
    change_at: float  # monotonic clock
    promoted_at: float | None
    requests: int
    labels: int
    stages: list[Stage] = field(default_factory=list)
    # version -> (labelled rows served after the change, accuracy on them)
    accuracy_after_change: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def change_to_promotion_s(self) -> float | None:
        return None if self.promoted_at is None else self.promoted_at - self.change_at


class Traffic:
    """Customers through the gateway at a steady rate; their labels, later, on Kafka."""

    def __init__(
        self,
        client: DriftloopClient,
        producer: EventProducer,
        names: TopicNames,
        scenario: Scenario,
    ) -> None:
        self._client = client
        self._producer = producer
        self._names = names
        self._scenario = scenario
        self._rng = random.Random(scenario.seed)
        self._pending: collections.deque[tuple[float, str, str]] = collections.deque()
        self.requests = 0
        self.labels = 0
        self.change_at: float | None = None
        self.changed = asyncio.Event()
        self.stop = asyncio.Event()

    async def serve(self) -> None:
        scenario = self._scenario
        started = time.monotonic()
        while not self.stop.is_set():
            changed = self.requests >= scenario.change_after
            if changed and self.change_at is None:
                self.change_at = time.monotonic()
                self.changed.set()
            batch = [customer(self._rng, changed) for _ in range(scenario.batch)]
            keys = [f"customer-{self._rng.randrange(100_000)}" for _ in batch]
            responses = await self._client.serve_batch(MODEL, [row for row, _ in batch], keys)
            due = time.monotonic() + scenario.label_delay_s
            for (_, truth), response in zip(batch, responses, strict=True):
                if self._rng.random() < scenario.label_share:
                    self._pending.append((due, response.request_id, truth))
            self.requests += len(batch)
            ahead = started + self.requests / scenario.requests_per_s - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def label(self) -> None:
        while not self.stop.is_set() or self._pending:
            deliveries = []
            while self._pending and (self._pending[0][0] <= time.monotonic() or self.stop.is_set()):
                _, request_id, truth = self._pending.popleft()
                label = events_pb2.LabelEvent(request_id=request_id, label=truth, source="crm")
                label.time.GetCurrentTime()
                deliveries.append(
                    await self._producer.enqueue(self._names.labels, request_id, label)
                )
            if deliveries:
                await asyncio.gather(*deliveries)
                self.labels += len(deliveries)
            await asyncio.sleep(0.1)


ENDED_STEP = (retrainer_pb2.STEP_STATE_SUCCEEDED, retrainer_pb2.STEP_STATE_FAILED)
OPEN_RUN = (retrainer_pb2.RUN_STATE_PENDING, retrainer_pb2.RUN_STATE_RUNNING)


def _name(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix).lower()


class Watcher:
    """Records each stage of the loop as it shows in the services' stores."""

    def __init__(
        self, services: Services, traffic: Traffic, report: Callable[[Stage], None]
    ) -> None:
        self._services = services
        self._traffic = traffic
        self._report = report
        self._seen: set[str] = set()
        self.stages: list[Stage] = []
        self.champion = ""
        self.promoted_at: float | None = None  # the first promotion

    def _note(self, key: str, kind: str, text: str) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        now, change = time.monotonic(), self._traffic.change_at
        stage = Stage(now, kind, text, None if change is None else now - change)
        self.stages.append(stage)
        self._report(stage)

    async def watch(self, first_champion: str) -> None:
        self.champion = first_champion
        while True:
            await self._alerts()
            await self._retraining()
            self._canary()
            await self._champion()
            await asyncio.sleep(0.5)

    async def _alerts(self) -> None:
        for alert in reversed(await self._services.drift.store.alerts(MODEL, None, None, 50)):
            kind = _name(events_pb2.DriftKind.Name(alert.kind), "DRIFT_KIND_")
            features = ", ".join(f.feature for f in alert.features[:3])
            self._note(
                f"alert:{alert.alert_id}",
                "alert",
                f"drift service: {kind} drift alert on v{alert.version} ({features})",
            )

    async def _retraining(self) -> None:
        runs = self._services.retrainer.runs
        for decision in reversed(await runs.decisions(MODEL, 50)):
            trigger = _name(retrainer_pb2.RetrainTrigger.Name(decision.trigger), "RETRAIN_TRIGGER_")
            what = f"run {decision.run_id}" if decision.triggered else "skipped"
            kind = "trigger" if decision.triggered else "skipped"
            if decision.reason.startswith("ignored:"):
                kind, what = "ignored", "not acted on"
            self._note(
                f"decision:{decision.decision_id}",
                kind,
                f"retrainer: {trigger} trigger -> {what}: {decision.reason}",
            )
        for run in reversed(await runs.runs(MODEL, 20)):
            for step in await runs.steps(MODEL, run.run_id):
                if step.state in ENDED_STEP:
                    done = step.state == retrainer_pb2.STEP_STATE_SUCCEEDED
                    self._note(
                        f"step:{run.run_id}:{step.name}",
                        step.name if done else f"{step.name} failed",
                        f"  {step.name} {'done' if done else 'FAILED'}: {step.detail}",
                    )
            if run.state not in OPEN_RUN:
                state = _name(retrainer_pb2.RunState.Name(run.state), "RUN_STATE_")
                self._note(f"run:{run.run_id}", "run", f"  run {run.run_id} {state}: {run.outcome}")

    def _canary(self) -> None:
        policy = self._services.gateway.book.get(MODEL)
        if policy is None or not policy.canary.candidate_version:
            return
        index = policy.canary.current_step
        weight = policy.canary.steps[index].weight_bp / 100
        self._note(
            f"canary:{policy.canary.candidate_version}:{index}",
            "canary",
            f"gateway: canary of v{policy.canary.candidate_version} at {weight:g}% "
            f"(step {index + 1}/{len(policy.canary.steps)})",
        )

    async def _champion(self) -> None:
        champion = await self._services.retrainer.registry.current_alias(MODEL, "champion")
        if champion != self.champion:
            self.champion = champion
            self.promoted_at = self.promoted_at or time.monotonic()
            self._note(f"champion:{champion}", "promoted", f"registry: v{champion} is champion")


async def accuracy_after_change(
    clickhouse: ClickHouse, since: dt.datetime
) -> dict[str, tuple[int, float]]:
    window, params = prediction_log.labelled_window_query(
        clickhouse,
        prediction_log.Traffic(MODEL, start=since),
        ["version", "output_label"],
        labelled_only=True,
    )
    result = await clickhouse.query(
        "SELECT version, count(), avg(output_label = truth_label) "
        f"FROM ({window}) GROUP BY version ORDER BY version",
        params,
    )
    return {str(v): (int(n), float(a)) for v, n, a in result.rows}


async def run_loop(
    services: Services,
    client: DriftloopClient,
    producer: EventProducer,
    names: TopicNames,
    clickhouse: ClickHouse,
    first_champion: str,
    scenario: Scenario,
    report: Callable[[Stage], None] = lambda stage: None,
) -> LoopResult:
    """Run the traffic until the loop has promoted a retrained champion (and settled), or
    the timeout; return what happened."""
    traffic = Traffic(client, producer, names, scenario)
    watcher = Watcher(services, traffic, report)
    tasks = [
        asyncio.create_task(traffic.serve(), name="traffic"),
        asyncio.create_task(traffic.label(), name="labels"),
        asyncio.create_task(watcher.watch(first_champion), name="watcher"),
    ]
    deadline = time.monotonic() + scenario.timeout_s
    change_wall: dt.datetime | None = None
    try:
        await asyncio.wait_for(traffic.changed.wait(), scenario.timeout_s)
        change_wall = dt.datetime.now(dt.UTC)
        report(
            Stage(
                time.monotonic(),
                "change",
                "the world changes: tenure drops, churn follows the charges",
                0.0,
            )
        )
        while time.monotonic() < deadline and not any(task.done() for task in tasks[:2]):
            promoted = watcher.promoted_at
            settled = promoted is not None and time.monotonic() - promoted >= scenario.settle_s
            policy = services.gateway.book.get(MODEL)
            if settled and (policy is None or not policy.canary.candidate_version):
                break
            await asyncio.sleep(0.2)
    finally:
        traffic.stop.set()
        for task in tasks[:2]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        tasks[2].cancel()
        await asyncio.gather(tasks[2], return_exceptions=True)
    for task in tasks[:2]:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"{task.get_name()} failed") from task.exception()
    assert traffic.change_at is not None and change_wall is not None
    # Until the drift service's sink has every published label, and its model events'
    # store the promotion (the rollout history the report and the dashboards read).
    await _wait_for_count(
        clickhouse, f"SELECT count() FROM {clickhouse.table('labels')} FINAL", {}, traffic.labels
    )
    if watcher.promoted_at is not None:
        await _wait_for_count(
            clickhouse,
            f"SELECT count() FROM {clickhouse.table('model_events')} FINAL "
            "WHERE model = {model:String} AND kind = 'promoted'",
            {"model": MODEL},
            1,
        )
    return LoopResult(
        first_champion=first_champion,
        champion=watcher.champion,
        change_at=traffic.change_at,
        promoted_at=watcher.promoted_at,
        requests=traffic.requests,
        labels=traffic.labels,
        stages=watcher.stages,
        accuracy_after_change=await accuracy_after_change(clickhouse, change_wall),
    )


async def _wait_for_count(
    clickhouse: ClickHouse, sql: str, params: dict[str, Any], at_least: int, seconds: float = 60
) -> None:
    """Until the count `sql` reads reaches `at_least`, or `seconds` have passed (the drift
    service's consumers catch up; the result says what they stored)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if int((await clickhouse.query(sql, params)).scalar() or 0) >= at_least:
            return
        await asyncio.sleep(0.3)


def describe(versions: Sequence[str]) -> str:
    return ", ".join(f"v{v}" for v in versions)
