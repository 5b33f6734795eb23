"""The compacted routing topic: publish a model's policy, replay and follow everyone's.

At start a replica reads the topic from the beginning to its current end before it
reports ready, so a restarted gateway resumes with the policies in force; after that it
keeps following, so every replica routes the same way.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from driftloop.gateway.policies import PolicyBook
from driftloop.kafka.codecs import DecodeError, parse_binary
from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import Unavailable
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)


class PolicyTopic:
    def __init__(
        self,
        settings: KafkaSettings,
        bootstrap_servers: str,
        topic: str,
        producer: EventProducer,
        book: PolicyBook,
    ) -> None:
        self._topic = topic
        self._producer = producer
        self._book = book
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{settings.client_id}-routing",
            group_id=None,
            enable_auto_commit=False,
            security_protocol=settings.security_protocol,
        )
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, policy: events_pb2.RoutingPolicy) -> None:
        try:
            await self._producer.publish(self._topic, policy.model, policy)
        except Exception as error:  # any producer failure means the same to a caller
            raise Unavailable(
                f"the routing policy could not be written to {self._topic}: {error}"
            ) from error

    async def start(self) -> None:
        await self._consumer.start()
        try:
            ids = await self._producer.partitions_for(self._topic)
        except Exception as error:  # unknown topic or no broker: the same answer
            raise Unavailable(
                f"the routing topic {self._topic} is not available: {error}"
            ) from error
        partitions = [TopicPartition(self._topic, p) for p in sorted(ids)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._follow(ends), name=f"follow {self._topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        await self._check_caught_up(ends)
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    try:
                        policy = parse_binary(events_pb2.RoutingPolicy, message.value or b"")
                    except DecodeError as error:
                        log.error("skipped an unreadable routing policy: %s", error)
                        continue
                    if self._book.apply(policy):
                        log.info(
                            "routing policy of %s at revision %d", policy.model, policy.revision
                        )
            await self._check_caught_up(ends)

    async def _check_caught_up(self, ends: dict[TopicPartition, int]) -> None:
        if self.caught_up.is_set():
            return
        for partition, end in ends.items():
            if await self._consumer.position(partition) < end:
                return
        self.caught_up.set()
