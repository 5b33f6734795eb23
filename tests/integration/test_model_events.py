"""The rollout history end to end: model events published on the real broker, stored by the
drift service's own consumer group in the real ClickHouse engine (table model_events), and
served by GetModelHistory; a redelivered record is stored once, an undecodable one goes
to dead-letter, and a restarted service, given every record again, keeps them as they were."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.config import DriftSettings
from driftloop.drift.server import DriftService
from driftloop.kafka.producer import EventProducer
from driftloop.kafka.topics import GroupNames, TopicNames, group_lag
from driftloop.kit.grpc_client import open_channel
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.times import stamp
from driftloop.v1 import drift_pb2, drift_pb2_grpc, events_pb2
from tests.integration.stack import read_topic, rewind, until

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
GARBAGE = b"\xff\x00 not a model event"


@dataclass
class History:
    kafka: KafkaSettings
    clickhouse: ClickHouse
    producer: EventProducer
    names: TopicNames
    groups: GroupNames
    services: list[DriftService] = field(default_factory=list)

    async def start(self) -> DriftService:
        assert self.kafka.bootstrap_servers is not None
        settings = DriftSettings(
            host="127.0.0.1",
            port=0,
            registry_target="127.0.0.1:1",  # never asked: no predictions flow here
            evaluate_every_s=3600,
            evaluate_every_rows=0,
        )
        service = DriftService(settings, self.kafka, self.kafka.bootstrap_servers, self.clickhouse)
        await service.start()
        self.services.append(service)
        return service

    async def stop(self, service: DriftService) -> None:
        await service.stop(grace=1)
        self.services.remove(service)

    async def rows(self) -> list[tuple[str, ...]]:
        """(kind, version, previous_version, alias, reason, run_id) of every stored event."""
        result = await self.clickhouse.query(
            "SELECT kind, version, previous_version, alias, reason, run_id FROM "
            f"{self.clickhouse.table('model_events')} FINAL ORDER BY time, event_id"
        )
        return [tuple(str(value) for value in row) for row in result.rows]

    async def lag(self) -> int | None:
        """Records of model-events the store's group has yet to commit."""
        assert self.kafka.bootstrap_servers is not None
        lag = await group_lag(
            self.kafka,
            self.kafka.bootstrap_servers,
            self.groups.drift_model_events,
            (self.names.model_events,),
        )
        return lag[self.names.model_events]


@pytest.fixture
async def history(kafka_settings: KafkaSettings, clickhouse: ClickHouse) -> AsyncIterator[History]:
    assert kafka_settings.bootstrap_servers is not None
    producer = EventProducer(kafka_settings, kafka_settings.bootstrap_servers)
    await producer.start()
    history = History(
        kafka_settings,
        clickhouse,
        producer,
        TopicNames(kafka_settings.topic_prefix),
        GroupNames(kafka_settings.topic_prefix),
    )
    try:
        yield history
    finally:
        for service in list(history.services):
            await history.stop(service)
        await producer.stop()


def event(kind: int, second: int, version: str = "2", **fields: str) -> events_pb2.ModelEvent:
    message = events_pb2.ModelEvent(
        kind=kind,  # type: ignore[arg-type]  # an enum value passed as int
        model="churn",
        version=version,
        previous_version="1",
        actor="gateway",
        time=stamp(T0 + dt.timedelta(seconds=second)),
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


# A canary that promotes v2, one of v3 rolled back, a retraining run halted, an alias moved.
EVENTS = [
    event(events_pb2.MODEL_EVENT_KIND_REGISTERED, 0, previous_version=""),
    event(events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, 1, reason="retrained"),
    event(events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED, 2, reason="step 2 of 3: 50%"),
    event(events_pb2.MODEL_EVENT_KIND_ALIAS_MOVED, 3, alias="champion"),
    event(events_pb2.MODEL_EVENT_KIND_PROMOTED, 4, reason="every step passed"),
    event(events_pb2.MODEL_EVENT_KIND_ROLLOUT_STARTED, 10, version="3", previous_version="2"),
    event(
        events_pb2.MODEL_EVENT_KIND_ROLLED_BACK,
        11,
        version="3",
        previous_version="2",
        reason="error rate 0.08 above stable's",
    ),
    event(
        events_pb2.MODEL_EVENT_KIND_RETRAIN_HALTED,
        20,
        previous_version="",
        run_id="churn-9",
        run_state="rejected_challenger",
        reason="not better by the margin",
    ),
]
STORED = [
    ("registered", "2", "", "", "", ""),
    ("rollout_started", "2", "1", "", "retrained", ""),
    ("rollout_stepped", "2", "1", "", "step 2 of 3: 50%", ""),
    ("alias_moved", "2", "1", "champion", "", ""),
    ("promoted", "2", "1", "", "every step passed", ""),
    ("rollout_started", "3", "2", "", "", ""),
    ("rolled_back", "3", "2", "", "error rate 0.08 above stable's", ""),
    ("retrain_halted", "2", "", "", "not better by the margin", "churn-9"),
]


async def test_every_model_event_is_stored_once_and_kept_across_a_restart(
    history: History,
) -> None:
    service = await history.start()
    topic = history.names.model_events
    for message in EVENTS:
        await history.producer.publish(topic, "churn", message)
    await history.producer.publish(topic, "churn", EVENTS[6])  # the rollback, once more
    await history.producer.publish(topic, "churn", GARBAGE)
    # Without a time of its own, an event is stored at the time it was published.
    published = dt.datetime.now(dt.UTC)
    untimed = events_pb2.ModelEvent(
        kind=events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED, model="churn", version="3"
    )
    await history.producer.publish(topic, "churn", untimed)
    records = len(EVENTS) + 3

    async def stored() -> bool:
        return len(await history.rows()) == len(STORED) + 1 and await history.lag() == 0

    await until(stored)
    rows = await history.rows()
    assert rows[:-1] == STORED, "each event once, in time order, every field kept"
    assert rows[-1] == ("rollout_stepped", "3", "", "", "", "")
    (raw,) = await read_topic(history.kafka, history.names.dead_letter, 1)
    letter = events_pb2.DeadLetter.FromString(raw)
    assert (letter.topic, letter.value, letter.consumer_group) == (
        topic,
        GARBAGE,
        "drift-model-events",
    )
    assert letter.reason.startswith("not a valid driftloop.v1.ModelEvent")
    assert service.model_events.stats.records == records - 1
    assert service.model_events.stats.dead_letters == 1

    # Restarted and handed every record again: nothing new is stored.
    await history.stop(service)
    await rewind(history.kafka, history.groups.drift_model_events, (topic,))
    assert await history.lag() == records
    service = await history.start()

    async def caught_up() -> bool:
        return await history.lag() == 0

    await until(caught_up)
    assert service.model_events.stats.records == records - 1, "every record read again"
    assert (await history.rows())[:-1] == STORED

    # GetModelHistory serves them, with the kinds and fields as published.
    channel = open_channel(f"127.0.0.1:{service.port}")
    try:
        request = drift_pb2.ModelHistoryRequest(model="churn", bucket_s=60)
        request.window.start.FromDatetime(T0 - dt.timedelta(minutes=1))
        request.window.end.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
        answer = await drift_pb2_grpc.DriftServiceStub(channel).GetModelHistory(request, timeout=30)
    finally:
        await channel.close()
    *served, last = answer.events
    assert served == EVENTS, "the events as published"
    assert (last.kind, last.version) == (events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED, "3")
    moment = last.time.ToDatetime(dt.UTC)
    assert published - dt.timedelta(seconds=5) <= moment <= published + dt.timedelta(seconds=30)
