"""The dead-letter path: what a consumer cannot accept is kept with the reason, never lost."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.kafka.metrics import DEAD_LETTERS
from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import clip
from driftloop.kit.throttle import Throttle
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 1000
LOG_INTERVAL_S = 10.0
# decode: not a valid event; store: refused by the store after isolation; deliver: a
# webhook never took it (the drift service's alerts to webhooks).
Stage = Literal["decode", "store", "deliver"]


class RawRecord(Protocol):
    """The fields of a consumed Kafka record that a dead letter keeps."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class RawMessage:
    """A consumed record as it came off the topic (what a dead letter keeps)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DeadLetters:
    """Publishes rejected records, counts them (metric) and logs them at WARNING, at most
    one line per source topic and stage every LOG_INTERVAL_S (a flood of poison records
    is one line saying how many were held back, not a flood of lines)."""

    def __init__(self, producer: EventProducer, topic: str, consumer_group: str) -> None:
        self._producer = producer
        self._topic = topic
        self._group = consumer_group
        self._throttle = Throttle(LOG_INTERVAL_S)
        self.published = 0

    async def publish(self, record: RawRecord, reason: str, stage: Stage = "decode") -> None:
        """Write the original record and the reason to dead-letter; wait for the ack."""
        reason = clip(reason, MAX_REASON_CHARS)
        now = Timestamp()
        now.FromDatetime(dt.datetime.now(dt.UTC))
        letter = events_pb2.DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key or b"",
            value=record.value or b"",
            reason=reason,
            consumer_group=self._group,
            time=now,
        )
        await self._producer.publish(self._topic, record.key or b"", letter)
        self.published += 1
        DEAD_LETTERS.labels(record.topic, self._group, stage).inc()
        held_back = self._throttle.allow((record.topic, stage))
        if held_back is not None:
            log.warning(
                "rejected a record to dead-letter",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "stage": stage,
                    "reason": reason,
                    "held_back": held_back,
                },
            )
