"""Label producers put a request's label on its prediction's partition (the drift service
joins them within a partition), on the real broker.

The gateway writes predictions with aiokafka, whose default partitioner is the Java
client's: murmur2 of the key. confluent-kafka (librdkafka) agrees only when told
`partitioner: murmur2_random`; its default, consistent_random (CRC32), puts most labels
elsewhere, which breaks the join as soon as several drift replicas share the partitions.
The client's publish_label uses driftloop's own producer, so it agrees by construction;
here it is read back as the drift service reads it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from driftloop.client import Client, ClientSettings
from driftloop.kafka.codecs import decode_label
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2

REQUEST_IDS = [f"req-{i:04d}-{i * 7919 % 1000:03d}" for i in range(200)]


async def aiokafka_partitions(settings: KafkaSettings, topic: str) -> dict[str, int]:
    """Where driftloop's producer (the gateway's, for predictions) puts each request id."""
    assert settings.bootstrap_servers is not None
    producer = EventProducer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        deliveries = [
            await producer.enqueue(
                topic, request_id, events_pb2.LabelEvent(request_id=request_id, label="probe")
            )
            for request_id in REQUEST_IDS
        ]
        written = await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return {
        request_id: meta.partition for request_id, meta in zip(REQUEST_IDS, written, strict=True)
    }


def confluent_partitions(bootstrap: str, topic: str, partitioner: str) -> dict[str, int]:
    """Where a confluent-kafka producer with `partitioner` puts each request id."""
    chosen: dict[str, int] = {}
    failures: list[Any] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            chosen[message.key().decode()] = message.partition()

    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": partitioner, "enable.idempotence": True}
    )
    for request_id in REQUEST_IDS:
        label = events_pb2.LabelEvent(request_id=request_id, label="yes")
        producer.produce(
            topic, key=request_id, value=label.SerializeToString(), on_delivery=delivered
        )
    assert producer.flush(60) == 0
    assert not failures, failures
    return chosen


async def test_murmur2_random_agrees_with_aiokafka_and_the_default_does_not(
    kafka_settings: KafkaSettings,
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    topic = TopicNames(kafka_settings.topic_prefix).labels
    expected = await aiokafka_partitions(kafka_settings, topic)
    assert len(set(expected.values())) == kafka_settings.partitions  # every partition used
    murmur2 = await asyncio.to_thread(
        confluent_partitions, kafka_settings.bootstrap_servers, topic, "murmur2_random"
    )
    assert murmur2 == expected
    default = await asyncio.to_thread(
        confluent_partitions, kafka_settings.bootstrap_servers, topic, "consistent_random"
    )
    elsewhere = [key for key in REQUEST_IDS if default[key] != expected[key]]
    assert len(elsewhere) > len(REQUEST_IDS) // 3, "consistent_random should disagree"


async def test_publish_label_writes_what_the_drift_service_reads(
    kafka_settings: KafkaSettings,
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    topic = TopicNames(kafka_settings.topic_prefix).labels
    ids = REQUEST_IDS[:20]
    expected = await aiokafka_partitions(kafka_settings, topic)
    unreachable = ClientSettings(registry_target="127.0.0.1:1")
    with Client(unreachable, kafka_settings) as client:  # labels need no service, only Kafka
        for number, request_id in enumerate(ids):
            client.publish_label(request_id, "yes" if number % 2 else 3.5, source="crm")

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(kafka_settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: dict[str, tuple[int, events_pb2.LabelEvent]] = {}
        deadline = time.monotonic() + 30
        while len(found) < len(ids):
            assert time.monotonic() < deadline, sorted(found)
            batches = await consumer.getmany(timeout_ms=1000)
            for part, records in batches.items():
                for record in records:
                    if record.value and record.key and record.key.decode() in ids:
                        event = decode_label(record.value)
                        if event.source == "crm":
                            found[record.key.decode()] = (part.partition, event)
    finally:
        await consumer.stop()
    for number, request_id in enumerate(ids):
        partition, event = found[request_id]
        assert partition == expected[request_id]
        assert event.request_id == request_id and event.time.seconds > 0
        if number % 2:
            assert event.WhichOneof("truth") == "label" and event.label == "yes"
        else:
            assert event.WhichOneof("truth") == "value" and event.value == 3.5
