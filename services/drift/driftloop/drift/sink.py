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

from driftloop.clickhouse.prediction_log import PredictionLog, label_table, logged_table
from driftloop.drift import metrics
from driftloop.drift.detection import OnlineDetection
from driftloop.kafka.codecs import WirePrediction
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
        # Predictions come as rows of their batch's columns (the decoder read them) or as
        # messages (a record decoded alone, or built by hand).
        predictions: list[PredictionEvent | WirePrediction] = []
        raws: list[bytes] = []
        labels: list[LabelEvent] = []
        prediction_partitions: list[int] = []
        label_partitions: list[int] = []
        for record in records:
            value = record.value
            if isinstance(value, WirePrediction | PredictionEvent):
                predictions.append(value)
                raws.append(record.raw)
                prediction_partitions.append(record.partition)
            elif isinstance(value, LabelEvent):
                labels.append(value)
                label_partitions.append(record.partition)
            else:
                raise TypeError(f"not a prediction or label event: {type(value).__name__}")
        # Building a batch's table is a fraction of a second for 50,000 records: off the
        # event loop all the same, which in standalone mode also serves the gateway.
        table, labels_table = await asyncio.to_thread(
            lambda: (logged_table(predictions, raws), label_table(labels))
        )
        written = await self._prediction_log.write_tables(table, labels_table)
        metrics.SINK_RECORDS.labels("prediction").inc(written[0])
        metrics.SINK_RECORDS.labels("label").inc(written[1])
        self._logged(written[0])
        if self._detection is not None:
            try:
                await self._detection.observe(
                    table, labels, prediction_partitions, label_partitions
                )
            except Exception:
                log.exception("online detection failed on a batch; the batch is logged")
        metrics.SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
