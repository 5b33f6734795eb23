"""Training the built-in linear flavor: schema inference, seeded holdout split, metrics,
baseline. Deterministic: the same table and spec give the same artifact bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from driftloop.kit.errors import InvalidArgument
from driftloop.kit.names import check_name
from driftloop.models.baseline import Baseline, reference_baseline
from driftloop.models.linear import LinearModel, Preprocessing, fit_logistic, fit_ridge
from driftloop.models.metrics import classification_metrics, regression_metrics
from driftloop.models.schema import Feature, OutputKind, Schema
from driftloop.models.table import Table

Task = Literal["auto", "binary", "multiclass", "regression"]
MAX_CLASSES = 50


@dataclass(frozen=True)
class TrainingSpec:
    target: str
    task: Task = "auto"
    l2: float = 1.0
    seed: int = 0
    holdout_fraction: float = 0.2
    features: tuple[str, ...] | None = None

    def hyperparameters(self) -> dict[str, str]:
        return {"l2": repr(self.l2), "holdout_fraction": repr(self.holdout_fraction)}


@dataclass(frozen=True)
class TrainedModel:
    model: LinearModel
    artifact: bytes
    metrics: dict[str, float]
    baseline: Baseline
    spec: TrainingSpec
    training_rows: int
    holdout_rows: int
    data_sha256: str


def infer_schema(table: Table, features: tuple[str, ...]) -> Schema:
    result = []
    for name in features:
        check_name(f"features.{name}", name, "feature name")
        column = table.columns[name]
        if table.is_numeric(name):
            result.append(Feature(name, "number", allow_nan=bool(np.isnan(column).any())))
        else:
            result.append(Feature(name, "category", categories=tuple(sorted(set(column.tolist())))))
    return Schema(tuple(result))


def _keep_nan_policy(schema: Schema, serving: Schema) -> Schema:
    """`schema` with NaN allowed wherever `serving` allowed it."""
    allowed = {f.name for f in serving.features if f.kind == "number" and f.allow_nan}
    return Schema(
        tuple(
            Feature(f.name, f.kind, True, f.categories) if f.name in allowed else f
            for f in schema.features
        )
    )


def _class_names(column: npt.NDArray[np.float64] | npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    if column.dtype.kind == "f":
        if np.isnan(column).any():
            raise InvalidArgument("target", "the target column has missing values")
        return np.asarray([f"{v:g}" for v in column.tolist()], dtype=np.str_)
    return column.astype(np.str_)


def _task(table: Table, spec: TrainingSpec) -> OutputKind:
    if spec.task != "auto":
        return spec.task
    column = table.columns[spec.target]
    distinct = len(set(column.tolist()))
    if table.is_numeric(spec.target) and distinct > 20:
        return "regression"
    return "binary" if distinct == 2 else "multiclass"


def train_linear(
    table: Table,
    spec: TrainingSpec,
    holdout: Table | None = None,
    serving_schema: Schema | None = None,
) -> TrainedModel:
    """Train, evaluate on the holdout, and compute the baseline.

    The holdout is a seeded random share of `table`, or `holdout` when given (then all of
    `table` trains: the retrainer holds out the newest slice of its window). With
    `serving_schema` (the version being replaced), a feature keeps accepting NaN where it
    did, so the new version serves every request the old one did."""
    if spec.target not in table.columns:
        raise InvalidArgument(
            "target", f"no column {spec.target!r} (columns: {', '.join(table.columns)})"
        )
    if not 0.0 < spec.holdout_fraction < 1.0:
        raise InvalidArgument("holdout_fraction", "must be between 0 and 1")
    features = spec.features or tuple(name for name in table.columns if name != spec.target)
    for name in features:
        if name not in table.columns:
            raise InvalidArgument(f"features.{name}", "no such column")
    if table.rows < 10:
        raise InvalidArgument("data", f"{table.rows} rows are too few to train and evaluate")
    kind = _task(table, spec)
    rng = np.random.default_rng(spec.seed)
    if holdout is None:
        order = rng.permutation(table.rows)
        cut = round(table.rows * (1.0 - spec.holdout_fraction))
        train, holdout = table.take(order[:cut]), table.take(order[cut:])
    else:
        train = table
        table = Table(
            {
                name: np.concatenate([train.columns[name], holdout.columns[name]])
                for name in train.columns
            }
        )
        order, cut = np.arange(table.rows), train.rows
    schema = infer_schema(table, features)
    if serving_schema is not None:
        schema = _keep_nan_policy(schema, serving_schema)
    preprocessing = Preprocessing.fit(train, schema)
    x_train = preprocessing.matrix(train)
    classes: tuple[str, ...] = ()
    if kind == "regression":
        if not table.is_numeric(spec.target):
            raise InvalidArgument("target", "regression needs a numeric target")
        y_train = train.columns[spec.target].astype(np.float64)
        weights, intercepts = fit_ridge(x_train, y_train, spec.l2)
    else:
        names = _class_names(table.columns[spec.target])
        classes = tuple(sorted(set(names.tolist())))
        if len(classes) < 2 or len(classes) > MAX_CLASSES:
            raise InvalidArgument(
                "target", f"{len(classes)} classes; classification needs 2 to {MAX_CLASSES}"
            )
        if kind == "binary" and len(classes) != 2:
            raise InvalidArgument(
                "target", f"binary classification needs 2 classes, found {len(classes)}"
            )
        lookup = {name: index for index, name in enumerate(classes)}
        y_all = np.asarray([lookup[name] for name in names.tolist()], dtype=np.int64)
        weights, intercepts = fit_logistic(x_train, y_all[order[:cut]], len(classes), spec.l2)
    model = LinearModel(schema, kind, preprocessing, weights, intercepts, classes)
    artifact = model.to_bytes()
    model = LinearModel.from_bytes(artifact)  # serve exactly what was stored (rounded)
    if kind == "regression":
        metrics = regression_metrics(
            holdout.columns[spec.target].astype(np.float64), model.predict_table(holdout)
        )
    else:
        scores = model.predict_table(holdout)
        probabilities = np.column_stack([1 - scores, scores]) if kind == "binary" else scores
        metrics = classification_metrics(y_all[order[cut:]], probabilities)
    baseline = _baseline(model, train, schema, metrics, rng)
    return TrainedModel(
        model, artifact, metrics, baseline, spec, train.rows, holdout.rows, table.content_sha256()
    )


def _baseline(
    model: LinearModel,
    train: Table,
    schema: Schema,
    metrics: dict[str, float],
    rng: np.random.Generator,
) -> Baseline:
    scores = model.predict_table(train)
    labels = None
    if model.output_kind == "multiclass":
        labels = np.asarray(model.classes)[scores.argmax(axis=1)].astype(np.str_)
        scores = scores.max(axis=1)
    elif model.output_kind == "binary":
        labels = np.where(scores >= 0.5, model.classes[1], model.classes[0]).astype(np.str_)
    return reference_baseline(schema, train.columns, scores, labels, metrics, rng)
