"""A model's time series for people: live traffic per version, drift per stream, labelled
quality and label coverage, in time buckets, from the prediction log and drift_metrics;
and its model events (rollouts, canary steps, promotions, rollbacks, alias moves, halted
retraining runs) from model_events.

One query per question (traffic, quality, drift, and the extent of the traffic that
chooses the bucket width). Quality uses the one definition of an error
(`driftloop.drift.outcomes.errors`): ClickHouse groups the labelled rows by what decides
their error (the predicted class and the truth, for classifiers), so a day of a
classifier's traffic comes back as a few rows per bucket. A regression's rows do not
group (every value differs), so its quality reads each labelled row of the window.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.clickhouse.client import ClickHouse
from driftloop.clickhouse.prediction_log import Traffic, labelled_window_query
from driftloop.drift.model_events import ModelEventLog, StoredModelEvent
from driftloop.drift.outcomes import CLASSIFIERS, errors
from driftloop.drift.report import OUTPUT
from driftloop.kit.errors import InvalidArgument

# Round bucket widths, in seconds; the automatic one is the smallest giving at most
# TARGET_BUCKETS buckets over the traffic found (a whole number of days beyond these).
WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
DAY_S = 86400
TARGET_BUCKETS = 60
MAX_BUCKETS = 1000
# A window's model events, at most (the newest).
MAX_EVENTS = 10_000


def bucket_width(span_s: float) -> int:
    """The smallest round width that cuts `span_s` seconds into at most TARGET_BUCKETS."""
    for width in WIDTHS:
        if span_s <= width * TARGET_BUCKETS:
            return width
    return DAY_S * max(1, math.ceil(span_s / (DAY_S * TARGET_BUCKETS)))


@dataclass(frozen=True)
class TrafficPoint:
    start: dt.datetime
    version: str
    requests: int
    errors: int


@dataclass(frozen=True)
class QualityPoint:
    start: dt.datetime
    version: str
    answered: int
    labelled: int
    metric: str  # "accuracy" or "mae"
    value: float  # NaN without labelled rows


@dataclass(frozen=True)
class DriftPoint:
    start: dt.datetime
    version: str
    stream: str
    psi: float
    drifted: bool


@dataclass(frozen=True)
class History:
    model: str
    start: dt.datetime
    end: dt.datetime
    bucket_s: int
    traffic: list[TrafficPoint] = field(default_factory=list)
    quality: list[QualityPoint] = field(default_factory=list)
    drift: list[DriftPoint] = field(default_factory=list)
    events: list[StoredModelEvent] = field(default_factory=list)


_BUCKET = "toStartOfInterval({column}, toIntervalSecond({{bucket:UInt32}}))"
_WINDOW = "time >= {start:DateTime64(6, 'UTC')} AND time < {end:DateTime64(6, 'UTC')}"


class HistoryReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._events = ModelEventLog(clickhouse)

    async def history(
        self, model: str, start: dt.datetime, end: dt.datetime, bucket_s: int = 0
    ) -> History:
        """The model's series over [start, end) in buckets of `bucket_s` (0: automatic)."""
        params: dict[str, Any] = {"model": model, "start": start, "end": end}
        if bucket_s == 0:
            bucket_s = bucket_width(
                await self._traffic_span(params) or (end - start).total_seconds()
            )
        elif (end - start).total_seconds() / bucket_s > MAX_BUCKETS:
            raise InvalidArgument(
                "bucket_s", f"{bucket_s} s cuts the window into more than {MAX_BUCKETS} buckets"
            )
        params["bucket"] = bucket_s
        return History(
            model,
            start,
            end,
            bucket_s,
            traffic=await self._traffic(params),
            quality=await self._quality(params),
            drift=await self._drift(params),
            events=await self._events.events(model, start, end, MAX_EVENTS),
        )

    async def _traffic_span(self, params: dict[str, Any]) -> float:
        """Seconds between the first and the last live request of the window (0: none)."""
        result = await self._ch.query(
            f"SELECT count(), min(time), max(time) FROM {self._ch.table('predictions')} "
            f"WHERE model = {{model:String}} AND role = 'live' AND {_WINDOW}",
            params,
        )
        count, first, last = result.rows[0]
        return float((last - first).total_seconds()) if count else 0.0

    async def _traffic(self, params: dict[str, Any]) -> list[TrafficPoint]:
        result = await self._ch.query(
            f"SELECT {_BUCKET.format(column='time')} AS bucket, version, count(), "
            f"countIf(error != '') FROM {self._ch.table('predictions')} FINAL "
            f"WHERE model = {{model:String}} AND role = 'live' AND {_WINDOW} "
            "GROUP BY bucket, version ORDER BY bucket, version",
            params,
        )
        return [
            TrafficPoint(start, str(version), int(requests), int(failed))
            for start, version, requests, failed in result.rows
        ]

    async def _quality(self, params: dict[str, Any]) -> list[QualityPoint]:
        # Unlabelled rows collapse to one group per bucket and version; labelled ones to one
        # per distinct (prediction, truth) that decides the error.
        window, window_params = labelled_window_query(
            self._ch,
            Traffic(params["model"], start=params["start"], end=params["end"]),
            ["version", "toString(output_kind) AS kind", "output_value", "output_label"],
        )
        result = await self._ch.query(
            f"SELECT {_BUCKET.format(column='w.time')} AS bucket, w.version AS version, "
            "w.kind AS kind, w.labelled AS labelled, "
            "if(labelled, w.output_label, '') AS output_label, "
            "if(labelled AND kind = 'regression', w.output_value, 0) AS output_value, "
            "labelled AND w.truth_is_label AS truth_is_label, "
            "if(truth_is_label, w.truth_label, '') AS truth_label, "
            "if(labelled AND NOT truth_is_label, w.truth_value, 0) AS truth_value, count() AS n "
            f"FROM ({window}) AS w "
            "GROUP BY bucket, version, kind, labelled, output_label, output_value, "
            "truth_is_label, truth_label, truth_value ORDER BY bucket, version",
            window_params | {"bucket": params["bucket"]},
        )
        groups: dict[tuple[dt.datetime, str, str], list[tuple[Any, ...]]] = defaultdict(list)
        for start, version, kind, *rest in result.rows:
            groups[(start, str(version), str(kind))].append(tuple(rest))
        return [
            _quality_point(start, version, kind, rows)
            for (start, version, kind), rows in groups.items()
        ]

    async def _drift(self, params: dict[str, Any]) -> list[DriftPoint]:
        result = await self._ch.query(
            f"SELECT {_BUCKET.format(column='window_end')} AS bucket, version, stream, "
            f"max(value), max(drifted) FROM {self._ch.table('drift_metrics')} FINAL "
            "WHERE model = {model:String} AND window_kind = 'last_n' AND test = 'psi' "
            "AND (NOT startsWith(stream, '__') OR stream = {output:String}) "
            "AND window_end >= {start:DateTime64(6, 'UTC')} "
            "AND window_end < {end:DateTime64(6, 'UTC')} "
            "GROUP BY bucket, version, stream ORDER BY bucket, version, stream",
            {**params, "output": OUTPUT},
        )
        return [
            DriftPoint(start, str(version), str(stream), float(psi), bool(drifted))
            for start, version, stream, psi, drifted in result.rows
        ]


def _quality_point(
    start: dt.datetime, version: str, kind: str, rows: list[tuple[Any, ...]]
) -> QualityPoint:
    """One bucket of one version from its groups: (labelled, output_label, output_value,
    truth_is_label, truth_label, truth_value, rows)."""
    counts = np.array([row[6] for row in rows], dtype=np.float64)
    labelled = np.array([bool(row[0]) for row in rows])
    metric = "accuracy" if kind in CLASSIFIERS else "mae"
    value = math.nan
    if labelled.any():
        judged = [row for row, is_labelled in zip(rows, labelled, strict=True) if is_labelled]
        error = errors(
            kind,
            np.array([row[1] for row in judged], dtype=object),
            np.array([row[2] for row in judged], dtype=np.float64),
            np.array([row[4] for row in judged], dtype=object),
            np.array([row[5] for row in judged], dtype=np.float64),
            np.array([bool(row[3]) for row in judged]),
        )
        weights = counts[labelled]
        finite = np.isfinite(error)
        if finite.any():
            mean = float(np.average(error[finite], weights=weights[finite]))
            value = 1.0 - mean if metric == "accuracy" else mean
    return QualityPoint(
        start, version, int(counts.sum()), int(counts[labelled].sum()), metric, value
    )
