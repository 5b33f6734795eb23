"""`driftloop demo`: the loop end to end, as far as it is built.

Today: a local Kafka broker (or the configured one), the topics, ClickHouse (embedded
unless configured), the registry and inference services in this process on free ports
(as standalone mode runs them), a model trained on seeded data and registered as
champion, seeded traffic whose `tenure` input shifts halfway served by the inference
service, every served prediction logged to Kafka (the gateway's job once it exists),
delayed labels as protobuf and as JSON, a few malformed messages, the Kafka -> ClickHouse
sink (at-least-once, idempotent rows, dead letters), and windows read back from
ClickHouse that show the shift. The drift, retrainer-loop, gateway and shadow services
add their steps here as they land.
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
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.client import ClientSettings, DriftloopClient
from driftloop.inference.config import InferenceSettings
from driftloop.inference.server import InferenceService
from driftloop.kafka.codecs import decode_label, decode_prediction
from driftloop.kafka.consumer import BatchConsumer, Record
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.settings import ClickHouseSettings, KafkaSettings, load_settings
from driftloop.models.artifacts import LocalArtifactStore
from driftloop.retrainer.config import RetrainerSettings
from driftloop.retrainer.server import RetrainerService
from driftloop.v1 import common_pb2, events_pb2

MODEL = "demo-churn"
STEPS = 8
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


async def serve_and_log(
    client: DriftloopClient,
    producer: EventProducer,
    names: TopicNames,
    traffic: Sequence[tuple[Row, str]],
    seed: int,
    progress: Progress,
) -> tuple[int, int]:
    """Serve the traffic through inference (by alias `champion`), log each served prediction
    and, for 40% of them, publish the label a day later. Returns (predictions, labels)."""
    rng = random.Random(seed + 1)
    deliveries = []
    labels = 0
    for start in range(0, len(traffic), BATCH):
        chunk = traffic[start : start + BATCH]
        served = await client.predict_batch(MODEL, "champion", [row for row, _ in chunk])
        for offset, ((row, truth), output) in enumerate(zip(chunk, served.outputs, strict=True)):
            n = start + offset
            at = START + SPAN * (n / len(traffic))
            event = events_pb2.PredictionEvent(
                request_id=f"demo-{seed}-{n}",
                model=MODEL,
                version=served.model.version,
                role=common_pb2.ROLE_LIVE,
                variant="stable",
                entity_key=f"customer-{rng.randrange(5000)}",
                output=output,
                latency_us=served.latency_us // max(1, len(chunk)),
            )
            event.time.FromDatetime(at)
            for name, value in row.items():
                if isinstance(value, str):
                    event.features[name].category = value
                else:
                    event.features[name].number = value
            deliveries.append(await producer.enqueue(names.predictions, event.request_id, event))
            if rng.random() < 0.4:
                labels += 1
                if labels % 2:
                    label = events_pb2.LabelEvent(
                        request_id=event.request_id, label=truth, source="billing"
                    )
                    label.time.FromDatetime(at + dt.timedelta(days=1))
                    deliveries.append(await producer.enqueue(names.labels, label.request_id, label))
                else:  # the same, as JSON: what a producer in another language sends
                    text = json.dumps(
                        {"request_id": event.request_id, "label": truth, "source": "billing"}
                    )
                    deliveries.append(
                        await producer.enqueue(names.labels, event.request_id, text.encode())
                    )
        if (start // BATCH) % 10 == 9:
            progress.note(f"served and logged {start + len(chunk):,} of {len(traffic):,}")
    await asyncio.gather(*deliveries)
    return len(traffic), labels


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
    consumer: BatchConsumer,
    clickhouse: ClickHouse,
    expected: tuple[int, int, int],
    progress: Progress,
) -> float:
    """Run the sink until ClickHouse holds every row and the dead letters are out."""
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    started = time.monotonic()
    try:
        while True:
            rows = await clickhouse.query(
                f"SELECT (SELECT count() FROM {clickhouse.table('predictions')} FINAL), "
                f"(SELECT count() FROM {clickhouse.table('labels')} FINAL)"
            )
            predictions, labels = rows.rows[0]
            stats = consumer.stats
            progress.note(
                f"{predictions:>7,} predictions, {labels:>6,} labels in ClickHouse, "
                f"{stats.dead_letters} dead letters"
            )
            if (predictions, labels, stats.dead_letters) == expected:
                return time.monotonic() - started
            if task.done():
                task.result()
                raise RuntimeError("the sink stopped before it was done")
            if time.monotonic() - started > 300:
                raise TimeoutError("the sink did not finish in 5 minutes")
            await asyncio.sleep(1.0)
    finally:
        await consumer.stop()
        await task


async def report(clickhouse: ClickHouse) -> None:
    params = {"model": MODEL}
    windows = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 10 MINUTE) AS window, count() AS rows, "
        "avg(numbers['tenure']) AS tenure, avg(output_value) AS score "
        f"FROM {clickhouse.table('predictions')} FINAL WHERE model = {{model:String}} "
        "GROUP BY window ORDER BY window",
        params,
    )
    accuracy = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 10 MINUTE) AS window, count() AS labelled, "
        "avg(output_label = truth_label) AS accuracy "
        f"FROM {clickhouse.table('predictions_labelled')} WHERE model = {{model:String}} "
        "GROUP BY window ORDER BY window",
        params,
    )
    labelled = {row[0]: row[1:] for row in accuracy.rows}
    header = ("window (UTC)", "rows", "labelled", "mean tenure", "mean score", "accuracy")
    print("      {:<12} {:>6} {:>8} {:>11} {:>10} {:>8}".format(*header))
    for window, rows, tenure, score in windows.rows:
        count, acc = labelled.get(window, (0, float("nan")))
        print(
            f"      {window:%H:%M}{'':<7} {rows:>6,} {count:>8,} {tenure:>11.1f} "
            f"{score:>10.3f} {acc:>8.3f}"
        )


def _clickhouse_settings(data_dir: Path) -> ClickHouseSettings:
    if "DRIFTLOOP_CLICKHOUSE_URL" in os.environ or "DRIFTLOOP_CLICKHOUSE_PATH" in os.environ:
        return load_settings(ClickHouseSettings)
    return load_settings(ClickHouseSettings, path=data_dir / "clickhouse")


async def demo(args: argparse.Namespace) -> int:
    progress = Progress()
    print(
        "driftloop demo: serve -> log -> ClickHouse, with a registered model (the loop so far)\n",
        flush=True,
    )
    kafka_settings = load_settings(KafkaSettings)
    rng = random.Random(args.seed)
    training = customers(5000, rng, shift_from=10**9)
    traffic = customers(args.predictions, rng, shift_from=args.predictions // 2)
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
        client = DriftloopClient(
            ClientSettings(
                registry_target=f"127.0.0.1:{registry.port}",
                inference_target=f"127.0.0.1:{inference.port}",
                admin_token=token,
                actor="demo",
            )
        )
        producer = EventProducer(settings, bootstrap)
        await producer.start()
        try:
            progress.step(
                4,
                f"Services: registry on 127.0.0.1:{registry.port}, inference on "
                f"127.0.0.1:{inference.port} (gRPC, admin token generated for this run)",
            )
            data = args.data_dir / "train.csv"
            await asyncio.to_thread(write_training_csv, data, training)
            record = await client.register_from_data(MODEL, data, target="churned", seed=args.seed)
            move = await client.set_alias(MODEL, "champion", record.version, reason="first version")
            metrics = ", ".join(f"{m.name} {m.value:.3f}" for m in record.metrics)
            progress.step(
                5,
                f"Trained {MODEL} on {data} ({record.data.row_count:,} rows), registered "
                f"version {record.version}, alias {move.alias} -> {move.version}; "
                f"holdout {metrics}",
            )
            started = time.monotonic()
            predictions, labels = await serve_and_log(
                client, producer, names, traffic, args.seed, progress
            )
            malformed = await publish_malformed(producer, names)
            progress.step(
                6,
                f"Served {predictions:,} predictions through inference (tenure shifts down "
                f"40% halfway) and logged them to Kafka, with {labels:,} delayed labels "
                f"(half JSON) and {malformed} malformed messages, "
                f"in {time.monotonic() - started:.1f} s",
            )
            log = PredictionLog(clickhouse)

            async def write(records: Sequence[Record]) -> None:
                await log.write_events(record.value for record in records)

            consumer = BatchConsumer(
                settings,
                bootstrap,
                group_id=f"{settings.topic_prefix}sink",
                decoders={names.predictions: decode_prediction, names.labels: decode_label},
                handler=write,
                dead_letters=DeadLetters(producer, names.dead_letter, "demo-sink"),
            )
            progress.step(7, "Sink: Kafka -> ClickHouse (manual commits, idempotent rows)")
            seconds = await sink_until_done(
                consumer, clickhouse, (predictions, labels, malformed), progress
            )
            progress.note(f"{predictions + labels:,} events in {seconds:.1f} s")
            progress.step(
                8,
                "Windows read back from ClickHouse (the tenure shift shows in inputs and scores):",
            )
            await report(clickhouse)
        finally:
            await producer.stop()
            await client.close()
            await inference.stop(0)
            await registry.stop(0)
            await clickhouse.close()
    print(
        f"\ndone in {time.monotonic() - progress.started:.1f} s. Drift detection, retraining and "
        "rollouts join this demo as the drift, retrainer-loop and gateway services land.",
        flush=True,
    )
    return 0
