"""The sink as a faust-streaming agent (DRIFTLOOP_DRIFT_SINK_ENGINE=faust).

Same contract as the default engine (driftloop.kafka.consumer.BatchConsumer): records are
decoded by their topic's decoder, the undecodable go to dead-letter, the rest reach the
same handler (LogSink) in batches, and a batch is acknowledged only after the handler
returned (faust's `take_events` acks a batch when the agent asks for the next one), so
faust commits only offsets whose rows are in ClickHouse. A failing handler is retried
with backoff, never skipped. faust's assignor co-partitions the two topics of the app.

It is the slower engine: faust's per-event stream machinery costs about four times the
CPU per record of the BatchConsumer (`make bench-drift-sink`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import faust

from driftloop.kafka.clients import faust_options
from driftloop.kafka.codecs import Decoder
from driftloop.kafka.consumer import (
    BatchHandler,
    ConsumerStats,
    Probe,
    decode_record,
    handle_until_done,
)
from driftloop.kafka.dead_letter import DeadLetters
from driftloop.kafka.lag import Partition, PartitionLag
from driftloop.kit.settings import KafkaSettings


class FaustSink:
    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        bootstrap_servers: str,
        *,
        decoders: Mapping[str, Decoder],
        handler: BatchHandler,
        dead_letters: DeadLetters,
        max_batch: int,
        retry_backoff_s: tuple[float, float] = (0.2, 10.0),
        probe: Probe | None = None,
    ) -> None:
        self._group = group_id
        self._probe = probe
        self._decoders = dict(decoders)
        self._handler = handler
        self._dead_letters = dead_letters
        self._backoff = retry_backoff_s
        self._batches = 0
        self._records = 0
        self._lag = PartitionLag(group_id)
        # The tables live in memory; faust still creates its data folder, so it goes to a
        # temporary one, removed on stop (not the working directory).
        self._datadir = tempfile.mkdtemp(prefix="driftloop-faust-")
        self.app = faust.App(
            group_id,
            datadir=self._datadir,
            **faust_options(settings, bootstrap_servers),
            value_serializer="raw",
            key_serializer="raw",
            web_enabled=False,
            store="memory://",
            autodiscover=False,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            broker_commit_interval=1.0,
            broker_max_poll_records=max_batch,
            stream_buffer_maxsize=max(max_batch, 1000),
        )
        topic = self.app.topic(*self._decoders, value_type=bytes, key_type=bytes)
        self.app.agent(topic, name="drift-sink")(self._agent)
        self._max_batch = max_batch

    @property
    def stats(self) -> ConsumerStats:
        return ConsumerStats(self._batches, self._records, self._dead_letters.published)

    async def start(self) -> None:
        await self.app.start()

    def owns(self, topic: str, partition: int) -> bool:
        """Whether the group assigned this partition to this app now."""
        return any(
            tp.topic == topic and tp.partition == partition for tp in self.app.consumer.assignment()
        )

    def assigned(self, topic: str) -> list[int]:
        """The partitions of `topic` the group assigned to this app now."""
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic)

    async def run(self) -> None:
        """The agent runs inside the app; this waits until the app stops."""
        await self.app.wait_until_stopped()

    async def stop(self) -> None:
        await self.app.stop()
        self._lag.clear()
        shutil.rmtree(self._datadir, ignore_errors=True)

    async def _agent(self, stream: Any) -> None:
        async for events in stream.take_events(self._max_batch, within=0.5):
            first: dict[Partition, int] = {}
            after: dict[Partition, int] = {}
            for event in events:
                partition = (event.message.tp.topic, event.message.tp.partition)
                offset = event.message.offset
                first[partition] = min(first.get(partition, offset), offset)
                after[partition] = max(after.get(partition, 0), offset + 1)
            highwaters = self._highwaters()
            for partition, offset in first.items():
                self._lag.received(partition, offset, highwaters.get(partition))
            records = []
            for event in events:
                message = event.message
                record = await decode_record(
                    message,
                    self._decoders[message.topic],
                    self._dead_letters,
                    int(message.timestamp * 1000),
                )
                if record is not None:
                    records.append(record)
            if records:
                await handle_until_done(
                    self._handler,
                    records,
                    self._dead_letters,
                    self._backoff,
                    probe=self._probe,
                    group=self._group,
                )
            for partition, offset in after.items():
                self._lag.handled(partition, offset)
            self._lag.refresh(self._highwaters())
            self._batches += 1
            self._records += len(records)

    def _highwaters(self) -> dict[Partition, int | None]:
        """The last known high watermark of each partition assigned now."""
        highwaters: dict[Partition, int | None] = {}
        for tp in self.app.consumer.assignment():
            try:
                highwaters[(tp.topic, tp.partition)] = self.app.consumer.highwater(tp)
            except AssertionError:
                # aiokafka asserts the partition is assigned, and faust's consumer runs in a
                # thread of its own: a rebalance there can take it between the two calls.
                continue
        return highwaters
