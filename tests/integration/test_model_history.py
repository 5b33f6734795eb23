"""The drift service's model history (GetModelHistory's core) on the real ClickHouse engine:
traffic, quality and drift series in buckets, from rows written as the sink writes them, and
the window's model events as the model events' store writes them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.drift.history import HistoryReader, bucket_width
from driftloop.drift.model_events import COLUMNS, ModelEventLog, stored
from driftloop.drift.store import METRIC_COLUMNS
from driftloop.kit.errors import InvalidArgument
from driftloop.v1 import common_pb2, events_pb2
from tests.factories import T0, prediction

END = T0 + dt.timedelta(hours=1)


def label(n: int, truth: str = "", value: float | None = None) -> events_pb2.LabelEvent:
    event = events_pb2.LabelEvent(request_id=f"req-{n}", source="test")
    if value is None:
        event.label = truth
    else:
        event.value = value
    event.time.FromDatetime(T0 + dt.timedelta(seconds=n + 5))
    return event


def drift_row(
    version: str, second: int, stream: str, test: str, value: float
) -> tuple[object, ...]:
    at = T0 + dt.timedelta(seconds=second)
    return (
        "churn",
        version,
        "last_n",
        at,
        at,
        stream,
        test,
        value,
        0.001,
        int(value > 0.2),
        500,
        at,
    )


async def test_traffic_quality_and_drift_per_bucket_and_version(clickhouse: ClickHouse) -> None:
    # v1 serves seconds 0-59 (predicts "0"; second 7 failed), v2 seconds 60-119 (predicts "1").
    events = []
    for n in range(120):
        event = prediction(n, version="1" if n < 60 else "2")
        if n >= 60:
            event.output.label = "1"
        if n == 7:
            event.error = "UNAVAILABLE"
            event.ClearField("output")
        events.append(event)
    shadow = prediction(200, version="3")
    shadow.role = common_pb2.ROLE_SHADOW
    events.append(shadow)
    labels = [label(n, "0") for n in range(0, 30)]  # v1 right on its first half
    labels += [label(n, "1") for n in range(30, 40)]  # and wrong on these ten
    labels += [label(n, value=1.0) for n in range(60, 90)]  # v2 right (a numeric truth)
    await PredictionLog(clickhouse).write(events, labels)
    await clickhouse.insert(
        "drift_metrics",
        METRIC_COLUMNS,
        [
            drift_row("1", 20, "age", "psi", 0.05),
            drift_row("1", 40, "age", "psi", 0.3),
            drift_row("1", 40, "age", "js", 0.9),
            drift_row("1", 40, "__output__", "psi", 0.15),
            drift_row("1", 40, "__dataset__", "drifted_share", 0.5),
            drift_row("2", 100, "plan", "psi", 0.02),
        ],
    )

    history = await HistoryReader(clickhouse).history("churn", T0, END, bucket_s=60)

    start, next_minute = T0, T0 + dt.timedelta(minutes=1)
    assert history.bucket_s == 60
    assert [(p.start, p.version, p.requests, p.errors) for p in history.traffic] == [
        (start, "1", 60, 1),
        (next_minute, "2", 60, 0),
    ], "live traffic only: the shadow's row is left out"
    quality = {(p.start, p.version): p for p in history.quality}
    v1, v2 = quality[(start, "1")], quality[(next_minute, "2")]
    assert (v1.answered, v1.labelled, v1.metric) == (59, 39, "accuracy")
    assert v1.value == pytest.approx(29 / 39), "the failed call is neither answered nor judged"
    assert (v2.answered, v2.labelled, v2.value) == (60, 30, 1.0)
    drift = [(p.start, p.version, p.stream, p.psi, p.drifted) for p in history.drift]
    assert drift == [
        (start, "1", "__output__", 0.15, False),
        (start, "1", "age", 0.3, True),
        (next_minute, "2", "plan", 0.02, False),
    ], "PSI of features and the output, the highest of the bucket; no other test or stream"


async def test_regression_quality_is_the_mean_absolute_error(clickhouse: ClickHouse) -> None:
    events = []
    for n in range(4):
        event = prediction(n, model="price")
        event.output.CopyFrom(common_pb2.Output(kind=common_pb2.OUTPUT_KIND_REGRESSION, value=10.0))
        events.append(event)
    labels = [label(0, value=12.0), label(1, value=9.0), label(2, "13.5")]
    await PredictionLog(clickhouse).write(events, labels)

    history = await HistoryReader(clickhouse).history("price", T0, END, bucket_s=60)

    (point,) = history.quality
    assert (point.answered, point.labelled, point.metric) == (4, 3, "mae")
    assert point.value == pytest.approx((2.0 + 1.0 + 3.5) / 3)


async def test_the_automatic_bucket_fits_the_traffic_and_empty_windows_are_empty(
    clickhouse: ClickHouse,
) -> None:
    await PredictionLog(clickhouse).write([prediction(n) for n in range(0, 600, 10)])
    reader = HistoryReader(clickhouse)

    history = await reader.history("churn", T0 - dt.timedelta(days=1), END)
    assert history.bucket_s == 10, "590 s of traffic in about 60 buckets, not a day's worth"
    assert sum(p.requests for p in history.traffic) == 60

    empty = await reader.history("nobody", T0, END)
    assert (empty.traffic, empty.quality, empty.drift) == ([], [], [])
    assert empty.bucket_s == 60, "no traffic: the window's own span decides"
    with pytest.raises(InvalidArgument) as refused:
        await reader.history("churn", T0, END, bucket_s=1)
    assert refused.value.field == "bucket_s"


async def test_the_windows_model_events_come_oldest_first(clickhouse: ClickHouse) -> None:
    def event(
        model: str, second: int, kind: events_pb2.ModelEventKind.ValueType
    ) -> events_pb2.ModelEvent:
        message = events_pb2.ModelEvent(kind=kind, model=model, version="2")
        message.time.FromDatetime(T0 + dt.timedelta(seconds=second))
        return message

    step = events_pb2.MODEL_EVENT_KIND_ROLLOUT_STEPPED
    promoted = events_pb2.MODEL_EVENT_KIND_PROMOTED
    events = [
        event("churn", -1, step),  # before the window
        event("churn", 10, promoted),
        event("churn", 5, step),
        event("price", 6, step),  # another model
        event("churn", 3600, step),  # the window's end is not in it
    ]
    rows = [dataclasses.astuple(stored(e, T0)) for e in events]
    await clickhouse.insert("model_events", COLUMNS, rows)

    history = await HistoryReader(clickhouse).history("churn", T0, END, bucket_s=60)

    assert [(e.time, e.kind) for e in history.events] == [
        (T0 + dt.timedelta(seconds=5), "rollout_stepped"),
        (T0 + dt.timedelta(seconds=10), "promoted"),
    ]
    (newest,) = await ModelEventLog(clickhouse).events("churn", T0, END, limit=1)
    assert newest.kind == "promoted", "beyond the limit, the newest are kept"


def test_bucket_widths_are_round() -> None:
    assert [bucket_width(s) for s in (0, 60, 61, 3600, 86400, 30 * 86400, 60 * 86400)] == [
        1,
        1,
        2,
        60,
        1800,
        43200,
        86400,
    ]
    assert math.isclose(bucket_width(200 * 86400) / 86400, 4)
