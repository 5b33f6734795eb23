"""Every record a driftloop consumer reads ends stored or on dead-letter with a reason.

Property-based (hypothesis) over random, mutated and garbage encodings (and JSON, for
labels) of every event type a driftloop service consumes, through the real decoders and
the real store (the embedded ClickHouse engine); then a seeded mix of them through the
real broker and the sink, which must keep committing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import random
import time
from collections.abc import AsyncIterator, Callable

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog, label_table, prediction_table
from driftloop.drift import model_events
from driftloop.drift.sink import LogSink
from driftloop.gateway.policies import validate
from driftloop.kafka.codecs import (
    DecodeError,
    decode_label,
    decode_model_event,
    decode_prediction,
    log_decoders,
    parse_binary,
)
from driftloop.kafka.consumer import BatchConsumer
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import TopicNames
from driftloop.kit.errors import InvalidArgument
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2
from tests.conftest import unique_name
from tests.factories import prediction
from tests.protobuf_strategies import bodies, variations

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


ANY_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"]),
)
LABEL_JSON = st.dictionaries(
    st.sampled_from(["request_id", "label", "value", "time", "source", "extra"]),
    ANY_JSON,
).map(lambda fields: json.dumps(fields).encode())
PREDICTION_BODIES = st.one_of(
    bodies(events_pb2.PredictionEvent.DESCRIPTOR),
    variations(prediction(1)).map(lambda event: event.SerializeToString()),
)
LABEL_BODIES = st.one_of(
    bodies(events_pb2.LabelEvent.DESCRIPTOR),
    variations(events_pb2.LabelEvent(request_id="r1", label="1")).map(
        lambda event: event.SerializeToString()
    ),
    LABEL_JSON,
    st.text(max_size=80).map(lambda text: ("{" + text).encode()),
)

MODEL_EVENT_BODIES = st.one_of(
    bodies(events_pb2.ModelEvent.DESCRIPTOR),
    variations(events_pb2.ModelEvent(kind=events_pb2.MODEL_EVENT_KIND_PROMOTED, model="churn")).map(
        lambda event: event.SerializeToString()
    ),
)


def stored_or_refused(decode: Callable[[bytes], Message], raw: bytes) -> Message | None:
    """The decoded event, or None after checking the refusal carries a reason."""
    try:
        return decode(raw)
    except DecodeError as error:
        assert str(error), "a dead letter always says why"
        return None


async def test_any_prediction_or_label_either_stores_or_is_refused_with_a_reason(
    clickhouse: ClickHouse,
) -> None:
    backend, predictions, labels = (
        clickhouse.backend,
        clickhouse.table("predictions"),
        clickhouse.table("labels"),
    )
    outcomes = {"stored": 0, "refused": 0}

    @PROPERTY
    @given(raw=PREDICTION_BODIES)
    def prediction_property(raw: bytes) -> None:
        event = stored_or_refused(decode_prediction, raw)
        if event is None:
            outcomes["refused"] += 1
            return
        assert isinstance(event, events_pb2.PredictionEvent)
        assert backend.insert_arrow(predictions, prediction_table([event])) == 1
        outcomes["stored"] += 1

    @PROPERTY
    @given(raw=LABEL_BODIES)
    def label_property(raw: bytes) -> None:
        event = stored_or_refused(decode_label, raw)
        if event is None:
            outcomes["refused"] += 1
            return
        assert isinstance(event, events_pb2.LabelEvent)
        assert backend.insert_arrow(labels, label_table([event])) == 1
        outcomes["stored"] += 1

    prediction_property()
    label_property()
    assert outcomes["stored"] > 50 and outcomes["refused"] > 50, outcomes


async def test_any_model_event_either_stores_or_is_refused_with_a_reason(
    clickhouse: ClickHouse,
) -> None:
    """What the drift service's model events' store does to each record (model_events.py)."""
    backend, table = clickhouse.backend, clickhouse.table(model_events.TABLE)
    published = dt.datetime.now(dt.UTC)
    outcomes = {"stored": 0, "refused": 0}

    @PROPERTY
    @given(raw=MODEL_EVENT_BODIES)
    def model_event_property(raw: bytes) -> None:
        event = stored_or_refused(decode_model_event, raw)
        if event is None:
            outcomes["refused"] += 1
            return
        assert isinstance(event, events_pb2.ModelEvent)
        row = dataclasses.astuple(model_events.stored(event, published))
        assert backend.insert(table, model_events.COLUMNS, [row]) == 1
        outcomes["stored"] += 1

    model_event_property()
    assert outcomes["stored"] > 50 and outcomes["refused"] > 50, outcomes


@PROPERTY
@given(raw=bodies(events_pb2.RoutingPolicy.DESCRIPTOR))
def test_any_routing_record_is_applied_or_skipped_with_a_reason(raw: bytes) -> None:
    """What the gateway's routing follower does to each record (policy_topic.py)."""
    try:
        validate(parse_binary(events_pb2.RoutingPolicy, raw))
    except (DecodeError, InvalidArgument) as error:
        assert str(error)


