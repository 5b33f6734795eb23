"""The prediction log in ClickHouse: writing prediction and label events, reading windows.

Rows are keyed by their natural key (model, version, role, time, request_id for
predictions; request_id for labels), and every read uses FINAL, so writing the same
event twice (a Kafka re-delivery) never counts it twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from driftloop.clickhouse.client import ClickHouse
from driftloop.v1 import common_pb2, events_pb2

PREDICTION_COLUMNS = (
    "request_id",
    "time",
    "model",
    "version",
    "role",
    "variant",
    "entity_key",
    "numbers",
    "categories",
    "output_kind",
    "output_value",
    "output_label",
    "output_probabilities",
    "latency_us",
    "error",
)
LABEL_COLUMNS = ("request_id", "time", "truth_kind", "label", "value", "source")

_ROLES = {
    common_pb2.ROLE_UNSPECIFIED: "unspecified",
    common_pb2.ROLE_LIVE: "live",
    common_pb2.ROLE_SHADOW: "shadow",
}
_OUTPUT_KINDS = {
    common_pb2.OUTPUT_KIND_UNSPECIFIED: "unspecified",
    common_pb2.OUTPUT_KIND_BINARY: "binary",
    common_pb2.OUTPUT_KIND_MULTICLASS: "multiclass",
    common_pb2.OUTPUT_KIND_REGRESSION: "regression",
}


def _time(seconds: int, nanos: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC) + dt.timedelta(microseconds=nanos // 1000)


def prediction_row(event: events_pb2.PredictionEvent) -> tuple[Any, ...]:
    numbers: dict[str, float] = {}
    categories: dict[str, str] = {}
    for name, value in event.features.items():
        if value.WhichOneof("kind") == "number":
            numbers[name] = value.number
        elif value.WhichOneof("kind") == "category":
            categories[name] = value.category
    output = event.output
    return (
        event.request_id,
        _time(event.time.seconds, event.time.nanos),
        event.model,
        event.version,
        _ROLES.get(event.role, "unspecified"),
        event.variant,
        event.entity_key,
        numbers,
        categories,
        _OUTPUT_KINDS.get(output.kind, "unspecified"),
        output.value,
        output.label,
        dict(output.probabilities),
        event.latency_us,
        event.error,
    )


def label_row(event: events_pb2.LabelEvent) -> tuple[Any, ...]:
    kind = event.WhichOneof("truth")
    return (
        event.request_id,
        _time(event.time.seconds, event.time.nanos),
        "label" if kind == "label" else "value",
        event.label,
        event.value,
        event.source,
    )


@dataclass(frozen=True)
class WindowCounts:
    rows: int
    labelled: int
    errors: int


class PredictionLog:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def write(
        self,
        predictions: Sequence[events_pb2.PredictionEvent] = (),
        labels: Sequence[events_pb2.LabelEvent] = (),
    ) -> tuple[int, int]:
        """Insert the events (one batch per table); return the rows written per table."""
        written_predictions = await self._ch.insert(
            "predictions", PREDICTION_COLUMNS, [prediction_row(event) for event in predictions]
        )
        written_labels = await self._ch.insert(
            "labels", LABEL_COLUMNS, [label_row(event) for event in labels]
        )
        return written_predictions, written_labels

    async def write_events(self, events: Iterable[Message]) -> tuple[int, int]:
        """Insert a mixed stream of prediction and label events (as a consumer batch has)."""
        predictions: list[events_pb2.PredictionEvent] = []
        labels: list[events_pb2.LabelEvent] = []
        for event in events:
            if isinstance(event, events_pb2.PredictionEvent):
                predictions.append(event)
            elif isinstance(event, events_pb2.LabelEvent):
                labels.append(event)
            else:
                raise TypeError(f"not a prediction or label event: {type(event).__name__}")
        return await self.write(predictions, labels)

    async def last_n(
        self, model: str, version: str, n: int, role: str = "live"
    ) -> list[dict[str, Any]]:
        """The newest `n` predictions of a model version, newest first."""
        result = await self._ch.query(
            f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM {self._ch.table('predictions')} FINAL "
            "WHERE model = {model:String} AND version = {version:String} AND role = {role:String} "
            "ORDER BY time DESC, request_id LIMIT {n:UInt32}",
            {"model": model, "version": version, "role": role, "n": n},
        )
        return result.dicts()

    async def window_counts(
        self, model: str, version: str, start: dt.datetime, end: dt.datetime
    ) -> WindowCounts:
        """Predictions, labelled predictions and failed predictions in [start, end)."""
        params = {"model": model, "version": version, "start": start, "end": end}
        where = (
            "model = {model:String} AND version = {version:String} AND role = 'live' "
            "AND time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}"
        )
        totals = await self._ch.query(
            f"SELECT count(), countIf(error != '') FROM {self._ch.table('predictions')} FINAL "
            f"WHERE {where}",
            params,
        )
        labelled = await self._ch.query(
            f"SELECT count() FROM {self._ch.table('predictions_labelled')} WHERE {where}", params
        )
        rows, errors = totals.rows[0]
        return WindowCounts(rows=int(rows), labelled=int(labelled.scalar()), errors=int(errors))
