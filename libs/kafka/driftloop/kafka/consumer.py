"""At-least-once batch consumption with manual commits and a dead-letter path.

`BatchConsumer` polls a batch, decodes each partition's records with its topic's decoder
(`codecs.decode_many`: a batch decoder takes them at once), sends the records it cannot
decode to dead-letter (and waits for the ack), hands the rest to the handler, and commits
the offsets only after the handler returned. The handler's effects
must be idempotent, because a crash between the side effect and the commit re-delivers
the batch.

One record must never stop the log, and a store outage must never cost a record. So a
failing batch is told apart (`handle_until_done`):
- a failure that will pass (the store unreachable: `probe` fails too, or the error is a
  connection-level one) is retried with backoff, for ever, nothing skipped;
- otherwise the batch is bisected: halves that store are kept, and the single records
  that still fail while others stored are the records' own fault, dead-lettered with the
  store's error (stage "store"), and the consumer goes on;
- when nothing at all could be stored though the store answers, the batch is retried
  with backoff (a table-level problem is not the records' fault), except a batch small
  enough to have been tried record by record, which is dead-lettered after failing the
  same way twice (a lone poison record on a quiet topic).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from driftloop.kafka.clients import make_consumer
from driftloop.kafka.codecs import Decoded, DecodeError, Decoder, decode_many
from driftloop.kafka.dead_letter import DeadLetters, RawMessage, RawRecord
from driftloop.kafka.lag import PartitionLag
from driftloop.kafka.metrics import BATCH_RETRIES
from driftloop.kit.errors import Unavailable
from driftloop.kit.settings import KafkaSettings
from driftloop.kit.throttle import Throttle

log = logging.getLogger(__name__)

# Bisection gives up looking for good records after this many failing ones with none stored.
MAX_FAILED_WITHOUT_STORED = 16
RETRY_LOG_INTERVAL_S = 30.0


class Record(NamedTuple):
    """A decoded Kafka record, where it came from, and its original bytes (`value`: a
    message, or a prediction left as its row of its batch's columns: codecs). A tuple:
    a batch makes tens of thousands, and a frozen dataclass costs a microsecond each."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    value: Decoded
    raw: bytes = b""

    def message(self) -> RawMessage:
        return RawMessage(self.topic, self.partition, self.offset, self.key, self.raw)


BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]
# Raises when the handler's store cannot be reached (a cheap query, no effect).
Probe = Callable[[], Awaitable[None]]


async def decode_record(
    message: RawRecord, decode: Decoder, dead_letters: DeadLetters, timestamp_ms: int
) -> Record | None:
    """The record decoded, or None once an undecodable one is in dead-letter (acked)."""
    raw = message.value or b""
    try:
        value = decode(raw)
    except DecodeError as error:
        await dead_letters.publish(message, str(error), "decode")
        return None
    return Record(
        message.topic, message.partition, message.offset, message.key, timestamp_ms, value, raw
    )


def is_transient(error: BaseException) -> bool:
    """Errors that say the store or the broker is unreachable, not that the data is bad."""
    return isinstance(error, OSError | TimeoutError | Unavailable | KafkaError)


async def _attempt(handler: BatchHandler, records: Sequence[Record]) -> Exception | None:
    try:
        await handler(records)
    except Exception as error:  # noqa: BLE001  # the failure is data here: it gets classified
        return error
    return None


async def _store_answers(probe: Probe | None) -> bool:
    if probe is None:
        return True
    try:
        await probe()
    except Exception:  # noqa: BLE001  # any failure of the probe says: the store is not there
        return False
    return True


@dataclass
class _Isolation:
    stored: int = 0
    refused: list[tuple[Record, Exception]] = field(default_factory=list)
    transient: Exception | None = None

    @property
    def gave_up(self) -> bool:
        return self.transient is not None or (
            not self.stored and len(self.refused) >= MAX_FAILED_WITHOUT_STORED
        )


async def _bisect(handler: BatchHandler, records: Sequence[Record], state: _Isolation) -> None:
    """Store what stores; collect the single records that fail (depth first)."""
    middle = len(records) // 2
    for half in (records[:middle], records[middle:]):
        if state.gave_up or not half:
            return
        error = await _attempt(handler, half)
        if error is None:
            state.stored += len(half)
        elif is_transient(error):
            state.transient = error
        elif len(half) == 1:
            state.refused.append((half[0], error))
        else:
            await _bisect(handler, half, state)


