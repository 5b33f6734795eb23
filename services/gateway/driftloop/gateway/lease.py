"""The controller lease: exactly one gateway replica advances rollouts.

Every replica joins one Kafka consumer group on the single-partition routing topic; the
group gives that partition to exactly one member, and that member is the controller.
When it stops or stops polling, the group rebalances and another replica takes over.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRebalanceListener, TopicPartition

from driftloop.gateway import metrics
from driftloop.kafka.clients import make_consumer
from driftloop.kit.settings import KafkaSettings

log = logging.getLogger(__name__)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, lease: ControllerLease) -> None:
        self._lease = lease

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._lease._set(False)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._lease._set(bool(assigned))


class ControllerLease:
    def __init__(
        self, settings: KafkaSettings, bootstrap_servers: str, topic: str, group: str
    ) -> None:
        self._topic = topic
        self._consumer = make_consumer(
            settings,
            bootstrap_servers,
            client_id=f"{settings.client_id}-controller",
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self.held = False
        self.acquired = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def _set(self, held: bool) -> None:
        # A rebalance finishing while the consumer closes may still assign the partition;
        # a stopped lease is never held again.
        held = held and not self._stopped
        if held != self.held:
            log.info("controller lease %s", "acquired" if held else "released")
        self.held = held
        if held:
            self.acquired.set()
        else:
            self.acquired.clear()
        metrics.IS_CONTROLLER.set(1 if held else 0)

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._poll(), name="controller lease")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._set(False)
        await self._consumer.stop()

    async def _poll(self) -> None:
        while True:  # polling keeps the membership; the messages themselves are not needed
            await self._consumer.getmany(timeout_ms=1000)
