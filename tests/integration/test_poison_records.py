"""One bad record must never stop the prediction log (real broker, real ClickHouse engine).

The drift service's sink handler (LogSink) under both of its engines: records that parse
but could never be stored are dead-lettered at decode; a record that fails only at insert
is isolated by bisection and dead-lettered while the rest of its batch is stored exactly
once; a store that is down makes the consumer wait, never dead-letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer

from driftloop.clickhouse.backend import ClickHouseBackend, ClickHouseError, Params, QueryResult
from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.drift.faust_sink import FaustSink
from driftloop.drift.sink import LogSink
from driftloop.kafka.codecs import decode_prediction, log_decoders
from driftloop.kafka.consumer import BatchConsumer
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2
from tests.conftest import unique_name
from tests.factories import prediction

POISON_LABEL = bytes.fromhex("0a06706f69736f6e120a088080808080808080401a0131")
Engine = BatchConsumer | FaustSink


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    assert kafka_settings.bootstrap_servers is not None
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


def sink_engine(
    engine: str,
    settings: KafkaSettings,
    producer: EventProducer,
    clickhouse: ClickHouse,
    group: str = "",
) -> Engine:
    """The drift service's sink as it composes it (drift/server.py), without detection."""
    names = TopicNames(settings.topic_prefix)
    assert settings.bootstrap_servers is not None
    group = group or unique_name("sink")
    handler = LogSink(PredictionLog(clickhouse), None)
    dead_letters = DeadLetters(producer, names.dead_letter, group)
    decoders = log_decoders(names.predictions, names.labels)
    if engine == "faust":
        return FaustSink(
            settings,
            group,
            settings.bootstrap_servers,
            decoders=decoders,
            handler=handler,
            dead_letters=dead_letters,
            max_batch=1000,
            retry_backoff_s=(0.05, 0.2),
            probe=handler.probe,
        )
    return BatchConsumer(
        settings,
        settings.bootstrap_servers,
        group_id=group,
        decoders=decoders,
        handler=handler,
        dead_letters=dead_letters,
        max_batch=1000,
        poll_timeout_ms=100,
        retry_backoff_s=(0.05, 0.2),
        probe=handler.probe,
    )


async def run_until(consumer: Engine, done: Callable[[], Awaitable[bool]]) -> None:
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        deadline = time.monotonic() + 60
        while not await done():
            assert not task.done(), f"the consumer stopped: {task.exception()}"
            assert time.monotonic() < deadline, "timed out waiting for the sink"
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
        await asyncio.wait_for(task, 30)


async def count(clickhouse: ClickHouse, table: str, final: bool = True) -> int:
    suffix = " FINAL" if final else ""
    result = await clickhouse.query(f"SELECT count() FROM {clickhouse.table(table)}{suffix}")
    return int(result.scalar())


