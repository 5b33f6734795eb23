"""`driftloop demo`: the loop end to end, as far as it is built.

Today that is the prediction log: a local Kafka broker (or the configured one), the
driftloop topics, a seeded stream of predictions whose `tenure` input shifts halfway,
delayed labels as protobuf and as JSON, a few malformed messages, the Kafka -> ClickHouse
sink (at-least-once, idempotent rows, dead letters), and windows read back from
ClickHouse that show the shift. Each later service (inference, gateway, drift,
retrainer, shadow) adds its step here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import random
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from driftloop.clickhouse.client import ClickHouse, open_clickhouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.codecs import decode_label, decode_prediction
from driftloop.kafka.consumer import BatchConsumer, Record
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.local_broker import LocalBroker, find_kafka_libs
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics
from driftloop.kit.settings import ClickHouseSettings, KafkaSettings, load_settings
from driftloop.v1 import common_pb2, events_pb2

MODEL = "demo-churn"
VERSION = "1"
STEPS = 6
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
SPAN = dt.timedelta(hours=1)


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


def make_events(
    count: int, seed: int
) -> tuple[list[events_pb2.PredictionEvent], list[events_pb2.LabelEvent]]:
    """Seeded traffic: `tenure` shifts down by 40% in the second half (data drift)."""
    rng = random.Random(seed)
    predictions, labels = [], []
    for n in range(count):
        drifted = n >= count // 2
        tenure = max(0.0, rng.gauss(24.0 * (0.6 if drifted else 1.0), 8.0))
        charges = rng.gauss(70.0, 15.0)
        plan = rng.choices(["basic", "pro", "family"], weights=[5, 3, 2])[0]
        score = 1.0 / (1.0 + math.exp(-(1.5 - 0.08 * tenure + 0.01 * (charges - 70.0))))
        event = events_pb2.PredictionEvent(
            request_id=f"demo-{seed}-{n}",
            model=MODEL,
            version=VERSION,
            role=common_pb2.ROLE_LIVE,
            variant="stable",
            entity_key=f"customer-{rng.randrange(5000)}",
            output=common_pb2.Output(
                kind=common_pb2.OUTPUT_KIND_BINARY,
                value=score,
                label="1" if score >= 0.5 else "0",
                probabilities={"1": score, "0": 1.0 - score},
            ),
            latency_us=rng.randrange(80, 400),
        )
        at = START + SPAN * (n / count)
        event.time.FromDatetime(at)
        event.features["tenure"].number = tenure
        event.features["monthly_charges"].number = charges
        event.features["plan"].category = plan
        predictions.append(event)
        if rng.random() < 0.4:  # 40% of predictions learn their truth, a day later
            truth = "1" if rng.random() < score else "0"
            label = events_pb2.LabelEvent(
                request_id=event.request_id, label=truth, source="billing"
            )
            label.time.FromDatetime(at + dt.timedelta(days=1))
            labels.append(label)
    return predictions, labels


async def produce(
    producer: EventProducer,
    names: TopicNames,
    predictions: Sequence[events_pb2.PredictionEvent],
    labels: Sequence[events_pb2.LabelEvent],
) -> int:
    """Publish everything (half the labels as JSON) plus three malformed messages."""
    deliveries = [
        await producer.enqueue(names.predictions, event.request_id, event) for event in predictions
    ]
    for index, label in enumerate(labels):
        value: bytes | events_pb2.LabelEvent = label
        if index % 2:
            value = (
                f'{{"request_id": "{label.request_id}", "label": "{label.label}", '
                f'"source": "{label.source}"}}'
            ).encode()
        deliveries.append(await producer.enqueue(names.labels, label.request_id, value))
    malformed = [
        (names.predictions, b"\x00\x01 this is not a PredictionEvent"),
        (names.predictions, events_pb2.PredictionEvent(request_id="no-model").SerializeToString()),
        (names.labels, b'{"request_id": "demo-x", "label": '),
    ]
    for topic, raw in malformed:
        deliveries.append(await producer.enqueue(topic, b"malformed", raw))
    await asyncio.gather(*deliveries)
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
    windows = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 10 MINUTE) AS window, count() AS rows, "
        "avg(numbers['tenure']) AS tenure, avg(output_value) AS score "
        f"FROM {clickhouse.table('predictions')} FINAL "
        "WHERE model = {model:String} AND version = {version:String} "
        "GROUP BY window ORDER BY window",
        {"model": MODEL, "version": VERSION},
    )
    accuracy = await clickhouse.query(
        "SELECT toStartOfInterval(time, INTERVAL 10 MINUTE) AS window, count() AS labelled, "
        "avg(output_label = truth_label) AS accuracy "
        f"FROM {clickhouse.table('predictions_labelled')} "
        "WHERE model = {model:String} AND version = {version:String} "
        "GROUP BY window ORDER BY window",
        {"model": MODEL, "version": VERSION},
    )
    labelled = {row[0]: row[1:] for row in accuracy.rows}
    print(
        f"      {'window (UTC)':<12} {'rows':>6} {'labelled':>8} {'mean tenure':>11} "
        f"{'mean score':>10} {'accuracy':>8}"
    )
    for window, rows, tenure, score in windows.rows:
        count, acc = labelled.get(window, (0, float("nan")))
        print(
            f"      {window:%H:%M}{'':<7} {rows:>6,} {count:>8,} {tenure:>11.1f} "
            f"{score:>10.3f} {acc:>8.3f}"
        )


async def demo(args: argparse.Namespace) -> int:
    progress = Progress()
    print(
        "driftloop demo: the prediction log of the loop (serve -> log -> ClickHouse), "
        "the part that exists today\n",
        flush=True,
    )
    kafka_settings = load_settings(KafkaSettings)
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
        overrides = {}
        if (
            "DRIFTLOOP_CLICKHOUSE_URL" not in os.environ
            and "DRIFTLOOP_CLICKHOUSE_PATH" not in os.environ
        ):
            overrides["path"] = args.data_dir / "clickhouse"
        clickhouse_settings = load_settings(ClickHouseSettings, **overrides)
        clickhouse = await open_clickhouse(clickhouse_settings)
        try:
            await clickhouse.command(f"DROP DATABASE IF EXISTS {clickhouse.database}")
            await clickhouse.apply_schema(clickhouse_settings.cluster)
            where = (
                "server" if clickhouse_settings.url else f"embedded, in {clickhouse_settings.path}"
            )
            progress.step(3, f"ClickHouse ({where}): schema applied to {clickhouse.database!r}")
            producer = EventProducer(settings, bootstrap)
            await producer.start()
            try:
                predictions, labels = make_events(args.predictions, args.seed)
                started = time.monotonic()
                malformed = await produce(producer, names, predictions, labels)
                seconds = time.monotonic() - started
                progress.step(
                    4,
                    f"Produced {len(predictions):,} predictions of {MODEL} v{VERSION} "
                    f"(tenure shifts down 40% halfway), {len(labels):,} delayed labels "
                    f"(half of them JSON) and {malformed} malformed messages in {seconds:.1f} s",
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
                progress.step(5, "Sink: Kafka -> ClickHouse (manual commits, idempotent rows)")
                seconds = await sink_until_done(
                    consumer, clickhouse, (len(predictions), len(labels), malformed), progress
                )
                total = len(predictions) + len(labels)
                progress.note(f"{total:,} events in {seconds:.1f} s ({total / seconds:,.0f}/s)")
            finally:
                await producer.stop()
            progress.step(6, "Windows read back from ClickHouse (the tenure shift is visible):")
            await report(clickhouse)
        finally:
            await clickhouse.close()
    print(
        f"\ndone in {time.monotonic() - progress.started:.1f} s. Drift detection, retraining "
        "and rollouts join this demo as the drift, retrainer and gateway services land.",
        flush=True,
    )
    return 0
