"""Reading a topic from an instant to its end (driftloop.kafka.replay) on the real broker."""

from __future__ import annotations

import datetime as dt

from aiokafka import AIOKafkaProducer

from driftloop.kafka.codecs import decode_model_event
from driftloop.kafka.replay import read_since
from driftloop.kafka.topics import TopicNames
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def millis(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


async def test_the_records_from_an_instant_to_the_end_are_read_once(
    kafka_settings: KafkaSettings,
) -> None:
    assert kafka_settings.bootstrap_servers is not None
    topic = TopicNames(kafka_settings.topic_prefix).model_events
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers)
    await producer.start()
    try:
        for minute, version in enumerate(["1", "2", "3", "4"]):
            event = events_pb2.ModelEvent(
                kind=events_pb2.MODEL_EVENT_KIND_PROMOTED, model="churn", version=version
            )
            await producer.send_and_wait(
                topic,
                event.SerializeToString(),
                key=b"churn",
                timestamp_ms=millis(T0 + dt.timedelta(minutes=minute)),
            )
        await producer.send_and_wait(
            topic, b"\xff not a model event", timestamp_ms=millis(T0 + dt.timedelta(minutes=5))
        )
    finally:
        await producer.stop()

    bootstrap = kafka_settings.bootstrap_servers
    since = T0 + dt.timedelta(minutes=1, seconds=30)
    later = await read_since(kafka_settings, bootstrap, topic, decode_model_event, since)
    everything = await read_since(kafka_settings, bootstrap, topic, decode_model_event, T0)
    nothing = await read_since(
        kafka_settings, bootstrap, topic, decode_model_event, T0 + dt.timedelta(hours=1)
    )

    assert [e.version for e in later.events if isinstance(e, events_pb2.ModelEvent)] == ["3", "4"]
    assert later.undecodable == 1
    assert len(everything.events) == 4 and everything.undecodable == 1
    assert (nothing.events, nothing.undecodable) == ([], 0)