async def handle_until_done(
    handler: BatchHandler,
    records: Sequence[Record],
    dead_letters: DeadLetters,
    backoff_s: tuple[float, float],
    stopping: Callable[[], bool] = lambda: False,
    probe: Probe | None = None,
    group: str = "",
) -> bool:
    """Run the handler until every record is stored or dead-lettered (True); False when
    it failed while `stopping()` (the batch is then left uncommitted, read again later)."""
    delay, longest = backoff_s
    throttle = Throttle(RETRY_LOG_INTERVAL_S)
    alone_failures = 0
    while True:
        error = await _attempt(handler, records)
        if error is None:
            return True
        if stopping():
            log.warning(
                "batch handler failed while stopping; batch left uncommitted",
                extra={"error": f"{type(error).__name__}: {error}"},
            )
            return False
        if not is_transient(error) and await _store_answers(probe):
            state = _Isolation()
            await _bisect(handler, records, state)
            if state.transient is None:
                if not state.refused:
                    return True  # every half stored on its own: the failure passed
                tried_alone = len(records) < MAX_FAILED_WITHOUT_STORED
                alone_failures = alone_failures + 1 if tried_alone and not state.stored else 0
                if state.stored or alone_failures >= 2:
                    for record, refusal in state.refused:
                        await dead_letters.publish(
                            record.message(),
                            f"the store refused it: {type(refusal).__name__}: {refusal}",
                            "store",
                        )
                    return True
            else:
                error = state.transient
        BATCH_RETRIES.labels(group).inc()
        held_back = throttle.allow("retry")
        if held_back is not None:
            log.warning(
                "batch handler failed; retrying",
                extra={
                    "records": len(records),
                    "error": f"{type(error).__name__}: {error}",
                    "retry_in_s": delay,
                    "held_back": held_back,
                },
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
        probe: Probe | None = None,
        **options: Any,
    ) -> None:
        self._group = group_id
        self._probe = probe
        self._decoders = dict(decoders)
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._backoff = retry_backoff_s
        self._consumer = make_consumer(
            settings,
            bootstrap_servers,
            *self._decoders,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **options,
        )
        self._stopping = asyncio.Event()
        self._batches = 0
        self._records = 0
        self._lag = PartitionLag(group_id)

    @property
    def stats(self) -> ConsumerStats:
        return ConsumerStats(self._batches, self._records, self._dead_letters.published)

    async def start(self) -> None:
        await self._consumer.start()

    def owns(self, topic: str, partition: int) -> bool:
        """Whether the group assigned this partition to this consumer now."""
        return TopicPartition(topic, partition) in self._consumer.assignment()

    def assigned(self, topic: str) -> list[int]:
        """The partitions of `topic` the group assigned to this consumer now."""
        return sorted(tp.partition for tp in self._consumer.assignment() if tp.topic == topic)

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
                self._lag.refresh(
                    {
                        (tp.topic, tp.partition): self._consumer.highwater(tp)
                        for tp in self._consumer.assignment()
                    }
                )
        finally:
            self._lag.clear()
            await self._consumer.stop()

    async def _process(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        accepted: list[Record] = []
        offsets: dict[TopicPartition, int] = {}
        for partition, messages in batch.items():  # before any await: all still assigned
            if messages:
                highwater = self._consumer.highwater(partition)
                self._lag.received(
                    (partition.topic, partition.partition), messages[0].offset, highwater
                )
        for partition, messages in batch.items():
            raws = [message.value or b"" for message in messages]
            # A partition's values at once (a batch decoder checks them together), off the
            # event loop: tens of thousands of records are a noticeable share of a second,
            # and the loop keeps the group's heartbeats.
            values = await asyncio.to_thread(decode_many, self._decoders[partition.topic], raws)
            if messages:
                offsets[partition] = messages[-1].offset + 1
            for message, raw, value in zip(messages, raws, values, strict=True):
                if isinstance(value, DecodeError):
                    await self._dead_letters.publish(message, str(value), "decode")
                    continue
                # tuple.__new__: Record's own __new__ is a Python call per record.
                fields = (message.topic, message.partition, message.offset, message.key)
                accepted.append(tuple.__new__(Record, (*fields, message.timestamp, value, raw)))
        if accepted and not await handle_until_done(
            self._handler,
            accepted,
            self._dead_letters,
            self._backoff,
            self._stopping.is_set,
            self._probe,
            self._group,
        ):
            return  # stopping: the batch is not committed, so it is read again next time
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced while we worked; the new owner re-reads these records,
            # and the idempotent handler makes that harmless.
            log.warning("offset commit failed after a rebalance; records will be re-read")
        for partition, offset in offsets.items():
            self._lag.handled((partition.topic, partition.partition), offset)
        self._batches += 1
        self._records += len(accepted)
