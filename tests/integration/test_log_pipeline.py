"""Kafka -> ClickHouse against the real broker and the real (embedded) ClickHouse engine."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from google.protobuf.message import Message

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.kafka.codecs import decode_label, decode_prediction
from driftloop.kafka.consumer import BatchConsumer, BatchHandler, Record
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames, ensure_topics, partition_counts
from driftloop.kit.errors import FailedPrecondition
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2
from tests.conftest import unique_name
from tests.factories import T0, prediction


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    assert kafka_settings.bootstrap_servers is not None
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


def messages(records: Sequence[Record]) -> list[Message]:
    """The records' values as messages: this test's decoders are the one-record ones."""
    values = []
    for record in records:
        assert isinstance(record.value, Message)
        values.append(record.value)
    return values


class Sink:
    """The prediction-log consumer as a test drives it: run, wait for a condition, stop."""

    def __init__(
        self,
        settings: KafkaSettings,
        producer: EventProducer,
        log: PredictionLog,
        group: str,
        handler: BatchHandler | None = None,
    ) -> None:
        names = TopicNames(settings.topic_prefix)
        assert settings.bootstrap_servers is not None
        self.dead_letters = DeadLetters(producer, names.dead_letter, group)
        self.consumer = BatchConsumer(
            settings,
            settings.bootstrap_servers,
            group_id=group,
            decoders={names.predictions: decode_prediction, names.labels: decode_label},
            handler=handler or self._write,
            dead_letters=self.dead_letters,
            poll_timeout_ms=100,
            retry_backoff_s=(0.05, 0.2),
        )
        self.log = log

    async def _write(self, records: Sequence[Record]) -> None:
        await self.log.write_events(messages(records))

    async def run_until(self, done: Callable[[], Awaitable[bool]]) -> None:
        await self.consumer.start()
        task = asyncio.create_task(self.consumer.run())
        try:
            deadline = time.monotonic() + 30
            while not await done():
                assert not task.done(), f"the consumer stopped: {task.exception()}"
                assert time.monotonic() < deadline, "timed out waiting for the sink"
                await asyncio.sleep(0.1)
        finally:
            await self.consumer.stop()
            await task


async def count_rows(clickhouse: ClickHouse, table: str) -> int:
    result = await clickhouse.query(f"SELECT count() FROM {clickhouse.table(table)} FINAL")
    return int(result.scalar())


async def test_topics_are_created_once_and_co_partitioned(
    kafka_settings: KafkaSettings, kafka_bootstrap: str
) -> None:
    assert await ensure_topics(kafka_settings, kafka_bootstrap) == []
    names = TopicNames(kafka_settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        counts = await partition_counts(admin, [names.predictions, names.labels, names.routing])
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, names.routing)]
        )
    finally:
        await admin.close()
    assert counts == {names.predictions: 3, names.labels: 3, names.routing: 1}
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


async def test_mismatched_partitions_are_refused(kafka_bootstrap: str) -> None:
    prefix = unique_name("mismatch") + "."
    await ensure_topics(KafkaSettings(topic_prefix=prefix, partitions=2), kafka_bootstrap)
    names = TopicNames(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({names.labels: NewPartitions(total_count=4)})
        deadline = time.monotonic() + 10  # the new count reaches the metadata a moment later
        while (await partition_counts(admin, [names.labels]))[names.labels] != 4:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    with pytest.raises(FailedPrecondition, match="must be equal"):
        await ensure_topics(KafkaSettings(topic_prefix=prefix, partitions=2), kafka_bootstrap)


async def test_a_prediction_lands_in_clickhouse_once_even_when_delivered_twice(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    event = prediction(1)
    await producer.publish(names.predictions, event.request_id, event)
    await producer.publish(names.predictions, event.request_id, event)  # a re-delivery
    await producer.publish(names.predictions, "req-2", prediction(2))
    log = PredictionLog(clickhouse)
    sink = Sink(kafka_settings, producer, log, unique_name("sink"))

    async def both_consumed() -> bool:
        return sink.consumer.stats.records >= 3

    await sink.run_until(both_consumed)
    window = await log.last_n("churn", "1", 10)
    assert [row["request_id"] for row in window] == ["req-2", "req-1"]
    newest = window[1]
    assert newest["time"] == T0 + dt.timedelta(seconds=1)
    assert newest["numbers"] == {"age": 31.0}
    assert newest["categories"] == {"plan": "pro"}
    assert newest["output_value"] == 0.25
    assert newest["role"] == "live"
    counts = await log.window_counts("churn", "1", T0, T0 + dt.timedelta(minutes=1))
    assert (counts.rows, counts.labelled, counts.errors) == (2, 0, 0)


async def test_a_malformed_message_goes_to_dead_letter_and_the_consumer_goes_on(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    await producer.publish(names.predictions, "bad-1", b"\xff\xfe not a protobuf")
    await producer.publish(names.predictions, "bad-2", prediction(5, model="bad model"))
    await producer.publish(names.labels, "bad-3", b'{"request_id": "req-7"}')
    await producer.publish(names.predictions, "req-7", prediction(7))
    await producer.publish(names.labels, "req-7", b'{"request_id": "req-7", "label": "1"}')
    log = PredictionLog(clickhouse)
    group = unique_name("sink")
    sink = Sink(kafka_settings, producer, log, group)

    async def all_handled() -> bool:
        return (
            await count_rows(clickhouse, "predictions") == 1
            and await count_rows(clickhouse, "labels") == 1
        )

    await sink.run_until(all_handled)
    assert sink.consumer.stats.dead_letters == 3
    letters = await read_all(kafka_settings, names.dead_letter, 3)
    reasons = {
        letter.value: letter.reason for letter in map(events_pb2.DeadLetter.FromString, letters)
    }
    assert "not a valid driftloop.v1.PredictionEvent" in reasons[b"\xff\xfe not a protobuf"]
    assert any("not a valid model name" in reason for reason in reasons.values())
    assert reasons[b'{"request_id": "req-7"}'] == "neither label nor value is set"
    for letter in map(events_pb2.DeadLetter.FromString, letters):
        assert letter.consumer_group == group
        assert letter.topic in {names.predictions, names.labels}
    counts = await log.window_counts("churn", "1", T0, T0 + dt.timedelta(minutes=1))
    assert (counts.rows, counts.labelled) == (1, 1)


async def test_a_failing_handler_is_retried_and_nothing_is_lost(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    for n in range(20):
        await producer.publish(names.predictions, f"req-{n}", prediction(n))
    log = PredictionLog(clickhouse)
    failures = 0

    async def flaky(records: Sequence[Record]) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            await log.write_events(messages(records[: len(records) // 2]))
            raise ConnectionError("ClickHouse went away mid-batch")
        await log.write_events(messages(records))

    sink = Sink(kafka_settings, producer, log, unique_name("sink"), handler=flaky)

    async def all_written() -> bool:
        return (
            await count_rows(clickhouse, "predictions") == 20 and sink.consumer.stats.records == 20
        )

    await sink.run_until(all_written)
    assert failures == 2


async def test_committed_offsets_survive_a_restart(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    group = unique_name("sink")
    log = PredictionLog(clickhouse)
    for n in range(5):
        await producer.publish(names.predictions, f"req-{n}", prediction(n))
    first = Sink(kafka_settings, producer, log, group)

    async def first_done() -> bool:
        return first.consumer.stats.records == 5

    await first.run_until(first_done)
    for n in range(5, 8):
        await producer.publish(names.predictions, f"req-{n}", prediction(n))
    second = Sink(kafka_settings, producer, log, group)

    async def second_done() -> bool:
        return await count_rows(clickhouse, "predictions") == 8

    await second.run_until(second_done)
    # The second consumer started after the committed offsets: it read only the new three.
    assert second.consumer.stats.records == 3


async def read_all(settings: KafkaSettings, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while len(values) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            values.extend(message.value for messages in batch.values() for message in messages)
    finally:
        await consumer.stop()
    return values
