"""Seeded prediction and label streams with known drift, for the drift tests and benchmarks.

Twenty standard-normal features; the label is drawn from a logistic model of x0, x1 and
x2. A version is trained on 5,000 stable rows, so its baseline (frozen bins, reference
sample, output distribution, holdout accuracy) describes the stable stream. `with_plan`
adds a categorical feature the model does not use (`plan`, four categories) to the
baseline, frozen from 5,000 rows like the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftloop.drift.windows import WindowData
from driftloop.models.baseline import categorical_baseline
from driftloop.models.convert import baseline_to_proto
from driftloop.models.table import Column, Table
from driftloop.models.training import TrainedModel, TrainingSpec, train_linear
from driftloop.v1 import common_pb2, events_pb2, registry_pb2

FEATURES = 20
NAMES = tuple(f"x{i}" for i in range(FEATURES))
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
PLANS = ("basic", "standard", "premium", "trial")
PLAN_SHARES = (0.4, 0.3, 0.2, 0.1)


def table(
    rows: int,
    seed: int,
    *,
    shift: dict[str, float] | None = None,
    shift_from: int = 0,
    flip_from: int | None = None,
) -> Table:
    """Rows of the stable process; from row `shift_from` on, `shift` adds its offset (in
    standard deviations) to those features; from row `flip_from` on, the label relation is
    inverted (concept drift with the inputs unchanged)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(FEATURES, rows))
    z = 1.5 * x[0] - x[1] + 0.5 * x[2]
    labels = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    if flip_from is not None:
        labels[flip_from:] = 1.0 - labels[flip_from:]
    for name, offset in (shift or {}).items():
        x[NAMES.index(name), shift_from:] += offset
    columns: dict[str, Column] = {name: x[i] for i, name in enumerate(NAMES)}
    columns["churned"] = labels
    return Table(columns)


def staggered(rows: int, seed: int, shifts: dict[str, tuple[int, int, float]]) -> Table:
    """Rows of the stable process where each named feature is shifted by its offset (in
    standard deviations) from its own first row to its own last (exclusive): features that
    drift one after another, and come back."""
    columns = dict(table(rows, seed).columns)
    for name, (first, last, offset) in shifts.items():
        column = np.array(columns[name], dtype=np.float64)
        column[first:last] += offset
        columns[name] = column
    return Table(columns)


def ramp(
    rows: int, seed: int, features: tuple[str, ...], reach: float, first: int, last: int
) -> Table:
    """Rows of the stable process where the named features drift slowly: their offset (in
    standard deviations) rises linearly from 0 at row `first` to `reach` at row `last`,
    and stays there."""
    columns = dict(table(rows, seed).columns)
    offset = reach * np.clip((np.arange(rows) - first) / (last - first), 0.0, 1.0)
    for name in features:
        columns[name] = np.asarray(columns[name], dtype=np.float64) + offset
    return Table(columns)


def plans(rows: int, seed: int, moved: float = 0.0) -> npt.NDArray[np.object_]:
    """The `plan` category of each row; `moved` is the share of rows taken from 'basic'
    to 'trial' (the total variation distance from the stable shares)."""
    shares = np.asarray(PLAN_SHARES) + np.asarray([-moved, 0.0, 0.0, moved])
    rng = np.random.default_rng(seed)
    return np.asarray(PLANS, dtype=object)[rng.choice(len(PLANS), size=rows, p=shares)]


def with_plan(trained: TrainedModel, seed: int = 7) -> TrainedModel:
    """The version with a `plan` feature in its baseline, frozen from 5,000 stable rows."""
    plan = categorical_baseline("plan", plans(5000, seed).astype(np.str_))
    baseline = dataclasses.replace(trained.baseline, categorical=[plan])
    return dataclasses.replace(trained, baseline=baseline)


def window_data(
    trained: TrainedModel,
    data: Table,
    *,
    labelled: bool = True,
    categories: dict[str, npt.NDArray[np.object_]] | None = None,
    start: dt.datetime = T0,
) -> WindowData:
    """The rows as a one-hour window of the version's traffic, as the drift service reads
    it (scores from the model, labels from the churn column when `labelled`)."""
    scores = trained.model.predict_table(data)
    rows = data.rows
    return WindowData(
        start=start,
        end=start + dt.timedelta(hours=1),
        numbers={name: np.asarray(data.columns[name], dtype=np.float64) for name in NAMES},
        categories=categories or {},
        output_value=scores,
        output_label=np.where(scores >= 0.5, "1", "0").astype(object),
        labelled=np.full(rows, labelled),
        truth_label=np.where(data.columns["churned"] == 1.0, "1", "0").astype(object),
        truth_value=np.zeros(rows),
        truth_is_label=np.ones(rows, dtype=bool),
    )


def train(seed: int = 7) -> TrainedModel:
    return train_linear(table(5000, seed), TrainingSpec(target="churned", features=NAMES))


def version_record(trained: TrainedModel, model: str, version: str) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        model=model,
        version=version,
        flavor="linear",
        output_kind=common_pb2.OUTPUT_KIND_BINARY,
        baseline=baseline_to_proto(trained.baseline),
    )


@dataclass(frozen=True)
class Stream:
    predictions: list[events_pb2.PredictionEvent]
    labels: list[events_pb2.LabelEvent]


def stream(
    trained: TrainedModel,
    data: Table,
    *,
    model: str,
    version: str,
    prefix: str = "r",
    first: int = 0,
    latency_us: int = 300,
    start: dt.datetime = T0,
) -> Stream:
    """One prediction per row (one second apart from `start` + `first` s) and its label."""
    scores: npt.NDArray[np.float64] = trained.model.predict_table(data)
    negative, positive = trained.model.classes
    columns = [data.columns[name] for name in NAMES]
    truths = data.columns["churned"]
    predictions, labels = [], []
    for row in range(data.rows):
        request_id = f"{prefix}-{first + row}"
        event = events_pb2.PredictionEvent(
            request_id=request_id,
            model=model,
            version=version,
            role=common_pb2.ROLE_LIVE,
            variant="stable",
            latency_us=latency_us,
        )
        event.time.FromDatetime(start + dt.timedelta(seconds=first + row))
        for name, column in zip(NAMES, columns, strict=True):
            event.features[name].number = float(column[row])
        score = float(scores[row])
        event.output.kind = common_pb2.OUTPUT_KIND_BINARY
        event.output.value = score
        event.output.label = positive if score >= 0.5 else negative
        predictions.append(event)
        label = events_pb2.LabelEvent(
            request_id=request_id, label=positive if truths[row] else negative, source="test"
        )
        label.time.FromDatetime(start + dt.timedelta(seconds=first + row, minutes=5))
        labels.append(label)
    return Stream(predictions, labels)
