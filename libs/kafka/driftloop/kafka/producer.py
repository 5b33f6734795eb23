"""The one way driftloop writes to Kafka: acks=all, idempotent, keyed by a natural key."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.message import Message

from driftloop.kafka.clients import make_producer
from driftloop.kit.settings import KafkaSettings


class EventProducer:
    """Publishes protobuf events. `publish` returns once the broker acknowledged the write."""

    def __init__(
        self,
        settings: KafkaSettings,
        bootstrap_servers: str,
        *,
        linger_ms: int = 5,
        max_batch_bytes: int = 256 * 1024,
        request_timeout_ms: int | None = None,
        **options: Any,
    ) -> None:
        if request_timeout_ms is not None:
            options["request_timeout_ms"] = request_timeout_ms
        self._producer = make_producer(
            settings,
            bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_batch_size=max_batch_bytes,
            **options,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, key: str | bytes, event: Message | bytes) -> None:
        """Write one event and wait for the broker's acknowledgement."""
        delivery = await self.enqueue(topic, key, event)
        await delivery

    async def enqueue(
        self, topic: str, key: str | bytes, event: Message | bytes
    ) -> asyncio.Future[Any]:
        """Hand one event to the producer's batch; await the returned future for the ack."""
        value = event if isinstance(event, bytes) else event.SerializeToString()
        raw_key = key.encode() if isinstance(key, str) else key
        future: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=raw_key)
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        """The partition ids of `topic` (waits for its metadata)."""
        partitions: set[int] = await self._producer.partitions_for(topic)
        return partitions

    async def flush(self) -> None:
        await self._producer.flush()
