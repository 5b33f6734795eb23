"""Following a topic without a consumer group: every replica sees every event.

For broadcast topics (model-events, routing): each service replica reads all partitions,
from the beginning (to replay a compacted topic's state) or from the end (to hear only
what happens from now on). An event that does not decode, or whose handler fails, is
skipped with a WARNING (at most one line per topic every 10 s, saying how many were held
back) and counted: every replica reads every event, so a dead letter would be written
once per replica; these topics are written by driftloop itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from driftloop.kafka.clients import make_consumer
from driftloop.kafka.codecs import DecodeError, Decoder
from driftloop.kafka.metrics import EVENTS_SKIPPED
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.throttle import Throttle

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
        self._consumer = make_consumer(
            settings,
            bootstrap_servers,
            topic,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
        self._task: asyncio.Task[None] | None = None
        self._throttle = Throttle(10.0)

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
                self._skip("undecodable", message.offset, str(error))
                continue
            try:
                await self._handler(event)
            except Exception as error:  # noqa: BLE001  # one event must not stop the tail
                self._skip("handler failed", message.offset, f"{type(error).__name__}: {error}")

    def _skip(self, why: str, offset: int, reason: str) -> None:
        EVENTS_SKIPPED.labels(self._topic, why).inc()
        held_back = self._throttle.allow(why)
        if held_back is not None:
            log.warning(
                "skipped an event (%s)",
                why,
                extra={
                    "topic": self._topic,
                    "offset": offset,
                    "reason": reason,
                    "held_back": held_back,
                },
            )