def seeded_mix(seed: int, count: int) -> list[tuple[str, bytes, bytes]]:
    """(topic kind, key, value): valid events, mutated ones, garbage and JSON labels."""
    rng = random.Random(seed)
    mix: list[tuple[str, bytes, bytes]] = []
    for n in range(count):
        event = prediction(n)
        raw = event.SerializeToString()
        label = events_pb2.LabelEvent(request_id=event.request_id, label="1")
        choice = rng.random()
        if choice < 0.3:
            mix.append(("predictions", event.request_id.encode(), raw))
        elif choice < 0.45:
            mix.append(("labels", event.request_id.encode(), label.SerializeToString()))
        elif choice < 0.55:
            text = json.dumps({"request_id": event.request_id, "label": "0"}).encode()
            mix.append(("labels", event.request_id.encode(), text))
        elif choice < 0.8:
            broken = bytearray(raw)
            for _ in range(rng.randint(1, 3)):
                broken[rng.randrange(len(broken))] ^= rng.randint(1, 255)
            mix.append(("predictions", event.request_id.encode(), bytes(broken)))
        else:
            garbage = rng.randbytes(rng.randint(0, 60))
            mix.append((rng.choice(["predictions", "labels"]), b"garbage", garbage))
    return mix


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    assert kafka_settings.bootstrap_servers is not None
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    yield producer
    await producer.stop()


async def test_a_random_mix_through_the_broker_is_all_stored_or_dead_lettered(
    kafka_settings: KafkaSettings, producer: EventProducer, clickhouse: ClickHouse
) -> None:
    names = TopicNames(kafka_settings.topic_prefix)
    topics = {"predictions": names.predictions, "labels": names.labels}
    decoders = log_decoders(names.predictions, names.labels)
    mix = seeded_mix(seed=9, count=600)
    expected: dict[str, set[str]] = {"predictions": set(), "labels": set()}
    refused = 0
    for kind, key, value in mix:
        event = stored_or_refused(decoders[topics[kind]], value)
        if event is None:
            refused += 1
        else:
            expected[kind].add(getattr(event, "request_id"))  # noqa: B009  # either event type
        await producer.enqueue(topics[kind], key, value)
    await producer.flush()
    assert refused > 100 and expected["predictions"] and expected["labels"]
    group = unique_name("sink")
    sink = BatchConsumer(
        kafka_settings,
        kafka_settings.bootstrap_servers or "",
        group_id=group,
        decoders=decoders,
        handler=LogSink(PredictionLog(clickhouse), None),
        dead_letters=DeadLetters(producer, names.dead_letter, group),
        max_batch=100,
        poll_timeout_ms=100,
        retry_backoff_s=(0.05, 0.2),
    )
    await sink.start()
    task = asyncio.create_task(sink.run())
    try:
        deadline = time.monotonic() + 60
        while sink.stats.records + sink.stats.dead_letters < len(mix):
            assert not task.done(), f"the sink stopped: {task.exception()}"
            assert time.monotonic() < deadline, f"stuck at {sink.stats}"
            await asyncio.sleep(0.1)
    finally:
        await sink.stop()
        await asyncio.wait_for(task, 30)
    assert sink.stats.dead_letters == refused
    stored = {
        kind: {
            row[0]
            for row in (
                await clickhouse.query(
                    f"SELECT DISTINCT request_id FROM {clickhouse.table(kind)} FINAL"
                )
            ).rows
        }
        for kind in ("predictions", "labels")
    }
    assert stored == expected
