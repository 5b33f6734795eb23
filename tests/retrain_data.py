"""Seeded production traffic for retraining tests: a population whose input-label relation
can flip (in some regions), shift or break, logged with its labels as the sink logs it."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np

from driftloop.clickhouse.prediction_log import PredictionLog
from driftloop.models.convert import prediction_to_proto
from driftloop.models.schema import Model, Row
from driftloop.models.table import Column, Table
from driftloop.v1 import common_pb2, events_pb2

MODEL = "churn"
REGIONS = ("a", "b", "c")


def population(
    seed: int,
    rows: int,
    *,
    flip_regions: Sequence[str] = (),
    shift: float = 0.0,
    zero: str = "",
) -> Table:
    """x0, x1, x2 ~ N(0, 1) (x1 shifted by `shift`), a region; churned = 1 with
    probability sigmoid(3 x0 + x1), the sign of x0's effect flipped in `flip_regions`;
    `zero` sets one feature to 0.0 everywhere (a unit bug upstream)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, rows))
    x[1] += shift
    region = rng.choice(REGIONS, p=[0.4, 0.4, 0.2], size=rows).astype(np.str_)
    slope = np.where(np.isin(region, list(flip_regions)), -3.0, 3.0)
    z = slope * x[0] + x[1] - shift
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    columns: dict[str, Column] = {f"x{i}": x[i] for i in range(3)}
    if zero:
        columns[zero] = np.zeros(rows)
    columns["region"] = region
    columns["churned"] = churned
    return Table(columns)


def rows_of(table: Table) -> list[Row]:
    names = [name for name in table.columns if name != "churned"]
    lists = {name: table.columns[name].tolist() for name in names}
    return [{name: lists[name][i] for name in names} for i in range(table.rows)]


async def log_traffic(
    prediction_log: PredictionLog,
    model: Model,
    version: str,
    table: Table,
    *,
    end: dt.datetime | None = None,
    prefix: str = "r",
    spacing: dt.timedelta = dt.timedelta(milliseconds=10),
) -> int:
    """Log `table` as served by `model` (its answers, logged features) with every label,
    the last row at `end` (default now); returns the rows logged."""
    end = end or dt.datetime.now(dt.UTC)
    rows = rows_of(table)
    outputs = model.predict(rows)
    truths = ["1" if value == 1.0 else "0" for value in table.columns["churned"].tolist()]
    predictions, labels = [], []
    for index, (row, output, truth) in enumerate(zip(rows, outputs, truths, strict=True)):
        request_id = f"{prefix}-{index}"
        event = events_pb2.PredictionEvent(
            request_id=request_id,
            model=MODEL,
            version=version,
            role=common_pb2.ROLE_LIVE,
            variant="stable",
            output=prediction_to_proto(output, model.output_kind),
            latency_us=100,
        )
        event.time.FromDatetime(end - spacing * (len(rows) - 1 - index))
        for name, value in row.items():
            if isinstance(value, str):
                event.features[name].category = value
            elif not math.isnan(value):
                event.features[name].number = value
        predictions.append(event)
        labels.append(events_pb2.LabelEvent(request_id=request_id, label=truth, source="test"))
    await prediction_log.write(predictions, labels)
    return len(predictions)
