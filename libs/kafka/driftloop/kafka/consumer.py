"""At-least-once batch consumption with manual commits and a dead-letter path.

`BatchConsumer` polls a batch, decodes each record with its topic's decoder, sends the
records it cannot decode to dead-letter (and waits for the ack), hands the rest to the
handler, and commits the offsets only after the handler returned. A handler failure is
retried with backoff, never skipped: the handler's effects must be idempotent, because a
crash between the side effect and the commit re-delivers the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from google.protobuf.message import Message

from driftloop.kafka.codecs import DecodeError, Decoder
from driftloop.kafka.dead_letter import DeadLetters, RawRecord
from driftloop.kit.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """A decoded Kafka record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    value: Message


BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]


async def decode_record(
    message: RawRecord, decode: Decoder, dead_letters: DeadLetters, timestamp_ms: int
) -> Record | None:
    """The record decoded, or None once an undecodable one is in dead-letter (acked)."""
    try:
        value = decode(message.value or b"")
    except DecodeError as error:
        await dead_letters.publish(message, str(error))
        return None
    return Record(
        message.topic, message.partition, message.offset, message.key, timestamp_ms, value
    )


async def handle_until_done(
    handler: BatchHandler,
    records: Sequence[Record],
    backoff_s: tuple[float, float],
    stopping: Callable[[], bool] = lambda: False,
) -> bool:
    """Run the handler until it succeeds (True), retrying with backoff, never skipping;
    False when it failed while `stopping()` (the batch is then left uncommitted)."""
    delay, longest = backoff_s
    attempt = 0
    while True:
        try:
            await handler(records)
            return True
        except Exception:
            if stopping():
                log.exception("batch handler failed while stopping; batch left uncommitted")
                return False
            attempt += 1
            log.exception(
                "batch handler failed; retrying",
                extra={"attempt": attempt, "records": len(records)},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)


@dataclass(frozen=True)
class ConsumerStats:
    batches: int
    records: int
    dead_letters: int


class BatchConsumer:
    def __init__(
        self,
        settings: KafkaSettings,
        bootstrap_servers: str,
        *,
        group_id: str,
        decoders: Mapping[str, Decoder],
        handler: BatchHandler,
        dead_letters: DeadLetters,
        max_batch: int = 10_000,
        poll_timeout_ms: int = 500,
        retry_backoff_s: tuple[float, float] = (0.2, 10.0),
        **options: Any,
    ) -> None:
        self._decoders = dict(decoders)
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._backoff = retry_backoff_s
        self._consumer = AIOKafkaConsumer(
            *self._decoders,
            bootstrap_servers=bootstrap_servers,
            client_id=settings.client_id,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            request_timeout_ms=settings.request_timeout_ms,
            security_protocol=settings.security_protocol,
            **options,
        )
        self._stopping = asyncio.Event()
        self._batches = 0
        self._records = 0

    @property
    def stats(self) -> ConsumerStats:
        return ConsumerStats(self._batches, self._records, self._dead_letters.published)

    async def start(self) -> None:
        await self._consumer.start()

    def owns(self, topic: str, partition: int) -> bool:
        """Whether the group assigned this partition to this consumer now."""
        return TopicPartition(topic, partition) in self._consumer.assignment()

    async def stop(self) -> None:
        """Finish the batch in hand (handler and commit), then leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `stop`; then close the consumer."""
        try:
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_batch
                )
                if batch:
                    await self._process(batch)
        finally:
            await self._consumer.stop()

    async def _process(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        accepted: list[Record] = []
        offsets: dict[TopicPartition, int] = {}
        for partition, messages in batch.items():
            decode = self._decoders[partition.topic]
            for message in messages:
                offsets[partition] = message.offset + 1
                record = await decode_record(message, decode, self._dead_letters, message.timestamp)
                if record is not None:
                    accepted.append(record)
        if accepted and not await handle_until_done(
            self._handler, accepted, self._backoff, self._stopping.is_set
        ):
            return  # stopping: the batch is not committed, so it is read again next time
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced while we worked; the new owner re-reads these records,
            # and the idempotent handler makes that harmless.
            log.warning("offset commit failed after a rebalance; records will be re-read")
        self._batches += 1
        self._records += len(accepted)
