"""The dead-letter path: what a consumer cannot accept is kept with the reason, never lost."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from driftloop.kafka.producer import EventProducer
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)


class RawRecord(Protocol):
    """The fields of a consumed Kafka record that a dead letter keeps."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DeadLetters:
    def __init__(self, producer: EventProducer, topic: str, consumer_group: str) -> None:
        self._producer = producer
        self._topic = topic
        self._group = consumer_group
        self.published = 0

    async def publish(self, record: RawRecord, reason: str) -> None:
        """Write the original record and the reason to dead-letter; wait for the ack."""
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
        log.warning(
            "rejected a record to dead-letter",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
