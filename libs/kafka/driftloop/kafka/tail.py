"""Following a topic without a consumer group: every replica sees every event.

For broadcast topics (model-events, routing): each service replica reads all partitions,
from the beginning (to replay a compacted topic's state) or from the end (to hear only
what happens from now on). Undecodable events are logged and skipped here: these topics
are written by driftloop itself, and the writer's consumers dead-letter nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message

from driftloop.kafka.codecs import DecodeError, Decoder
from driftloop.kit.settings import KafkaSettings

log = logging.getLogger(__name__)


class TopicTail:
    def __init__(
        self,
        settings: KafkaSettings,
        bootstrap_servers: str,
        topic: str,
        decode: Decoder,
        handler: Callable[[Message], Awaitable[None]],
        *,
        from_beginning: bool = False,
    ) -> None:
        self._topic = topic
        self._decode = decode
        self._handler = handler
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            client_id=settings.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            security_protocol=settings.security_protocol,
            request_timeout_ms=settings.request_timeout_ms,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"tail {self._topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._consumer.stop()

    async def _run(self) -> None:
        async for message in self._consumer:
            try:
                event = self._decode(message.value or b"")
            except DecodeError as error:
                log.error(
                    "skipped an undecodable event",
                    extra={"topic": self._topic, "reason": str(error)},
                )
                continue
            try:
                await self._handler(event)
            except Exception:
                log.exception("handling an event failed", extra={"topic": self._topic})
