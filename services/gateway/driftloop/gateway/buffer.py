"""A bounded, batched, fire-and-forget path from the request path to a Kafka topic.

`offer` never waits: it appends to a bounded queue or, when the queue is full, drops the
record and counts it. A background task drains the queue in batches to the producer and
counts what the broker acknowledged and what failed. While Kafka is down, sends fail or
the queue fills, and both are counted; when the broker returns, draining resumes by
itself. The counts add up: offered = delivered + dropped + queued + in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def enqueue(
        self, topic: str, key: str | bytes, event: Message | bytes
    ) -> asyncio.Future[Any]: ...


@dataclass
class BufferCounts:
    offered: int = 0
    delivered: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_failed


class EventBuffer:
    def __init__(
        self,
        sender: Sender,
        topic: str,
        *,
        capacity: int = 10_000,
        batch: int = 500,
        name: str = "",
        on_dropped: Callable[[str, int], None] = lambda reason, records: None,
    ) -> None:
        """`on_dropped(reason, records)` hears of every drop: "full" or "failed"."""
        self._sender = sender
        self._on_dropped = on_dropped
        self._topic = topic
        self._capacity = capacity
        self._batch = batch
        self._name = name or topic
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.counts = BufferCounts()
        self._warned = False

    @property
    def queued(self) -> int:
        return len(self._queue) + self._in_flight

    def offer(self, key: str, event: Message | bytes) -> bool:
        """Queue an event (or its encoding) for the topic; False (and counted) when the
        buffer is full."""
        self.counts.offered += 1
        if len(self._queue) >= self._capacity:
            self.counts.dropped_full += 1
            self._on_dropped("full", 1)
            if not self._warned:
                self._warned = True
                log.error("%s buffer full: dropping records until Kafka catches up", self._name)
            return False
        self._queue.append((key, event if isinstance(event, bytes) else event.SerializeToString()))
        self._idle.clear()
        self._ready.set()
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name=f"buffer {self._name}")

    async def stop(self, drain_s: float = 10.0) -> None:
        """Send what is queued (for up to `drain_s`), then count the rest as dropped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.queued:
            self.counts.dropped_failed += self.queued
            self._on_dropped("failed", self.queued)
        self._queue.clear()
        self._in_flight = 0

    async def _drain(self) -> None:
        while True:
            await self._ready.wait()
            if not self._queue:
                self._ready.clear()
                self._idle.set()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
            self._in_flight = len(batch)
            outcomes = await asyncio.gather(
                *(self._send(key, value) for key, value in batch), return_exceptions=True
            )
            failed = sum(1 for outcome in outcomes if outcome is not True)
            self.counts.delivered += len(batch) - failed
            self.counts.dropped_failed += failed
            self._in_flight = 0
            if failed:
                self._on_dropped("failed", failed)
                log.error(
                    "%s: %d of %d records could not be written to Kafka",
                    self._name,
                    failed,
                    len(batch),
                )
            elif self._warned and not self._queue:
                self._warned = False
                log.info("%s: Kafka writes are flowing again", self._name)

    async def _send(self, key: str, value: bytes) -> bool:
        delivery = await self._sender.enqueue(self._topic, key, value)
        await delivery
        return True
