"""The prediction-log sink: the batch handler of the predictions + labels consumer.

ClickHouse first: the consumer commits the batch's offsets only after this returns, and
the tables are keyed by the natural keys (read with FINAL), so a crash at any point
re-delivers the batch without losing or double-counting a row. Then the online detectors,
whose failure is logged and never holds the log up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from driftloop.clickhouse.prediction_log import (
    PredictionLog,
    label_table,
    prediction_table,
    split_events,
)
from driftloop.drift import metrics
from driftloop.drift.detection import OnlineDetection
from driftloop.kafka.consumer import Record
from driftloop.v1.events_pb2 import LabelEvent, PredictionEvent

log = logging.getLogger(__name__)


class LogSink:
    def __init__(
        self,
        prediction_log: PredictionLog,
        detection: OnlineDetection | None,
        logged: Callable[[int], None] = lambda rows: None,
    ) -> None:
        """`logged` is told how many predictions each batch wrote (the windowed round's
        row-count trigger)."""
        self._prediction_log = prediction_log
        self._detection = detection
        self._logged = logged

    async def probe(self) -> None:
        """Raise unless ClickHouse answers: the consumer's test of a failure that passes."""
        await self._prediction_log.ping()

    async def __call__(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        predictions, labels = split_events(record.value for record in records)
        # Each prediction's bytes as consumed (a record built by hand may have none).
        raws = [
            record.raw or record.value.SerializeToString()
            for record in records
            if isinstance(record.value, PredictionEvent)
        ]
        # Building a batch's columns is a fraction of a second for 50,000 records: off the
        # event loop all the same, which in standalone mode also serves the gateway.
        table, labels_table = await asyncio.to_thread(
            lambda: (prediction_table(predictions, raws), label_table(labels))
        )
        written = await self._prediction_log.write_tables(table, labels_table)
        metrics.SINK_RECORDS.labels("prediction").inc(written[0])
        metrics.SINK_RECORDS.labels("label").inc(written[1])
        self._logged(written[0])
        if self._detection is not None:
            try:
                await self._detection.observe(
                    table,
                    labels,
                    [r.partition for r in records if isinstance(r.value, PredictionEvent)],
                    [r.partition for r in records if isinstance(r.value, LabelEvent)],
                )
            except Exception:
                log.exception("online detection failed on a batch; the batch is logged")
        metrics.SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
