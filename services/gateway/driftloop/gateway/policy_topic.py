"""The compacted routing topic: publish a model's policy, replay and follow everyone's.

At start a replica reads the topic from the beginning to its current end before it
reports ready, so a restarted gateway resumes with the policies in force; after that it
keeps following, so every replica routes the same way.

A policy on the topic was checked by the gateway that wrote it, but the topic can also
hold one written by an older gateway or by hand. So each one is checked again before it
is applied: one that does not parse, breaks the policy rules, or names a version the
registry does not have is skipped with a WARNING (and counted), and the previous working
policy stays in force; a model must not go off the air because of one record. When the
registry cannot be asked, the policy is applied (it most likely came from a gateway).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import TopicPartition

from driftloop.gateway import metrics
from driftloop.gateway.policies import PolicyBook, validate, versions_named
from driftloop.kafka.clients import make_consumer
from driftloop.kafka.codecs import DecodeError, parse_binary
from driftloop.kafka.producer import EventProducer
from driftloop.kit.errors import InvalidArgument, Unavailable
from driftloop.kit.settings import KafkaSettings
from driftloop.v1 import events_pb2

log = logging.getLogger(__name__)


class VersionCheck(Protocol):
    async def exists(self, model: str, version: str) -> bool | None:
        """Whether the registry has the version; None when it cannot be asked now."""
        ...


class PolicyTopic:
    def __init__(
        self,
        settings: KafkaSettings,
        bootstrap_servers: str,
        topic: str,
        producer: EventProducer,
        book: PolicyBook,
        versions: VersionCheck | None = None,
    ) -> None:
        self._topic = topic
        self._versions = versions
        self._producer = producer
        self._book = book
        self._consumer = make_consumer(
            settings,
            bootstrap_servers,
            client_id=f"{settings.client_id}-routing",
            group_id=None,
            enable_auto_commit=False,
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
                    policy = await self._checked(message.value or b"", message.offset)
                    if policy is not None and self._book.apply(policy):
                        log.info(
                            "routing policy of %s at revision %d", policy.model, policy.revision
                        )
            await self._check_caught_up(ends)

    async def _checked(self, raw: bytes, offset: int) -> events_pb2.RoutingPolicy | None:
        """The policy, if it may be applied; None (and a warning) if it must be skipped."""
        try:
            policy = parse_binary(events_pb2.RoutingPolicy, raw)
            validate(policy)
        except (DecodeError, InvalidArgument) as error:
            self._skip("", offset, str(error))
            return None
        current = self._book.get(policy.model)
        if current is not None and current.revision >= policy.revision:
            return None  # not newer: nothing to check
        if self._versions is not None:
            for field, version in versions_named(policy):
                if await self._versions.exists(policy.model, version) is False:
                    self._skip(
                        policy.model,
                        offset,
                        f"{field}: the registry has no version {version} of {policy.model}",
                    )
                    return None
        return policy

    def _skip(self, model: str, offset: int, reason: str) -> None:
        metrics.POLICIES_SKIPPED.labels(model or "unknown").inc()
        log.warning(
            "skipped a routing policy; the previous one stays in force",
            extra={"model": model, "topic": self._topic, "offset": offset, "reason": reason},
        )

    async def _check_caught_up(self, ends: dict[TopicPartition, int]) -> None:
        if self.caught_up.is_set():
            return
        for partition, end in ends.items():
            if await self._consumer.position(partition) < end:
                return
        self.caught_up.set()
