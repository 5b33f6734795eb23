"""`driftloop demo`: the loop end to end, as far as it is built.

Today: a local Kafka broker (or the configured one), the topics, ClickHouse (embedded
unless configured), the registry, inference, gateway and drift services in this process on
free ports (as standalone mode runs them), a model trained on seeded data and made
champion, seeded traffic through the gateway whose `tenure` input shifts halfway (every
prediction logged by the gateway, sunk into ClickHouse by the drift service, whose online
detectors raise a data-drift alert on `tenure`), a second version trained on the shifted
data and rolled out as a canary that the gateway's controller ramps and promotes (the drift
service's canary analysis as a second opinion), delayed labels as protobuf and as JSON, a
few malformed messages (dead letters), the drift report of each version with its root
causes, the alerts, and windows read back from ClickHouse. The retraining loop replaces
the hand-made retrain here once the retrainer's training pipeline lands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import random
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from pydantic import SecretStr

from driftloop.clickhouse.client import ClickHouse, open_clickhouse
from driftloop.client import ClientSettings, DriftloopClient
from driftloop.drift.config import DriftSettings
from driftloop.drift.report import Report
from driftloop.drift.server import DriftService
from driftloop.drift.windows import Window
from driftloop.gateway.config import GatewaySettings
from driftloop.gateway.server import GatewayService
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.settings import ClickHouseSettings, KafkaSettings, load_settings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.v1 import events_pb2

MODEL = "demo-churn"
STEPS = 10
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
SPAN = dt.timedelta(hours=1)
BATCH = 500
Row = dict[str, float | str]


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, number: int, text: str) -> None:
        print(f"[{number}/{STEPS}] {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)


@contextlib.asynccontextmanager
async def kafka(settings: KafkaSettings, data_dir: Path, progress: Progress) -> AsyncIterator[str]:
    """The configured broker, else a fresh local one that is stopped on the way out."""
    if settings.bootstrap_servers:
        progress.step(1, f"Kafka: using the configured broker at {settings.bootstrap_servers}")
        yield settings.bootstrap_servers
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    broker = LocalBroker(find_kafka_libs(), data_dir)
    progress.step(1, f"Kafka: starting a local Apache Kafka broker (KRaft), data in {data_dir}")
    started = time.monotonic()
    await asyncio.to_thread(broker.start)
    progress.note(f"ready at {broker.bootstrap_servers} in {time.monotonic() - started:.1f} s")
    try:
        yield broker.bootstrap_servers
    finally:
        await asyncio.to_thread(broker.stop)
        progress.note("local broker stopped")


def customers(count: int, rng: random.Random, shift_from: int) -> list[tuple[Row, str]]:
    """Seeded customers and whether they churn; from `shift_from` on, tenure drops 40%."""
    result: list[tuple[Row, str]] = []
    for n in range(count):
        tenure = max(0.0, rng.gauss(24.0 * (0.6 if n >= shift_from else 1.0), 8.0))
        charges = rng.gauss(70.0, 15.0)
        plan = rng.choices(["basic", "pro", "family"], weights=[5, 3, 2])[0]
        z = 1.5 - 0.08 * tenure + 0.01 * (charges - 70.0) + (0.5 if plan == "basic" else 0.0)
        churned = "1" if rng.random() < 1.0 / (1.0 + math.exp(-z)) else "0"
        row: Row = {"tenure": tenure, "monthly_charges": charges, "plan": plan}
        result.append((row, churned))
    return result


def write_training_csv(path: Path, rows: Sequence[tuple[Row, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tenure", "monthly_charges", "plan", "churned"])
        for row, churned in rows:
            writer.writerow([row["tenure"], row["monthly_charges"], row["plan"], churned])


async def serve(
    client: DriftloopClient,
    traffic: Sequence[tuple[Row, str]],
    offset: int,
    seed: int,
    progress: Progress,
) -> list[tuple[str, str]]:
    """Send traffic through the gateway in batches; return (request id, truth) per request."""
    rng = random.Random(seed + offset)
    served: list[tuple[str, str]] = []
    versions: dict[str, int] = {}
    for start in range(0, len(traffic), BATCH):
        chunk = traffic[start : start + BATCH]
        keys = [f"customer-{rng.randrange(5000)}" for _ in chunk]
        responses = await client.serve_batch(MODEL, [row for row, _ in chunk], keys)
        for (_, truth), response in zip(chunk, responses, strict=True):
            served.append((response.request_id, truth))
            versions[response.version] = versions.get(response.version, 0) + 1
        if (start // BATCH) % 5 == 4 or start + BATCH >= len(traffic):
            mix = ", ".join(f"v{v}: {n:,}" for v, n in sorted(versions.items()))
            progress.note(f"{offset + start + len(chunk):,} requests served ({mix})")
            versions.clear()
    return served


async def publish_labels(
    producer: EventProducer, names: TopicNames, served: Sequence[tuple[str, str]], seed: int
) -> int:
    """40% of the predictions learn their truth: half as protobuf, half as JSON."""
    rng = random.Random(seed + 2)
    deliveries = []
    labels = 0
    for request_id, truth in served:
        if rng.random() >= 0.4:
            continue
        labels += 1
        if labels % 2:
            label = events_pb2.LabelEvent(request_id=request_id, label=truth, source="billing")
            label.time.GetCurrentTime()
            deliveries.append(await producer.enqueue(names.labels, request_id, label))
        else:  # the same, as JSON: what a producer in another language sends
            text = json.dumps({"request_id": request_id, "label": truth, "source": "billing"})
            deliveries.append(await producer.enqueue(names.labels, request_id, text.encode()))
    await asyncio.gather(*deliveries)
    return labels


async def publish_malformed(producer: EventProducer, names: TopicNames) -> int:
    malformed = [
        (names.predictions, b"\x00\x01 this is not a PredictionEvent"),
        (names.predictions, events_pb2.PredictionEvent(request_id="no-model").SerializeToString()),
        (names.labels, b'{"request_id": "demo-x", "label": '),
    ]
    for topic, raw in malformed:
        await producer.publish(topic, b"malformed", raw)
    return len(malformed)


async def sink_until_done(
    drift: DriftService,
    clickhouse: ClickHouse,
    expected: tuple[int, int, int],
    progress: Progress,
) -> float:
    """Wait until the drift service's sink has every row in ClickHouse and the malformed
    messages in dead-letter."""
    started = time.monotonic()
    while True:
        rows = await clickhouse.query(
            f"SELECT (SELECT count() FROM {clickhouse.table('predictions')} FINAL), "
            f"(SELECT count() FROM {clickhouse.table('labels')} FINAL)"
        )
        predictions, labels = rows.rows[0]
        stats = drift.consumer.stats
        progress.note(
            f"{predictions:>7,} predictions, {labels:>6,} labels in ClickHouse, "
            f"{stats.dead_letters} dead letters"
        )
        if (predictions, labels, stats.dead_letters) == expected:
            return time.monotonic() - started
        if time.monotonic() - started > 300:
            raise TimeoutError("the sink did not finish in 5 minutes")
        await asyncio.sleep(1.0)


def print_report(report: Report, progress: Progress) -> None:
    kinds = [
        name
        for name, found in (
            ("data", report.data_drift),
            ("prediction", report.prediction_drift),
            ("concept", report.concept_drift),
        )
        if found
    ]
    performance = ", ".join(f"{k} {v:.3f}" for k, v in report.performance.items() if "p_" not in k)
    progress.note(
        f"v{report.version}: {report.rows:,} rows ({report.labelled:,} labelled): "
        f"drift {', '.join(kinds) or 'none'}; {performance or 'no labels yet'}"
    )
    for cause in report.root_causes:
        feature = next(f for f in report.features if f.stream == cause.feature)
        progress.note(
            f"  {cause.feature:<16} PSI {feature.psi:6.3f}  {feature.test} p {feature.p_value:8.2g}"
            f"  {'drifted' if feature.drifted else 'stable':<8} performance link "
            f"{cause.performance_link:+.3f}"
        )


async def report(clickhouse: ClickHouse) -> None:
    params = {"model": MODEL}
    windows = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 2 SECOND) AS window, count() AS rows, "
        "avg(numbers['tenure']) AS tenure, avg(output_value) AS score, "
        "arrayStringConcat(arraySort(groupUniqArray(concat('v', version))), '+') AS versions "
        f"FROM {clickhouse.table('predictions')} FINAL WHERE model = {{model:String}} "
        "GROUP BY window ORDER BY window",
        params,
    )
    accuracy = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 2 SECOND) AS window, count() AS labelled, "
        "avg(output_label = truth_label) AS accuracy "
        f"FROM {clickhouse.table('predictions_labelled')} WHERE model = {{model:String}} "
        "GROUP BY window ORDER BY window",
        params,
    )
    labelled = {row[0]: row[1:] for row in accuracy.rows}
    header = ("served at", "rows", "labelled", "mean tenure", "mean score", "accuracy", "versions")
    print("      {:<10} {:>6} {:>8} {:>11} {:>10} {:>8}  {}".format(*header))
    for window, rows, tenure, score, versions in windows.rows:
        count, acc = labelled.get(window, (0, float("nan")))
        print(
            f"      {window:%H:%M:%S}{'':<2} {rows:>6,} {count:>8,} {tenure:>11.1f} "
            f"{score:>10.3f} {acc:>8.3f}  {versions}"
        )


def _clickhouse_settings(data_dir: Path) -> ClickHouseSettings:
    if "DRIFTLOOP_CLICKHOUSE_URL" in os.environ or "DRIFTLOOP_CLICKHOUSE_PATH" in os.environ:
        return load_settings(ClickHouseSettings)
    return load_settings(ClickHouseSettings, path=data_dir / "clickhouse")


async def demo(args: argparse.Namespace) -> int:
    progress = Progress()
    print(
        "driftloop demo: serve -> log -> ClickHouse -> drift, and a canary rollout "
        "(the loop so far)\n",
        flush=True,
    )
    kafka_settings = load_settings(KafkaSettings)
    rng = random.Random(args.seed)
    half = args.predictions // 2
    training = customers(5000, rng, shift_from=10**9)
    traffic = customers(args.predictions, rng, shift_from=half)
    retraining = customers(5000, rng, shift_from=0)  # what a retrain on recent data sees
    async with kafka(kafka_settings, args.data_dir / "kafka", progress) as bootstrap:
        settings = kafka_settings.model_copy(
            update={"topic_prefix": f"{kafka_settings.topic_prefix}demo-{int(time.time())}."}
        )
        created = await ensure_topics(settings, bootstrap)
        names = TopicNames(settings.topic_prefix)
        progress.step(
            2,
            f"Topics: created {len(created)} with prefix {settings.topic_prefix!r} "
            f"(predictions and labels: {settings.partitions} partitions each)",
        )
        clickhouse_settings = _clickhouse_settings(args.data_dir)
        clickhouse = await open_clickhouse(clickhouse_settings)
        await clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database}")
        await clickhouse.apply_schema(clickhouse_settings.cluster)
        where = "server" if clickhouse_settings.url else f"embedded, in {clickhouse_settings.path}"
        progress.step(3, f"ClickHouse ({where}): schema applied to {clickhouse.database!r}")
        token = SecretStr(secrets.token_urlsafe(24))
        artifacts = LocalArtifactStore(args.data_dir / "artifacts")
        registry = RetrainerService(
            RetrainerSettings(port=0, admin_token=token), settings, bootstrap, clickhouse, artifacts
        )
        await registry.start()
        inference = InferenceService(
            InferenceSettings(
                port=0, admin_token=token, registry_target=f"127.0.0.1:{registry.port}"
            ),
            artifacts,
            settings,
            bootstrap,
        )
        await inference.start()
        drift = DriftService(
            DriftSettings(
                port=0,
                admin_token=token,
                registry_target=f"127.0.0.1:{registry.port}",
                evaluate_every_s=3600,
                sink_batch=2000,
                window_last_n=1000,
            ),
            settings,
            bootstrap,
            clickhouse,
        )
        await drift.start()
        gateway = GatewayService(
            GatewaySettings(
                port=0,
                admin_token=token,
                inference_targets=[f"127.0.0.1:{inference.port}"],
                registry_target=f"127.0.0.1:{registry.port}",
                drift_target=f"127.0.0.1:{drift.port}",
                controller_interval_s=0.2,
                canary_max_output_distance=0.5,
            ),
            settings,
            bootstrap,
        )
        await gateway.start()
        client = DriftloopClient(
            ClientSettings(
                registry_target=f"127.0.0.1:{registry.port}",
                inference_target=f"127.0.0.1:{inference.port}",
                gateway_target=f"127.0.0.1:{gateway.port}",
                admin_token=token,
                actor="demo",
            )
        )
        producer = EventProducer(settings, bootstrap)
        await producer.start()
        try:
            progress.step(
                4,
                f"Services: gateway 127.0.0.1:{gateway.port}, "
                f"inference 127.0.0.1:{inference.port}, drift 127.0.0.1:{drift.port}, "
                f"registry 127.0.0.1:{registry.port} (gRPC; admin token generated for this run)",
            )
            data = args.data_dir / "train.csv"
            await asyncio.to_thread(write_training_csv, data, training)
            first = await client.register_from_data(MODEL, data, target="churned", seed=args.seed)
            await client.set_alias(MODEL, "champion", first.version, reason="first version")
            await client.set_routing_policy(
                events_pb2.RoutingPolicy(model=MODEL, stable_version=first.version),
                expected_revision=0,
            )
            metrics = ", ".join(
                f"{m.name} {m.value:.3f}" for m in first.metrics if m.name in ("accuracy", "auc")
            )
            progress.step(
                5,
                f"Trained {MODEL} v{first.version} on {data} ({first.data.row_count:,} rows; "
                f"holdout {metrics}), made it champion and the gateway's stable version",
            )
            progress.step(
                6,
                f"Serving {half:,} requests through the gateway (in the {half:,} after them, "
                "tenure shifts down 40%)",
            )
            served = await serve(client, traffic[:half], 0, args.seed, progress)
            data = args.data_dir / "retrain.csv"
            await asyncio.to_thread(write_training_csv, data, retraining)
            second = await client.register_from_data(
                MODEL, data, target="churned", seed=args.seed, parent_version=first.version
            )
            # The controller (the lease holder) must be up before the canary starts.
            await asyncio.wait_for(gateway.lease.acquired.wait(), 60)
            await client.start_rollout(
                MODEL,
                second.version,
                "canary",
                steps_percent=(10, 50, 100),
                min_requests=100,
                min_duration_s=1,
                reason="retrained on recent data",
            )
            progress.step(
                7,
                f"Retrained v{second.version} on recent data (parent v{first.version}) "
                "and started a "
                "canary 10% -> 50% -> 100%; serving the rest of the traffic",
            )
            served += await serve(client, traffic[half:], half, args.seed, progress)
            deadline = time.monotonic() + 60
            policy = await client.routing_policy(MODEL)
            while policy.canary.candidate_version and time.monotonic() < deadline:
                served += await serve(
                    client, traffic[half : half + BATCH], len(served), args.seed, progress
                )
                policy = await client.routing_policy(MODEL)
            champion = await client.resolve_alias(MODEL, "champion")
            outcome = "promoted" if policy.stable_version == second.version else "rolled back"
            progress.note(
                f"canary {outcome}: the gateway serves v{policy.stable_version}, registry champion "
                f"is v{champion.version}"
            )
            labels = await publish_labels(producer, names, served, args.seed)
            malformed = await publish_malformed(producer, names)
            await gateway.prediction_log.stop()  # flush what the gateway logged
            logged = gateway.prediction_log.counts
            progress.step(
                8,
                f"Drift service sink: Kafka -> ClickHouse ({logged.delivered:,} predictions "
                f"logged by the gateway, {logged.dropped} dropped; {labels:,} delayed labels, "
                f"half JSON; {malformed} malformed)",
            )
            seconds = await sink_until_done(
                drift, clickhouse, (logged.delivered, labels, malformed), progress
            )
            progress.note(f"caught up {seconds:.1f} s after the last label was published")
            progress.step(
                9,
                "Drift reports (each version's last 1,000 predictions against its training "
                "baseline, root causes first) and the alerts raised:",
            )
            for version in (first.version, second.version):
                evaluated = await drift.evaluator.evaluate(MODEL, version)
                if evaluated is None:
                    evaluated = await drift.evaluator.report(MODEL, version, Window(last_n=1000))
                print_report(evaluated, progress)
            for alert in reversed(await drift.store.alerts(MODEL, None, None, 20)):
                features = ", ".join(
                    f"{f.feature} ({f.test} {f.score:.2f})" for f in alert.features
                )
                progress.note(
                    f"alert v{alert.version} {events_pb2.DriftKind.Name(alert.kind)[11:].lower()} "
                    f"{events_pb2.Severity.Name(alert.severity)[9:].lower()}: {features}"
                )
            progress.step(
                10, "Windows read back from ClickHouse: the tenure shift, and v2 taking over:"
            )
            await report(clickhouse)
        finally:
            await producer.stop()
            await client.close()
            await gateway.stop(0)
            await drift.stop(0)
            await inference.stop(0)
            await registry.stop(0)
            await clickhouse.close()
    print(
        f"\ndone in {time.monotonic() - progress.started:.1f} s. "
        "The retraining loop replaces the hand-made retrain as the retrainer's "
        "training pipeline lands.",
        flush=True,
    )
    return 0
