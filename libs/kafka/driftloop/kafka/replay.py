"""Reading what a topic holds from an instant up to now, once, without a consumer group.

For looking back (a report of a model's rollouts from model-events): each partition is
read from the first record at or after the instant (the broker's time index) to its end
offset as it was when the read began, then the consumer closes. Records older than the
topic's retention are gone; a record that does not decode is skipped and counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import Message

from driftloop.kafka.codecs import DecodeError, Decoder
from driftloop.kit.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class Replayed:
    events: list[Message] = field(default_factory=list)
    undecodable: int = 0


async def read_since(
    settings: KafkaSettings,
    bootstrap_servers: str,
    topic: str,
    decode: Decoder,
    since: dt.datetime,
    timeout_s: float = 30.0,
) -> Replayed:
    """Every record of `topic` written at or after `since`, decoded, in partition order.
    Raise TimeoutError when the end is not reached within `timeout_s`."""
    # Subscribed without a group: start() waits for the topic's metadata and assigns
    # every partition.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        client_id=settings.client_id,
        group_id=None,
        enable_auto_commit=False,
        security_protocol=settings.security_protocol,
        request_timeout_ms=settings.request_timeout_ms,
    )
    async with asyncio.timeout(timeout_s):
        await consumer.start()
        try:
            return await _read(consumer, topic, decode, since)
        finally:
            await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer, topic: str, decode: Decoder, since: dt.datetime
) -> Replayed:
    partitions = sorted(consumer.assignment(), key=lambda tp: tp.partition)
    result = Replayed()
    if not partitions:
        return result
    ends = await consumer.end_offsets(partitions)
    firsts = await consumer.offsets_for_times(
        {tp: int(since.timestamp() * 1000) for tp in partitions}
    )
    todo: dict[TopicPartition, int] = {}
    for tp in partitions:
        first = firsts.get(tp)
        if first is not None and first.offset < ends[tp]:
            consumer.seek(tp, first.offset)
            todo[tp] = ends[tp]
        else:
            consumer.pause(tp)
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                if record.offset >= todo.get(tp, 0):
                    continue  # written after the read began
                try:
                    result.events.append(decode(record.value or b""))
                except DecodeError as error:
                    result.undecodable += 1
                    log.warning(
                        "skipped an undecodable record",
                        extra={"topic": topic, "offset": record.offset, "reason": str(error)},
                    )
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp]:
                consumer.pause(tp)
                del todo[tp]
    return result