async def dead_letters(settings: KafkaSettings, expected: int) -> list[events_pb2.DeadLetter]:
    consumer = AIOKafkaConsumer(
        TopicNames(settings.topic_prefix).dead_letter,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[events_pb2.DeadLetter] = []
    try:
        deadline = time.monotonic() + 20
        while len(letters) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            letters += [
                events_pb2.DeadLetter.FromString(m.value) for ms in batch.values() for m in ms
            ]
    finally:
        await consumer.stop()
    return letters


async def publish_traffic(producer: EventProducer, names: TopicNames, numbers: range) -> set[int]:
    """A prediction and its label per number; returns the partitions they landed on."""
    deliveries = []
    for n in numbers:
        event = prediction(n)
        deliveries.append(await producer.enqueue(names.predictions, event.request_id, event))
        label = events_pb2.LabelEvent(request_id=event.request_id, label="1", source="test")
        deliveries.append(await producer.enqueue(names.labels, event.request_id, label))
    return {metadata.partition for metadata in await asyncio.gather(*deliveries)}


@pytest.mark.parametrize("engine", ["aiokafka", "faust"])
async def test_poison_records_are_dead_lettered_and_the_log_goes_on(
    engine: str, kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    partitions = await publish_traffic(producer, names, range(0, 30))
    await producer.publish(names.labels, "poison", POISON_LABEL)
    far_future = prediction(999)
    far_future.time.seconds = 2**62
    await producer.publish(names.predictions, far_future.request_id, far_future)
    partitions |= await publish_traffic(producer, names, range(30, 60))
    assert partitions == {0, 1, 2}, "the traffic covers every partition"
    sink = sink_engine(engine, kafka_settings, producer, clickhouse)

    async def everything_handled() -> bool:
        return (
            await count(clickhouse, "predictions") == 60
            and await count(clickhouse, "labels") == 60
            and sink.stats.dead_letters == 2
        )

    await run_until(sink, everything_handled)
    letters = {letter.key: letter for letter in await dead_letters(kafka_settings, 2)}
    assert set(letters) == {b"poison", b"req-999"}
    assert letters[b"poison"].value == POISON_LABEL
    assert letters[b"poison"].topic == names.labels
    assert "outside the storable range" in letters[b"poison"].reason
    assert "outside the storable range" in letters[b"req-999"].reason


async def test_a_record_refused_at_insert_is_isolated_and_the_rest_stored_once(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    # A record that decodes but that this store refuses: a constraint of the real engine.
    await clickhouse.command(
        f"ALTER TABLE {clickhouse.table('predictions')} "
        "ADD CONSTRAINT refuse_one CHECK request_id != 'req-17'"
    )
    names = TopicNames(kafka_settings.topic_prefix)
    await publish_traffic(producer, names, range(40))  # one poll takes them all: one batch
    group = unique_name("sink")
    sink = sink_engine("aiokafka", kafka_settings, producer, clickhouse, group)

    async def handled() -> bool:
        return await count(clickhouse, "predictions") == 39 and sink.stats.dead_letters == 1

    await run_until(sink, handled)
    assert await count(clickhouse, "predictions", final=False) == 39, "no row stored twice"
    assert await count(clickhouse, "labels") == 40
    (letter,) = await dead_letters(kafka_settings, 1)
    assert letter.key == b"req-17"
    assert "the store refused it" in letter.reason
    assert "refuse_one" in letter.reason
    assert decode_prediction(letter.value).request_id == "req-17"
    # The offsets moved past the batch: a new consumer of the group reads only what is new.
    await publish_traffic(producer, names, range(40, 41))
    again = sink_engine("aiokafka", kafka_settings, producer, clickhouse, group)

    async def new_ones_read() -> bool:
        return again.stats.records >= 2

    await run_until(again, new_ones_read)
    assert again.stats.records == 2


class SwitchableBackend:
    """The real embedded engine behind a switch that makes it unreachable for a while."""

    def __init__(self, backend: ClickHouseBackend) -> None:
        self._backend = backend
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise ClickHouseError("Connection refused (ClickHouse is down)")

    def command(self, sql: str, params: Params | None = None) -> None:
        self._check()
        self._backend.command(sql, params)

    def query(self, sql: str, params: Params | None = None) -> QueryResult:
        self._check()
        return self._backend.query(sql, params)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        self._check()
        return self._backend.insert(table, columns, rows)

    def query_columns(self, sql: str, params: Params | None = None) -> Any:
        self._check()
        return self._backend.query_columns(sql, params)

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        self._check()
        return self._backend.query_arrow(sql, params)

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        self._check()
        return self._backend.insert_arrow(table, data)

    def close(self) -> None:
        self._backend.close()


async def test_a_store_outage_dead_letters_nothing_and_loses_nothing(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    switch = SwitchableBackend(clickhouse.backend)
    flaky = ClickHouse(switch, clickhouse.database)
    names = TopicNames(kafka_settings.topic_prefix)
    switch.down = True
    await publish_traffic(producer, names, range(25))
    sink = sink_engine("aiokafka", kafka_settings, producer, flaky)

    async def stored() -> bool:
        if switch.down and switch.refused >= 10:  # it kept retrying through the outage
            switch.down = False
        return not switch.down and await count(clickhouse, "predictions") == 25

    await run_until(sink, stored)
    assert sink.stats.dead_letters == 0
    assert await count(clickhouse, "labels") == 25
    assert await count(clickhouse, "predictions", final=False) == 25
