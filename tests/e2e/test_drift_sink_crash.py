"""The drift service as its own process, killed with SIGKILL mid-stream and restarted:
ClickHouse ends with exactly the produced predictions and labels (no loss, no duplicates),
labels that came before their prediction included; with either sink engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from driftloop.kafka.local_broker import free_port
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from tests import drift_streams
from tests.e2e.test_registry_cli import wait_serving
from tests.integration.stack import until

PREDICTIONS = 40_000
EARLY_LABELS = 5_000  # published before any prediction
LATE_LABELS = 25_000  # published after the predictions

READ_CLICKHOUSE = """
import json, sys
from chdb import session
db = session.Session(sys.argv[1])
def count(sql):
    return int(db.query(sql, "CSV").data().strip())
print(json.dumps({
    "predictions": count("SELECT count() FROM driftloop.predictions FINAL"),
    "distinct_predictions": count("SELECT uniqExact(request_id) FROM driftloop.predictions"),
    "labels": count("SELECT count() FROM driftloop.labels FINAL"),
    "labelled": count("SELECT count() FROM driftloop.predictions_labelled"),
}))
db.close()
"""


async def produce(settings: KafkaSettings) -> None:
    assert settings.bootstrap_servers is not None
    trained = drift_streams.train()
    data = drift_streams.table(PREDICTIONS, seed=51)
    stream = drift_streams.stream(trained, data, model="crash", version="1")
    names = TopicNames(settings.topic_prefix)
    producer = EventProducer(settings, settings.bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        for label in stream.labels[:EARLY_LABELS]:
            await producer.enqueue(names.labels, label.request_id, label)
        for event in stream.predictions:
            await producer.enqueue(names.predictions, event.request_id, event)
        for label in stream.labels[EARLY_LABELS : EARLY_LABELS + LATE_LABELS]:
            await producer.enqueue(names.labels, label.request_id, label)
        await producer.flush()
    finally:
        await producer.stop()


async def committed(settings: KafkaSettings, group: str) -> tuple[int, int]:
    """(committed offsets, end offsets) summed over the sink's partitions."""
    assert settings.bootstrap_servers is not None
    names = TopicNames(settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        partitions = [
            TopicPartition(topic, p)
            for topic in (names.predictions, names.labels)
            for p in range(settings.partitions)
        ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    done = sum(meta.offset for meta in offsets.values() if meta.offset > 0)
    return done, sum(ends.values())


@pytest.mark.parametrize("engine", ["aiokafka", "faust"])
async def test_a_sink_killed_mid_stream_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path, engine: str
) -> None:
    await produce(kafka_settings)
    group = f"{kafka_settings.topic_prefix}drift-sink"
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": str(kafka_settings.bootstrap_servers),
        "DRIFTLOOP_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "DRIFTLOOP_CLICKHOUSE_PATH": str(tmp_path / "clickhouse"),
        "DRIFTLOOP_DRIFT_PORT": str(port),
        # Small batches: many commits, so the kill lands between two of them.
        "DRIFTLOOP_DRIFT_SINK_BATCH": "1000",
        "DRIFTLOOP_DRIFT_SINK_ENGINE": engine,
        "DRIFTLOOP_DRIFT_REGISTRY_TARGET": f"127.0.0.1:{free_port()}",  # nobody: no baselines
        "DRIFTLOOP_LOG_LEVEL": "ERROR",
    }
    env.pop("DRIFTLOOP_CLICKHOUSE_URL", None)
    total = PREDICTIONS + EARLY_LABELS + LATE_LABELS

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "driftloop.drift", env=env
        )
        await wait_serving(f"127.0.0.1:{port}", process)
        return process

    first = await start()
    try:

        async def midway() -> bool:
            done, _ = await committed(kafka_settings, group)
            return done >= 5_000

        await until(midway, 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    done, end = await committed(kafka_settings, group)
    assert end == total and done < total, "the kill came too late to test anything"

    second = await start()
    try:

        async def caught_up() -> bool:
            done, _ = await committed(kafka_settings, group)
            return done == total

        await until(caught_up, 120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0

    reader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READ_CLICKHOUSE,
        str(tmp_path / "clickhouse"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await reader.communicate()
    assert reader.returncode == 0
    counts = json.loads(out)
    assert counts == {
        "predictions": PREDICTIONS,
        "distinct_predictions": PREDICTIONS,
        "labels": EARLY_LABELS + LATE_LABELS,
        "labelled": EARLY_LABELS + LATE_LABELS,
    }
